"""The processes of a multi-host run: process 0 leads, the others follow, and a failure stops them all.

After `jax.distributed.initialize` every process runs the same training loop on its own devices.
Process 0 alone writes the workdir's own files (config.json, metrics.jsonl, figures, checksums,
errors.log, corrupt/), holds the lock and prints; the others wait for it where they need what it
wrote. `agreed(what)` is that wait with failures shared: every process runs the block, then all
exchange whether it failed; a failure on any process is raised on every process, so none is left
waiting at a barrier for one that gave up. The exchange is one tiny collective over all devices
(`process_allgather`). With one process `agreed` and `first_signal` exchange nothing.

A process that dies outright (killed, crashed) cannot say so; JAX's distributed runtime notices
its missing heartbeats and ends the others (`heartbeat_timeout_seconds` of
`jax.distributed.initialize`, 100 s by default).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import jax
import numpy as np
from jax.experimental import multihost_utils

MESSAGE_BYTES = 1000  # of a failure's message shared with the other processes
# The kinds of error a failure is raised as on the other processes; any other kind becomes the last.
KINDS = (FloatingPointError, ValueError, OSError, ImportError, RuntimeError)


def is_lead() -> bool:
    """Whether this is process 0, the one that writes the workdir's files and prints."""
    return jax.process_index() == 0


def encode(error: BaseException | None) -> np.ndarray:
    """A fixed-size status row: [failed, kind, message bytes...] (kind indexes KINDS)."""
    row = np.zeros(2 + MESSAGE_BYTES, np.uint8)
    if error is not None:
        kind = next((i for i, k in enumerate(KINDS) if isinstance(error, k)), len(KINDS) - 1)
        text = " ".join(str(error).split()).encode()[:MESSAGE_BYTES]
        row[:2] = 1, kind
        row[2:2 + len(text)] = np.frombuffer(text, np.uint8)
    return row


def decode(row: np.ndarray) -> tuple[type[Exception], str] | None:
    """(kind, message) of a status row, None when it reports no failure."""
    if not row[0]:
        return None
    return KINDS[int(row[1])], bytes(row[2:]).rstrip(b"\0").decode(errors="replace")


@contextlib.contextmanager
def agreed(what: str) -> Iterator[None]:
    """Runs the block on every process, then waits for all of them; if it failed on any, it fails on all.

    The process that failed raises its own error; the others raise one of the same kind (ValueError,
    OSError, FloatingPointError, ImportError, else RuntimeError) saying which process failed, at what
    (`what`, e.g. "prepare the workdir") and its message.
    """
    if jax.process_count() == 1:
        yield
        return
    error = None
    try:
        yield
    except Exception as e:  # shared with the other processes below, then raised again
        error = e
    rows = multihost_utils.process_allgather(encode(error))
    if error is not None:
        raise error
    for index, row in enumerate(rows):
        failure = decode(row)
        if failure is not None:
            kind, message = failure
            raise kind(f"process {index} failed to {what}: {message}")


def first_signal(signum: int | None) -> int | None:
    """The signal received by the lowest-numbered process that received one (None if none did).

    A stop request reaches each process on its own (or only one of them); all must stop at the same
    step, so they exchange what they received.
    """
    if jax.process_count() == 1:
        return signum
    received = multihost_utils.process_allgather(np.int32(signum or 0))
    return next((int(s) for s in np.ravel(received) if s), None)
