"""Run-level faults: a kill during the first checkpoint, leftovers of a killed run, a second run on the same
workdir. Each must leave a run that resumes with every metrics step logged once and no checkpoint lost."""

import json
import signal
import time

import pytest

from magajax import config as cfg
from magajax.training import loop as run
from magajax.training import workdir as wd
from magajax.training.checkpoint import CheckpointError
from magajax.training.lock import WorkdirInUse
from tests.training.helpers import checkpoint_steps, start_run, wait_for_step

EVERY_STEP = {"train.steps": 100_000, "log_every": 1, "checkpoint_every": 3}


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("jax-cache")


@pytest.mark.slow
def test_kill_during_the_first_checkpoint_resumes_with_each_step_once(tmp_path, cache_dir, tiny_config,
                                                                      small_dsprites):
    proc = start_run(tmp_path, EVERY_STEP, cache_dir)
    wait_for_step(proc, tmp_path, 3)  # step 3's record is flushed just before its checkpoint starts
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    state = run.train(cfg.override(tiny_config, dict(EVERY_STEP, **{"train.steps": 7})), tmp_path,
                      data=small_dsprites, progress=False)
    assert int(state.step) == 7
    assert [r["step"] for r in wd.read_metrics(tmp_path)] == list(range(1, 8))
    assert checkpoint_steps(tmp_path)[-2:] == [6, 7]


def test_leftovers_of_a_killed_run_are_cleaned_on_restart(tmp_path, tiny_config, small_dsprites, capsys):
    config = cfg.override(tiny_config, {"train.steps": 4})
    wd.prepare(tmp_path, config)
    unfinished = tmp_path / "checkpoints" / "2.orbax-checkpoint-tmp-1234567"
    unfinished.mkdir(parents=True)
    (unfinished / "partial").write_bytes(b"half a checkpoint")
    lines = [json.dumps({"step": s, "loss": 1.0}) for s in (2, 4, 2)]  # killed, rerun, killed again
    (tmp_path / "metrics.jsonl").write_text("\n".join(lines) + '\n{"step": 4, "lo')
    run.train(config, tmp_path, data=small_dsprites, progress=False)
    assert "dropped the torn last line 4" in capsys.readouterr().err
    records = wd.read_metrics(tmp_path)
    assert [r["step"] for r in records] == [2, 4] and all(r["loss"] != 1.0 for r in records)
    assert checkpoint_steps(tmp_path) == [2, 4]


def test_a_bad_metrics_line_is_one_error_naming_file_and_line(tmp_path, tiny_config, small_dsprites):
    wd.prepare(tmp_path, tiny_config)
    (tmp_path / "metrics.jsonl").write_text('{"step": 2}\n{"step": \n{"step": 4}\n')
    with pytest.raises(ValueError, match=r"metrics\.jsonl line 2 is not a metrics record") as failure:
        run.train(tiny_config, tmp_path, data=small_dsprites, progress=False)
    assert "\n" not in str(failure.value)


@pytest.mark.slow
def test_a_second_run_fails_at_once_and_leaves_the_first_intact(tmp_path, cache_dir, tiny_config, small_dsprites):
    first = start_run(tmp_path, EVERY_STEP, cache_dir)
    wait_for_step(first, tmp_path, 1)
    start = time.perf_counter()
    with pytest.raises(WorkdirInUse, match=f"workdir {tmp_path} is in use by process {first.pid}"):
        run.train(cfg.override(tiny_config, EVERY_STEP), tmp_path, data=small_dsprites, progress=False)
    assert time.perf_counter() - start < 5
    wait_for_step(first, tmp_path, 4)
    first.send_signal(signal.SIGTERM)
    first.communicate(timeout=60)
    steps = [r["step"] for r in wd.read_metrics(tmp_path)]
    assert steps == list(range(1, steps[-1] + 1))
    assert checkpoint_steps(tmp_path)[-1] == steps[-1]


def test_a_run_whose_checkpoints_were_all_damaged_never_restarts_silently(tmp_path, tiny_config, small_dsprites):
    config = cfg.override(tiny_config, {"train.steps": 2, "checkpoint_every": 1})
    run.train(config, tmp_path, data=small_dsprites, progress=False)
    for step_dir in (tmp_path / "checkpoints").iterdir():
        if step_dir.name.isdigit():
            for chunk in step_dir.rglob("*"):
                if chunk.is_file() and chunk.parent.name == "d":
                    chunk.write_bytes(b"\x00garbage")
    longer = cfg.override(config, {"train.steps": 4})
    with pytest.raises(CheckpointError, match=r"no checkpoint .* could be restored"):
        run.train(longer, tmp_path, data=small_dsprites, progress=False)
    with pytest.raises(CheckpointError, match=r"moved to .*corrupt; not restarting from step 0 silently.*--overwrite"):
        run.train(longer, tmp_path, data=small_dsprites, progress=False)
    assert [r["step"] for r in wd.read_metrics(tmp_path)] == [1, 2], "the refused reruns log nothing"
    state = run.train(longer, tmp_path, data=small_dsprites, progress=False, overwrite=True)
    assert int(state.step) == 4 and [r["step"] for r in wd.read_metrics(tmp_path)] == [1, 2, 3, 4]
    (previous,) = tmp_path.glob("previous-*")
    assert len(list((previous / "corrupt").iterdir())) == 2 and (previous / "errors.log").is_file()
