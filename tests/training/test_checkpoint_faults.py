"""Damaged, mismatched and unreachable checkpoints: each is told apart, and none is silently discarded.

Damage (a flipped bit, garbled bytes, non-finite values) moves only that checkpoint aside and the
previous one is restored; a changed structure, a missing _METADATA or an I/O error raises a short
CheckpointError and moves nothing; the full detail goes to workdir/errors.log.
"""

import errno
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from magajax import config as cfg
from magajax.training import workdir as wd
from magajax.training.checkpoint import CHECKSUMS, CheckpointError, Checkpoints, load
from magajax.training.step import TrainState


def _state(seed: float, tx: optax.GradientTransformation | None = None) -> TrainState:
    rng = np.random.default_rng(int(seed))
    params = {"dense": {"kernel": jnp.asarray(rng.standard_normal((32, 32)), jnp.float32),
                        "bias": jnp.arange(2.0) + seed}}
    tx = tx or optax.adam(1e-3)
    return TrainState(step=jnp.asarray(int(seed), jnp.int32), variables=params, opt_state=tx.init(params))


def _equal(a, b) -> bool:
    return all(jax.tree.leaves(jax.tree.map(lambda x, y: bool(np.array_equal(x, y)), a, b)))


def _saved(root: Path, steps=(1, 2)) -> Path:
    ckpt = Checkpoints(root, keep=5)
    for s in steps:
        ckpt.save(s, _state(s))
    ckpt.close()
    return root / "checkpoints"


def _largest_chunk(step_dir: Path) -> Path:
    """The biggest array data file of a checkpoint: the one holding the (32, 32) kernels."""
    files = [f for f in step_dir.rglob("*") if f.is_file() and f.parent.name == "d"]
    return max(files, key=lambda f: f.stat().st_size)


def _snapshot(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if "errors.log" not in p.name)


def test_checksums_are_written_next_to_each_step_and_rotate_with_it(tmp_path):
    ckpt = Checkpoints(tmp_path, keep=2)
    for s in (1, 2, 3):
        ckpt.save(s, _state(s))
    ckpt.close()
    directory = tmp_path / "checkpoints"
    assert ckpt.steps() == [2, 3]
    assert sorted(p.name for p in directory.iterdir()) == ["2", "3"], "rotation must delete old steps whole"
    sums = json.loads((directory / "3" / CHECKSUMS).read_text())
    kernel = sums["leaves"]["variables.dense.kernel"]
    assert kernel["dtype"] == "float32" and kernel["shape"] == [32, 32] and len(kernel["sha256"]) == 64
    assert "opt_state.0.mu.dense.kernel" in sums["leaves"]


def test_changed_optimiser_structure_is_a_mismatch_not_corruption(tmp_path):
    directory = _saved(tmp_path)
    before = _snapshot(tmp_path)
    target = _state(0, optax.chain(optax.clip_by_global_norm(1.0), optax.adam(1e-3)))
    with pytest.raises(CheckpointError) as info:
        Checkpoints(tmp_path).restore(target)
    message = str(info.value)
    assert str(directory / "2") in message and "opt_state" in message and "saved" in message
    assert len(message.splitlines()) <= 4
    assert _snapshot(tmp_path) == before, "a mismatched checkpoint must not be moved"


def test_changed_shape_names_the_leaf(tmp_path):
    _saved(tmp_path)
    state = _state(0)
    wider = state.replace(variables={"dense": {"kernel": jnp.zeros((32, 16)), "bias": jnp.zeros(2)}})
    with pytest.raises(CheckpointError, match=r"variables\.dense\.kernel.*\(32, 32\).*\(32, 16\)"):
        Checkpoints(tmp_path).restore(wider)
    assert not (tmp_path / "corrupt").exists()


def test_deleted_metadata_raises_and_moves_nothing(tmp_path):
    directory = _saved(tmp_path)
    (directory / "2" / "default" / "_METADATA").unlink()
    before = _snapshot(tmp_path)
    with pytest.raises(CheckpointError, match="_METADATA"):
        Checkpoints(tmp_path).restore(_state(0))
    assert _snapshot(tmp_path) == before


def test_transient_io_error_is_retried_then_raised_without_moving(tmp_path):
    _saved(tmp_path)
    before = _snapshot(tmp_path)
    ckpt = Checkpoints(tmp_path)
    calls = []

    def failing(*args, **kwargs):
        calls.append(args)
        raise OSError(errno.EIO, "Input/output error")

    ckpt.manager.restore = failing
    with pytest.raises(CheckpointError, match="nothing was moved"):
        ckpt.restore(_state(0))
    assert len(calls) == 2, "an I/O error is retried once"
    assert _snapshot(tmp_path) == before
    assert "Input/output error" in (tmp_path / "errors.log").read_text()


