"""Stop requests from SIGTERM (preemption) and SIGINT (Ctrl-C), acted on between training steps.

Inside `StopRequests()` the first SIGTERM or SIGINT only records the signal; the loop sees it
after the current step, saves a checkpoint and stops. A second SIGINT exits the process at once
(exit code 130) without saving; the latest complete checkpoint is still there, since orbax
commits a checkpoint by renaming its folder only once it is fully written. A repeated SIGTERM
changes nothing. The previous handlers come back on exit. Handlers can only be installed in the
main thread; elsewhere this records nothing and the signals keep their current behaviour.
In a multi-host run the processes share their requests at logging steps (`loop.stop_requested`);
a second SIGINT ends its own process only, and JAX's distributed runtime then ends the others.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from types import FrameType, TracebackType
from typing import Any

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopRequests:
    """Records the first SIGTERM/SIGINT received while active; `signum` is None until then."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.previous: dict[int, Any] = {}

    @property
    def name(self) -> str:
        """The received signal's name, e.g. 'SIGTERM'."""
        return signal.Signals(self.signum).name if self.signum is not None else ""

    def handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            print("second SIGINT: stopped at once without saving; rerun the same command to resume from the "
                  "latest checkpoint", file=sys.stderr, flush=True)
            os._exit(128 + signum)
        if self.signum is None:
            self.signum = signum

    def __enter__(self) -> StopRequests:
        if threading.current_thread() is threading.main_thread():
            for s in SIGNALS:
                self.previous[s] = signal.signal(s, self.handle)
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        for s, handler in self.previous.items():
            signal.signal(s, handler)
        self.previous.clear()
