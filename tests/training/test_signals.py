"""SIGTERM and SIGINT stop a run after the current step with a checkpoint, one line and exit code 128 + signum."""

import json
import os
import signal
import subprocess
import sys
import threading

import pytest

from magajax import config as cfg
from magajax.training import loop as run
from magajax.training import workdir as wd
from magajax.training.signals import StopRequests
from tests.training.helpers import REPO, checkpoint_steps, start_run, wait_for_step

LONG = {"train.steps": 100_000, "log_every": 1, "checkpoint_every": 100_000}


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("jax-cache")


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_saves_a_checkpoint_and_the_rerun_resumes_from_it(tmp_path, cache_dir, signum, tiny_config,
                                                                 small_dsprites, capsys):
    proc = start_run(tmp_path, LONG, cache_dir)
    wait_for_step(proc, tmp_path, 3)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signum, err
    lines = err.splitlines()
    assert len(lines) == 1, err
    name = signal.Signals(signum).name
    reached = wd.read_metrics(tmp_path)[-1]["step"]
    saved = tmp_path / "checkpoints" / str(reached)
    expected = f"interrupted by {name} at step {reached}: saved checkpoint {saved}; rerun the same command to resume"
    assert lines[0] == expected
    assert checkpoint_steps(tmp_path) == [reached]

    resumed = run.train(cfg.override(tiny_config, dict(LONG, **{"train.steps": reached + 2})), tmp_path,
                        data=small_dsprites, progress=False)
    assert f"resuming {tmp_path} from step {reached}" in capsys.readouterr().out
    assert int(resumed.step) == reached + 2
    assert [r["step"] for r in wd.read_metrics(tmp_path)] == list(range(1, reached + 3))


def test_a_second_sigint_exits_at_once():
    script = (
        "import os, signal, time\n"
        "from magajax.training.signals import StopRequests\n"
        "with StopRequests() as stops:\n"
        "    os.kill(os.getpid(), signal.SIGINT)\n"
        "    print(stops.name, flush=True)\n"
        "    os.kill(os.getpid(), signal.SIGINT)\n"
        "    time.sleep(30)\n"
        "    print('still running')\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 128 + signal.SIGINT
    assert done.stdout == "SIGINT\n"
    assert len(done.stderr.splitlines()) == 1 and "second SIGINT: stopped at once without saving" in done.stderr


def test_handlers_are_recorded_then_restored():
    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    with StopRequests() as stops:
        assert stops.signum is None
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGTERM)  # a repeated SIGTERM changes nothing
        assert stops.name == "SIGTERM"
    assert {s: signal.getsignal(s) for s in before} == before


def test_outside_the_main_thread_nothing_is_installed():
    before = signal.getsignal(signal.SIGTERM)
    seen = []

    def body():
        with StopRequests() as stops:
            seen.append(signal.getsignal(signal.SIGTERM) is before and not stops.previous)

    thread = threading.Thread(target=body)
    thread.start()
    thread.join()
    assert seen == [True]


def test_train_restores_the_handlers(tmp_path, tiny_config, small_dsprites):
    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    run.train(cfg.override(tiny_config, {"train.steps": 2}), tmp_path, data=small_dsprites, progress=False)
    assert {s: signal.getsignal(s) for s in before} == before
    assert json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1])["step"] == 2
