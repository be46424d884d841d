"""The command line shared by the entry points: typed flags, built with tyro from dataclasses.

    python -m experiments.train --preset=quick --split=range --model.hidden=64 --train.beta-lat=100

An entry point that trains or benchmarks a run takes every config field as --SECTION.FIELD
(dashes or underscores), typed and checked as it is parsed; the defaults are the selected preset's
(--preset) or a run's (--config=PATH, a config.json or a workdir holding one), and `--help` shows
them. A few fields have a shorthand (--split for --data.split, ...); giving a shorthand and its
field both is an error. --print-config prints the resolved config as JSON and exits. A split
expression is checked before any data loads. Flags are never abbreviated, and every error is one
line on stderr with exit status 2.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import json
import os
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, NoReturn, TypeVar, get_args, get_origin, get_type_hints

import tyro

from magajax import config as cfg

Options = TypeVar("Options")

SOURCE_HELP = "where dSprites comes from: auto, tfds, render or file:PATH (the official .npz or .hdf5)"
SPLIT_HELP = ("a named split (element, range, extrapolation, element-blog, range-blog, element-cartan, range-cartan, "
              "none) or an expression, e.g. 'shape=ellipse & x>=16'")

# The --data and --split options of the entry points without a config: Annotated[str, SOURCE].
SOURCE = tyro.conf.arg(metavar="auto|tfds|render|file:PATH", help=SOURCE_HELP)
SPLIT = tyro.conf.arg(metavar="SPLIT", help=SPLIT_HELP)

# Shorthand flag -> the config field it sets.
SHORTHANDS = {
    "split": "data.split", "data": "data.source", "pairs": "data.pairs", "model": "model.kind",
    "dtype": "model.dtype", "steps": "train.steps", "batch_size": "train.batch_size", "seed": "train.seed",
}
MARKERS = (tyro.conf.FlagCreatePairsOff,)  # --overwrite, not --overwrite/--no-overwrite


def flag(name: str) -> str:
    """The command-line spelling of a field name: 'train.batch_size' -> '--train.batch-size'."""
    return "--" + name.replace("_", "-")


def fail(message: str) -> NoReturn:
    """Prints `message` as one line on stderr and exits with status 2."""
    print(f"error: {' '.join(message.split())}", file=sys.stderr)
    sys.exit(2)


def check_split(spec: str) -> None:
    """Raises the ValueError of a malformed split name or expression, without loading any images."""
    import numpy as np

    from magajax.data.splits import held_out_mask

    held_out_mask(spec, np.empty((0, 5), np.int64))  # zero images: only the expression is parsed


def check_source(source: str) -> None:
    """Raises the ValueError of an unknown dSprites source."""
    cfg.DataConfig(source=source)


def one_line(box: str) -> str:
    """tyro's boxed error as one line: its first block, without the frame and the help hint."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", box)
    lines = [line.strip().strip("│").strip() for line in text.splitlines() if line.strip()][1:]  # less the title
    lines = [line for line in lines if not set(line) <= set("─-╰╯ ")]  # less the rules and the frame
    body, hint = [], ""
    for i, line in enumerate(lines):
        if line.startswith(("Argument helptext", "For full helptext")):
            break
        if line.startswith("Perhaps you meant"):
            hint = next((m.group() for m in (re.match(r"--[\w.-]+", x) for x in lines[i + 1:]) if m), "")
            break
        body.append(line)
    message = " ".join(body) or "invalid arguments"
    message = re.sub(r"^Error parsing (?:(--\S+)|\S+): ", lambda m: f"{m.group(1)}: " if m.group(1) else "", message)
    message = re.sub(r"invalid literal for int\(\) with base 10: ", "invalid int ", message)
    message = re.sub(r"could not convert string to float: ", "invalid float ", message)
    unknown = re.match(r"^Unrecognized options: --([\w.-]+)", message)
    if unknown and not hint:  # a bare config field name: point at its --SECTION.FIELD flag
        name = unknown.group(1).replace("-", "_")
        hint = " or ".join(flag(k) for k, (_, field) in cfg.field_names().items() if field == name)
    message = re.sub(r"^Unrecognized options: ", "unrecognized option ", message)
    return message + (f"; did you mean {hint}?" if hint else "")


