"""The loop: stops at a skipped (non-finite) step without saving and resumes after lowering the rate or
clipping; TensorBoard on request; the loss curve drawn once; the setup sequence."""

import jax
import numpy as np
import pytest
from jax.sharding import NamedSharding

from magajax import config as cfg
from magajax.analysis import figures
from magajax.training import loop as run
from magajax.training import workdir as wd
from magajax.training.setup import setup
from tests.training.helpers import checkpoint_steps, read_events


@pytest.mark.slow
def test_a_skipped_step_stops_without_saving_and_the_advice_resumes(tmp_path, tiny_config, small_dsprites):
    config = cfg.override(tiny_config, {"train.steps": 2})
    run.train(config, tmp_path, data=small_dsprites, progress=False)
    exploding = cfg.override(config, {"train.steps": 6, "train.lr": 1e30})  # step 3 jumps, step 4 is non-finite
    with pytest.raises(FloatingPointError) as failure:
        run.train(exploding, tmp_path, data=small_dsprites, progress=False)
    message = str(failure.value)
    assert "\n" not in message and message.startswith("step 4: non-finite")
    assert "lower --train.lr (now 1e+30) or set --train.clip (now 0)" in message
    assert message.endswith("rerun the same command to resume from step 2")
    assert checkpoint_steps(tmp_path) == [2]

    fixed = cfg.override(exploding, {"train.lr": tiny_config.train.lr, "train.clip": 1.0})
    state = run.train(fixed, tmp_path, data=small_dsprites, progress=False)
    assert int(state.step) == 6 and checkpoint_steps(tmp_path)[-1] == 6
    assert [r["step"] for r in wd.read_metrics(tmp_path)] == [2, 4, 6]
    assert all(r["finite"] == 1 for r in wd.read_metrics(tmp_path))
    changes = [(r["step"], r["field"], r["new"]) for r in wd.read_changes(tmp_path)]
    assert changes == [(2, "train.lr", 1e30), (2, "train.steps", 6), (2, "train.clip", 1.0),
                       (2, "train.lr", tiny_config.train.lr)]


def test_tensorboard_events_and_one_loss_curve_at_the_end(tmp_path, tiny_config, small_dsprites, monkeypatch):
    drawn = []
    draw = figures.loss_curves
    monkeypatch.setattr(figures, "loss_curves", lambda records, path, title: drawn.append(records) or
                        draw(records, path, title=title))
    config = cfg.override(tiny_config, {"train.steps": 4, "checkpoint_every": 2, "log_every": 2})
    run.train(config, tmp_path, data=small_dsprites, progress=False, tensorboard=True)
    assert [[r["step"] for r in records] for records in drawn] == [[2, 4]]
    assert (tmp_path / "figures" / "loss.png").stat().st_size > 0
    events = read_events(tmp_path / "tensorboard")
    assert sorted({step for tag, step, _ in events if tag == "loss"}) == [2, 4]
    by_step = {r["step"]: r["loss"] for r in wd.read_metrics(tmp_path)}
    assert all(np.isclose(value, by_step[step]) for tag, step, value in events if tag == "loss")


def test_setup_places_a_replicated_initial_state(tiny_config, small_dsprites):
    s = setup(tiny_config, small_dsprites)
    assert int(s.state.step) == 0 and s.split.name == "element"
    for leaf in jax.tree.leaves((s.state, s.device_data, s.step_key)):
        assert isinstance(leaf.sharding, NamedSharding) and leaf.sharding.is_fully_replicated
    assert int(s.device_data.train_rows.shape[0]) == int(s.split.train.shape[0])
    again = setup(tiny_config, small_dsprites)
    same = jax.tree.map(lambda a, b: np.array_equal(np.asarray(a), np.asarray(b)), s.state.variables,
                        again.state.variables)
    assert all(jax.tree.leaves(same)), "setup must be a function of the config and data alone"
