"""The train step and the training run: finite steps, the non-finite guard, learning, resume, bad input."""

import jax
import numpy as np
import optax
import pytest

from magajax import config as cfg
from magajax.config import DEFAULT_PIVOT, TrainConfig
from magajax.data import factors
from magajax.data.sources import DSprites
from magajax.data.splits import make_split
from magajax.models import build
from magajax.training import loop as run
from magajax.training import step as tr
from magajax.training import workdir as wd


def _device_data(config, data):
    split = make_split(config.data.split, data.classes, config.data.pivot)
    return tr.replicate(
        tr.DeviceData(images=data.images, train_rows=split.train.astype(np.int32), pivot_row=np.int32(split.pivot_row)),
        tr.make_mesh(),
    )


def _setup(config, data):
    """The initial state and the step with the data bound: `step(state, key) -> (state, metrics)`."""
    mesh, device_data = tr.make_mesh(), _device_data(config, data)
    model, tx = build(config.model), tr.create_optimizer(config.train)
    state = tr.init_state(config, model, tx, device_data, jax.random.PRNGKey(config.train.seed))
    state = tr.replicate(jax.device_get(state), mesh)
    step = tr.make_train_step(config, model, tx, mesh)
    return state, lambda state, key: step(state, key, device_data)


@pytest.mark.parametrize("kind", ["maganet", "vae"])
@pytest.mark.parametrize("pairs", ["pivot", "shuffle"])
def test_one_step_is_finite(kind, pairs, tiny_config, small_dsprites):
    config = cfg.override(tiny_config, {"kind": kind, "pairs": pairs})
    state, step = _setup(config, small_dsprites)
    before = jax.device_get(state.variables)
    state, metrics = step(state, jax.random.PRNGKey(1))
    metrics = jax.device_get(metrics)
    assert int(state.step) == 1 and metrics["finite"] == 1.0
    for name in ["loss", "recon", "kl", "grad_norm", "param_norm"] + (["latent"] if kind == "maganet" else []):
        assert np.isfinite(metrics[name]) and metrics[name] > 0, (name, metrics[name])
    moved = jax.tree.map(lambda a, b: float(np.abs(np.asarray(a) - b).max()), state.variables, before)
    assert max(jax.tree.leaves(moved)) > 0, "the step must update the parameters"


@pytest.mark.slow
def test_one_step_with_the_official_options_and_a_held_out_pivot(tiny_config, small_dsprites, capsys):
    """The official code's choices train; its pivot may lie in the held-out set only when pairs never use it."""
    from magajax.training.setup import setup

    held_out = factors.classes_to_index(small_dsprites.classes[(small_dsprites.classes[:, 0] == 2)
                                                                & (small_dsprites.classes[:, 3] >= 16)])
    official = {"input": "raw", "invconv": "plain", "coupling_net": "actnorm", "init": "xavier", "kl": "varying",
                "latent": "self", "split": "range-cartan", "pivot": int(held_out[0])}
    with pytest.raises(ValueError, match="lies in the held-out set of split 'range-cartan'"):
        setup(cfg.override(tiny_config, {**official, "pairs": "pivot"}), small_dsprites)
    config = cfg.override(tiny_config, {**official, "pairs": "shuffle"})
    start = setup(config, small_dsprites)
    assert "never trained on" in capsys.readouterr().out
    step = tr.make_train_step(config, start.model, start.tx, start.mesh)
    _, metrics = step(start.state, jax.random.PRNGKey(1), start.device_data)
    metrics = jax.device_get(metrics)
    assert metrics["finite"] == 1.0 and all(np.isfinite(metrics[k]) and metrics[k] > 0 for k in ("recon", "kl",
                                                                                                   "latent"))


