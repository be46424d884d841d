"""Keep freed host memory for reuse, so an XLA:CPU step does not page-fault its temporaries.

XLA:CPU allocates a step's temporaries with malloc (over a GB for the default train step at
batch 64) and frees them when the step ends. glibc serves every block over 32 MiB from fresh mmap'd
pages and unmaps it on free, so each step faults all of it in again, in kernel time
(docs/performance.md has the measurements). `reuse_freed_memory` sets three glibc malloc options:

  M_MMAP_MAX = 0         every block comes from a heap, never from its own mmap;
  M_TRIM_THRESHOLD = −1  freed heap memory is kept, never returned to the system;
  M_ARENA_MAX = 1        one heap for all threads: XLA allocates and frees on several threads,
                         and a thread's own extra heap would still mmap blocks over 64 MiB.

Costs: resident memory no longer falls after a peak (fragmentation can add to it), all threads
share one malloc lock, and it overrides MALLOC_ARENA_MAX or GLIBC_TUNABLES given by the user.
Every entry point's `main()` calls it (experiments/_cli.py), before JAX creates its CPU client and
that client's threads; scripts that want it call it first thing.
MAGAJAX_REUSE_MEMORY=0 turns it off; C libraries other than glibc are left as they are.

Only the CPU backend gains: on a TPU or GPU a step's temporaries live in device memory, and the
host's malloc would only pay the costs above. So nothing is set when the machine shows an
accelerator (`magajax.runtime.visible_accelerator`), unless JAX_PLATFORMS=cpu asks for the CPU.
"""

from __future__ import annotations

import ctypes
import os
import platform

M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
M_ARENA_MAX = -8
ENV = "MAGAJAX_REUSE_MEMORY"


def reuse_freed_memory() -> bool:
    """Sets glibc's malloc to keep and reuse freed memory; True when all three options were set.

    Returns False, changing nothing, where the C library is not glibc, MAGAJAX_REUSE_MEMORY=0, or
    the machine shows a TPU or GPU (unless JAX_PLATFORMS=cpu).
    Call it before JAX creates its backend (the first `jax.devices()` or computation): M_ARENA_MAX
    binds only threads that have not allocated yet.
    """
    if os.environ.get(ENV, "1") == "0" or platform.libc_ver()[0] != "glibc":
        return False
    from magajax.runtime import visible_accelerator

    if visible_accelerator() is not None and os.environ.get("JAX_PLATFORMS", "") != "cpu":
        return False
    libc = ctypes.CDLL(None)
    results = [libc.mallopt(option, value) for option, value in
               ((M_ARENA_MAX, 1), (M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, -1))]
    return all(result == 1 for result in results)
