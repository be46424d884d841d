"""A training run in a workdir: lock, load data, resume, loop, log, checkpoint, draw.

`train(config, workdir)` is what `python -m experiments.train` calls and what tests call.
Starting in a workdir with checkpoints resumes from the latest one. A run

- holds the workdir's lock for its whole life: a second run on the same workdir fails at once;
- rewrites metrics.jsonl on (re)start to the steps up to its checkpoint, so no step is logged twice;
- stops at the first step whose update was skipped as non-finite, without saving, and says how to
  resume (lower train.lr or set train.clip, then rerun the same command);
- on SIGTERM or SIGINT finishes the current step, saves a checkpoint, waits for it to be on disk
  and raises `Interrupted` (exit code 128 + signal number);
- draws figures/loss.png once, at the end.

Every process of a multi-host run (after `jax.distributed.initialize`) calls `train` alike. Process 0
alone takes the lock, prepares the workdir, writes metrics and figures and prints; the others wait
for it, and an error on any process stops them all (`hosts.agreed`). Checkpoints are saved and
restored by all. A stop request (SIGTERM, SIGINT) may reach only some processes: they agree on it
at every logging step (train.log_every), so a multi-host run stops at the next one.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from typing import Any

import jax
import numpy as np
from etils import epath
from tqdm.auto import tqdm

from magajax import config as cfg
from magajax.analysis import figures
from magajax.config import Config
from magajax.data import provenance
from magajax.data.sources import DSprites
from magajax.data.splits import make_split
from magajax.training import hosts
from magajax.training import step as tr
from magajax.training import workdir as wd
from magajax.training.checkpoint import Checkpoints
from magajax.training.lock import WorkdirLock
from magajax.training.metrics import open_writer, summary_writer_class
from magajax.training.setup import setup
from magajax.training.signals import StopRequests


class Interrupted(Exception):
    """A run stopped by a signal after saving its state; `exit_code` is 128 + the signal number."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


def summarise(pending: list[tuple[int, dict[str, jax.Array]]], config: Config, saved: int) -> dict[str, float]:
    """The mean of each metric over the steps of `pending`: (first step, its metrics), each metric a
    scalar for one step or stacked (K,) for K steps from the first.

    Raises FloatingPointError at the first step whose update was skipped (`finite` 0): the state
    then is the last good one, but nothing more is saved or logged.
    """
    host = jax.device_get([m for _, m in pending])  # one transfer for the whole interval
    columns = {k: np.concatenate([np.reshape(h[k], -1) for h in host]).astype(np.float64) for k in host[0]}
    steps = np.concatenate([first + np.arange(np.size(h["finite"])) for (first, _), h in zip(pending, host)])
    for i in np.flatnonzero(columns["finite"] < 1)[:1]:
        bad = ", ".join(k for k, v in columns.items() if not np.isfinite(v[i])) or "update"
        clip = config.train.clip
        last = f"step {saved}" if saved else "step 0 (no checkpoint yet)"
        raise FloatingPointError(
            f"step {steps[i]}: non-finite {bad}, the update was skipped and training stopped without saving; "
            f"lower --train.lr (now {config.train.lr:g}) or {'lower' if clip > 0 else 'set'} --train.clip "
            f"(now {clip:g}), then rerun the same command to resume from {last}"
        )
    return {k: float(v.mean()) for k, v in columns.items()}


