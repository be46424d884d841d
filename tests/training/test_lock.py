"""One run per workdir: a live holder blocks at once, naming its PID; a killed holder never blocks."""

import os
import signal
import subprocess
import sys
import time

import pytest

from magajax import config as cfg
from magajax.training import loop as run
from magajax.training.lock import WorkdirInUse, WorkdirLock
from tests.training.helpers import REPO

HOLD = (
    "import sys, time\n"
    "from magajax.training.lock import WorkdirLock\n"
    "WorkdirLock(sys.argv[1]).acquire()\n"
    "print('locked', flush=True)\n"
    "time.sleep(120)\n"
)


@pytest.fixture
def holder(tmp_path):
    """A process holding tmp_path's lock, killed with SIGKILL at the end."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)], cwd=REPO, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == "locked\n"
    yield proc
    proc.kill()
    proc.wait()


def test_a_live_holder_blocks_and_a_killed_one_does_not(tmp_path, holder):
    with pytest.raises(WorkdirInUse, match=rf"workdir {tmp_path} is in use by process {holder.pid}; .*--workdir"):
        WorkdirLock(tmp_path).acquire()
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    with WorkdirLock(tmp_path) as lock:
        assert lock.fd is not None
        assert (tmp_path / ".lock").read_text() == f"{os.getpid()}\n"


def test_train_on_a_workdir_in_use_fails_before_loading_data(tmp_path, holder, tiny_config):
    config = cfg.override(tiny_config, {"data.source": f"file:{tmp_path}/missing.npz"})
    start = time.perf_counter()
    with pytest.raises(WorkdirInUse, match=f"in use by process {holder.pid}"):
        run.train(config, tmp_path, progress=False)
    assert time.perf_counter() - start < 5
    assert not (tmp_path / "config.json").exists()


def test_the_lock_is_exclusive_within_a_process_and_released(tmp_path):
    first = WorkdirLock(tmp_path).acquire()
    with pytest.raises(WorkdirInUse):
        WorkdirLock(tmp_path).acquire()
    first.release()
    WorkdirLock(tmp_path).acquire().release()
