"""The workdir is the run: config.json, metrics.jsonl, checkpoints/ (orbax), figures/.

`prepare` refuses to mix runs: starting in a workdir whose config.json differs from the
new config is an error unless `overwrite=True`, which moves the old run aside (nothing is
deleted). Only `train.steps` may differ, so a finished run can be extended.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from magajax.config import Config

CONFIG = "config.json"
METRICS = "metrics.jsonl"
CHECKPOINTS = "checkpoints"
FIGURES = "figures"
EXTENDABLE = {("train", "steps")}  # fields that may change when a run is resumed


def _differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    diffs = []
    for section in sorted(set(old) | set(new)):
        a, b = old.get(section), new.get(section)
        if isinstance(a, dict) and isinstance(b, dict):
            for key in sorted(set(a) | set(b)):
                if (section, key) not in EXTENDABLE and a.get(key) != b.get(key):
                    diffs.append(f"{section}.{key}: {a.get(key)!r} -> {b.get(key)!r}")
        elif a != b:
            diffs.append(f"{section}: {a!r} -> {b!r}")
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
    except (json.JSONDecodeError, TypeError) as e:
        raise ValueError(f"{path} is not a valid magajax config ({e}); fix or remove it") from e


def prepare(workdir: str | os.PathLike, config: Config, overwrite: bool = False) -> Path:
    """Creates the workdir, checks it holds this run (or none) and writes config.json."""
    root = Path(workdir)
    path = root / CONFIG
    if path.is_file():
        diffs = _differences(json.loads(path.read_text()), config.to_dict())
        if diffs and not overwrite:
            raise ValueError(
                f"{root} holds a run with a different config ({'; '.join(diffs)}); "
                "use another --workdir, or --overwrite to move the old run aside"
            )
        if diffs:
            aside = root / f"previous-{time.strftime('%Y%m%d-%H%M%S')}"
            aside.mkdir()
            for name in (CONFIG, METRICS, CHECKPOINTS, FIGURES):
                if (root / name).exists():
                    shutil.move(str(root / name), str(aside / name))
            print(f"moved the previous run in {root} to {aside}")
    (root / FIGURES).mkdir(parents=True, exist_ok=True)
    path.write_text(config.to_json() + "\n")
    return root


def append_metrics(workdir: str | os.PathLike, records: Iterable[dict[str, Any]]) -> None:
    """Appends one JSON line per record to metrics.jsonl."""
    with open(Path(workdir) / METRICS, "a") as f:
        for record in records:
            f.write(json.dumps(record) + "\n")


def read_metrics(workdir: str | os.PathLike) -> list[dict[str, Any]]:
    """All records of metrics.jsonl (an empty list when there are none)."""
    path = Path(workdir) / METRICS
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def truncate_metrics(workdir: str | os.PathLike, step: int) -> None:
    """Drops records after `step`: a resumed run rewrites the steps it repeats."""
    records = [r for r in read_metrics(workdir) if r["step"] <= step]
    path = Path(workdir) / METRICS
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in records))
    os.replace(tmp, path)
