"""The official MAGANet PyTorch weights converted to magajax compute what the official code computed.

tests/fixtures/maganet_parity.npz holds a small official model (64×64, d 10, L 2, K 2, hidden 16,
plain 1×1 convs; its LU variant's 1×1 convs too), a batch, every random draw of its forward pass and
of 3 training steps, and the official outputs (tools/make_parity_fixture.py writes it with torch).
"""

import importlib.util
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import magajax
from experiments.convert import convert
from magajax import objective
from magajax.models.maganet import MAGANet
from magajax.torch_weights import config_from_state_dict, variables_from_state_dict
from magajax.training.step import create_optimizer

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "maganet_parity.npz"
ABS = 1e-4  # float32 outputs of O(1): a layout error moves them by O(0.1)
REL = 1e-4


@pytest.fixture(scope="module")
def fixture() -> dict[str, np.ndarray]:
    with np.load(FIXTURE) as f:
        return {k: f[k] for k in f.files}


def state_dict(fixture, prefix: str = "state/") -> dict[str, np.ndarray]:
    return {k[len(prefix):]: v for k, v in fixture.items() if k.startswith(prefix)}


def lu_state_dict(fixture) -> dict[str, np.ndarray]:
    plain = {k: v for k, v in state_dict(fixture).items() if ".invconv." not in k}
    return plain | state_dict(fixture, "lu_state/")


@pytest.fixture(scope="module")
def converted(fixture):
    state = state_dict(fixture)
    config = config_from_state_dict(state)
    return config, variables_from_state_dict(state, config)


def apply(config, variables, *args, method: str) -> np.ndarray:
    with jax.default_matmul_precision("highest"):
        return np.asarray(jax.jit(MAGANet(config.model).apply, static_argnames="method")(variables, *args,
                                                                                          method=method))


def noise(fixture, prefix: str = "", step: int | None = None) -> objective.Noise:
    """The recorded ε as magajax's Noise: row i for pair i (the fixture's pivot noise is per image)."""
    get = lambda name: fixture[f"{prefix}noise_{name}"] if step is None else fixture[f"{prefix}noise_{name}"][step]
    perm = fixture[f"{prefix}perm"] if step is None else fixture[f"{prefix}perm"][step]
    return objective.Noise(eps_pivot=get("pivot")[perm], eps_varying=get("varying"), eps_read=get("reencoded"),
                           eps_read_origin=get("self"))


def test_config_is_read_from_the_shapes(converted):
    config, _ = converted
    m = config.model
    assert config.preset == "cartan"
    assert (m.image_size, m.latent_dim, m.levels, m.steps, m.hidden) == (64, 10, 2, 2, 16)
    assert (m.invconv, m.coupling_net, m.input, m.encoder_padding) == ("plain", "actnorm", "raw", "VALID")


def test_variables_have_the_models_structure(fixture, converted):
    config, variables = converted
    x = fixture["images"]
    shapes = jax.eval_shape(MAGANet(config.model).init, jax.random.key(0), x[:1], x)
    assert jax.tree.structure(shapes) == jax.tree.structure(variables)
    assert jax.tree.leaves(jax.tree.map(lambda a: a.shape, shapes)) == jax.tree.leaves(
        jax.tree.map(lambda a: a.shape, variables))


def test_posterior_and_flow_match_the_official(fixture, converted):
    mean, logvar = apply(*converted, fixture["images"], method="posterior")
    np.testing.assert_allclose(mean, fixture["mean"], rtol=0, atol=ABS)
    np.testing.assert_allclose(logvar, fixture["logvar"], rtol=0, atol=ABS)
    np.testing.assert_allclose(apply(*converted, fixture["images"], method="to_flow"), fixture["flow"], rtol=0,
                               atol=ABS)


def test_decodes_match_the_official(fixture, converted):
    pivots = fixture["images"][fixture["perm"]]
    np.testing.assert_allclose(apply(*converted, fixture["codes"], pivots, method="decode"), fixture["decodes"],
                               rtol=0, atol=ABS)


def test_lu_weights_convert_to_the_same_function(fixture):
    state = lu_state_dict(fixture)
    config = config_from_state_dict(state)
    variables = variables_from_state_dict(state, config)
    np.testing.assert_allclose(apply(config, variables, fixture["images"], method="to_flow"), fixture["lu_flow"],
                               rtol=0, atol=ABS)
    pivots = fixture["images"][fixture["perm"]]
    np.testing.assert_allclose(apply(config, variables, fixture["codes"], pivots, method="decode"),
                               fixture["lu_decodes"], rtol=0, atol=ABS)


