"""JAX's persistent compilation cache, on by default: a second run of a config starts in seconds.

XLA compiles the default train step in tens of seconds on a CPU. `enable()` points JAX's
persistent compilation cache at $MAGAJAX_CACHE/xla (default ~/.cache/magajax/xla), so the
compiled train step, evaluation and decoding are written there once and read back by every later
process that compiles the same computation (same config, shapes, jax version and backend).

- Every entry point (`experiments/_cli.run`) and `magajax.load` / `Model.from_checkpoint` call it.
- A cache directory already configured (jax.config's `jax_compilation_cache_dir`, e.g. from
  JAX_COMPILATION_CACHE_DIR or a test fixture) is left as it is, with its thresholds.
- MAGAJAX_COMPILE_CACHE=0 turns it off.
- The folder only ever grows; deleting it is safe (the next run compiles afresh).
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import jax
from jax.experimental.compilation_cache import compilation_cache

ENV = "MAGAJAX_COMPILE_CACHE"
MIN_COMPILE_S = 0.1  # cache what took at least this long to compile: train step, evaluation, decode
MIN_ENTRY_BYTES = 0  # whatever its size


def directory() -> Path:
    """$MAGAJAX_CACHE/xla, default ~/.cache/magajax/xla."""
    return Path(os.environ.get("MAGAJAX_CACHE") or "~/.cache/magajax").expanduser() / "xla"


def enable() -> str | None:
    """Turns JAX's persistent compilation cache on at `directory()`; returns the folder in use.

    Returns the folder already configured (changing nothing) when there is one, and None (changing
    nothing) when MAGAJAX_COMPILE_CACHE=0. Call it before the first compilation it should cache.
    """
    configured = jax.config.jax_compilation_cache_dir
    if configured:
        return configured
    if os.environ.get(ENV, "1") == "0":
        return None
    path = directory()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        warnings.warn(f"compilation cache off: cannot create {path} ({e.strerror}); set MAGAJAX_CACHE to a "
                      f"writable folder or {ENV}=0", stacklevel=2)
        return None
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_S)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", MIN_ENTRY_BYTES)
    return str(path)


@contextlib.contextmanager
def isolated(path: str | os.PathLike) -> Iterator[None]:
    """Within the block, JAX's persistent cache is the folder `path` alone, caching every compilation;
    the previous settings are back after it (benchmarks: a cold compile, then a warm one)."""
    names = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs",
             "jax_persistent_cache_min_entry_size_bytes")
    before = {name: getattr(jax.config, name) for name in names}
    compilation_cache.reset_cache()  # JAX opens its cache folder once; closed here, reopened at the next compile
    for name, value in zip(names, (str(path), 0.0, 0), strict=True):
        jax.config.update(name, value)
    try:
        yield
    finally:
        compilation_cache.reset_cache()
        for name, value in before.items():
            jax.config.update(name, value)
