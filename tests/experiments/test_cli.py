"""The command line of the entry points: typed flags, preset defaults, one-line errors before any work."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import get_args, get_origin, get_type_hints

import pytest

from experiments import bench, evaluate, train
from magajax import config as cfg

ROOT = Path(__file__).resolve().parents[2]


def flag(field: str) -> str:
    return "--" + field.replace("_", "-")


def run_cli(*args: str) -> tuple[subprocess.CompletedProcess, float]:
    env = dict(os.environ, COLUMNS="80")  # one column of help
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=60)
    return out, time.perf_counter() - start


def test_readme_flags_build_the_config():
    args, config = train.parse(["--split=range", "--model=vae", "--preset=quick", "--steps=7", "--batch-size=16",
                                "--pairs=shuffle", "--seed=3", "--data=render", "--workdir=runs/x", "--overwrite",
                                "--distributed", "--no-progress", "--tensorboard", "--model.hidden=64",
                                "--train.beta-lat=100", "--train.beta_kl=4", "--model.encoder_padding=VALID"])
    assert (config.data.split, config.model.kind, config.preset, config.train.steps) == ("range", "vae", "quick", 7)
    assert (config.train.batch_size, config.data.pairs, config.train.seed, config.data.source) == (16, "shuffle", 3,
                                                                                                   "render")
    assert (config.model.hidden, config.train.beta_lat, config.train.beta_kl) == (64, 100.0, 4.0)
    assert config.model.encoder_padding == "VALID" and config.model.steps == 1  # the quick preset's flow
    assert (args.workdir, args.overwrite, args.distributed, args.no_progress, args.tensorboard) == (
        "runs/x", True, True, True, True)


def test_defaults_are_the_presets():
    for name in cfg.PRESETS:
        assert train.parse([f"--preset={name}"])[1] == cfg.preset(name)
    args, config = train.parse(["--data=file:/data/dsprites.npz"])
    assert config == cfg.override(cfg.preset("blog"), {"source": "file:/data/dsprites.npz"})
    assert (args.workdir, args.overwrite, args.tensorboard) == (None, False, False)


BAD_FLAGS = [
    (["--latent_dim=ten"], "latent"),
    (["--model.latent-dim=ten"], "--model.latent-dim"),
    (["--model.dtype=float16"], "--model.dtype"),
    (["--train.lr=abc"], "--train.lr"),
    (["--step=7"], "--step=7"),
    (["--pairs=pivot", "--data.pairs=shuffle"], "data.pairs"),
    (["--split=bogus"], "split 'bogus'"),
    (["--batch-size=0"], "train.batch_size"),
    (["--batch-size=-3"], "train.batch_size"),
    (["--train.log-every=0"], "train.log_every"),
    (["--train.checkpoint-every=0"], "train.checkpoint_every"),
    (["--model.latent-dim=0"], "model.latent_dim"),
    (["--model.hidden=abc"], "--model.hidden"),
    (["--steps=0"], "train.steps"),
    (["--over"], "--over"),  # no abbreviations
    (["--preset=quick", "--config=runs/x"], "--config and --preset"),
]


@pytest.mark.parametrize("argv, names", BAD_FLAGS, ids=[" ".join(a) for a, _ in BAD_FLAGS])
def test_bad_flag_is_a_one_line_error_before_any_work(tmp_path, capsys, argv, names):
    workdir = tmp_path / "run"
    with pytest.raises(SystemExit) as e:  # main() returns its status; only the parser exits
        train.main([*argv, f"--workdir={workdir}", "--data=file:/nonexistent/dsprites.npz"]
                   if "--data" not in " ".join(argv) else [*argv, f"--workdir={workdir}"])
    err = capsys.readouterr().err
    assert e.value.code == 2
    assert err.startswith("error: ") and err.count("\n") == 1 and names in err, err
    assert "nonexistent" not in err and not workdir.exists()


def test_bad_value_messages_name_the_field(capsys):
    expected = {
        "--model.latent-dim=ten": "error: --model.latent-dim: invalid int 'ten'\n",
        "--steps=0": "error: train.steps must be a positive integer, got 0\n",
        "--step=7": "error: unrecognized option --step=7; did you mean --steps?\n",
        "--hidden=64": "error: unrecognized option --hidden=64; did you mean --model.hidden?\n",
        "--train.log-every=0": "error: train.log_every must be a positive integer, got 0\n",
    }
    for arg, message in expected.items():
        with pytest.raises(SystemExit):
            train.parse([arg])
        assert capsys.readouterr().err == message


def test_help_lists_every_field_with_type_choices_and_the_presets_default():
    out, seconds = run_cli("experiments.train", "--preset=quick", "--help")
    assert out.returncode == 0, out.stderr
    assert seconds < 5, f"--help took {seconds:.2f} s"
    assert out.stdout.startswith("usage: python -m experiments.train")
    entries: dict[str, str] = {}
    name = None
    for line in out.stdout.splitlines():
        text = line.strip().strip("│").strip()
        if text.startswith(("╭", "╰")):  # a group of options ends
            name = None
            continue
        m = re.match(r"(--[\w.-]+)", text)
        if m:
            name = m.group(1)
            entries[name] = text
        elif name and text and not set(text) <= set("─╭╮╰╯ "):
            entries[name] += " " + text
    quick = cfg.preset("quick")
    for field, (section, attr) in cfg.field_names().items():
        entry = entries[flag(field)]
        kind = get_type_hints(cfg.SECTIONS[section])[attr]
        if get_origin(kind) is not None and str in {type(a) for a in get_args(kind)}:  # a Literal
            assert "{" + ",".join(get_args(kind)) + "}" in entry, entry
        elif kind in (int, float, str):
            assert f" {kind.__name__.upper()} " in entry, entry
        assert entry.endswith(f"(default: {getattr(getattr(quick, section), attr)})"), entry
    assert entries["--steps"].endswith("(default: 1000)") and "--model.encoder-padding INT|{VALID}" in entries[
        "--model.encoder-padding"]
    print(f"--help answered in {seconds:.2f} s")


def test_print_config_and_config_round_trip(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        train.main(["--preset=cartan", "--split=range", "--model.hidden=16", "--print-config"])
    assert e.value.code == 0
    printed = capsys.readouterr().out
    expected = cfg.override(cfg.preset("cartan"), {"split": "range", "hidden": 16})
    assert cfg.Config.from_dict(json.loads(printed)) == expected
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(printed)
    assert train.parse([f"--config={run}"])[1] == expected  # a workdir
    assert train.parse([f"--config={run / 'config.json'}"])[1] == expected  # or its config.json
    assert train.parse([f"--config={run}", "--train.steps=7"])[1] == cfg.override(expected, {"train.steps": 7})


def test_config_file_errors_are_one_line(tmp_path, capsys):
    (tmp_path / "config.json").write_text(json.dumps({"model": {"hiden": 3}}))
    for path, message in [(tmp_path, "unknown config fields model.hiden"), (tmp_path / "none", "cannot read")]:
        with pytest.raises(SystemExit) as e:
            train.parse([f"--config={path}"])
        err = capsys.readouterr().err
        assert e.value.code == 2 and err.count("\n") == 1 and message in err, err


def test_bench_flags(capsys):
    args, config = bench.parse(["--steps=3", "--model.hidden=16", "--dtype=bfloat16", "--pairs=shuffle"])
    assert (args.steps, config.model.hidden, config.model.dtype, config.data.pairs) == (3, 16, "bfloat16", "shuffle")
    assert config.train.steps == cfg.preset("blog").train.steps  # --steps counts timed steps here
    with pytest.raises(SystemExit):
        bench.parse(["--dtype=bfloat16", "--model.dtype=float32"])
    assert "--dtype and --model.dtype" in capsys.readouterr().err


def test_evaluate_checks_split_and_source_before_loading(tmp_path, capsys):
    for argv, message in [(["--split=x>=99"], "x classes lie in 0..31"), (["--data=disk"], "data.source")]:
        with pytest.raises(SystemExit) as e:
            evaluate.main([f"--workdir={tmp_path / 'missing'}", *argv])
        err = capsys.readouterr().err
        assert e.value.code == 2 and err.count("\n") == 1 and message in err, err


def test_evaluate_help():
    out, _ = run_cli("experiments.evaluate", "--help")
    assert out.returncode == 0 and "--workdir PATH" in out.stdout and "--split SPLIT" in out.stdout, out.stderr