def mean_terms(config, variables, x, perm, eps) -> dict[str, jax.Array]:
    """The batch means of the loss terms, as the official code reports them."""
    x = jnp.asarray(x)
    out = objective.terms(MAGANet(config.model), variables, x[perm], x, None, config.train, pairs="shuffle", perm=perm,
                          noise=eps)
    return {k: jnp.mean(out[k]) for k in ("recon", "kl", "latent", "total")}


OFFICIAL_NAMES = {"recon": "reconst", "kl": "kld", "latent": "latent", "total": "total"}


def test_loss_terms_match_the_official(fixture, converted):
    config, variables = converted
    with jax.default_matmul_precision("highest"):
        got = jax.jit(mean_terms, static_argnums=0)(config, variables, fixture["images"], fixture["perm"],
                                                     noise(fixture))
    for name, official in OFFICIAL_NAMES.items():
        np.testing.assert_allclose(float(got[name]), fixture[official], rtol=REL, err_msg=name)


def norms_by_official_name(variables, state: dict[str, np.ndarray]) -> dict[str, float]:
    """The norm of every official parameter, read from magajax variables through the conversion itself.

    Converting a state dict whose entries are their own indices tells where each official entry lands.
    """
    keys = list(state)
    offsets = np.cumsum([0] + [state[k].size for k in keys])
    ids = {k: (np.arange(state[k].size) + o).reshape(state[k].shape) for k, o in zip(keys, offsets)}
    config = config_from_state_dict(state)
    where = np.concatenate([np.ravel(a) for a in jax.tree.leaves(variables_from_state_dict(ids, config))])
    values = np.concatenate([np.ravel(np.asarray(a, np.float64)) for a in jax.tree.leaves(variables)])
    squares = np.zeros(offsets[-1])
    squares[where.astype(np.int64)] = values**2
    return {k: float(np.sqrt(squares[offsets[i]:offsets[i + 1]].sum())) for i, k in enumerate(keys)}


@pytest.mark.slow
def test_training_steps_follow_the_official(fixture, converted):
    """3 Adam steps (lr 1e-3, clip 1) on the official steps' perms and noise follow the official run.

    Tolerances. Both runs are float32 and their gradients agree to ~1e-4 relative, but the clip
    scales this batch's gradients down to entries of 1e-6 .. 1e-9, where Adam's ε = 1e-8 and the sign
    of g/(|g| + ε) decide the update: an entry whose gradient is below float noise can move by
    ±lr = 1e-3 in one run and the other way in the other. Hence, per step:
    - recon, latent and total within 1e-4 relative (measured ≤ 7e-6); kl, about 1e-3 nats here,
      a sum of terms that cancel to ~1e-5 each, within 5e-3 relative (measured 1e-3 at step 3);
    - every parameter's norm within 1e-3 absolute, one such entry's move (measured ≤ 3e-4);
    - every parameter's change since the start, ‖w_t − w_0‖, which scales with lr: within 1e-3 relative
      after the first step (measured 1.1e-4), 5e-2 after the next two (measured 2.2e-2), as moments
      carry the flipped entries along.
    A wrong lr, clip or Adam constant moves the changes by tens of percents.
    """
    config, variables = converted
    tx = create_optimizer(config.train)
    x = fixture["images"]

    @jax.jit
    def step(variables, opt_state, perm, eps):
        """One official training step: the terms it trains on, then Adam on the clipped gradient of the total."""
        loss = lambda v: (lambda t: (t["total"], t))(mean_terms(config, v, x, perm, eps))
        grads, terms = jax.grad(loss, has_aux=True)(variables)
        updates, opt_state = tx.update(grads, opt_state, variables)
        return optax.apply_updates(variables, updates), opt_state, terms

    state = state_dict(fixture)
    names = list(fixture["train_norm_names"])
    start, opt_state = variables, tx.init(variables)
    with jax.default_matmul_precision("highest"):
        for t in range(fixture["train_perm"].shape[0]):
            variables, opt_state, terms = step(variables, opt_state, fixture["train_perm"][t],
                                               noise(fixture, "train_", t))
            for name, official in OFFICIAL_NAMES.items():
                np.testing.assert_allclose(float(terms[name]), fixture[f"train_{official}"][t],
                                           rtol=5e-3 if name == "kl" else REL, err_msg=f"step {t + 1}: {name}")
            norms = norms_by_official_name(variables, state)
            np.testing.assert_allclose([norms[n] for n in names], fixture["train_norms"][:, t], rtol=0, atol=1e-3,
                                       err_msg=f"parameter norms after step {t + 1}")
            moved = norms_by_official_name(jax.tree.map(jnp.subtract, variables, start), state)
            np.testing.assert_allclose([moved[n] for n in names], fixture["train_moved"][:, t],
                                       rtol=1e-3 if t == 0 else 5e-2, err_msg=f"changes after step {t + 1}")