def test_transient_io_error_that_clears_restores(tmp_path):
    _saved(tmp_path)
    ckpt = Checkpoints(tmp_path)
    real, calls = ckpt.manager.restore, []

    def once(*args, **kwargs):
        calls.append(args)
        if len(calls) == 1:
            raise OSError(errno.EIO, "Input/output error")
        return real(*args, **kwargs)

    ckpt.manager.restore = once
    state, step = ckpt.restore(_state(0))
    assert step == 2 and _equal(state, _state(2))


@pytest.mark.parametrize("damage", ["flip", "garble"])
def test_damaged_chunk_is_moved_aside_and_the_older_step_restored(tmp_path, damage, capsys):
    directory = _saved(tmp_path)
    chunk = _largest_chunk(directory / "2")
    data = bytearray(chunk.read_bytes())
    if damage == "flip":
        data[len(data) // 2] ^= 0x01
    else:
        data = bytearray(b"\x00garbage")
    chunk.write_bytes(bytes(data))
    state, step = Checkpoints(tmp_path).restore(_state(0))
    assert step == 1 and _equal(state, _state(1))
    aside = list((tmp_path / "corrupt").iterdir())
    assert len(aside) == 1 and aside[0].name.startswith("2-"), aside
    assert sorted(p.name for p in directory.iterdir()) == ["1"], "only the damaged checkpoint is moved"
    out = capsys.readouterr().out
    assert "step 2" in out and "errors.log" in out
    assert (tmp_path / "errors.log").read_text().strip()


def test_flipped_bit_is_a_checksum_mismatch(tmp_path):
    directory = _saved(tmp_path, steps=(1,))
    chunk = _largest_chunk(directory / "1")
    data = bytearray(chunk.read_bytes())
    data[len(data) // 2] ^= 0x01
    chunk.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="checksum") as info:
        Checkpoints(tmp_path).restore(_state(0))
    assert "--overwrite" in str(info.value)


def test_all_checkpoints_damaged_lists_each_and_names_overwrite(tmp_path):
    directory = _saved(tmp_path)
    for s in ("1", "2"):
        _largest_chunk(directory / s).write_bytes(b"\x00garbage")
    with pytest.raises(CheckpointError) as info:
        Checkpoints(tmp_path).restore(_state(0))
    message = str(info.value)
    assert "step 1" in message and "step 2" in message and "--overwrite" in message
    assert str(tmp_path / "errors.log") in message
    assert len(list((tmp_path / "corrupt").iterdir())) == 2, "damaged checkpoints are kept aside, never deleted"
    log = (tmp_path / "errors.log").read_text()
    assert "Traceback" in log and "step 1" in log and "step 2" in log


def test_non_finite_checkpoint_is_not_used(tmp_path):
    ckpt = Checkpoints(tmp_path, keep=5)
    ckpt.save(1, _state(1))
    bad = _state(2)
    ckpt.save(2, bad.replace(variables={"dense": {"kernel": bad.variables["dense"]["kernel"].at[0, 0].set(jnp.nan),
                                                  "bias": bad.variables["dense"]["bias"]}}))
    ckpt.close()
    state, step = Checkpoints(tmp_path).restore(_state(0))
    assert step == 1 and _equal(state, _state(1))
    assert [p.name.split("-")[0] for p in (tmp_path / "corrupt").iterdir()] == ["2"]


def test_checkpoint_without_checksums_restores_and_gets_them(tmp_path, capsys):
    directory = _saved(tmp_path, steps=(1,))
    (directory / "1" / CHECKSUMS).unlink()
    state, step = Checkpoints(tmp_path).restore(_state(0))
    assert step == 1 and _equal(state, _state(1))
    assert "no checksums" in capsys.readouterr().out
    assert (directory / "1" / CHECKSUMS).is_file()


def test_load_of_a_missing_step_lists_the_saved_ones(tmp_path):
    wd.prepare(tmp_path, cfg.preset("quick"))
    directory = _saved(tmp_path)
    with pytest.raises(CheckpointError) as info:
        load(tmp_path, 99)
    assert str(info.value) == f"no checkpoint at step 99 in {directory}; saved steps: [1, 2]"


def test_load_of_a_damaged_checkpoint_is_short_and_suggests_step(tmp_path):
    wd.prepare(tmp_path, cfg.preset("quick"))
    directory = _saved(tmp_path)
    before = _snapshot(tmp_path)
    chunk = _largest_chunk(directory / "2")
    data = bytearray(chunk.read_bytes())
    data[len(data) // 2] ^= 0x01
    chunk.write_bytes(bytes(data))
    with pytest.raises(CheckpointError) as info:
        load(tmp_path)
    message = str(info.value)
    assert len(message.splitlines()) <= 3 and "step=" in message and "--step" in message
    assert str(directory / "2") in message and "checksum" in message
    assert _snapshot(tmp_path) == before, "load() moves nothing"
    _, variables, step = load(tmp_path, step=1)
    assert step == 1 and _equal(variables, _state(1).variables)
