"""The reproduction: tiny runs end to end (train, evaluate, to-Diff, table), resume, the budgets."""

import json
import math
import shutil

import numpy as np
import pytest

from experiments import reproduce as entry
from magajax.analysis import reproduce as rp
from magajax.data.splits import make_split
from tests.helpers import tiny_config


def tiny_budget() -> rp.Budget:
    """Tiny MAGANet runs on element (the shared fixture's) and range-blog; element ⊂ range-blog.

    The VAE rows of the table are checked on a written record below: each tiny training compiles
    its own step, and this keeps the test to one.
    """
    return rp.Budget(
        "tiny", {"maganet": tiny_config()}, steps=2,
        columns=(("to-Element", "element"), ("to-Range", "range-blog")), diff_pair=("element", "range-blog"),
        train_subset=40, eval_batch=16,
    )


def test_tiny_reproduction_writes_the_table_and_resumes(tiny_runs, small_dsprites, tmp_path, capsys):
    shutil.copytree(tiny_runs["maganet"], tmp_path / "maganet-element")  # a finished run is reused
    record = rp.reproduce(tiny_budget(), tmp_path, data=small_dsprites, progress=False)
    out = capsys.readouterr().out
    assert out.count("skipping training") == 1 and "maganet-element: trained (2 steps)" in out
    assert set(record["runs"]) == {"maganet-element", "maganet-range-blog"}
    assert record["runs"]["maganet-element"]["train_s"] == 0.0 < record["runs"]["maganet-range-blog"]["train_s"]

    element = make_split("element", small_dsprites.classes).test
    diff = record["to_diff"]["maganet"]
    assert diff["count"] == diff["both_held_out"] == len(element) > 0
    assert diff["relation"] == "element ⊂ range-blog" and diff["to_diff_mean"] > 0
    for split in ("element", "range-blog"):
        held = record["runs"][f"maganet-{split}"]["eval"]["heldout"]
        assert held["count"] == len(make_split(split, small_dsprites.classes).test)
        assert record["runs"][f"maganet-{split}"]["eval"]["group_laws"]["composition"]["max"] < 1e-3

    table = (tmp_path / "results.md").read_text()
    assert table == rp.results_markdown(json.loads((tmp_path / "results.json").read_text()))
    mag = record["runs"]["maganet-range-blog"]["eval"]["heldout"]
    assert f"{mag['bce_mean']:.2f} ± {mag['bce_std']:.2f}" in table
    assert f"{diff['to_diff_mean']:.2f} ± {diff['to_diff_std']:.2f} (BCE {diff['bce_mean']:.2f})" in table

    again = rp.reproduce(tiny_budget(), tmp_path, data=small_dsprites, progress=False)
    assert capsys.readouterr().out.count("skipping training") == 2
    assert again["runs"] == record["runs"] and again["to_diff"] == record["to_diff"]
    assert sorted(p.name for p in (tmp_path / "maganet-range-blog" / "checkpoints").iterdir() if p.name.isdigit()) \
        == ["2"]


def test_table_beside_the_blog():
    heldout = {"count": 10, "bce_mean": 20.0, "bce_std": 1.5, "kl_mean": 3.0, "latent_mean": 0.1}
    vae = {"heldout": dict(heldout, bce_mean=30.0), "heldout_size": 100, "train": {"bce_mean": 25.0}, "gap": 5.0,
           "group_laws": None}
    evaluation = {"heldout": heldout, "heldout_size": 100, "train": {"bce_mean": 18.0}, "gap": 2.0,
                  "group_laws": {law: {"max": 1e-5} for law in ("identity", "inverse", "composition")}}
    record = {
        "budget": "quick", "data": "render:/cache/x.npy", "diff_pair": ["element-blog", "range-blog"],
        "columns": [["to-Element", "element"], ["to-Range", "range"]],
        "runs": {"maganet-element": {"kind": "maganet", "split": "element", "steps": 400, "train_s": 120.0,
                                     "eval": evaluation},
                 "maganet-range": {"kind": "maganet", "split": "range", "steps": 400, "train_s": 60.0},
                 "vae-element": {"kind": "vae", "split": "element", "steps": 800, "train_s": 30.0, "eval": vae}},
        "to_diff": {"maganet": {"count": 7, "both_held_out": 9, "to_diff_mean": 4.25, "to_diff_std": 0.5,
                                "bce_mean": 30.0, "relation": "element-blog ⊂ range-blog"}},
    }
    table = rp.results_markdown(record)
    lines = table.splitlines()
    assert "| VAE, blog (100 epochs, real dSprites, GPU) | 16.85 | 55.42 | – |" in lines
    assert "| MAGANet, blog (100 epochs, real dSprites, GPU) | 18.54 | 38.62 | – |" in lines
    assert ("| MAGANet, ours (quick budget, render dSprites, 400 steps per run, 3.0 min training) "
            "| 20.00 ± 1.50 | – | 4.25 ± 0.50 (BCE 30.00) |") in lines
    assert ("| VAE, ours (quick budget, render dSprites, 800 steps per run, 30 s training) "
            "| 30.00 ± 1.50 | – | – |") in lines
    assert "| vae-element | `element` | 800 | 30 s | 30.00 ± 1.50 | 25.00 | 5.00 | 3.00 | 0.10 | – |" in lines
    assert "7 of the 9 images both hold out (element-blog ⊂ range-blog)" in table
    assert any(line.startswith("| maganet-range | `range` | 400 | 1.0 min | not evaluated") for line in lines)


def test_budgets():
    quick, full = rp.quick(), rp.full()
    assert quick.splits() == ["element", "range", "element-blog", "range-blog"]
    config = quick.config("vae", "range", 614_400)
    assert config.model.kind == "vae" and config.data.split == "range" and config.train.steps == 400
    assert config.train.beta_kl == 1.0 and config.model.hidden == 32 and config.train.batch_size == 32
    element = full.config("maganet", "element", 731_472)
    assert element.preset == "blog" and element.train.steps == math.ceil(100 * 731_472 / 64)
    assert full.heldout_subset is None and quick.heldout_subset == 2048
    with pytest.raises(SystemExit):
        entry.main(["--budget=huge"])
    assert np.isclose(rp.BLOG["maganet"]["to-Range"], 38.62)
