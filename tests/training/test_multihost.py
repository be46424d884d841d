"""Multi-host training with two real processes on this machine, joined by jax.distributed over the CPU
(gloo collectives), each with 4 simulated devices: it trains as one process with 8 devices does,
process 0 alone writes and prints, a stop request that reaches one process stops both at the same
step, and an error on either process stops the other too, with its message."""

import os
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from magajax.training import hosts
from magajax.training import workdir as wd
from magajax.training.lock import WorkdirInUse
from tests.helpers import tiny_config
from tests.training.helpers import REPO, SUBSET, checkpoint_steps

JOIN = textwrap.dedent("""
    import sys
    import jax

    processes, process_id, port = (int(arg) for arg in sys.argv[1:4])
    workdir, out = sys.argv[4:6]
    if processes > 1:
        jax.distributed.initialize(f"localhost:{port}", num_processes=processes, process_id=process_id)
    assert (jax.device_count(), jax.local_device_count(), jax.process_index()) == (8, 8 // processes, process_id)
""")

TRAIN = textwrap.dedent("""
    import os
    import signal
    import optax
    from magajax import config as cfg
    from magajax.training import loop
    from magajax.training import step as train_step
    from magajax.training.checkpoint import named_leaves
    from tests import helpers

    config = helpers.tiny_config()  # 4 steps, logged and saved every 2
    state = loop.train(config, workdir, data=data)
    final = {"variables": state.variables, "mu": optax.tree_utils.tree_get(state.opt_state, "mu")}
    np.savez(out, **named_leaves(jax.device_get(final)))
    if processes > 1:  # resume for 4 more steps; a stop request reaches process 1 alone, after step 5
        if process_id == 1:
            make_train_step = train_step.make_train_step

            def signalling(*args):
                step = make_train_step(*args)

                def run(state, key, data):
                    state, metrics = step(state, key, data)
                    if int(state.step) == 5:
                        os.kill(os.getpid(), signal.SIGTERM)
                    return state, metrics
                return run
            train_step.make_train_step = signalling
        try:
            loop.train(cfg.override(config, {"train.steps": 8}), workdir, data=data)
        except loop.Interrupted as e:
            print(f"stopped with {e.exit_code}", flush=True)
        try:
            loop.train(cfg.override(config, {"hidden": 16}), workdir, data=data)
        except ValueError as e:
            print(f"refused: {e}", flush=True)
        try:  # process 1 does not see process 0's workdir
            loop.train(cfg.override(config, {"train.steps": 8}), workdir + "-elsewhere" * process_id, data=data)
        except OSError as e:
            print(f"not shared: {e}", flush=True)
""")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def start(processes: int, index: int, port: int, workdir, out, cache) -> subprocess.Popen:
    """One process of a run of `processes` processes with 8 devices in all."""
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=f"--xla_force_host_platform_device_count={8 // processes}",
               JAX_COMPILATION_CACHE_DIR=str(cache), JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
               JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0", PYTHONWARNINGS="ignore")
    args = [str(processes), str(index), str(port), str(workdir), str(out)]
    return subprocess.Popen([sys.executable, "-c", JOIN + SUBSET + TRAIN, *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(runs: list[subprocess.Popen], timeout: float) -> list[tuple[str, str]]:
    """(stdout, stderr) of each run once all have ended; kills them all if one fails or they overrun."""
    try:
        outputs = [run.communicate(timeout=timeout) for run in runs]
    except subprocess.TimeoutExpired:
        for run in runs:
            run.kill()
        raise AssertionError(f"the runs did not end within {timeout} s") from None
    for run, (out, err) in zip(runs, outputs):
        assert run.returncode == 0, f"{run.args[3:5]} ended with {run.returncode}:\n{out[-2000:]}\n{err[-4000:]}"
    return outputs


@pytest.mark.slow
def test_two_processes_train_as_one_with_all_their_devices(tmp_path):
    port, shared = free_port(), tmp_path / "shared"
    pair = [start(2, i, port, shared, tmp_path / f"process{i}.npz", tmp_path / "cache") for i in (0, 1)]
    alone = start(1, 0, 0, tmp_path / "alone", tmp_path / "alone.npz", tmp_path / "cache")
    (out0, err0), (out1, err1), _ = finish([*pair, alone], timeout=300)

    # Process 0 alone prints, logs each step once and writes the checksums; both saved the checkpoints.
    assert f"resuming {shared} from step 4" in out0 and "changed train.steps 4 -> 8" in out0
    assert "maganet element" in err0  # the progress bar
    for line in ("resuming", "changed", "maganet element", "moved"):
        assert line not in out1 + err1, f"process 1 printed {line!r}"
    assert [r["step"] for r in wd.read_metrics(shared)] == [2, 4, 6]
    assert checkpoint_steps(shared) == [2, 4, 6]
    assert all((shared / "checkpoints" / str(s) / "checksums.json").is_file() for s in (2, 4, 6))
    assert (shared / "figures" / "loss.png").stat().st_size > 0

    # SIGTERM reached process 1 alone after step 5: both stopped at the next logging step, 6, saving it.
    assert "stopped with 143" in out0 and "stopped with 143" in out1
    assert "interrupted by SIGTERM at step 6" in err0 and "interrupted" not in err1

    # A config process 0 refuses stops process 1 too, with process 0's reason.
    assert "refused:" in out0 and "different config (model.hidden: 8 -> 16)" in out0
    assert "refused: process 0 failed to load the data and prepare the workdir: " in out1
    assert "different config (model.hidden: 8 -> 16)" in out1
    # A workdir process 1 does not see stops process 0 too.
    assert f"not shared: process 1 failed to find the workdir prepared by process 0: {shared}-elsewhere" in out0
    assert "the processes must share the workdir" in out0 and "not shared: " in out1

    p0, p1, one = (np.load(tmp_path / f"{name}.npz") for name in ("process0", "process1", "alone"))
    assert sorted(p0) == sorted(one) and any(name.startswith("mu.") for name in one)
    for name in one:
        np.testing.assert_array_equal(p0[name], p1[name], err_msg=f"{name}: the processes hold different copies")
    # Not bit for bit: the cross-process all-reduce (gloo) sums the 8 devices' gradients in another
    # order than XLA's all-reduce within one process, so the gradients differ by float rounding
    # (relative 1e-7). The logged means of every term, the gradient norm included, and Adam's first
    # moment (0.1 * the running gradient, compared to its largest entry) agree to that rounding. Adam
    # moves each parameter by about lr * g / |g| per step: where g is zero up to rounding its sign
    # decides, so there the parameters agree only within 2 * lr per step.
    alone_records = wd.read_metrics(tmp_path / "alone")  # steps 2 and 4, the pair's first two
    for shared_record, alone_record in zip(wd.read_metrics(shared)[:2], alone_records, strict=True):
        for name, value in alone_record.items():
            if name != "pairs_per_s":
                assert np.isclose(shared_record[name], value, rtol=1e-5, atol=0), (shared_record, alone_record)
    moments = [name for name in one if name.startswith("mu.")]
    largest = max(float(np.abs(one[name]).max()) for name in moments)
    gap = max(float(np.abs(p0[name] - one[name]).max()) for name in moments) / largest
    assert gap < 1e-4, f"the gradients differ by {gap:.1e} relative to the largest"
    lr, steps = tiny_config().train.lr, tiny_config().train.steps
    gap = max(float(np.abs(p0[name] - one[name]).max()) for name in one if name.startswith("variables."))
    assert gap <= 2 * lr * steps, f"parameters differ by {gap:.2e} after {steps} steps"


@pytest.mark.parametrize("error, kind", [
    (ValueError("bad\nconfig"), ValueError), (WorkdirInUse("in use"), OSError),
    (FloatingPointError("nan"), FloatingPointError), (KeyError("x"), RuntimeError),
])
def test_a_failure_is_shared_as_its_kind_and_message(error, kind):
    assert hosts.decode(hosts.encode(None)) is None
    shared_kind, message = hosts.decode(hosts.encode(error))
    assert shared_kind is kind and message == " ".join(str(error).split())
    long = ValueError("x" + "é" * hosts.MESSAGE_BYTES)  # cut inside a two-byte character: decoded all the same
    assert hosts.decode(hosts.encode(long))[1].startswith("x" + "é" * (hosts.MESSAGE_BYTES // 2 - 1))


def test_one_process_runs_the_block_as_it_is():
    with pytest.raises(ValueError, match=r"^own$"), hosts.agreed("do it"):
        raise ValueError("own")
    with hosts.agreed("do it"):
        pass
    assert hosts.is_lead() and hosts.first_signal(None) is None and hosts.first_signal(15) == 15
