"""One run per workdir: an exclusive `flock` on `workdir/.lock`, which holds the owner's PID.

The kernel releases a flock when its process ends, however it ends, so a lock left by a
killed run (`kill -9`, a crash, a preempted machine) never blocks the next one; the file
itself stays and only says who held it last.

A bucket (gs://...) has no such lock: a workdir there is not locked, and running one run per
workdir is then the user's care. In a multi-host run only process 0 takes the lock.
"""

from __future__ import annotations

import fcntl
import os
from types import TracebackType

from etils import epath

from magajax.training.workdir import is_local

LOCK = ".lock"


class WorkdirInUse(OSError):
    """Another live process holds the workdir's lock."""


class WorkdirLock:
    """The exclusive lock of a workdir, held from `acquire()` (or `with`) to `release()`.

    Args:
      workdir: the run's folder (created if missing); a bucket path is not locked.
    """

    def __init__(self, workdir: str | os.PathLike):
        self.workdir = epath.Path(workdir)
        self.path = self.workdir / LOCK
        self.fd: int | None = None

    def acquire(self) -> WorkdirLock:
        """Takes the lock at once or raises WorkdirInUse naming the holder's PID (a bucket: only creates it)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        if not is_local(self.workdir):
            return self
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise WorkdirInUse(
                f"workdir {self.workdir} is in use by process {holder}; wait for that run to finish or stop it, "
                "or use another --workdir"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self.fd = fd
        return self

    def release(self) -> None:
        """Releases the lock (the file stays: removing it would race with a process opening it)."""
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> WorkdirLock:
        return self.acquire()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.release()
