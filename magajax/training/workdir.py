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
  train.steps_per_call    train steps per compiled call (the same numbers whatever it is)
  model.scan_steps, model.conv  how the flow steps and the convs are computed (the same parameters)
  data.source             where dSprites comes from (data.json records what each source became)

Each change is printed on one line and appended to changes.jsonl as
{"step", "field", "old", "new", "time"}, `step` being the latest saved checkpoint's (0 if none).

metrics.jsonl holds one record per log interval. A run rewrites it on (re)start to hold exactly
the steps up to the checkpoint it starts from, each once (`truncate_metrics`), so a run killed
at any moment leaves no duplicate. A torn last line (a kill in mid-write) is dropped with a
warning; a bad line elsewhere is an error naming the file and the line.

A workdir may be any path `etils.epath` accepts: a local folder or a bucket (gs://...). Files are
replaced atomically: locally by writing beside them, syncing and renaming; in a bucket an object is
written whole or not at all. A bucket has no append: appending there rewrites the object.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import Any

from etils import epath

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
    [("train", key) for key in ("steps", "lr", "clip", "log_every", "checkpoint_every", "keep", "steps_per_call")]
    + [("data", "source"), ("model", "scan_steps"), ("model", "conv")]
)


def is_local(path: str | os.PathLike) -> bool:
    """Whether `path` is on this machine's file system (not a gs://, s3://, ... URI)."""
    return "://" not in os.fspath(path)


def absolute(path: str | os.PathLike) -> epath.Path:
    """`path` as an absolute epath.Path (a URI is absolute already)."""
    path = epath.Path(path)
    return path.absolute() if is_local(path) else path


def write_atomic(path: epath.Path, text: str) -> None:
    """Replaces the file `path` by `text` whole: a reader sees the old file or the new one, never a part."""
    if not is_local(path):
        path.write_text(text)
        return
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def append_text(path: epath.Path, text: str) -> None:
    """Appends `text` to the file `path` (created if missing), durably; in a bucket, rewrites the object."""
    if not is_local(path):
        path.write_text((path.read_text() if path.exists() else "") + text)
        return
    with open(path, "a") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


@contextlib.contextmanager
def written_locally(path: epath.Path) -> Iterator[epath.Path]:
    """A file on this machine to write `path` through (for writers that take only local paths, e.g.
    matplotlib): `path` itself when it is local; for a bucket, a temporary file copied to `path` at the end."""
    if is_local(path):
        yield path
        return
    with tempfile.TemporaryDirectory() as folder:
        local = epath.Path(folder) / path.name
        yield local
        local.copy(path, overwrite=True)


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
    path = epath.Path(workdir) / CONFIG
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
    folder = epath.Path(workdir) / CHECKPOINTS
    steps = [int(p.name) for p in folder.iterdir() if p.name.isdigit()] if folder.is_dir() else []
    return max(steps, default=0)


def prepare(workdir: str | os.PathLike, config: Config, overwrite: bool = False) -> epath.Path:
    """Creates the workdir, checks it holds this run (or none), records allowed changes, writes config.json.

    The saved config is read through `Config.from_dict`, so a field added since the run started
    takes its default, which is the behaviour the run was trained with.

    With `overwrite`, a previous run (any config) is moved to previous-<time>/ first. In a multi-host
    run only process 0 calls this.
    """
    root = epath.Path(workdir)
    path = root / CONFIG
    if path.is_file():
        diffs = _differences(read_config(root).to_dict(), config.to_dict())
        if config.model.kind != "vae":  # the VAE's architecture does not touch a MAGANet run
            diffs = [d for d in diffs if d[0] != "model.vae"]
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
                    (root / name).rename(aside / name)
            print(f"moved the previous run in {root} to {aside}")
        elif diffs:
            record_changes(root, diffs)
    (root / FIGURES).mkdir(parents=True, exist_ok=True)
    write_atomic(path, config.to_json() + "\n")
    return root


def check_shared(workdir: str | os.PathLike, config: Config, wait_s: float = 5.0) -> None:
    """Waits until this process sees `config` in workdir/config.json, written by process 0 of a
    multi-host run (a network file system may show it a little late).

    Raises OSError after `wait_s` seconds: the processes do not share the workdir.
    """
    path = epath.Path(workdir) / CONFIG
    deadline = time.monotonic() + wait_s
    while not (path.is_file() and path.read_text() == config.to_json() + "\n"):
        if time.monotonic() > deadline:
            raise OSError(
                f"{path} does not hold this run's config here, {wait_s:g} s after process 0 wrote it: the processes "
                "must share the workdir; use a folder every machine mounts (NFS, ...) or a bucket (gs://...)"
            )
        time.sleep(0.2)


def record_changes(workdir: epath.Path, diffs: list[tuple[str, Any, Any]]) -> None:
    """Appends each (field, old, new) to changes.jsonl at the latest checkpoint's step and prints one line."""
    step, now = latest_checkpoint_step(workdir), time.strftime("%Y-%m-%dT%H:%M:%S%z")
    append_text(workdir / CHANGES, "".join(
        json.dumps({"step": step, "field": field, "old": old, "new": new, "time": now}) + "\n"
        for field, old, new in diffs))
    changed = ", ".join(f"{field} {old!r} -> {new!r}" for field, old, new in diffs)
    print(f"changed {changed} at step {step} (recorded in {workdir / CHANGES})")


def read_changes(workdir: str | os.PathLike) -> list[dict[str, Any]]:
    """The config changes made on resuming, oldest first (empty when none)."""
    path = epath.Path(workdir) / CHANGES
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


def read_metrics(workdir: str | os.PathLike) -> list[dict[str, Any]]:
    """The records of metrics.jsonl (empty when there are none).

    A torn last line is dropped with a warning; a bad line elsewhere raises ValueError naming it.
    """
    path = epath.Path(workdir) / METRICS
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

    The run starts again from `step`, so later records would be written twice. The file is replaced
    atomically (`write_atomic`).
    """
    path = epath.Path(workdir) / METRICS
    if not path.is_file():
        return
    by_step = {r["step"]: r for r in read_metrics(workdir) if r["step"] <= step}
    write_atomic(path, "".join(json.dumps(by_step[s]) + "\n" for s in sorted(by_step)))
