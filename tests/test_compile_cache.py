"""magajax.compile_cache: compiled programs land in $MAGAJAX_CACHE/xla, MAGAJAX_COMPILE_CACHE=0 turns it
off, and a cache folder already configured is kept."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jax

from magajax import compile_cache

ROOT = Path(__file__).resolve().parents[1]

# Enables the cache, compiles one small function (every compilation counts here, however short) and
# prints what enable() returned and the files in the cache folder.
SCRIPT = """
import json, os, sys
import jax, jax.numpy as jnp
from magajax import compile_cache
used = compile_cache.enable()
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
jax.block_until_ready(jax.jit(lambda x: jnp.sin(x) @ x.T)(jnp.ones((8, 8))))
folder = compile_cache.directory()
print(json.dumps({"used": used, "files": sorted(os.listdir(folder)) if folder.exists() else None}))
"""


def run_script(tmp_path: Path, **env: str) -> dict:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("JAX_COMPILATION_CACHE", "MAGAJAX_"))}
    environ.update(MAGAJAX_CACHE=str(tmp_path / "cache"), JAX_PLATFORMS="cpu", **env)
    out = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, env=environ, capture_output=True, text=True,
                         timeout=120, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_compiled_programs_are_written_to_the_cache_folder(tmp_path):
    result = run_script(tmp_path)
    assert result["used"] == str(tmp_path / "cache" / "xla")
    assert result["files"], "no cache entry written"


def test_the_off_switch_leaves_jax_without_a_cache(tmp_path):
    result = run_script(tmp_path, MAGAJAX_COMPILE_CACHE="0")
    assert result["used"] is None
    assert result["files"] is None


def test_a_configured_cache_folder_is_kept(tmp_path, monkeypatch):
    monkeypatch.setenv("MAGAJAX_CACHE", str(tmp_path))
    configured = jax.config.jax_compilation_cache_dir  # the tests' session cache (conftest)
    assert configured
    min_time = jax.config.jax_persistent_cache_min_compile_time_secs
    assert compile_cache.enable() == configured
    assert jax.config.jax_compilation_cache_dir == configured
    assert jax.config.jax_persistent_cache_min_compile_time_secs == min_time
    assert not (tmp_path / "xla").exists()
