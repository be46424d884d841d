"""Metric writers: `write_scalars(step, {name: value})`, `flush()`, `close()` (clu's shape).

`JsonlWriter` appends one JSON line per call to `workdir/metrics.jsonl`, the run's record
(read back by `workdir.read_metrics`); `TensorBoardWriter` writes the same scalars as
TensorBoard events (tensorboardX, imported only when used); `MultiWriter` fans out to several.
`open_writer` builds the run's writer: only process 0 writes, the other processes get an empty
`MultiWriter`. The workdir may be a bucket (gs://...), as anywhere `etils.epath` reaches.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import Protocol

from etils import epath

from magajax.training import hosts
from magajax.training import workdir as wd


class MetricWriter(Protocol):
    def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...


class JsonlWriter:
    """Appends `{"step": step, **scalars}` as one line of `path` per call; `flush` writes them durably."""

    def __init__(self, path: str | os.PathLike):
        self.path = epath.Path(path)
        self.pending: list[str] = []

    def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
        self.pending.append(json.dumps({"step": int(step), **{k: float(v) for k, v in scalars.items()}}) + "\n")

    def flush(self) -> None:
        if self.pending:
            wd.append_text(self.path, "".join(self.pending))
            self.pending.clear()

    def close(self) -> None:
        self.flush()


def summary_writer_class() -> type:
    """tensorboardX's SummaryWriter, or an ImportError saying how to install it."""
    try:
        from tensorboardX import SummaryWriter
    except ImportError as e:
        raise ImportError(
            f"TensorBoard logging needs tensorboardX ({e}); `pip install tensorboardX`, or train without --tensorboard"
        ) from e
    return SummaryWriter


class TensorBoardWriter:
    """TensorBoard scalars in `logdir`, through tensorboardX.

    Args:
      logdir: the events folder.
      purge_step: events already in `logdir` at this step or later are discarded by TensorBoard:
        a resumed run passes the step after its checkpoint so repeated steps show once.
    """

    def __init__(self, logdir: str | os.PathLike, purge_step: int | None = None):
        self.writer = summary_writer_class()(str(logdir), purge_step=purge_step)

    def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
        for name, value in scalars.items():
            self.writer.add_scalar(name, float(value), int(step))

    def flush(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class MultiWriter:
    """Writes, flushes and closes every writer of `writers` in turn (none: writes nothing)."""

    def __init__(self, writers: Sequence[MetricWriter]):
        self.writers = list(writers)

    def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
        for w in self.writers:
            w.write_scalars(step, scalars)

    def flush(self) -> None:
        for w in self.writers:
            w.flush()

    def close(self) -> None:
        for w in self.writers:
            w.close()


def open_writer(workdir: str | os.PathLike, start: int = 0, tensorboard: bool = False) -> MultiWriter:
    """The run's writer: metrics.jsonl, and TensorBoard events in workdir/tensorboard/ when asked.

    `start` is the step the run resumes from. Only process 0 writes.
    """
    if not hosts.is_lead():
        return MultiWriter([])
    writers: list[MetricWriter] = [JsonlWriter(epath.Path(workdir) / wd.METRICS)]
    if tensorboard:
        writers.append(TensorBoardWriter(epath.Path(workdir) / wd.TENSORBOARD, purge_step=start + 1))
    return MultiWriter(writers)