def test_a_converted_workdir_loads_and_decodes(fixture, tmp_path):
    config = convert(state_dict(fixture), tmp_path / "run")
    assert config.model.levels == 2
    model = magajax.load(tmp_path / "run")
    decodes = model.decode(fixture["codes"], fixture["images"][fixture["perm"]])
    np.testing.assert_allclose(decodes, fixture["decodes"], rtol=0, atol=ABS)
    with pytest.raises(ValueError, match=r"not an empty folder.*--overwrite"):
        convert(state_dict(fixture), tmp_path / "run")


def test_overwrite_moves_the_previous_run_aside(fixture, tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.json").write_text("{}")
    convert(state_dict(fixture), tmp_path / "run", overwrite=True)
    aside = [p for p in (tmp_path / "run").iterdir() if p.name.startswith("previous-")]
    assert len(aside) == 1 and (aside[0] / "config.json").read_text() == "{}"


@pytest.mark.parametrize("change, message", [
    (lambda s: s.pop("decoder.flow.layers.4.block.2.conv.weight"), r"no decoder\.flow\.layers\.4\.block\.2\.conv"),
    (lambda s: s.update({"encoder.linear2.bias": np.zeros(255, np.float32)}),
     r"encoder\.linear2\.bias has shape \(255,\), expected \(256,\)"),
    (lambda s: s.update({"encoder.extra": np.zeros(1, np.float32)}), r"keys .* does not: encoder\.extra"),
    (lambda s: s.update({"decoder.flow.layers.1.block.4.conv.weight": np.zeros((4, 16, 3, 3), np.float32)}),
     r"layers\.1\.block\.4\.conv\.weight .*affine coupling"),
    (lambda s: s.update({"encoder.cnn1.conv.weight": np.zeros((32, 3, 4, 4), np.float32)}), r"single-channel"),
    (lambda s: s.pop("decoder.flow.layers.2.invconv.weight"), r"no decoder\.flow\.layers\.2\.invconv\.weight"),
])
def test_a_bad_state_dict_is_one_clear_error(fixture, change, message):
    state = state_dict(fixture)
    change(state)
    with pytest.raises(ValueError, match=message):
        variables_from_state_dict(state, config_from_state_dict(state))


@pytest.mark.skipif(importlib.util.find_spec("torch") is not None, reason="torch is installed here")
def test_the_command_without_torch_says_what_to_install(tmp_path):
    result = subprocess.run([sys.executable, "-m", "experiments.convert", f"--state-dict={tmp_path / 'm.pt'}",
                             f"--workdir={tmp_path / 'run'}"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip() == "error: reading PyTorch weights needs torch: pip install 'magajax[convert]'"


@pytest.mark.slow
def test_training_restores_a_converted_workdir(fixture, tmp_path):
    """The converted checkpoint has the structure of the state a run's setup builds, so experiments.train's
    loop restores it (variables and optimiser state) and resumes from step 0."""
    from magajax.data import factors
    from magajax.data.render import render_dsprites
    from magajax.data.sources import DSprites
    from magajax.training.checkpoint import Checkpoints
    from magajax.training.setup import setup

    config = convert(state_dict(fixture), tmp_path / "run")
    index = np.unique(np.concatenate([[config.data.pivot],
                                      np.random.default_rng(0).choice(factors.NUM_IMAGES, 300, replace=False)]))
    classes = factors.index_to_classes(index)
    data = DSprites(images=render_dsprites(index, packed=True), classes=classes.astype(np.uint8),
                    values=factors.classes_to_values(classes), source="render (test subset)")
    ckpt = Checkpoints(tmp_path / "run")
    try:
        state, step = ckpt.restore(setup(config, data).state)
    finally:
        ckpt.close()
    assert step == 0
    expected = variables_from_state_dict(state_dict(fixture), config)
    jax.tree.map(np.testing.assert_array_equal, jax.device_get(state.variables), expected)
