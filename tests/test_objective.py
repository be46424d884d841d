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


def recorded_noise(d):
    """Noise as a caller records it: NumPy draws, one (B, d) array per field."""
    rng = np.random.default_rng(14)
    return objective.Noise(*(rng.standard_normal((BATCH, d)).astype(np.float32) for _ in objective.Noise._fields))


def check(out, expected, names):
    assert set(out) == set(names)
    for name in names:
        assert np.shape(out[name]) == np.shape(expected[name]), name
        np.testing.assert_allclose(out[name], expected[name], rtol=2e-5, atol=2e-5, err_msg=name)


def maganet_case(mode, sample, kl, latent, model_input="logit"):
    """objective.terms with recorded noise, and the oracle's terms from the model's own pieces."""
    config, variables = tiny_maganet()
    config = dataclasses.replace(config, input=model_input)
    module = MAGANet(config)
    train = dataclasses.replace(TRAIN, kl=kl, latent=latent)
    apply = functools.partial(module.apply, variables)
    given, x_p, x_v, perm = pairs_of(mode)
    noise = recorded_noise(config.latent_dim)
    out = objective.terms(module, variables, given, x_v, None, train, pairs=mode, perm=perm, sample=sample,
                          noise=noise)

    mean_v, logvar_v = apply(x_v, method="posterior")
    mean_p, logvar_p = apply(x_p, method="posterior")
    eps = noise if sample else objective.Noise(None, None, None, None)
    code = dict(mean_v=mean_v, logvar_v=logvar_v, mean_p=mean_p, logvar_p=logvar_p, noise_v=eps.eps_varying,
                noise_p=eps.eps_pivot)
    z = oracle_code(**code)
    logits = apply(z.astype(np.float32), x_p, method="decode_logits")  # the model's decoder, pivot by pivot
    if latent == "self":  # each varying image's own code applied to itself
        s_v = oracle_code(mean_v, logvar_v, noise_v=eps.eps_varying)
        decoded = apply(s_v.astype(np.float32), x_v, method="decode_logits")
    else:
        decoded = logits
    reencoded = np.asarray(decoded) if model_input == "raw" else jax.nn.sigmoid(decoded)
    mean_read, logvar_read = apply(reencoded, method="posterior")
    expected = loss_oracle(logits, x_v, beta_kl=train.beta_kl, beta_lat=train.beta_lat, mean_read=mean_read,
                           logvar_read=logvar_read, noise_read=eps.eps_read, noise_origin=eps.eps_read_origin,
                           kl=kl, latent=latent, **code)
    check(out, expected, ["z", "recon", "kl", "latent", "total"])
    assert np.all(expected["latent"] > 0) and np.all(expected["kl"] > 0), "the oracle must see every term"
    return out


@pytest.mark.parametrize("sample", [True, False], ids=["sampled", "mean"])
@pytest.mark.parametrize("mode", objective.PAIRS)
def test_maganet_terms_match_the_oracle(mode, sample):
    maganet_case(mode, sample, "code", "mean")


@pytest.mark.parametrize("kl, latent", [("varying", "mean"), ("code", "sampled"), ("varying", "self")])
@pytest.mark.parametrize("mode", objective.PAIRS)
def test_kl_and_latent_choices_match_the_oracle(mode, kl, latent):
    maganet_case(mode, True, kl, latent)


@pytest.mark.parametrize("latent", ["sampled", "self"])
def test_raw_input_reencodes_the_decoder_output_and_mean_codes_need_no_noise(latent):
    maganet_case("shuffle", True, "varying", latent, model_input="raw")
    sampled = maganet_case("pivot", False, "code", latent)
    means = maganet_case("pivot", False, "code", "mean")
    if latent == "sampled":  # with mean codes every sample is its mean
        np.testing.assert_allclose(sampled["latent"], means["latent"], rtol=1e-6)


def test_key_and_its_drawn_noise_give_the_same_terms():
    config, variables = tiny_maganet()
    module = MAGANet(config)
    _, _, x_v, perm = pairs_of("shuffle")
    train = dataclasses.replace(TRAIN, latent="sampled")
    sample_key = jax.random.PRNGKey(3)
    by_key = objective.terms(module, variables, x_v[perm], x_v, sample_key, train, pairs="shuffle", perm=perm)
    noise = objective.draw_noise(sample_key, BATCH, config.latent_dim)
    assert all(n.shape == (BATCH, config.latent_dim) for n in noise)
    by_noise = objective.terms(module, variables, x_v[perm], x_v, None, train, pairs="shuffle", perm=perm,
                               noise=noise)
    for name in by_key:
        np.testing.assert_array_equal(by_key[name], by_noise[name], err_msg=name)
    with pytest.raises(ValueError, match="sampled codes need a key or noise"):
        objective.terms(module, variables, x_v[perm], x_v, None, train, pairs="shuffle", perm=perm)


@pytest.mark.parametrize("sample", [True, False], ids=["sampled", "mean"])
def test_vae_terms_match_the_oracle(sample):
    config, variables = tiny_vae()
    module = VAE(config)
    _, _, x_v, _ = pairs_of("general")
    noise = recorded_noise(config.latent_dim)
    out = objective.terms(module, variables, None, x_v, None, TRAIN, pairs="general", sample=sample, noise=noise)
    mean, logvar = module.apply(variables, x_v, method="posterior")
    eps = noise.eps_varying if sample else None
    z = oracle_code(mean, logvar, noise_v=eps)
    logits = module.apply(variables, z.astype(np.float32), method="decode_logits")
    expected = loss_oracle(logits, x_v, mean, logvar, TRAIN.beta_kl, noise_v=eps)
    check(out, expected, ["z", "recon", "kl", "total"])


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
