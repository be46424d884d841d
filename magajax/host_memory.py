"""Keep freed host memory for reuse, so an XLA:CPU step does not page-fault its temporaries.

XLA:CPU allocates a step's temporaries with malloc (1.2 GB for the default train step at batch 64)
and frees them when the step ends. glibc serves every block over 32 MiB from fresh mmap'd pages
and unmaps it on free, so each step faults all of it in again: 320k page faults and 1.2 s of kernel
time per 2.4 s step on a 2-core CPU. `reuse_freed_memory` sets three glibc malloc options:

  M_MMAP_MAX = 0         every block comes from the heap, never from its own mmap;
  M_TRIM_THRESHOLD = −1  freed heap memory is kept, never returned to the system;
  M_ARENA_MAX = 1        one heap for all threads, so the thread that allocates a step's
                         temporaries reuses what another thread freed.

The process's resident memory then stays at its peak instead of falling between steps. It is
called by `experiments/__init__.py`, before JAX starts its threads; scripts that want it call it
first thing. MAGAJAX_REUSE_MEMORY=0 turns it off; other C libraries than glibc are left as they are.
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

    Returns False, changing nothing, where the C library is not glibc or MAGAJAX_REUSE_MEMORY=0.
    Call it before JAX (or anything else) starts threads: M_ARENA_MAX binds only threads that
    have not allocated yet.
    """
    if os.environ.get(ENV, "1") == "0" or platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL(None)
    return all(libc.mallopt(option, value) == 1 for option, value in
               ((M_ARENA_MAX, 1), (M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, -1)))
