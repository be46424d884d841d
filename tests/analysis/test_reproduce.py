"""The reproduction: tiny runs over two seeds end to end (train, score, table), resume, intervals, to-Diff, budgets."""

import json
import math
import shutil

import jax
import numpy as np
import pytest

from experiments import reproduce as entry
from magajax import api, objective
from magajax.analysis import evaluate as ev
from magajax.analysis import reproduce as rp
from magajax.data.pairs import gather_images
from magajax.data.splits import make_split


def tiny_budget(tiny_config) -> rp.Budget:
    """Tiny MAGANet runs, seeds 0 and 1, on element (the blog's to-Element role; the shared fixture's run
    is seed 0) and range-blog (element ⊂ range-blog), and element as the one Montero et al. column.

    The VAE rows of the table are checked on a written record below: each tiny training compiles
    its own step, and this keeps the test to one kind.
    """
    return rp.Budget(
        "tiny", {"maganet": tiny_config}, steps=2, seeds=(0, 1), blog_pair=("element", "range-blog"),
        montero=(("element (Montero et al.)", "element"),), montero_seeds=(0,), train_subset=40, eval_batch=16,
    )


@pytest.mark.slow
def test_tiny_reproduction_over_seeds_writes_the_table_and_resumes(tiny_runs, small_dsprites, tiny_config,
                                                                    tmp_path, capsys):
    shutil.copytree(tiny_runs["maganet"], tmp_path / "maganet-element-seed0")  # a finished run is reused
    budget = tiny_budget(tiny_config)
    record = rp.reproduce(budget, tmp_path, data=small_dsprites, progress=False)
    out = capsys.readouterr().out
    assert out.count("skipping training") == 1 and "maganet-element-seed0: trained (2 steps)" in out
    names = {f"maganet-{s}-seed{k}" for s in ("element", "range-blog") for k in (0, 1)}
    assert set(record["runs"]) == names

    # Seeds make distinct runs: same split, different train.seed, different weights and scores.
    models = {k: ev.load_model(tmp_path / f"maganet-element-seed{k}")[0] for k in (0, 1)}
    assert [models[k].config.train.seed for k in (0, 1)] == [0, 1]
    assert not np.allclose(*(jax.tree.leaves(models[k].variables)[0] for k in (0, 1)))
    scores = record["blog"]["maganet"]
    assert scores["0"]["sampled"]["bce_mean"] != scores["1"]["sampled"]["bce_mean"]

    # to-Element and to-Range are scored on the same rows: the element run on its own held-out set and
    # the range-blog run on element's, each evaluated on its own, give the numbers of the one joint pass.
    element = make_split("element", small_dsprites.classes).test
    assert record["rows"] == {"count": len(element), "of": len(element), "relation": "element ⊂ range-blog"}
    for code in rp.CODES:
        kw = dict(data=small_dsprites, sample=code == "sampled", batch_size=16, train_subset=8, progress=False,
                  write=False)
        own = ev.evaluate(tmp_path / "maganet-element-seed1", **kw)["heldout"]
        other = ev.evaluate(tmp_path / "maganet-range-blog-seed1", split="element", **kw)["heldout"]
        assert own["count"] == other["count"] == scores["1"][code]["count"] == len(element) > 0
        np.testing.assert_allclose(scores["1"][code]["bce_b_mean"], own["bce_mean"], rtol=1e-5)
        np.testing.assert_allclose(scores["1"][code]["bce_a_mean"], other["bce_mean"], rtol=1e-5)
    assert record["runs"]["maganet-element-seed0"]["eval"]["sampled"]["heldout"]["count"] == len(element)
    assert "eval" not in record["runs"]["maganet-range-blog-seed0"]

    table = (tmp_path / "results.md").read_text()
    assert table == rp.results_markdown(json.loads((tmp_path / "results.json").read_text()))
    v = [scores[k]["sampled"]["bce_b_mean"] for k in ("0", "1")]
    half = 12.706204736 * abs(v[0] - v[1]) / 2  # t_(0.975, 1) · s / √2 with s = |v0 − v1| / √2
    assert f"| {np.mean(v):.2f} ± {half:.2f} (n=2) |" in table

    again = rp.reproduce(budget, tmp_path, data=small_dsprites, progress=False)
    assert capsys.readouterr().out.count("skipping training") == 4
    assert again["runs"] == record["runs"] and again["blog"] == record["blog"]
    assert sorted(p.name for p in (tmp_path / "maganet-range-blog-seed1" / "checkpoints").iterdir()
                  if p.name.isdigit()) == ["2"]


