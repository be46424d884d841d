"""The workdir holds one run: config checks, allowed changes recorded, overwrite moves aside, metrics records."""

import json
import os

import pytest
from etils import epath

from magajax import config as cfg
from magajax.training import workdir as wd
from magajax.training.metrics import JsonlWriter


def write_metrics(workdir, steps):
    writer = JsonlWriter(workdir / "metrics.jsonl")
    for s in steps:
        writer.write_scalars(s, {"loss": float(s)})
    writer.close()


def test_prepare_writes_and_accepts_the_same_config(tmp_path):
    c = cfg.preset("quick")
    wd.prepare(tmp_path, c)
    assert wd.read_config(tmp_path) == c
    wd.prepare(tmp_path, c)  # same run: fine
    assert wd.read_changes(tmp_path) == []


def test_resumable_changes_are_allowed_and_recorded(tmp_path, capsys):
    c = cfg.preset("quick")
    wd.prepare(tmp_path, c)
    (tmp_path / "checkpoints" / "250").mkdir(parents=True)
    (tmp_path / "checkpoints" / "500.orbax-checkpoint-tmp-1").mkdir()  # unfinished: not a checkpoint
    changed = cfg.override(c, {"train.lr": 1e-4, "train.clip": 1.0, "train.steps": 5000, "log_every": 5,
                               "checkpoint_every": 100, "keep": 5})
    wd.prepare(tmp_path, changed)
    assert wd.read_config(tmp_path) == changed
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1 and "train.lr 0.001 -> 0.0001" in out[0] and "at step 250" in out[0]
    records = wd.read_changes(tmp_path)
    assert {(r["step"], r["field"], r["old"], r["new"]) for r in records} == {
        (250, "train.checkpoint_every", 250, 100), (250, "train.clip", 0.0, 1.0), (250, "train.keep", 3, 5),
        (250, "train.log_every", 10, 5), (250, "train.lr", 1e-3, 1e-4), (250, "train.steps", 1000, 5000),
    }
    assert all(r["time"] for r in records)


def test_prepare_refuses_another_config_and_overwrite_keeps_the_old_run(tmp_path):
    c = cfg.preset("quick")
    wd.prepare(tmp_path, c)
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "marker").write_text("user data")
    other = cfg.override(c, {"hidden": 64, "train.lr": 1e-4})
    with pytest.raises(ValueError, match=r"different config \(model.hidden: 32 -> 64\); a resumed run may change only "
                                         r"data.source, model.conv, model.scan_steps, .*--overwrite"):
        wd.prepare(tmp_path, other)
    assert wd.read_config(tmp_path) == c and wd.read_changes(tmp_path) == []
    wd.prepare(tmp_path, other, overwrite=True)
    assert wd.read_config(tmp_path) == other
    moved = list(tmp_path.glob("previous-*/checkpoints/marker"))
    assert len(moved) == 1 and moved[0].read_text() == "user data"


def test_overwrite_starts_afresh_even_with_the_same_config(tmp_path):
    c = cfg.preset("quick")
    wd.prepare(tmp_path, c)
    (tmp_path / "corrupt").mkdir()
    (tmp_path / "errors.log").write_text("detail")
    wd.prepare(tmp_path, c, overwrite=True)
    (previous,) = tmp_path.glob("previous-*")
    assert sorted(p.name for p in previous.iterdir()) == ["config.json", "corrupt", "errors.log", "figures"]
    assert not (tmp_path / "corrupt").exists() and wd.read_config(tmp_path) == c


def test_read_config_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"config\.json not found"):
        wd.read_config(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="not a valid magajax config"):
        wd.read_config(tmp_path)
    bad = cfg.preset("quick").to_dict()
    bad["train"]["batch_size"] = 0
    (tmp_path / "config.json").write_text(json.dumps(bad))
    with pytest.raises(ValueError, match=r"config\.json is not a valid magajax config \(train\.batch_size must be"):
        wd.read_config(tmp_path)