def tyro_cli(kind: type, argv: Sequence[str], prog: str, description: str) -> Any:
    """tyro.cli with its errors reformatted into one line on stderr (exit 2); --help prints and exits 0."""
    wants_help = any(a in ("-h", "--help") for a in argv)
    stderr = io.StringIO()
    columns = os.environ.get("COLUMNS")
    try:
        if not wants_help:
            os.environ["COLUMNS"] = "100000"  # no wrapped lines in the error box
        with contextlib.redirect_stderr(stderr):
            return tyro.cli(kind, args=list(argv), prog=prog, description=description, config=MARKERS)
    except SystemExit as e:
        if e.code in (0, None):
            raise
        fail(one_line(stderr.getvalue()))
    except ValueError as e:
        fail(str(e))
    finally:
        if columns is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = columns


def read_config(path: str) -> cfg.Config:
    """The Config in `path`: a config.json or a workdir holding one."""
    file = Path(path)
    if file.is_dir():
        file = file / "config.json"
    try:
        text = file.read_text()
    except OSError as e:
        raise ValueError(f"--config: cannot read {file} ({e.strerror}); give a run's config.json or its workdir") from e
    try:
        return cfg.Config.from_dict(json.loads(text))
    except ValueError as e:  # json.JSONDecodeError is a ValueError too
        raise ValueError(f"--config: {file} is not a valid config: {e}") from e


def starting_config(argv: Sequence[str]) -> cfg.Config:
    """The config the flags start from: --config's file, else --preset's preset, else 'blog'."""
    pre = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    pre.add_argument("--preset")
    pre.add_argument("--config")
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            known, _ = pre.parse_known_args(argv)
    except SystemExit:  # e.g. --preset without a value: the full parser says so
        return cfg.preset("blog")
    if known.config is not None and known.preset is not None:
        fail("--config and --preset both choose the starting config; give one")
    if known.config is not None:
        try:
            return read_config(known.config)
        except ValueError as e:
            fail(str(e))
    return cfg.preset(known.preset if known.preset in cfg.PRESETS else "blog")


def given(argv: Sequence[str]) -> set[str]:
    """The flags present in `argv`, spelled with dashes: '--train.batch_size=3' -> '--train.batch-size'."""
    return {a.split("=", 1)[0].replace("_", "-") for a in argv if a.startswith("--")}


def run_arguments(options: type, shorthands: Sequence[str], start: cfg.Config) -> type:
    """The dataclass tyro parses: preset and config flags, shorthands, the entry point's options, the sections."""
    fields: list[tuple[str, Any, Any]] = [
        ("preset", Annotated[Literal[tuple(cfg.PRESETS)], tyro.conf.arg(help="the preset the flags start from")],
         dataclasses.field(default=start.preset)),
        ("config", Annotated[str | None, tyro.conf.arg(metavar="PATH", help="start from a run's config.json (or "
         "the workdir holding it) instead of a preset", help_behavior_hint="")], dataclasses.field(default=None)),
        ("print_config", Annotated[bool, tyro.conf.arg(help="print the resolved config as JSON and exit")],
         dataclasses.field(default=False)),
    ]
    for short in shorthands:
        section, name = SHORTHANDS[short].split(".")
        kind = get_type_hints(cfg.SECTIONS[section])[name]  # config.py postpones its annotations
        current = getattr(getattr(start, section), name)
        choices = get_args(kind) if get_origin(kind) is Literal else ()
        metavar = "{" + ",".join(choices) + "}" if choices else kind.__name__.upper()
        arg = tyro.conf.arg(name=short, metavar=metavar, help=f"shorthand for {flag(SHORTHANDS[short])}",
                            help_behavior_hint=f"(default: {current})")
        fields.append((f"short_{short}", Annotated[kind | None, arg], dataclasses.field(default=None)))
    types = get_type_hints(options, include_extras=True)  # entry points postpone their annotations
    fields += [(f.name, types[f.name], dataclasses.field(default=f.default)) for f in dataclasses.fields(options)]
    fields += [(name, kind, dataclasses.field(default=getattr(start, name))) for name, kind in cfg.SECTIONS.items()]
    return dataclasses.make_dataclass("Arguments", fields, frozen=True)


