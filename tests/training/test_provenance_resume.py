"""A resumed run loads the data source it recorded in data.json, or stops saying which and how to override it."""

import json
import shutil

import numpy as np
import pytest

from magajax import config as cfg
from magajax.config import DEFAULT_PIVOT
from magajax.data import factors, provenance, render, sources
from magajax.training import loop as run
from magajax.training import workdir as wd
from tests.helpers import tiny_config


def write_official(path, indices: np.ndarray, compressed: bool = True) -> None:
    """A small .npz in the official layout (a color column before the five factors)."""
    classes = np.concatenate([np.zeros((len(indices), 1), np.int64), factors.index_to_classes(indices)], 1)
    values = np.concatenate([np.ones((len(indices), 1)), factors.classes_to_values(classes[:, 1:])], 1)
    save = np.savez_compressed if compressed else np.savez
    save(path, imgs=render.render_dsprites(indices), latents_classes=classes, latents_values=values)


def indices(seed: int) -> np.ndarray:
    """The pivot and 3,000 others: with seed 0 the images of the `small_dsprites` fixture, so the
    steps compiled for it are reused."""
    rng = np.random.default_rng(seed)
    return np.unique(np.concatenate([[DEFAULT_PIVOT], rng.choice(factors.NUM_IMAGES, 3000, replace=False)]))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny run of 2 steps on a small official file given as file:PATH: (config, workdir, file)."""
    root = tmp_path_factory.mktemp("provenance")
    path = root / "dsprites.npz"
    write_official(path, indices(0))
    config = cfg.override(tiny_config(), {"data.source": f"file:{path}", "train.steps": 2})
    run.train(config, root / "run", progress=False)
    return config, root / "run", path


@pytest.fixture
def copied(trained, tmp_path):
    """The trained run and its file, copied as if trained on the copy: (config of 4 steps, workdir, file)."""
    config, workdir, path = trained
    shutil.copytree(workdir, tmp_path / "run")
    shutil.copy(path, tmp_path / "dsprites.npz")
    source = f"file:{tmp_path / 'dsprites.npz'}"
    (tmp_path / "run" / wd.CONFIG).write_text(cfg.override(config, {"data.source": source}).to_json())
    record = json.loads((tmp_path / "run" / provenance.FILE).read_text())
    (tmp_path / "run" / provenance.FILE).write_text(json.dumps(dict(record, source=source)))
    return cfg.override(config, {"data.source": source, "train.steps": 4}), tmp_path / "run", tmp_path / "dsprites.npz"


def test_the_run_records_its_file_and_resumes_from_it(trained, copied, capsys):
    config, workdir, path = trained
    recorded = provenance.read(workdir)
    assert (recorded.kind, recorded.source, recorded.images) == ("file", f"file:{path}", 3001)
    assert recorded.sha256 == provenance.describe(sources.load_dsprites(f"file:{path}")).sha256
    config, workdir, path = copied
    capsys.readouterr()
    run.train(config, workdir, progress=False)
    assert f"reading {path}" in capsys.readouterr().out
    assert wd.latest_checkpoint_step(workdir) == 4
    assert [(c["field"], c["old"], c["new"]) for c in wd.read_changes(workdir)] == [("train.steps", 2, 4)]


def test_resuming_with_the_file_gone_names_it_and_the_flag(copied):
    config, workdir, path = copied
    path.unlink()
    with pytest.raises(FileNotFoundError) as info:
        run.train(config, workdir, progress=False)
    assert f"{path} is missing" in str(info.value) and "--data=" in str(info.value)
    assert wd.latest_checkpoint_step(workdir) == 2


def test_resuming_on_a_changed_file_is_an_error(copied):
    config, workdir, path = copied
    write_official(path, indices(1))
    with pytest.raises(ValueError, match=r"has changed \(its sha256 is now .*--data="):
        run.train(config, workdir, progress=False)
    assert wd.latest_checkpoint_step(workdir) == 2


def test_another_data_source_on_resuming_is_used_and_recorded(copied, tmp_path):
    config, workdir, path = copied
    other = tmp_path / "other.npz"
    write_official(other, indices(0), compressed=False)  # the same images in another file
    run.train(cfg.override(config, {"data.source": f"file:{other}"}), workdir, progress=False)
    assert [(c["field"], c["old"], c["new"], c["step"]) for c in wd.read_changes(workdir)] == [
        ("data.source", f"file:{path}", f"file:{other}", 2), ("train.steps", 2, 4, 2)]
    record = json.loads((workdir / provenance.FILE).read_text())
    assert record["source"] == f"file:{other}" and [h["source"] for h in record["history"]] == [f"file:{path}"]
    assert record["sha256"] != record["history"][0]["sha256"] and wd.latest_checkpoint_step(workdir) == 4


def test_an_old_workdir_without_data_json_resumes_from_its_config_with_a_notice(copied, capsys):
    config, workdir, path = copied
    (workdir / provenance.FILE).unlink()
    run.train(config, workdir, progress=False)
    assert "has no data.json" in capsys.readouterr().out
    assert provenance.read(workdir).source == f"file:{path}" and wd.latest_checkpoint_step(workdir) == 4