def train(
    config: Config,
    workdir: str | os.PathLike,
    *,
    data: DSprites | None = None,
    overwrite: bool = False,
    progress: bool = True,
    tensorboard: bool = False,
) -> tr.TrainState:
    """Trains `config` in `workdir` up to `config.train.steps`, resuming if it holds checkpoints.

    Args:
      config: the run's configuration.
      workdir: the run's folder (see `workdir`).
      data: a dSprites container to use instead of loading `config.data.source` (or, on resuming, the
        source recorded in workdir/data.json).
      overwrite: start afresh, moving any previous run in `workdir` aside (nothing is deleted).
      progress: show a progress bar.
      tensorboard: also write the metrics as TensorBoard events in workdir/tensorboard/.

    Returns:
      The final TrainState (replicated over the devices).

    Raises:
      WorkdirInUse (an OSError): another process is training in `workdir`.
      ImportError: `tensorboard` is asked for and tensorboardX is not installed.
      FloatingPointError: a step's update was skipped as non-finite.
      Interrupted: SIGTERM or SIGINT stopped the run after saving a checkpoint.
    """
    mesh = tr.make_mesh()
    tr.check_batch(config.train.batch_size, mesh)
    lead = hosts.is_lead()
    with contextlib.ExitStack() as stack:
        with hosts.agreed("lock the workdir"):
            if tensorboard and lead:
                summary_writer_class()  # a missing tensorboardX fails now, not after loading and compiling
            if lead:
                stack.enter_context(WorkdirLock(workdir))
        stops = stack.enter_context(StopRequests())
        root = epath.Path(workdir)
        with hosts.agreed("load the data and prepare the workdir"):
            if data is None:  # the recorded source on resuming, unless the run starts afresh or --data changes it
                data = provenance.load(workdir, _new_source(workdir, config, overwrite), config.data.source)
            split = make_split(config.data.split, data.classes, config.data.pivot,
                               allow_held_out_pivot=config.data.pairs == "shuffle")
            if lead:
                root = wd.prepare(workdir, config, overwrite=overwrite)
                provenance.record(root, provenance.describe(data))
        with hosts.agreed("find the workdir prepared by process 0"):
            if not lead:
                wd.check_shared(root, config)
        run = setup(config, data, split, mesh)
        ckpt = Checkpoints(root, keep=config.train.keep)
        stack.callback(ckpt.close)  # waits for a checkpoint being written, whatever stops the run
        with hosts.agreed("restore the latest checkpoint"):
            restored = ckpt.restore(run.state)
        if restored is None:
            state, start = run.state, 0
        else:
            state, start = restored  # restored onto run.state's sharding: replicated over the mesh
            if lead:
                print(f"resuming {root} from step {start}")
        if lead:
            wd.truncate_metrics(root, start)
        writer = stack.enter_context(contextlib.closing(open_writer(root, start, tensorboard)))
        calls = config.train.steps_per_call
        train_steps = {calls: tr.make_train_step(config, run.model, run.tx, run.mesh)}  # by steps per call
        if calls > 1:
            train_steps[1] = tr.make_train_step(cfg.override(config, {"train.steps_per_call": 1}), run.model,
                                                run.tx, run.mesh)
        block_each_step = jax.default_backend() == "cpu" and mesh.size > 1  # see docs/design.md, Training

        total = config.train.steps
        bar = stack.enter_context(contextlib.closing(tqdm(
            total=total, initial=start, disable=not (progress and lead), desc=f"{config.model.kind} {split.name}")))
        pending: list[tuple[int, dict[str, jax.Array]]] = []
        saved = start  # the last checkpoint's step, 0 if none
        clock, clock_step = None, start
        if start < total and stop_requested(stops, agree=True):
            _stop(stops, f"before its first step: nothing new to save; rerun the same command to resume from "
                  f"step {start}")
        step = start
        while step < total:
            # K steps per call, or one where fewer than K remain before the next log, checkpoint or the end
            calls = config.train.steps_per_call
            if calls > 1 and _next_boundary(step, config) - step < calls:
                calls = 1
            state, metrics = train_steps[calls](state, run.step_key, run.device_data)
            pending.append((step + 1, metrics))
            step += calls
            if block_each_step:
                jax.block_until_ready(metrics["loss"])
            if clock is None:  # time from the end of the first (compiling) step
                jax.block_until_ready(metrics["loss"])
                clock, clock_step = time.perf_counter(), step
            stop = step < total and stop_requested(stops, agree=step % config.train.log_every == 0)
            save_now = step % config.train.checkpoint_every == 0 or step == total or stop
            if save_now or step % config.train.log_every == 0:
                record = summarise(pending, config, saved)  # raises before any save after a skipped step
                pending.clear()
                now = time.perf_counter()
                if step > clock_step:
                    record["pairs_per_s"] = (step - clock_step) * config.train.batch_size / (now - clock)
                    clock, clock_step = now, step
                writer.write_scalars(step, record)
                writer.flush()
                bar.set_postfix(loss=f"{record['loss']:.1f}", recon=f"{record['recon']:.1f}",
                                pairs_s=f"{record.get('pairs_per_s', 0):.0f}", refresh=False)
            if save_now:
                ckpt.save(step, state)
                saved = step
            bar.update(calls)
            if stop:
                ckpt.wait()
                _stop(stops, f"at step {step}: saved checkpoint {ckpt.directory / str(step)}; rerun the same "
                      "command to resume")
        if lead:
            with wd.written_locally(root / wd.FIGURES / "loss.png") as png:
                figures.loss_curves(wd.read_metrics(root), png, title=f"{config.model.kind} · {split.name}")
    return state


def _next_boundary(step: int, config: Config) -> int:
    """The first step after `step` that is logged, checkpointed or the last."""
    every = (config.train.log_every, config.train.checkpoint_every)
    return min(config.train.steps, *(step // n * n + n for n in every))


def stop_requested(stops: StopRequests, agree: bool) -> bool:
    """Whether the run stops after this step: at once with one process; with several, only where they
    `agree` (each takes the signal of the lowest-numbered process that received one), so all stop alike."""
    if jax.process_count() == 1:
        return stops.signum is not None
    if not agree:
        return False
    signum = hosts.first_signal(stops.signum)
    if signum is not None:
        stops.signum = signum
    return signum is not None


def _stop(stops: StopRequests, what: str) -> None:
    """Prints one line (process 0) and raises Interrupted with exit code 128 + the signal number."""
    message = f"interrupted by {stops.name} {what}"
    if hosts.is_lead():
        print(message, file=sys.stderr, flush=True)
    raise Interrupted(message, 128 + stops.signum)


def _new_source(workdir: str | os.PathLike, config: Config, overwrite: bool) -> str | None:
    """`config.data.source` when the run starts afresh or its source was changed, else None (the recorded one)."""
    if overwrite or not (epath.Path(workdir) / wd.CONFIG).is_file():
        return config.data.source
    return None if wd.read_config(workdir).data.source == config.data.source else config.data.source


def final_metrics(workdir: str | os.PathLike) -> dict[str, Any]:
    """The last metrics record of a run."""
    records = wd.read_metrics(workdir)
    return records[-1] if records else {}
