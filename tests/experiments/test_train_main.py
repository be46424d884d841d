"""`python -m experiments.train`'s main(): what it passes to training, how it reports errors and the end."""

from __future__ import annotations

import json
from pathlib import Path

import jax
import pytest

from experiments import train
from magajax.training import loop


def fake_train(error: Exception | None = None, metrics: dict | None = None, loss_png: bool = False):
    """A stand-in for loop.train that records its call, writes what a run would, or raises `error`."""
    calls = []

    def run(config, workdir, **kwargs):
        calls.append((config, str(workdir), kwargs))
        if error is not None:
            raise error
        workdir_path = Path(workdir)
        workdir_path.mkdir(parents=True, exist_ok=True)
        if metrics is not None:
            (workdir_path / "metrics.jsonl").write_text(json.dumps(metrics) + "\n")
        if loss_png:
            (workdir_path / "figures").mkdir(exist_ok=True)
            (workdir_path / "figures" / "loss.png").write_bytes(b"png")

    run.calls = calls
    return run


def test_flags_reach_the_training_loop(tmp_path, monkeypatch, capsys):
    fake = fake_train(metrics={"step": 7, "recon": 12.345}, loss_png=True)
    monkeypatch.setattr(loop, "train", fake)
    workdir = tmp_path / "run"
    assert train.main(["--preset=quick", "--steps=7", f"--workdir={workdir}", "--tensorboard", "--no-progress",
                       "--overwrite"]) == 0
    [(config, where, kwargs)] = fake.calls
    assert config.train.steps == 7 and config.preset == "quick" and where == str(workdir)
    assert kwargs == {"overwrite": True, "progress": False, "tensorboard": True}
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("backend cpu: ") and out[0].endswith("process 0 of 1"), "the start-up line comes first"
    assert out[-1] == (
        f"done: {workdir} at step 7, recon 12.35 nats/image, loss curve in {workdir / 'figures' / 'loss.png'}")


def test_done_line_names_only_files_that_exist(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(loop, "train", fake_train(metrics={"step": 3}))
    assert train.main([f"--workdir={tmp_path}"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == f"done: {tmp_path} at step 3"


def test_default_workdir_is_named_after_model_and_split(monkeypatch):
    fake = fake_train(error=ValueError("stop"))
    monkeypatch.setattr(loop, "train", fake)
    train.main(["--model=vae", "--split=shape=ellipse & x>=16"])
    assert fake.calls[0][1] == "runs/vae-shape_ellipse_x_16"


@pytest.mark.parametrize("error", [ValueError("bad\nthing"), FileNotFoundError("no such run"),
                                   FloatingPointError("loss is nan at step 3")])
def test_errors_are_one_line_and_status_2(tmp_path, monkeypatch, capsys, error):
    monkeypatch.setattr(loop, "train", fake_train(error=error))
    assert train.main([f"--workdir={tmp_path}"]) == 2
    err = capsys.readouterr().err
    assert err == f"error: {' '.join(str(error).split())}\n"


def test_interrupted_run_prints_its_message_and_exit_code(tmp_path, monkeypatch, capsys):
    message = "stopped by SIGTERM at step 5 after saving it; run the same command to resume"
    monkeypatch.setattr(loop, "train", fake_train(error=loop.Interrupted(message, 143)))
    assert train.main([f"--workdir={tmp_path}"]) == 143
    assert message in capsys.readouterr().err


def test_distributed_flags_reach_jax_distributed_initialize(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(jax.distributed, "initialize", lambda **kwargs: calls.append(kwargs))
    monkeypatch.setattr(loop, "train", fake_train())
    assert train.main([f"--workdir={tmp_path}", "--distributed"]) == 0
    assert train.main([f"--workdir={tmp_path}"]) == 0
    assert train.main([f"--workdir={tmp_path}", "--distributed", "--coordinator-address=10.0.0.1:1234",
                       "--num-processes=2", "--process-id=1"]) == 0
    assert calls == [{}, {"coordinator_address": "10.0.0.1:1234", "num_processes": 2, "process_id": 1}]


@pytest.mark.parametrize("flags, message", [
    (["--coordinator-address=h:1", "--num-processes=2", "--process-id=0"],
     "--coordinator-address, --num-processes, --process-id: only for a multi-host run; add --distributed"),
    (["--process-id=0"], "--process-id: only for a multi-host run; add --distributed"),
    (["--distributed", "--coordinator-address=h:1"],
     "--distributed with --coordinator-address needs --num-processes, --process-id too"),
    (["--distributed", "--num-processes=2", "--process-id=0"],
     "--distributed with --num-processes, --process-id needs --coordinator-address too"),
    (["--distributed", "--coordinator-address=h", "--num-processes=2", "--process-id=0"],
     "--coordinator-address 'h' is not HOST:PORT"),
    (["--distributed", "--coordinator-address=h:1", "--num-processes=2", "--process-id=2"],
     "--process-id 2 must be one of 0 .. 1 (--num-processes 2)"),
    (["--distributed", "--coordinator-address=h:1", "--num-processes=0", "--process-id=0"],
     "--num-processes 0 must be at least 1"),
])
def test_distributed_flags_that_do_not_go_together_stop_before_any_work(tmp_path, monkeypatch, capsys, flags,
                                                                         message):
    calls = []
    monkeypatch.setattr(jax.distributed, "initialize", lambda **kwargs: calls.append(kwargs))
    fake = fake_train()
    monkeypatch.setattr(loop, "train", fake)
    with pytest.raises(SystemExit) as exit_:
        train.main([f"--workdir={tmp_path}", *flags])
    assert exit_.value.code == 2 and calls == [] and fake.calls == []
    err = capsys.readouterr().err
    assert err.startswith(f"error: {message}") and err.count("\n") == 1, err
