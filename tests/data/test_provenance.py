"""data.json: what a run's data source became, and the checks that a later load is the same data."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from magajax.config import DEFAULT_PIVOT
from magajax.data import factors, provenance, render, sources
from magajax.data.sources import DSprites


def write_official(path, indices: np.ndarray) -> None:
    """A small .npz in the official layout (a color column before the five factors)."""
    classes = np.concatenate([np.zeros((len(indices), 1), np.int64), factors.index_to_classes(indices)], 1)
    values = np.concatenate([np.ones((len(indices), 1)), factors.classes_to_values(classes[:, 1:])], 1)
    np.savez_compressed(path, imgs=render.render_dsprites(indices), latents_classes=classes, latents_values=values)


def small(source: str, n: int = 5) -> DSprites:
    index = np.arange(DEFAULT_PIVOT, DEFAULT_PIVOT + n)
    classes = factors.index_to_classes(index).astype(np.uint8)
    return DSprites(render.render_dsprites(index, packed=True), classes, factors.classes_to_values(classes), source)


@pytest.fixture
def file_run(tmp_path, monkeypatch):
    """A workdir whose data.json records a small official file, read through a relative path."""
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "dsprites.npz"
    write_official(path, np.arange(DEFAULT_PIVOT, DEFAULT_PIVOT + 20))
    workdir = tmp_path / "run"
    workdir.mkdir()
    provenance.record(workdir, provenance.describe(sources.load_dsprites("file:dsprites.npz")))
    return workdir, path


def test_a_file_source_is_recorded_by_absolute_path_and_sha256(file_run):
    workdir, path = file_run
    record = json.loads((workdir / provenance.FILE).read_text())
    assert record["kind"] == "file" and record["source"] == f"file:{path}" and record["images"] == 20
    assert record["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest() and record["history"] == []
    assert provenance.read(workdir).source == f"file:{path}"
    assert provenance.resolve(workdir, None) == f"file:{path}"
    np.testing.assert_array_equal(provenance.load(workdir).images, sources.load_dsprites(f"file:{path}").images)


def test_a_missing_file_is_one_error_naming_it_and_the_flag(file_run):
    workdir, path = file_run
    path.rename(path.with_name("elsewhere.npz"))
    with pytest.raises(FileNotFoundError) as info:
        provenance.load(workdir, default="render")
    message = str(info.value)
    assert f"{path} is missing" in message and "--data=" in message and "\n" not in message


def test_a_changed_file_is_an_error_and_an_explicit_source_overrides(file_run):
    workdir, path = file_run
    write_official(path, np.arange(DEFAULT_PIVOT, DEFAULT_PIVOT + 10))
    with pytest.raises(ValueError, match=r"dsprites\.npz has changed \(its sha256 is now [0-9a-f]{64}\).*--data="):
        provenance.load(workdir)
    assert len(provenance.load(workdir, f"file:{path}")) == 10


def test_render_records_its_version_and_a_changed_renderer_is_caught(tmp_path, monkeypatch):
    cache = "/cache/dsprites-render-0.npy"
    prov = provenance.describe(small(f"render:{cache}"))
    assert (prov.kind, prov.source, prov.version, prov.location) == ("render", "render", "1", cache)
    assert prov.sha256 == hashlib.sha256(render.render_dsprites(provenance.SAMPLE, packed=True).tobytes()).hexdigest()
    provenance.record(tmp_path, prov)
    assert provenance.resolve(tmp_path, None) == "render"
    monkeypatch.setattr(render, "RENDER_VERSION", 2)
    with pytest.raises(ValueError, match=r"used dSprites from render .*version 1.*renderer is now version 2.*--data="):
        provenance.resolve(tmp_path, None)
    monkeypatch.setattr(render, "RENDER_VERSION", 1)
    drawn = render.render_dsprites
    monkeypatch.setattr(render, "render_dsprites", lambda index, packed=False: 1 - drawn(index, packed))
    with pytest.raises(ValueError, match="draws other images now"):
        provenance.resolve(tmp_path, None)


def test_images_given_in_memory_cannot_be_loaded_again(tmp_path):
    provenance.record(tmp_path, provenance.describe(small("my images")))
    with pytest.raises(FileNotFoundError, match=r"my images .*given in memory.*--data="):
        provenance.load(tmp_path)
    assert provenance.resolve(tmp_path, "render") == "render"


def test_tfds_unavailable_or_another_version_is_an_error(tmp_path, monkeypatch):
    provenance.record(tmp_path, provenance.describe(small(f"tfds:{tmp_path}/dsprites/2.1.0")))
    assert (provenance.read(tmp_path).version, provenance.read(tmp_path).sha256) == ("2.1.0", None)
    monkeypatch.setattr(sources, "tfds_unavailable", lambda: "no download of dsprites, github.com is unreachable")
    with pytest.raises(FileNotFoundError, match=r"used dSprites from tfds .*github\.com is unreachable.*--data="):
        provenance.load(tmp_path)
    monkeypatch.setattr(sources, "tfds_unavailable", lambda: None)
    monkeypatch.setattr(sources, "load_dsprites", lambda source: small(f"tfds:{tmp_path}/dsprites/2.0.0"))
    with pytest.raises(ValueError, match=r"tfds now gives tfds \(version 2\.0\.0"):
        provenance.load(tmp_path)
    monkeypatch.setattr(sources, "load_dsprites", lambda source: small(f"tfds:{tmp_path}/elsewhere/2.1.0"))
    assert len(provenance.load(tmp_path)) == 5, "the same version in another folder is the same data"


def test_another_record_keeps_the_earlier_one_in_the_history(tmp_path, capsys):
    first, second = provenance.describe(small("a")), provenance.describe(small("a", n=6))
    provenance.record(tmp_path, first)
    provenance.record(tmp_path, first)
    assert "changed" not in capsys.readouterr().out
    provenance.record(tmp_path, second)
    assert "data changed from a (sha256" in capsys.readouterr().out
    record = json.loads((tmp_path / provenance.FILE).read_text())
    assert record["images"] == 6 and [h["images"] for h in record["history"]] == [5]
    assert provenance.read(tmp_path) == second


def test_a_workdir_without_data_json_loads_its_config_source_with_one_notice(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sources, "load_dsprites", lambda source: small(f"loaded {source}"))
    assert provenance.load(tmp_path, default="render").source == "loaded render"
    assert provenance.load(tmp_path, default="render").source == "loaded render"
    assert capsys.readouterr().out.count("has no data.json") == 1


def test_a_broken_data_json_is_one_clear_error(tmp_path):
    (tmp_path / provenance.FILE).write_text("{not json")
    with pytest.raises(ValueError, match=r"data\.json is not a magajax data record .*--data="):
        provenance.read(tmp_path)
    (tmp_path / provenance.FILE).write_text(json.dumps({"kind": "floppy", "source": "x", "images": 1}))
    with pytest.raises(ValueError, match="unknown data provenance kind 'floppy'"):
        provenance.read(tmp_path)