def test_interval_by_hand():
    i = rp.interval([1.0, 2.0, 3.0, 4.0])
    s = math.sqrt(((1.5**2 + 0.5**2) * 2) / 3)  # sample std, n − 1 = 3
    assert i["n"] == 4 and i["mean"] == 2.5
    np.testing.assert_allclose(i["half"], 3.182446305 * s / 2, rtol=1e-8)  # t_(0.975, 3) from the table
    np.testing.assert_allclose(rp.interval([10.0, 12.0, 17.0])["half"], 4.302652730 * math.sqrt(13) / math.sqrt(3),
                               rtol=1e-8)
    assert rp.interval([5.0]) == {"mean": 5.0, "half": None, "n": 1}
    assert rp.interval([]) == {"mean": None, "half": None, "n": 0}


def bce_numpy(logits: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Σ_pixels −[t log σ(l) + (1 − t) log(1 − σ(l))] per image, float64."""
    z, t = np.asarray(logits, np.float64), np.asarray(target, np.float64)
    per_pixel = t * np.logaddexp(0.0, -z) + (1 - t) * np.logaddexp(0.0, z)
    return per_pixel.reshape(len(z), -1).sum(axis=1)


def test_to_diff_is_the_bce_between_two_decodes(tiny_runs, small_dsprites):
    """Identical hard decodes give ~0; otherwise the numbers are NumPy's on the two models' decodes."""
    soft, _ = ev.load_model(tiny_runs["vae"])
    params = dict(soft.variables["params"])
    last = sorted(k for k in params if k.startswith("deconvs_"))[-1]
    params[last] = jax.tree.map(lambda p: p * 1e6, params[last])  # logits × 10⁶: every pixel 0 or 1
    hard = api.Model(soft.config, {"params": params})
    rows = make_split("range-blog", small_dsprites.classes).test[:24]
    x = np.asarray(gather_images(small_dsprites.images, rows, 16))
    logits = {name: np.asarray(objective.reconstruct(m.module, m.variables, None, x, None, pairs="pivot").logits)
              for name, m in (("soft", soft), ("hard", hard))}
    sigmoid = lambda z: np.exp(-np.logaddexp(0.0, -z.astype(np.float64)))

    same = ev.to_diff(hard, hard, small_dsprites, rows, batch_size=16)
    # BCE of a decode against itself is its entropy: ~0 nats per image for hard decodes (a soft one has ~100).
    assert same["count"] == 24 and same["bce_mean"] < 0.1 and abs(same["to_diff_mean"]) < 1e-4
    np.testing.assert_allclose(same["bce_mean"], bce_numpy(logits["hard"], sigmoid(logits["hard"])).mean(),
                               atol=1e-3)

    apart = ev.to_diff(soft, hard, small_dsprites, rows, batch_size=16)
    expected = bce_numpy(logits["soft"], sigmoid(logits["hard"]))
    np.testing.assert_allclose(apart["bce_mean"], expected.mean(), rtol=1e-4)
    np.testing.assert_allclose(apart["bce_std"], expected.std(), rtol=1e-3)
    np.testing.assert_allclose(apart["bce_a_mean"], bce_numpy(logits["soft"], x).mean(), rtol=1e-4)
    np.testing.assert_allclose(apart["bce_b_mean"], bce_numpy(logits["hard"], x).mean(), rtol=1e-4)
    assert apart["bce_mean"] > 100 * same["bce_mean"] + 1.0


def test_table_beside_the_blog():
    def scores(element: float, ranged: float, diff: float) -> dict:
        code = {"count": 7, "bce_b_mean": element, "bce_a_mean": ranged, "bce_mean": diff, "to_diff_mean": diff - 1}
        return {"steps": [400, 400], "count": 7, "sampled": code, "mean": dict(code, bce_b_mean=element - 1)}

    heldout = {"count": 10, "bce_mean": 20.0, "bce_std": 1.5, "kl_mean": 3.0}
    evaluation = {"heldout": heldout, "heldout_size": 100, "train": {"bce_mean": 18.0}, "gap": 2.0,
                  "group_laws": {law: {"max": 1e-5} for law in ("identity", "inverse", "composition")}}
    runs = {f"maganet-{s}-seed{k}": {"kind": "maganet", "split": s, "seed": k, "steps": 400, "batch": 32,
                                     "train_s": 60.0} for s in ("element-blog", "range-blog") for k in (0, 1, 2)}
    runs["maganet-element-seed0"] = {"kind": "maganet", "split": "element", "seed": 0, "steps": 400, "batch": 32,
                                     "train_s": 120.0, "eval": {"sampled": evaluation, "mean": evaluation}}
    runs["vae-element-blog-seed0"] = {"kind": "vae", "split": "element-blog", "seed": 0, "steps": 60, "batch": 32,
                                      "train_s": 30.0}
    record = {
        "budget": "quick", "data": "render:/cache/x.npy", "blog_pair": ["element-blog", "range-blog"],
        "montero": [["element (Montero et al.)", "element"], ["range (Montero et al.)", "range"]],
        "seeds": [0, 1, 2], "montero_seeds": [0], "runs": runs,
        "rows": {"count": 7, "of": 9, "relation": "element-blog ⊂ range-blog"},
        "blog": {"maganet": {"0": scores(10.0, 30.0, 5.0), "1": scores(12.0, 31.0, 6.0), "2": scores(14.0, 32.0, 7.0)},
                 "vae": {"0": scores(16.0, 50.0, 9.0)}},
    }
    table = rp.results_markdown(record)
    lines = table.splitlines()
    assert ("| model | to-Element | to-Range | to-Diff | to-Diff KL | element (Montero et al.) "
            "| range (Montero et al.) |") in lines
    assert "| VAE, blog (100 epochs, real dSprites, GPU) | 16.85 | 55.42 | – | – | – | – |" in lines
    assert "| MAGANet, blog (100 epochs, real dSprites, GPU) | 18.54 | 38.62 | – | – | – | – |" in lines
    # MAGANet to-Element over seeds: 12 ± t_(0.975, 2)·2/√3 = 12 ± 4.97; to-Range 31 ± 2.48.
    assert ("| MAGANet, ours (quick budget, render dSprites, 400 steps per run) | 12.00 ± 4.97 (n=3) "
            "| 31.00 ± 2.48 (n=3) | 6.00 ± 2.48 (n=3) | 5.00 ± 2.48 (n=3) | 20.00 (n=1) | – |") in lines
    assert ("| VAE, ours (quick budget, render dSprites, 60 steps per run) | 16.00 (n=1) | 50.00 (n=1) "
            "| 9.00 (n=1) | 8.00 (n=1) | – | – |") in lines
    mean_codes = table.split("## Posterior-mean codes")[1].split("Columns:")[0]
    assert "| 11.00 ± 4.97 (n=3) |" in mean_codes and "| 15.00 (n=1) |" in mean_codes
    assert "BCE(prediction = the `range-blog` run's decode, target = the `element-blog` run's decode)" in table
    assert "on 7 of its 9 held-out images" in table and "(element-blog ⊂ range-blog)" in table
    assert "split `element`, each run scored on 10 of its 100 held-out images" in table
    assert "split `range`, each run scored on its held-out images" in table
    assert "## What differs from the blog" in table and "not a group action" in table
    assert "| maganet-element-seed0 | `element` | 0 | 400 | 2.0 min | 20.00 | 20.00 | 18.00 | 2.00 | 3.00 | 1.0e-05 |" \
        in lines
    assert "| maganet-range-blog-seed2 | `range-blog` | 2 | 400 | 1.0 min | – | – | – | – | – | – |" in lines
    assert "| MAGANet | 1 | 12.00 | 31.00 | 6.00 | 5.00 |" in lines


def test_budgets():
    quick, full = rp.quick(), rp.full()
    assert quick.runs()[:6] == [("element-blog", 0), ("range-blog", 0), ("element-blog", 1), ("range-blog", 1),
                                ("element-blog", 2), ("range-blog", 2)]
    assert quick.runs()[6:] == [("element", 0), ("element", 1), ("element", 2), ("range", 0), ("range", 1),
                                ("range", 2)]
    assert len(full.runs()) == 12 and quick.montero_seeds == (0, 1, 2)
    vae = quick.config("vae", "range-blog", 614_400, seed=2)
    assert (vae.model.kind, vae.model.vae, vae.train.beta_kl, vae.data.split, vae.train.seed) == \
        ("vae", "blog", 2.0, "range-blog", 2)
    maganet = quick.config("maganet", "element-blog", 734_914)
    assert maganet.train.steps == rp.QUICK_STEPS["maganet"] and vae.train.steps == rp.QUICK_STEPS["vae"]
    assert maganet.model.hidden == 32 and maganet.train.batch_size == 32 == vae.train.batch_size
    element = full.config("maganet", "element", 731_472)
    assert element.preset == "blog" and element.train.steps == math.ceil(100 * 731_472 / 64)
    assert full.config("vae", "range", 614_400).model.vae == "blog" and full.seeds == full.montero_seeds == (0, 1, 2)
    assert full.heldout_subset is None and quick.heldout_subset == rp.QUICK_SUBSET
    with pytest.raises(SystemExit):
        entry.main(["--budget=huge"])
