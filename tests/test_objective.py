"""objective.terms against the NumPy oracle of tests/helpers.py: both kinds, every pair mode, sampled and mean codes."""

import dataclasses
import functools

import jax
import numpy as np
import pytest

from magajax import objective
from magajax.config import TrainConfig
from magajax.models.maganet import MAGANet
from magajax.models.vae import VAE
from tests.helpers import binary_images, key, loss_oracle, oracle_code, random_params, tiny_maganet

BATCH = 6
TRAIN = TrainConfig(beta_kl=2.0, beta_lat=3.0)


@functools.cache
def tiny_vae():
    config, _ = tiny_maganet()
    config = dataclasses.replace(config, kind="vae")
    return config, random_params(VAE(config).init, key(0), binary_images(0, 1, 16), key(1))


def pairs_of(mode):
    """(x_pivot as the objective gets it, x_pivot per pair, x_varying, perm) for a pair mode."""
    x_v = binary_images(10, BATCH, 16)
    if mode == "pivot":
        x_p = np.repeat(binary_images(11, 1, 16), BATCH, axis=0)
        return x_p, x_p, x_v, None
    if mode == "shuffle":
        perm = np.random.default_rng(12).permutation(BATCH)
        return x_v[perm], x_v[perm], x_v, perm
    x_p = binary_images(13, BATCH, 16)
    return x_p, x_p, x_v, None


def noises(sample_key, shape):
    """The documented draw: (ε_p, ε_v) from split(key) in that order."""
    key_p, key_v = jax.random.split(sample_key)
    return np.asarray(jax.random.normal(key_p, shape)), np.asarray(jax.random.normal(key_v, shape))


def check(out, expected, names):
    assert set(out) == set(names)
    for name in names:
        assert np.shape(out[name]) == np.shape(expected[name]), name
        np.testing.assert_allclose(out[name], expected[name], rtol=2e-5, atol=2e-5, err_msg=name)


@pytest.mark.parametrize("sample", [True, False], ids=["sampled", "mean"])
@pytest.mark.parametrize("mode", objective.PAIRS)
def test_maganet_terms_match_the_oracle(mode, sample):
    config, variables = tiny_maganet()
    module = MAGANet(config)
    apply = functools.partial(module.apply, variables)
    given, x_p, x_v, perm = pairs_of(mode)
    sample_key = jax.random.PRNGKey(3)
    out = objective.terms(module, variables, given, x_v, sample_key, TRAIN, pairs=mode, perm=perm, sample=sample)

    mean_v, logvar_v = apply(x_v, method="posterior")
    mean_p, logvar_p = apply(x_p, method="posterior")
    noise_p, noise_v = noises(sample_key, mean_v.shape) if sample else (None, None)
    code = dict(mean_v=mean_v, logvar_v=logvar_v, mean_p=mean_p, logvar_p=logvar_p, noise_v=noise_v, noise_p=noise_p)
    z = oracle_code(**code)
    logits = apply(z.astype(np.float32), x_p, method="decode_logits")  # the model's decoder, pivot by pivot
    mean_read = apply(jax.nn.sigmoid(logits), method="posterior")[0]
    expected = loss_oracle(logits, x_v, beta_kl=TRAIN.beta_kl, beta_lat=TRAIN.beta_lat, mean_read=mean_read, **code)
    check(out, expected, ["z", "recon", "kl", "latent", "total"])
    assert np.all(expected["latent"] > 0) and np.all(expected["kl"] > 0), "the oracle must see every term"


@pytest.mark.parametrize("sample", [True, False], ids=["sampled", "mean"])
def test_vae_terms_match_the_oracle(sample):
    config, variables = tiny_vae()
    module = VAE(config)
    _, _, x_v, _ = pairs_of("general")
    sample_key = jax.random.PRNGKey(4)
    out = objective.terms(module, variables, None, x_v, sample_key, TRAIN, pairs="general", sample=sample)
    mean, logvar = module.apply(variables, x_v, method="posterior")
    noise = np.asarray(jax.random.normal(sample_key, mean.shape)) if sample else None
    z = oracle_code(mean, logvar, noise_v=noise)
    logits = module.apply(variables, z.astype(np.float32), method="decode_logits")
    expected = loss_oracle(logits, x_v, mean, logvar, TRAIN.beta_kl, noise_v=noise)
    check(out, expected, ["z", "recon", "kl", "total"])
    if sample:  # the VAE's own forward pass draws the same code
        np.testing.assert_allclose(module.apply(variables, x_v, sample_key)[0], logits, rtol=1e-5, atol=1e-5)


def test_oracle_recon_is_the_cross_entropy_of_soft_targets():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 3, 3, 1)) * 3
    x = rng.random((2, 3, 3, 1))
    p = 1 / (1 + np.exp(-logits))
    expected = -(x * np.log(p) + (1 - x) * np.log(1 - p)).reshape(2, -1).sum(-1)
    zeros = np.zeros((2, 4))
    np.testing.assert_allclose(loss_oracle(logits, x, zeros, zeros, 1.0)["recon"], expected, rtol=1e-12)
    np.testing.assert_allclose(objective.bce_per_image(logits.astype(np.float32), x.astype(np.float32)), expected,
                               rtol=1e-5)
    assert float(objective.kl_to_standard_normal(np.zeros((1, 10)), np.zeros((1, 10)))[0]) == 0.0


def test_bad_pair_mode_is_one_clear_error():
    config, variables = tiny_maganet()
    x = binary_images(0, 2, 16)
    with pytest.raises(ValueError, match="unknown pair mode 'pairs'; use one of pivot, shuffle, general"):
        objective.terms(MAGANet(config), variables, x, x, key(0), TRAIN, pairs="pairs")
    with pytest.raises(ValueError, match="pairs='shuffle' needs perm"):
        objective.terms(MAGANet(config), variables, x, x, key(0), TRAIN, pairs="shuffle")
