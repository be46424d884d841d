"""Metric writers: metrics.jsonl, TensorBoard events (read back from the event file), fan-out."""

import sys

import pytest

from magajax import config as cfg
from magajax.training import loop as run
from magajax.training import workdir as wd
from magajax.training.metrics import JsonlWriter, MultiWriter, TensorBoardWriter, open_writer
from tests.training.helpers import read_events


def test_jsonl_writer_round_trips_through_read_metrics(tmp_path):
    writer = JsonlWriter(tmp_path / "metrics.jsonl")
    writer.write_scalars(2, {"loss": 3.5, "recon": 1.25})
    writer.flush()
    assert wd.read_metrics(tmp_path) == [{"step": 2, "loss": 3.5, "recon": 1.25}]  # flushed: readable while open
    writer.write_scalars(4, {"loss": 2.5})
    writer.close()
    assert [r["step"] for r in wd.read_metrics(tmp_path)] == [2, 4]


def test_tensorboard_writer_writes_scalar_events(tmp_path):
    writer = TensorBoardWriter(tmp_path)
    writer.write_scalars(3, {"loss": 2.0, "recon": 1.5})
    writer.close()
    assert sorted(read_events(tmp_path)) == [("loss", 3, 2.0), ("recon", 3, 1.5)]


def test_missing_tensorboardx_is_a_clear_error(tmp_path, monkeypatch, tiny_config):
    monkeypatch.setitem(sys.modules, "tensorboardX", None)
    with pytest.raises(ImportError, match="pip install tensorboardX"):
        TensorBoardWriter(tmp_path)
    config = cfg.override(tiny_config, {"data.source": f"file:{tmp_path}/missing.npz"})
    with pytest.raises(ImportError, match="pip install tensorboardX"):  # before loading data
        run.train(config, tmp_path / "run", progress=False, tensorboard=True)


def test_multi_writer_fans_out_and_open_writer_builds_the_runs(tmp_path):
    writer = open_writer(tmp_path, start=0, tensorboard=True)
    assert isinstance(writer, MultiWriter) and len(writer.writers) == 2
    writer.write_scalars(1, {"loss": 4.0})
    writer.close()
    assert wd.read_metrics(tmp_path) == [{"step": 1, "loss": 4.0}]
    assert read_events(tmp_path / "tensorboard") == [("loss", 1, 4.0)]
    (tmp_path / "b").mkdir()
    only_jsonl = open_writer(tmp_path / "b")
    assert len(only_jsonl.writers) == 1
    only_jsonl.close()
    MultiWriter([]).close()
