"""Orbax checkpoints: restore equals save, keep-last-K, corrupt latest falls back, load()."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from magajax import config as cfg
from magajax.training import workdir as wd
from magajax.training.checkpoint import Checkpoints, load
from magajax.training.step import TrainState


def _state(seed: float) -> TrainState:
    params = {"dense": {"kernel": jnp.full((3, 2), seed), "bias": jnp.arange(2.0) + seed}}
    tx = optax.adam(1e-3)
    opt_state = tx.init(params)
    grads = jax.tree.map(jnp.ones_like, params)
    _, opt_state = tx.update(grads, opt_state, params)
    return TrainState(step=jnp.asarray(int(seed), jnp.int32), variables=params, opt_state=opt_state)


def _equal(a, b) -> bool:
    return all(jax.tree.leaves(jax.tree.map(lambda x, y: bool(np.array_equal(x, y)), a, b)))


def test_restore_equals_saved_and_keeps_last_k(tmp_path):
    ckpt = Checkpoints(tmp_path, keep=2)
    for step in (1, 2, 3):
        ckpt.save(step, _state(step))
    ckpt.wait()
    assert ckpt.steps() == [2, 3]
    state, step = ckpt.restore(_state(0))
    assert step == 3 and _equal(state, _state(3))
    assert type(state.opt_state) is type(_state(0).opt_state)  # optax state, not plain lists
    ckpt.close()


def test_no_checkpoint_restores_none(tmp_path):
    ckpt = Checkpoints(tmp_path)
    assert ckpt.restore(_state(0)) is None
    ckpt.close()


def test_corrupt_latest_falls_back_and_is_kept(tmp_path, capsys):
    ckpt = Checkpoints(tmp_path, keep=3)
    ckpt.save(1, _state(1))
    ckpt.save(2, _state(2))
    ckpt.close()
    damaged = 0
    for f in (tmp_path / "checkpoints" / "2").rglob("*"):
        if f.is_file():
            f.write_bytes(b"\x00garbage")
            damaged += 1
    assert damaged
    ckpt = Checkpoints(tmp_path, keep=3)
    state, step = ckpt.restore(_state(0))
    assert step == 1 and _equal(state, _state(1))
    assert "checkpoint at step 2 is unreadable" in capsys.readouterr().out
    assert list((tmp_path / "corrupt").iterdir()), "the damaged checkpoint must be kept aside, not deleted"
    ckpt.close()


def test_load_returns_config_variables_and_step(tmp_path):
    c = cfg.preset("quick")
    wd.prepare(tmp_path, c)
    with pytest.raises(FileNotFoundError, match="no checkpoint in"):
        load(tmp_path)
    ckpt = Checkpoints(tmp_path)
    ckpt.save(7, _state(7))
    ckpt.close()
    config, variables, step = load(tmp_path)
    assert config == c and step == 7 and _equal(variables, _state(7).variables)
