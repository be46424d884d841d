"""magajax.host_memory: a freed large block is reused without page faults (glibc only)."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc malloc options")

SIZE = 256 * 2**20  # far over glibc's 32 MiB mmap threshold
PAGES = SIZE // 4096

# Allocates, touches and frees a block twice with the C library's own malloc (as XLA:CPU does);
# prints whether malloc was tuned and the page faults of the second round.
SCRIPT = """
import ctypes, json, resource, sys
setup = sys.argv[1]
if setup == "call":
    from magajax.host_memory import reuse_freed_memory
    tuned = reuse_freed_memory()
elif setup == "import":
    import experiments
    tuned = None
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
def faults():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    block = libc.malloc(SIZE)
    ctypes.memset(block, 1, SIZE)
    libc.free(block)
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
faults()
print(json.dumps({"tuned": tuned, "faults": faults()}))
""".replace("SIZE", str(SIZE))


def run(setup: str, reuse: str = "1") -> dict:
    env = dict(os.environ, MAGAJAX_REUSE_MEMORY=reuse)
    out = subprocess.run([sys.executable, "-c", SCRIPT, setup], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_freed_block_is_reused_without_page_faults():
    result = run("call")
    assert result["tuned"] is True
    assert result["faults"] < 0.05 * PAGES


def test_turned_off_by_the_environment_glibc_faults_every_page_again():
    result = run("call", reuse="0")
    assert result["tuned"] is False
    assert result["faults"] > 0.5 * PAGES


def test_importing_the_entry_points_sets_it():
    assert run("import")["faults"] < 0.05 * PAGES
    assert run("import", reuse="0")["faults"] > 0.5 * PAGES
