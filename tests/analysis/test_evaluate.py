"""Held-out evaluation: exact means over every held-out image, group laws, per-factor BCE, to-Diff."""

import dataclasses
import json
import shutil
import types

import jax
import numpy as np
import pytest

from experiments import evaluate as entry
from magajax import api
from magajax.analysis import evaluate as ev
from magajax.analysis.report import format_table
from magajax.data import factors, provenance, sources
from magajax.data.splits import make_split
from magajax.training import workdir as wd
from tests.helpers import loss_oracle, tiny_config


@pytest.fixture(scope="module")
def maganet_result(tiny_runs, small_dsprites, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("eval") / "run"
    shutil.copytree(tiny_runs["maganet"], workdir)
    return workdir, ev.evaluate(workdir, data=small_dsprites, batch_size=16, train_subset=40, progress=False)


def _images(data, rows, size):
    """Images of `rows` as the model sees them, in NumPy: each pixel the mean of a (64/size)² block."""
    return data.unpacked(rows).astype(np.float32).reshape(len(rows), size, 64 // size, size, 64 // size).mean(
        axis=(2, 4))[..., None]


def _direct_bce(model, data, rows, pivot_row=None):
    """BCE per image through the public Model API and the loss oracle (mean codes)."""
    size = model.config.model.image_size
    x = _images(data, rows, size)
    x_pivot = None if pivot_row is None else _images(data, [pivot_row], size)
    logits = model.decode_logits(model.encode(x, x_pivot), x_pivot)
    zeros = np.zeros((len(rows), model.config.model.latent_dim))
    return loss_oracle(logits, x, zeros, zeros, 0.0)["recon"]


def test_heldout_bce_is_the_exact_mean_over_every_heldout_image(maganet_result, small_dsprites):
    workdir, result = maganet_result
    split = make_split("element", small_dsprites.classes)
    model, step = ev.load_model(workdir)
    expected = _direct_bce(model, small_dsprites, split.test, split.pivot_row)
    assert step == 2 and result["step"] == 2
    assert result["heldout"]["count"] == len(split.test) == result["heldout_size"] > 16, "needs a partial batch"
    np.testing.assert_allclose(result["heldout"]["bce_mean"], expected.mean(), rtol=1e-5)
    np.testing.assert_allclose(result["heldout"]["bce_std"], expected.std(), rtol=1e-4)
    assert result["train"]["count"] == 40 and result["train"]["of"] == len(split.train)
    np.testing.assert_allclose(result["gap"], result["heldout"]["bce_mean"] - result["train"]["bce_mean"])
    for name in ("kl", "latent", "total"):
        assert np.isfinite(result["heldout"][f"{name}_mean"]) and result["heldout"][f"{name}_mean"] > 0
    assert json.loads((workdir / "eval.json").read_text())["heldout"] == result["heldout"]


def test_iterator_sees_each_heldout_image_once_whatever_the_batch(tiny_runs, small_dsprites):
    model, _ = ev.load_model(tiny_runs["maganet"])
    split = make_split("element", small_dsprites.classes)
    packed, local = ev.on_device(small_dsprites.images, np.concatenate([split.test, [split.pivot_row]]))
    rows, pivot = local(split.test), int(local([split.pivot_row])[0])
    by_7 = ev.image_terms(model, packed, rows, pivot, batch_size=7)
    by_16 = ev.image_terms(model, packed, rows, pivot, batch_size=16)
    assert len(split.test) % 7 and len(split.test) % 16, "the last batch must be partial"
    np.testing.assert_array_equal(by_7["rows"], rows)
    assert sorted(set(by_7["rows"].tolist())) == list(range(len(split.test))), "each image once"
    np.testing.assert_allclose(by_7["bce"], by_16["bce"], rtol=1e-5)
    assert by_7["z"].shape == (len(split.test), model.config.model.latent_dim)
    empty = ev.image_terms(model, packed, np.zeros(0, np.int32), pivot)
    assert ev.summary(empty) == {"count": 0, **{f"{t}_{s}": None for t in ev.TERMS for s in ("mean", "std")}}


def test_every_term_per_image_matches_the_oracle(tiny_runs, small_dsprites):
    """image_terms (packed rows) and array_terms (float images) give the oracle's terms with mean codes."""
    model, _ = ev.load_model(tiny_runs["maganet"])
    split = make_split("element", small_dsprites.classes)
    rows = split.test[:10]
    packed, local = ev.on_device(small_dsprites.images, np.concatenate([rows, [split.pivot_row]]))
    terms = ev.image_terms(model, packed, local(rows), int(local([split.pivot_row])[0]), batch_size=4)
    x, x_pivot = _images(small_dsprites, rows, 16), _images(small_dsprites, [split.pivot_row], 16)
    posterior = lambda images: model.module.apply(model.variables, images, method="posterior")
    (mean_v, logvar_v), (mean_p, logvar_p) = posterior(x), posterior(x_pivot)
    logits = model.decode_logits(model.encode(x, x_pivot), x_pivot)
    mean_read = posterior(jax.nn.sigmoid(logits))[0]
    train = model.config.train
    expected = loss_oracle(logits, x, mean_v, logvar_v, train.beta_kl, mean_p=mean_p, logvar_p=logvar_p,
                           mean_read=mean_read, beta_lat=train.beta_lat)
    expected["bce"] = expected.pop("recon")
    from_arrays = ev.array_terms(model, x, x_pivot, batch_size=4)
    for name in ("bce", "kl", "latent", "total", "z"):
        np.testing.assert_allclose(terms[name], expected[name], rtol=1e-4, atol=1e-4, err_msg=name)
        np.testing.assert_allclose(from_arrays[name], terms[name], rtol=1e-5, atol=1e-5, err_msg=name)


def test_group_laws_of_the_trained_model_hold(maganet_result):
    laws = maganet_result[1]["group_laws"]
    assert laws["images"] == maganet_result[1]["heldout"]["count"] and laws["code_scale"] > 0
    for law in ("identity", "inverse", "composition"):
        assert 0 <= laws[law]["mean"] <= laws[law]["max"] < 1e-3, (law, laws[law])


def test_group_law_errors_measure_a_broken_action():
    """act(z, u) = u + |z|²: identity holds, inverse is off by 2|z1|², composition by −2 z1·z2."""

    class Squares:
        def apply(self, params, z, u, method):
            assert method == "act"
            return u + jax.numpy.sum(z**2, axis=1)[:, None, None, None]

    config = dataclasses.replace(tiny_config().model, latent_dim=3)
    model = types.SimpleNamespace(is_vae=False, variables={}, module=Squares(),
                                  config=types.SimpleNamespace(model=config))
    u = np.random.default_rng(0).normal(size=(5, 16, 16, 1)).astype(np.float32)
    scale = np.array([0.5, 1.0, 2.0], np.float32)
    laws = ev.group_law_errors(model, u, scale, seed=7, batch_size=2)
    z1, z2 = np.random.default_rng(7).standard_normal((2, 5, 3)).astype(np.float32) * scale
    assert laws["images"] == 5 and laws["identity"] == {"max": 0.0, "mean": 0.0}
    np.testing.assert_allclose(laws["inverse"]["max"], np.max(2 * np.sum(z1**2, axis=1)), rtol=1e-5)
    np.testing.assert_allclose(laws["composition"]["mean"], np.mean(np.abs(2 * np.sum(z1 * z2, axis=1))), rtol=1e-5)
    with pytest.raises(ValueError, match="no images"):
        ev.group_law_errors(model, u[:0], 1.0, seed=7)


def test_per_factor_breakdown_matches_a_loop():
    rng = np.random.default_rng(0)
    classes = factors.index_to_classes(rng.choice(factors.NUM_IMAGES, 300, replace=False))
    values = rng.normal(size=300)
    cells = ev.by_factor(values, classes)
    for j, name in enumerate(factors.NAMES):
        present = np.unique(classes[:, j])
        assert [c["class"] for c in cells[name]] == present.tolist()
        for cell in cells[name]:
            hit = classes[:, j] == cell["class"]
            assert cell["count"] == hit.sum()
            np.testing.assert_allclose(cell["bce"], values[hit].mean())
    worst = ev.worst_cells(cells, 5)
    everything = sorted((c["bce"] for rows in cells.values() for c in rows), reverse=True)
    assert [c["bce"] for c in worst] == everything[:5]
    assert ev.class_label("orientation", 13) == "orientation 13 (120°)" and ev.class_label("shape", 2) == "heart"
    top = ev.worst_images(values, classes, 3)
    assert [t["bce"] for t in top] == sorted(values, reverse=True)[:3]
    assert top[0]["index"] == factors.classes_to_index(classes[np.argmax(values)][None])[0]


def test_sampled_codes_are_reproducible_and_differ_from_the_means(maganet_result, small_dsprites):
    workdir, means = maganet_result
    first = ev.evaluate(workdir, sample=True, data=small_dsprites, batch_size=16, train_subset=40,
                        progress=False)
    again = ev.evaluate(workdir, sample=True, data=small_dsprites, batch_size=16, train_subset=40,
                        progress=False, write=False)
    assert first["heldout"] == again["heldout"] and first["heldout"]["bce_mean"] != means["heldout"]["bce_mean"]
    assert first["path"] == str(workdir / "eval-sample.json") and (workdir / "eval.json").is_file()


def test_another_split_is_announced_and_written_apart(maganet_result, small_dsprites, capsys):
    workdir, _ = maganet_result
    result = ev.evaluate(workdir, split="range-blog", data=small_dsprites, batch_size=16, train_subset=40,
                         progress=False)
    assert "trained on split 'element'" in capsys.readouterr().out
    assert result["split"] == "range-blog" and result["trained_split"] == "element"
    assert result["heldout"]["count"] == len(make_split("range-blog", small_dsprites.classes).test)
    assert (workdir / "eval-range-blog.json").is_file()


def test_vae_reconstructs_the_heldout_images(tiny_runs, small_dsprites):
    result = ev.evaluate(tiny_runs["vae"], data=small_dsprites, batch_size=16, train_subset=40, progress=False,
                         write=False)
    split = make_split("element", small_dsprites.classes)
    model, _ = ev.load_model(tiny_runs["vae"])
    bce = _direct_bce(model, small_dsprites, split.test)
    assert result["kind"] == "vae" and result["group_laws"] is None and "latent_mean" not in result["heldout"]
    np.testing.assert_allclose(result["heldout"]["bce_mean"], bce.mean(), rtol=1e-5)
    table = format_table(result)
    assert "group laws" not in table and "bce" in table and "held-out" in table


def test_to_diff_is_zero_for_a_model_against_itself(tiny_runs, small_dsprites):
    model, _ = ev.load_model(tiny_runs["maganet"])
    shifted = api.Model(model.config, jax.tree.map(lambda p: p * 1.5, model.variables))
    rows = make_split("range-blog", small_dsprites.classes).test[:50]
    same = ev.to_diff(model, model, small_dsprites, rows, batch_size=16)
    apart = ev.to_diff(model, shifted, small_dsprites, rows, batch_size=16)
    assert same["count"] == apart["count"] == 50
    assert abs(same["to_diff_mean"]) < 1e-4 and same["bce_mean"] > 1.0, "BCE against itself is its entropy"
    assert apart["to_diff_mean"] > 1.0
    assert ev.to_diff(model, shifted, small_dsprites, rows[:0])["to_diff_mean"] is None


def test_a_workdir_without_checkpoints_is_one_clear_error(tmp_path, capsys):
    with pytest.raises(FileNotFoundError, match="not a magajax run"):
        ev.evaluate(tmp_path / "nothing", data="render")
    wd.prepare(tmp_path / "untrained", tiny_config())
    with pytest.raises(FileNotFoundError, match=r"no checkpoint in .*untrained.*experiments\.train"):
        ev.evaluate(tmp_path / "untrained", data="render")
    assert entry.main([f"--workdir={tmp_path / 'untrained'}"]) == 2
    assert "no checkpoint" in capsys.readouterr().err


def test_entry_point_prints_the_table(maganet_result, small_dsprites, monkeypatch, capsys):
    workdir, _ = maganet_result
    monkeypatch.setattr(sources, "load_dsprites", lambda source: small_dsprites)
    assert entry.main([f"--workdir={workdir}", "--data=render", "--batch-size=16", "--train-subset=40",
                       "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "held-out set of 'element'" in out and "identity" in out and "composition" in out
    assert "wrote" in out and "eval.json" in out


@pytest.fixture
def file_run(tiny_runs, small_dsprites, tmp_path):
    """A copy of the tiny MAGANet run whose data.json records its images as an official .npz file."""
    classes = np.concatenate([np.zeros((len(small_dsprites), 1), np.uint8), small_dsprites.classes], 1)
    values = np.concatenate([np.ones((len(small_dsprites), 1), np.float32), small_dsprites.values], 1)
    path = tmp_path / "dsprites.npz"
    np.savez(path, imgs=small_dsprites.unpacked(slice(None)), latents_classes=classes, latents_values=values)
    workdir = tmp_path / "run"
    shutil.copytree(tiny_runs["maganet"], workdir)
    provenance.record(workdir, provenance.describe(sources.load_dsprites(f"file:{path}")))
    return workdir, path


def test_evaluate_loads_the_recorded_file_or_names_it_when_it_is_gone(file_run, maganet_result, capsys):
    workdir, path = file_run
    capsys.readouterr()
    result = ev.evaluate(workdir, batch_size=16, train_subset=40, progress=False, write=False)
    assert f"reading {path}" in capsys.readouterr().out and result["data"] == f"file:{path}"
    assert result["heldout"] == maganet_result[1]["heldout"]
    path.rename(tmp := path.with_name("moved.npz"))
    with pytest.raises(FileNotFoundError, match=f"{path} is missing.*--data="):
        ev.evaluate(workdir, progress=False, write=False)
    assert entry.main([f"--workdir={workdir}", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{path} is missing" in err and "--data=" in err
    overridden = ev.evaluate(workdir, data=f"file:{tmp}", batch_size=16, train_subset=40, progress=False, write=False)
    assert overridden["heldout"] == result["heldout"] and overridden["data"] == f"file:{tmp}"
