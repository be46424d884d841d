"""The workdir holds one run: config checks, overwrite moves aside, metrics round trip."""

import pytest

from magajax import config as cfg
from magajax.training import workdir as wd


def test_prepare_writes_and_accepts_the_same_config(tmp_path):
    c = cfg.preset("quick")
    wd.prepare(tmp_path, c)
    assert wd.read_config(tmp_path) == c
    wd.prepare(tmp_path, c)  # same run: fine
    wd.prepare(tmp_path, cfg.override(c, {"train.steps": 5000}))  # extending a run: fine


def test_prepare_refuses_another_config_and_overwrite_keeps_the_old_run(tmp_path):
    c = cfg.preset("quick")
    wd.prepare(tmp_path, c)
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "marker").write_text("user data")
    other = cfg.override(c, {"hidden": 64})
    with pytest.raises(ValueError, match=r"different config \(model.hidden: 32 -> 64\).*--overwrite"):
        wd.prepare(tmp_path, other)
    wd.prepare(tmp_path, other, overwrite=True)
    assert wd.read_config(tmp_path) == other
    moved = list(tmp_path.glob("previous-*/checkpoints/marker"))
    assert len(moved) == 1 and moved[0].read_text() == "user data"


def test_read_config_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json not found"):
        wd.read_config(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="not a valid magajax config"):
        wd.read_config(tmp_path)


def test_metrics_append_read_truncate(tmp_path):
    wd.append_metrics(tmp_path, [{"step": s, "loss": float(s)} for s in range(1, 6)])
    assert [r["step"] for r in wd.read_metrics(tmp_path)] == [1, 2, 3, 4, 5]
    wd.truncate_metrics(tmp_path, 3)
    assert [r["step"] for r in wd.read_metrics(tmp_path)] == [1, 2, 3]
