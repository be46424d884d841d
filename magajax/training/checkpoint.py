"""Orbax checkpoints of a run: save every N steps, keep the last K, resume from the latest.

A latest checkpoint that cannot be restored is moved to `workdir/corrupt/` (never deleted)
and the previous one is restored instead, with a message saying so.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

import orbax.checkpoint as ocp

from magajax.config import Config
from magajax.training import workdir as wd


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: missing, unreadable, or not this run's structure."""


class Checkpoints:
    """The orbax CheckpointManager of `workdir/checkpoints`.

    Args:
      workdir: the run's folder.
      keep: how many of the most recent checkpoints to keep.
    """

    def __init__(self, workdir: str | os.PathLike, keep: int = 3):
        self.workdir = Path(workdir).absolute()
        self.directory = self.workdir / wd.CHECKPOINTS
        self.manager = ocp.CheckpointManager(
            self.directory, options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True)
        )

    def steps(self) -> list[int]:
        """Saved steps, oldest first."""
        return sorted(self.manager.all_steps())

    def save(self, step: int, state: Any) -> None:
        """Saves `state` as step `step` (asynchronously; atomic on completion)."""
        self.manager.save(step, args=ocp.args.StandardSave(state))

    def wait(self) -> None:
        """Blocks until pending saves are on disk."""
        self.manager.wait_until_finished()

    def restore(self, target: Any, step: int | None = None) -> tuple[Any, int] | None:
        """Restores into the structure of `target`: the given step, else the latest readable one.

        Returns (state, step), or None when there is no checkpoint. Unreadable checkpoints are
        moved to `workdir/corrupt/` and the next older one is tried.
        """
        candidates = [step] if step is not None else self.steps()[::-1]
        for s in candidates:
            try:
                state = self.manager.restore(s, args=ocp.args.StandardRestore(target))
                return state, s
            except Exception as e:  # orbax raises many types for damaged files
                if step is not None:
                    raise CheckpointError(f"checkpoint {self.directory / str(s)} cannot be restored: {e}") from e
                aside = self._move_aside(s)
                print(f"checkpoint at step {s} is unreadable ({type(e).__name__}); moved it to {aside} "
                      "and trying the previous one")
        return None

    def _move_aside(self, step: int) -> Path:
        corrupt = self.workdir / "corrupt"
        corrupt.mkdir(exist_ok=True)
        aside = corrupt / f"{step}-{time.strftime('%Y%m%d-%H%M%S')}"
        shutil.move(str(self.directory / str(step)), str(aside))
        self.manager.reload()
        return aside

    def close(self) -> None:
        self.wait()
        self.manager.close()


def load(workdir: str | os.PathLike, step: int | None = None) -> tuple[Config, Any, int]:
    """The run's Config, the model variables of its latest (or given) checkpoint, and that step."""
    config = wd.read_config(workdir)
    ckpt = Checkpoints(workdir)
    try:
        steps = ckpt.steps()
        if not steps:
            raise FileNotFoundError(
                f"no checkpoint in {ckpt.directory}: train first with "
                f"`python -m experiments.train --workdir={workdir}`"
            )
        latest = step if step is not None else steps[-1]
        try:
            restored = ckpt.manager.restore(latest, args=ocp.args.StandardRestore())
        except Exception as e:
            raise CheckpointError(
                f"checkpoint {ckpt.directory / str(latest)} cannot be restored ({type(e).__name__}: {e}); "
                f"pass an older step (saved: {steps}) or retrain"
            ) from e
    finally:
        ckpt.close()
    return config, restored["variables"], latest
