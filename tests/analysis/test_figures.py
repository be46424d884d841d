"""Figures of a run: every file is a valid image of a sensible size; the helpers lay out what they say."""

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from experiments import figures as entry
from magajax.analysis import figures
from magajax.data import provenance, sources

MAGANET_FIGURES = {"recon.png", "traversal.png", "traversal.gif", "latents.png", "identity.png",
                   "composition.png", "loss.png"}


def _check_image(path, fmt, frames=1):
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        assert im.format == fmt, path
        width, height = im.size
        assert 100 <= width <= 4000 and 100 <= height <= 4000, (path, im.size)
        assert getattr(im, "n_frames", 1) == frames, path
        if fmt == "PNG":
            pixels = np.asarray(im.convert("L"), np.float32)
            assert pixels.std() > 10, f"{path} is blank"


def test_draw_all_maganet(tiny_runs, small_dsprites, tmp_path, capsys):
    paths = figures.draw_all(tiny_runs["maganet"], data=small_dsprites, out=tmp_path, examples=2, latent_images=100)
    assert {p.name for p in paths} == MAGANET_FIGURES == {p.name for p in tmp_path.iterdir()}
    for path in paths:
        _check_image(path, "GIF" if path.suffix == ".gif" else "PNG", frames=24 if path.suffix == ".gif" else 1)
    assert "skipping" not in capsys.readouterr().out


def test_entry_point_on_a_vae_skips_the_group_figures(tiny_runs, small_dsprites, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sources, "load_dsprites", lambda source: small_dsprites)
    assert entry.main([f"--workdir={tiny_runs['vae']}", "--data=render", f"--out={tmp_path}", "--examples=2",
                       "--latent-images=100"]) == 0
    out = capsys.readouterr().out
    assert "skipping identity.png and composition.png" in out
    paths = sorted(tmp_path.iterdir())
    assert {p.name for p in paths} == MAGANET_FIGURES - {"identity.png", "composition.png"}
    assert all(f"wrote {p}" in out for p in paths)
    for path in paths:
        _check_image(path, "GIF" if path.suffix == ".gif" else "PNG", frames=24 if path.suffix == ".gif" else 1)


def test_mosaic_places_each_tile():
    images = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)
    out = figures.mosaic(images, pad=1, fill=-1.0)
    assert out.shape == (2 * 5 - 1, 3 * 6 - 1)
    np.testing.assert_array_equal(out[5:9, 12:17], images[1, 2])
    assert np.all(out[4, :] == -1.0) and np.all(out[:, 5] == -1.0)


def test_pca_embedding_finds_the_main_direction():
    rng = np.random.default_rng(0)
    t = rng.normal(size=500)
    codes = np.outer(t, [3.0, 0, 0, 0]) + 0.01 * rng.normal(size=(500, 4))
    points, how = figures.embed_2d(codes, "pca")
    assert points.shape == (500, 2) and how.startswith("PCA (100%")
    assert abs(np.corrcoef(points[:, 0], t)[0, 1]) > 0.999
    with pytest.raises(ValueError, match="shape"):
        figures.embed_2d(codes[:1], "pca")
    with pytest.raises(ValueError, match="unknown method"):
        figures.embed_2d(codes, "tsne")


def test_importing_figures_leaves_the_backend_alone():
    """A notebook's backend survives `import magajax.analysis.figures`, and pyplot is not imported."""
    code = ("import sys, matplotlib; matplotlib.use('svg'); import magajax.analysis.figures; "
            "print(matplotlib.get_backend(), 'matplotlib.pyplot' in sys.modules)")
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["svg", "False"]


def test_loss_curves_draw_every_logged_term(tmp_path):
    records = [{"step": s, "loss": 100.0 / s, "recon": 90.0 / s, "kl": 1.0 + s, "grad_norm": 2.0} for s in range(1, 9)]
    figures.loss_curves(records, tmp_path / "loss.png", title="tiny")
    _check_image(tmp_path / "loss.png", "PNG")


def test_figures_stop_with_one_line_when_the_recorded_data_is_gone(tiny_runs, tmp_path, capsys):
    workdir = tmp_path / "run"
    shutil.copytree(tiny_runs["maganet"], workdir)
    gone = tmp_path / "gone.npz"
    provenance.record(workdir, provenance.Provenance("file", f"file:{gone}", 3001, sha256="0" * 64))
    with pytest.raises(FileNotFoundError, match=f"{gone} is missing.*--data="):
        figures.draw_all(workdir, out=tmp_path / "figures")
    assert entry.main([f"--workdir={workdir}", f"--out={tmp_path / 'figures'}"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{gone} is missing" in err and "--data=" in err
    assert not (tmp_path / "figures").exists()