def test_a_non_finite_update_leaves_the_state_unchanged(tiny_config, small_dsprites):
    """Adam with lr = nan: loss and gradients are finite, the update is not; the step must not apply it."""
    state, _ = _setup(tiny_config, small_dsprites)
    model, tx = build(tiny_config.model), optax.adam(float("nan"))
    state = tr.replicate(jax.device_get(state.replace(opt_state=tx.init(state.variables))), tr.make_mesh())
    before = jax.device_get(state)
    step = tr.make_train_step(tiny_config, model, tx, tr.make_mesh())
    state, metrics = step(state, jax.random.PRNGKey(1), _device_data(tiny_config, small_dsprites))
    metrics = jax.device_get(metrics)
    assert metrics["finite"] == 0.0 and np.isfinite(metrics["loss"]) and np.isfinite(metrics["grad_norm"])
    assert int(state.step) == 1
    same = jax.tree.map(lambda a, b: np.array_equal(np.asarray(a), np.asarray(b)),
                        (state.variables, state.opt_state), (before.variables, before.opt_state))
    assert all(jax.tree.leaves(same)), "a skipped step must keep the variables and the optimiser state"


def test_optimiser_state_has_one_structure_whatever_the_clip_and_lr():
    variables = {"params": {"w": np.ones((3, 2), np.float32), "b": np.zeros(2, np.float32)}}
    structures = {
        (clip, lr): jax.tree.structure(tr.create_optimizer(TrainConfig(clip=clip, lr=lr)).init(variables))
        for clip in (0.0, 1.0) for lr in (1e-3, 5e-4)
    }
    assert len(set(structures.values())) == 1, structures


def test_learning_halves_recon(tiny_config, small_dsprites):
    """200 steps on a fixed subset of 32 images (and the pivot) halve the reconstruction loss.

    β_KL = 0.1 and β_lat = 1 here: with the presets' β_lat = 300 the latent term dominates the
    first few hundred steps of so small a model, and this test is about fitting the data.
    """
    keep = np.concatenate([[np.flatnonzero(factors.classes_to_index(small_dsprites.classes) == DEFAULT_PIVOT)[0]],
                           np.arange(32)])
    subset = DSprites(small_dsprites.images[keep], small_dsprites.classes[keep], small_dsprites.values[keep], "subset")
    config = cfg.override(tiny_config, {"split": "none", "train.steps": 200, "beta_kl": 0.1, "beta_lat": 1.0})
    state, step = _setup(config, subset)
    key, recons = jax.random.PRNGKey(0), []
    for _ in range(200):
        state, metrics = step(state, key)
        recons.append(float(metrics["recon"]))
    first, last = np.mean(recons[:10]), np.mean(recons[-10:])
    assert last < 0.5 * first, f"recon {first:.1f} -> {last:.1f} nats/image after 200 steps"


def test_three_steps_per_call_equal_three_single_steps_bit_for_bit(tiny_config, small_dsprites):
    config = cfg.override(tiny_config, {"pairs": "shuffle"})
    state, step = _setup(config, small_dsprites)
    initial = jax.device_get(state)
    singles = []
    for _ in range(3):
        state, metrics = step(state, jax.random.PRNGKey(1))
        singles.append(jax.device_get(metrics))
    state3, step3 = _setup(cfg.override(config, {"train.steps_per_call": 3}), small_dsprites)
    state3 = tr.replicate(initial, tr.make_mesh())
    state3, stacked = step3(state3, jax.random.PRNGKey(1))
    stacked = jax.device_get(stacked)
    assert int(state3.step) == 3
    same = jax.tree.map(lambda a, b: np.array_equal(np.asarray(a), np.asarray(b)),
                        jax.device_get((state.variables, state.opt_state)),
                        jax.device_get((state3.variables, state3.opt_state)))
    assert all(jax.tree.leaves(same)), "3 steps in one call must give the parameters of 3 single steps"
    for name, values in stacked.items():
        assert values.shape == (3,), name
        np.testing.assert_array_equal(values, [m[name] for m in singles], err_msg=name)


