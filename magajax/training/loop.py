"""A training run in a workdir: load data, resume, loop, log, checkpoint, draw.

`train(config, workdir)` is what `python -m experiments.train` calls and what tests call.
Starting in a workdir with checkpoints resumes from the latest one.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np
from tqdm.auto import tqdm

from magajax.analysis import figures
from magajax.config import Config
from magajax.data.sources import DSprites, load_dsprites
from magajax.data.splits import make_split
from magajax.models import build
from magajax.training import step as tr
from magajax.training import workdir as wd
from magajax.training.checkpoint import Checkpoints


class Interrupted(Exception):
    """A run stopped by a signal after saving its state; `exit_code` is 128 + the signal number."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


def _check_finite(records: list[dict[str, Any]], ckpt: Checkpoints) -> None:
    """Raises FloatingPointError at the first step whose update was skipped as non-finite."""
    for r in records:
        if r["finite"] < 1:
            bad = [k for k, v in r.items() if isinstance(v, float) and not np.isfinite(v)]
            saved = ckpt.steps()
            raise FloatingPointError(
                f"step {r['step']}: non-finite {', '.join(bad) or 'gradient'} ({r}); training stopped, "
                f"the last good checkpoint is {ckpt.directory / str(saved[-1]) if saved else 'none'}. "
                "Lower --lr or set --clip, then resume."
            )


def train(
    config: Config,
    workdir: str | os.PathLike,
    *,
    data: DSprites | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> tr.TrainState:
    """Trains `config` in `workdir` up to `config.train.steps`, resuming if it holds checkpoints.

    Args:
      config: the run's configuration.
      workdir: the run's folder (config.json, metrics.jsonl, checkpoints/, figures/).
      data: a dSprites container to use instead of loading `config.data.source`.
      overwrite: move a previous run with another config aside instead of refusing.
      progress: show a progress bar.

    Returns:
      The final TrainState (replicated over the devices).
    """
    mesh = tr.make_mesh()
    tr.check_batch(config.train.batch_size, mesh)
    if data is None:
        data = load_dsprites(config.data.source)
    split = make_split(config.data.split, data.classes, config.data.pivot)
    model = build(config.model)
    root = wd.prepare(workdir, config, overwrite=overwrite)
    lead = jax.process_index() == 0

    device_data = tr.replicate(
        tr.DeviceData(
            images=data.images,
            train_rows=split.train.astype(np.int32),
            pivot_row=np.int32(split.pivot_row),
        ),
        mesh,
    )
    tx = tr.create_optimizer(config.train)
    init_key, step_key = jax.random.split(jax.random.PRNGKey(config.train.seed))
    state = tr.init_state(config, model, tx, device_data, init_key)
    ckpt = Checkpoints(root, keep=config.train.keep)
    restored = ckpt.restore(state)
    if restored is not None:
        state, start = restored
        print(f"resuming {root} from step {start}")
        wd.truncate_metrics(root, start)
    else:
        start = 0
    state = tr.replicate(jax.device_get(state), mesh)
    step_key = tr.replicate(step_key, mesh)
    train_step = tr.make_train_step(config, model, tx, mesh)
    block_each_step = jax.default_backend() == "cpu" and mesh.size > 1  # see DESIGN §2

    total = config.train.steps
    bar = tqdm(total=total, initial=start, disable=not (progress and lead), desc=f"{config.model.kind} {split.name}")
    pending: list[tuple[int, dict[str, jax.Array]]] = []
    clock, clock_step = None, start
    for step in range(start + 1, total + 1):
        state, metrics = train_step(state, step_key, device_data)
        pending.append((step, metrics))
        if block_each_step:
            jax.block_until_ready(metrics["loss"])
        if clock is None:  # time from the end of the first (compiling) step
            jax.block_until_ready(metrics["loss"])
            clock, clock_step = time.perf_counter(), step
        log_now = step % config.train.log_every == 0 or step == total
        save_now = step % config.train.checkpoint_every == 0 or step == total
        if log_now or save_now:
            per_step = [dict({k: float(v) for k, v in jax.device_get(m).items()}, step=s) for s, m in pending]
            pending.clear()
            _check_finite(per_step, ckpt)
            last = {k: float(np.mean([r[k] for r in per_step])) for k in per_step[0] if k != "step"}
            last["step"] = step
            now = time.perf_counter()
            if step > clock_step:
                last["pairs_per_s"] = (step - clock_step) * config.train.batch_size / (now - clock)
                clock, clock_step = now, step
            if lead:
                wd.append_metrics(root, [last])
            bar.set_postfix(loss=f"{last['loss']:.1f}", recon=f"{last['recon']:.1f}",
                            pairs_s=f"{last.get('pairs_per_s', 0):.0f}", refresh=False)
        if save_now:
            ckpt.save(step, state)
            if lead:
                figures.loss_curves(wd.read_metrics(root), Path(root) / wd.FIGURES / "loss.png",
                                    title=f"{config.model.kind} · {split.name}")
        bar.update(1)
    bar.close()
    ckpt.close()
    return state


def final_metrics(workdir: str | os.PathLike) -> dict[str, Any]:
    """The last metrics record of a run."""
    records = wd.read_metrics(workdir)
    return records[-1] if records else {}