def parse_run(options: type[Options], argv: Sequence[str] | None, prog: str, description: str,
              shorthands: Sequence[str]) -> tuple[Options, cfg.Config]:
    """Flags -> (the entry point's options, the resolved Config); --print-config prints it and exits 0."""
    argv = sys.argv[1:] if argv is None else list(argv)
    start = starting_config(argv)
    parsed = tyro_cli(run_arguments(options, shorthands, start), argv, prog, description)
    present = given(argv)
    changes = {}
    for short in shorthands:
        value = getattr(parsed, f"short_{short}")
        if value is None:
            continue
        if flag(SHORTHANDS[short]) in present:
            fail(f"{flag(short)} and {flag(SHORTHANDS[short])} both set {SHORTHANDS[short]}; give one")
        changes[SHORTHANDS[short]] = value
    try:
        config = cfg.override(cfg.Config(preset=parsed.preset, data=parsed.data, model=parsed.model,
                                         train=parsed.train), changes)
        check_split(config.data.split)
    except ValueError as e:
        fail(str(e))
    if parsed.print_config:
        print(config.to_json())
        sys.exit(0)
    return options(**{f.name: getattr(parsed, f.name) for f in dataclasses.fields(options)}), config


def parse(options: type[Options], argv: Sequence[str] | None, prog: str, description: str) -> Options:
    """Flags -> the entry point's options; a `split` or `data` option is checked as a split or a source."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parsed = tyro_cli(options, argv, prog, description)
    try:
        if getattr(parsed, "split", None) is not None:
            check_split(parsed.split)
    except ValueError as e:
        fail(str(e))
    try:
        if getattr(parsed, "data", None) is not None:
            check_source(parsed.data)
    except ValueError as e:
        fail(f"--data: {e}")
    return parsed


def distributed_arguments(distributed: bool, coordinator_address: str | None, num_processes: int | None,
                          process_id: int | None) -> dict[str, Any] | None:
    """The keyword arguments of `jax.distributed.initialize` (None: a one-process run), or a one-line error
    (exit 2) for flags that do not go together.

    `--distributed` alone lets JAX detect the cluster (TPU pods, SLURM, ...); with
    --coordinator-address HOST:PORT, --num-processes N and --process-id I (all three) it joins the
    processes of a cluster JAX does not detect.
    """
    given = {"--coordinator-address": coordinator_address, "--num-processes": num_processes,
             "--process-id": process_id}
    named = [name for name, value in given.items() if value is not None]
    if named and not distributed:
        fail(f"{', '.join(named)}: only for a multi-host run; add --distributed")
    if not distributed:
        return None
    if not named:
        return {}
    if len(named) < len(given):
        missing = ", ".join(name for name in given if name not in named)
        fail(f"--distributed with {', '.join(named)} needs {missing} too: give all three, or none to let JAX "
             "detect the cluster")
    if not re.fullmatch(r"\[?[\w.:-]+\]?:\d+", coordinator_address):
        fail(f"--coordinator-address {coordinator_address!r} is not HOST:PORT, e.g. 10.0.0.1:1234 (process 0's "
             "machine and a free port)")
    if num_processes < 1:
        fail(f"--num-processes {num_processes} must be at least 1")
    if not 0 <= process_id < num_processes:
        fail(f"--process-id {process_id} must be one of 0 .. {num_processes - 1} (--num-processes {num_processes})")
    return {"coordinator_address": coordinator_address, "num_processes": num_processes, "process_id": process_id}


def say_runtime() -> None:
    """Prints the start-up line of `magajax.runtime.describe` (backend, devices, process), on process 0."""
    from magajax.runtime import describe
    from magajax.training import hosts

    if hosts.is_lead():
        print(describe(), flush=True)


def run(body: Callable[[], int]) -> int:
    """Runs an entry point's body after process setup; returns its exit status.

    Sets glibc's malloc to reuse freed memory (magajax.host_memory) before JAX creates its backend,
    and turns on the persistent compilation cache (magajax.compile_cache).
    A ValueError, OSError or FloatingPointError is one line 'error: ...' on stderr and status 2; a
    run stopped by a signal prints its message and returns 128 + the signal number.
    """
    from magajax.host_memory import reuse_freed_memory

    reuse_freed_memory()
    from magajax import compile_cache

    compile_cache.enable()
    from magajax.training.loop import Interrupted

    try:
        return body()
    except Interrupted as e:
        print(e, file=sys.stderr)
        return e.exit_code
    except (ValueError, OSError, FloatingPointError) as e:
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
