"""magajax.host_memory: a large block freed on one thread is reused on another without page faults.

glibc only. Each check compares against the same process run with MAGAJAX_REUSE_MEMORY=0, so it
holds whatever the kernel's transparent huge page setting (which changes the fault counts).
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc malloc options")

ROOT = Path(__file__).resolve().parents[1]

# Allocates, touches and frees a 256 MiB block (far over glibc's 32 MiB mmap threshold) with the
# C library's malloc, as XLA:CPU does, once on one thread and once on another; prints whether
# malloc was tuned and the page faults of the second round.
SCRIPT = """
import ctypes, json, resource, sys, threading
setup = sys.argv[1]
tuned = None
if setup == "call":
    from magajax.host_memory import reuse_freed_memory
    tuned = reuse_freed_memory()
else:  # an entry point's main(), here one that stops at once: the run folder does not exist
    from experiments import evaluate
    assert evaluate.main(["--workdir", "/nonexistent/magajax-run", "--no-progress"]) == 2
libc = ctypes.CDLL(None)
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
size = 256 * 2**20
faults = []
def round_trip():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    block = libc.malloc(size)
    ctypes.memset(block, 1, size)
    libc.free(block)
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
for _ in range(2):
    thread = threading.Thread(target=round_trip)
    thread.start()
    thread.join()
print(json.dumps({"tuned": tuned, "faults": faults[1]}))
"""


def run(setup: str, reuse: str) -> dict:
    env = dict(os.environ, MAGAJAX_REUSE_MEMORY=reuse)
    out = subprocess.run([sys.executable, "-c", SCRIPT, setup], env=env, cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("setup", ["call", "main"])  # the function, or an entry point's main()
def test_freed_block_is_reused_without_page_faults(setup):
    tuned, default = run(setup, "1"), run(setup, "0")
    if setup == "call":
        assert (tuned["tuned"], default["tuned"]) == (True, False)
    assert default["faults"] > 100  # glibc's default maps the block afresh
    assert tuned["faults"] < 0.1 * default["faults"]


@pytest.mark.parametrize("platforms, expected", [("", False), ("cpu", True)])
def test_left_alone_beside_an_accelerator_unless_jax_is_asked_for_the_cpu(platforms, expected):
    script = "from magajax.host_memory import reuse_freed_memory; print(reuse_freed_memory())"
    env = dict(os.environ, MAGAJAX_REUSE_MEMORY="1", COLAB_TPU_ADDR="10.0.0.2:8470", JAX_PLATFORMS=platforms)
    out = subprocess.run([sys.executable, "-c", script], env=env, cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(expected)
