"""The workdir is the run: config.json, data.json (magajax.data.provenance), metrics.jsonl, changes.jsonl,
checkpoints/ (orbax), figures/, tensorboard/ (when asked for) and .lock (see `lock`).

`prepare` refuses to mix runs: starting in a workdir whose config.json differs from the new
config is an error. `overwrite=True` starts afresh whatever the config: it moves the old run to
previous-<time>/ (nothing is deleted).
A resumed run may change only the fields of `RESUMABLE`:

  train.steps             extend (or shorten) the run
  train.lr, train.clip    the advice after a non-finite step: lower the rate or clip, rerun
  train.log_every         the metrics period
  train.checkpoint_every  the checkpoint period
  train.keep              how many checkpoints orbax keeps (fewer deletes the oldest at the next save)
  data.source             where dSprites comes from (data.json records what each source became)

Each change is printed on one line and appended to changes.jsonl as
{"step", "field", "old", "new", "time"}, `step` being the latest saved checkpoint's (0 if none).

metrics.jsonl holds one record per log interval. A run rewrites it on (re)start to hold exactly
the steps up to the checkpoint it starts from, each once (`truncate_metrics`), so a run killed
at any moment leaves no duplicate. A torn last line (a kill in mid-write) is dropped with a
warning; a bad line elsewhere is an error naming the file and the line.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from magajax.config import Config
from magajax.data import provenance

CONFIG = "config.json"
METRICS = "metrics.jsonl"
CHANGES = "changes.jsonl"
CHECKPOINTS = "checkpoints"
CORRUPT = "corrupt"  # damaged checkpoints, moved aside by `checkpoint`
ERRORS = "errors.log"  # the full detail of checkpoint errors
FIGURES = "figures"
TENSORBOARD = "tensorboard"
RUN_FILES = (CONFIG, provenance.FILE, METRICS, CHANGES, CHECKPOINTS, CORRUPT, ERRORS, FIGURES, TENSORBOARD)
RESUMABLE = frozenset(
    [("train", key) for key in ("steps", "lr", "clip", "log_every", "checkpoint_every", "keep")] + [("data", "source")]
)


def _differences(old: dict[str, Any], new: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """(field, old, new) for every field that differs, fields named `section.key`."""
    diffs = []
    for section in sorted(set(old) | set(new)):
        a, b = old.get(section), new.get(section)
        if isinstance(a, dict) and isinstance(b, dict):
            diffs += [(f"{section}.{k}", a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
        elif a != b:
            diffs.append((section, a, b))
    return diffs


def read_config(workdir: str | os.PathLike) -> Config:
    """The Config saved in `workdir/config.json`, with a clear error when it is missing or broken."""
    path = Path(workdir) / CONFIG
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: {workdir} is not a magajax run; train one with "
            f"`python -m experiments.train --workdir={workdir}`"
        )
    try:
        return Config.from_dict(json.loads(path.read_text()))
    except (ValueError, TypeError) as e:  # bad JSON, unknown keys, or a value out of range
        raise ValueError(f"{path} is not a valid magajax config ({e}); fix or remove it") from e


def latest_checkpoint_step(workdir: str | os.PathLike) -> int:
    """The highest step saved in checkpoints/ (0 if none); orbax's unfinished tmp folders do not count."""
    folder = Path(workdir) / CHECKPOINTS
    steps = [int(p.name) for p in folder.iterdir() if p.name.isdigit()] if folder.is_dir() else []
    return max(steps, default=0)


def prepare(workdir: str | os.PathLike, config: Config, overwrite: bool = False) -> Path:
    """Creates the workdir, checks it holds this run (or none), records allowed changes, writes config.json.

    With `overwrite`, a previous run (any config) is moved to previous-<time>/ first.
    """
    root = Path(workdir)
    path = root / CONFIG
    if path.is_file():
        diffs = _differences(json.loads(path.read_text()), config.to_dict())
        fixed = [f"{f}: {a!r} -> {b!r}" for f, a, b in diffs if tuple(f.split(".", 1)) not in RESUMABLE]
        if fixed and not overwrite:
            allowed = ", ".join(".".join(k) for k in sorted(RESUMABLE))
            raise ValueError(
                f"{root} holds a run with a different config ({'; '.join(fixed)}); a resumed run may change only "
                f"{allowed}: use another --workdir, or --overwrite to move the old run aside"
            )
        if overwrite:
            aside = root / f"previous-{time.strftime('%Y%m%d-%H%M%S')}"
            aside.mkdir()
            for name in RUN_FILES:
                if (root / name).exists():
                    shutil.move(str(root / name), str(aside / name))
            print(f"moved the previous run in {root} to {aside}")
        elif diffs:
            record_changes(root, diffs)
    (root / FIGURES).mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(CONFIG + ".tmp")
    tmp.write_text(config.to_json() + "\n")
    os.replace(tmp, path)
    return root


def record_changes(workdir: Path, diffs: list[tuple[str, Any, Any]]) -> None:
    """Appends each (field, old, new) to changes.jsonl at the latest checkpoint's step and prints one line."""
    step, now = latest_checkpoint_step(workdir), time.strftime("%Y-%m-%dT%H:%M:%S%z")
    with open(workdir / CHANGES, "a") as f:
        for field, old, new in diffs:
            f.write(json.dumps({"step": step, "field": field, "old": old, "new": new, "time": now}) + "\n")
    changed = ", ".join(f"{field} {old!r} -> {new!r}" for field, old, new in diffs)
    print(f"changed {changed} at step {step} (recorded in {workdir / CHANGES})")


def read_changes(workdir: str | os.PathLike) -> list[dict[str, Any]]:
    """The config changes made on resuming, oldest first (empty when none)."""
    path = Path(workdir) / CHANGES
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


def read_metrics(workdir: str | os.PathLike) -> list[dict[str, Any]]:
    """The records of metrics.jsonl (empty when there are none).

    A torn last line is dropped with a warning; a bad line elsewhere raises ValueError naming it.
    """
    path = Path(workdir) / METRICS
    if not path.is_file():
        return []
    lines = [(n, line) for n, line in enumerate(path.read_text().splitlines(), 1) if line.strip()]
    records = []
    for i, (n, line) in enumerate(lines):
        try:
            record = json.loads(line)
            if not isinstance(record, dict) or not isinstance(record.get("step"), int):
                raise ValueError("not a record with an integer 'step'")
        except ValueError as e:
            if i == len(lines) - 1:
                print(f"warning: dropped the torn last line {n} of {path} (a run stopped while writing it)",
                      file=sys.stderr)
                break
            raise ValueError(f"{path} line {n} is not a metrics record ({e}); fix or delete that line") from e
        records.append(record)
    return records


def truncate_metrics(workdir: str | os.PathLike, step: int) -> None:
    """Rewrites metrics.jsonl to hold each step up to `step` once (the latest record of a step wins).

    The run starts again from `step`, so later records would be written twice. Atomic: the new
    file is written beside the old one, flushed, then renamed over it.
    """
    path = Path(workdir) / METRICS
    if not path.is_file():
        return
    by_step = {r["step"]: r for r in read_metrics(workdir) if r["step"] <= step}
    tmp = path.with_name(METRICS + ".tmp")
    with open(tmp, "w") as f:
        f.write("".join(json.dumps(by_step[s]) + "\n" for s in sorted(by_step)))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