def test_steps_per_call_logs_and_saves_the_steps_of_single_steps(tmp_path, tiny_config, small_dsprites):
    """K = 3 with logs every 3 steps and checkpoints every 6: two calls of 3, then one single step to 7."""
    config = cfg.override(tiny_config, {"train.steps": 7, "log_every": 3, "checkpoint_every": 6})
    single = run.train(config, tmp_path / "single", data=small_dsprites, progress=False)
    chunked = run.train(cfg.override(config, {"train.steps_per_call": 3}), tmp_path / "chunked",
                        data=small_dsprites, progress=False)
    assert int(chunked.step) == 7
    same = jax.tree.map(lambda a, b: np.array_equal(np.asarray(a), np.asarray(b)), single.variables,
                        chunked.variables)
    assert all(jax.tree.leaves(same))
    drop = lambda r: {k: v for k, v in r.items() if k not in ("pairs_per_s", "time")}
    records = [drop(r) for r in wd.read_metrics(tmp_path / "chunked")]
    assert [r["step"] for r in records] == [3, 6, 7]
    assert records == [drop(r) for r in wd.read_metrics(tmp_path / "single")]
    checkpoints = sorted(int(p.name) for p in (tmp_path / "chunked" / "checkpoints").iterdir() if p.name.isdigit())
    assert checkpoints == [6, 7]


def test_resume_gives_identical_parameters(tmp_path, tiny_config, small_dsprites):
    straight = run.train(cfg.override(tiny_config, {"train.steps": 4}), tmp_path / "a", data=small_dsprites,
                         progress=False)
    run.train(cfg.override(tiny_config, {"train.steps": 2}), tmp_path / "b", data=small_dsprites, progress=False)
    resumed = run.train(cfg.override(tiny_config, {"train.steps": 4}), tmp_path / "b", data=small_dsprites,
                        progress=False)
    same = jax.tree.map(lambda a, b: np.array_equal(np.asarray(a), np.asarray(b)),
                        straight.variables, resumed.variables)
    assert all(jax.tree.leaves(same)), "2N steps straight and N + resume to 2N must give the same parameters"
    assert [r["step"] for r in wd.read_metrics(tmp_path / "b")] == [2, 4]
    assert (tmp_path / "b" / "figures" / "loss.png").stat().st_size > 0


def test_corrupt_latest_checkpoint_resumes_from_the_previous(tmp_path, tiny_config, small_dsprites, capsys):
    config = cfg.override(tiny_config, {"train.steps": 4})
    run.train(config, tmp_path, data=small_dsprites, progress=False)
    for f in (tmp_path / "checkpoints" / "4").rglob("*"):
        if f.is_file():
            f.write_bytes(b"garbage")
    state = run.train(cfg.override(config, {"train.steps": 6}), tmp_path, data=small_dsprites, progress=False)
    out = capsys.readouterr().out
    assert "checkpoint at step 4 is unreadable" in out and "resuming" in out and "from step 2" in out
    assert int(state.step) == 6 and list((tmp_path / "corrupt").iterdir())


@pytest.mark.parametrize(
    "override, message",
    [
        ({"split": "diagonal"}, "unknown split 'diagonal'"),
        ({"split": "shape=heart & scale=0 & scale=1"}, "selects no images"),
        ({"kind": "gan"}, "model.kind must be one of maganet, vae, got 'gan'"),
    ],
)
def test_bad_input_is_one_clear_error(tmp_path, tiny_config, small_dsprites, override, message):
    with pytest.raises(ValueError, match=message):
        run.train(cfg.override(tiny_config, override), tmp_path, data=small_dsprites, progress=False)


def test_workdir_with_another_config_is_refused_and_keeps_checkpoints(tmp_path, tiny_config, small_dsprites):
    run.train(tiny_config, tmp_path, data=small_dsprites, progress=False)
    with pytest.raises(ValueError, match="different config"):
        run.train(cfg.override(tiny_config, {"hidden": 16}), tmp_path, data=small_dsprites, progress=False)
    assert sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit()) == [2, 4]


def test_batch_not_divisible_by_devices():
    class FakeMesh:
        size = 8

    with pytest.raises(ValueError, match="batch size 12 is not divisible by the 8 devices"):
        tr.check_batch(12, FakeMesh())