def test_truncate_keeps_each_step_once_up_to_the_checkpoint(tmp_path):
    write_metrics(tmp_path, [1, 2, 3, 4, 5, 2, 3])  # a run killed before its first checkpoint, then rerun
    assert [r["step"] for r in wd.read_metrics(tmp_path)] == [1, 2, 3, 4, 5, 2, 3]
    wd.truncate_metrics(tmp_path, 3)
    assert [r["step"] for r in wd.read_metrics(tmp_path)] == [1, 2, 3]
    wd.truncate_metrics(tmp_path, 0)
    assert wd.read_metrics(tmp_path) == [] and not list(tmp_path.glob("*.tmp"))


def test_a_torn_last_line_is_dropped_with_a_warning(tmp_path, capsys):
    write_metrics(tmp_path, [1, 2])
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"step": 3, "loss": 1.')
    assert [r["step"] for r in wd.read_metrics(tmp_path)] == [1, 2]
    assert f"dropped the torn last line 3 of {tmp_path / 'metrics.jsonl'}" in capsys.readouterr().err
    wd.truncate_metrics(tmp_path, 5)
    assert (tmp_path / "metrics.jsonl").read_text().endswith("}\n")
    assert [r["step"] for r in wd.read_metrics(tmp_path)] == [1, 2]


def test_a_bad_line_before_the_last_is_an_error_naming_it(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text(json.dumps({"step": 1}) + "\n" + "garbage\n" + json.dumps({"step": 2}) + "\n")
    with pytest.raises(ValueError, match=rf"{path} line 2 is not a metrics record .*fix or delete that line"):
        wd.read_metrics(tmp_path)


def test_paths_and_whole_file_writes(tmp_path):
    assert wd.is_local(tmp_path) and wd.is_local("runs/x") and not wd.is_local("gs://bucket/run")
    assert wd.absolute("gs://bucket/run") == epath.Path("gs://bucket/run")  # a URI is left as it is
    assert wd.absolute("runs/x") == epath.Path(os.getcwd()) / "runs" / "x"
    path = epath.Path(tmp_path) / "file.txt"
    wd.write_atomic(path, "one\n")
    wd.write_atomic(path, "two\n")
    wd.append_text(path, "three\n")
    assert path.read_text() == "two\nthree\n" and sorted(p.name for p in tmp_path.iterdir()) == ["file.txt"]


def test_a_file_for_a_bucket_is_written_locally_then_copied(tmp_path, monkeypatch):
    path = epath.Path(tmp_path) / "figures" / "loss.png"
    path.parent.mkdir()
    with wd.written_locally(path) as local:
        assert local == path
    monkeypatch.setattr(wd, "is_local", lambda p: False)  # as for gs://...: written elsewhere, then copied
    with wd.written_locally(path) as local:
        assert local != path and local.name == "loss.png"
        local.write_bytes(b"png")
    assert path.read_bytes() == b"png" and not local.exists()


def test_a_run_saved_before_a_field_existed_resumes(tmp_path):
    """A config.json without the fields added since (the official options, the VAE choice, ...) reads them
    as their defaults, which is how the run was trained, so the same command resumes it."""
    config = cfg.preset("quick")
    saved = config.to_dict()
    for section, name in (("model", "invconv"), ("model", "vae"), ("train", "latent"), ("train", "steps_per_call")):
        del saved[section][name]
    (tmp_path / wd.CONFIG).write_text(json.dumps(saved))
    wd.prepare(tmp_path, config)
    assert wd.read_config(tmp_path) == config
    assert not (tmp_path / "changes.jsonl").exists()


def test_the_vae_architecture_does_not_hold_back_a_maganet_run(tmp_path):
    old = cfg.override(cfg.preset("blog"), {"model.vae": "burgess"})
    wd.prepare(tmp_path, old)
    wd.prepare(tmp_path, cfg.preset("blog"))  # MAGANet: model.vae is not part of its model
    vae = tmp_path / "vae"
    wd.prepare(vae, cfg.override(old, {"kind": "vae"}))
    with pytest.raises(ValueError, match=r"model\.vae: 'burgess' -> 'blog'"):
        wd.prepare(vae, cfg.override(cfg.preset("blog"), {"kind": "vae"}))
