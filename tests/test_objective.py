"""Each loss term against a value computed by hand in numpy."""

import numpy as np
import pytest

from magajax import objective as losses


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def test_recon_is_bce_summed_over_pixels(rng):
    logits = rng.normal(size=(3, 4, 4, 1)).astype(np.float32) * 3
    x = (rng.random((3, 4, 4, 1)) > 0.5).astype(np.float32)
    p = 1 / (1 + np.exp(-logits.astype(np.float64)))
    expected = -(x * np.log(p) + (1 - x) * np.log(1 - p)).reshape(3, -1).sum(-1)
    np.testing.assert_allclose(losses.recon(logits, x), expected, rtol=1e-5)


def test_recon_accepts_soft_targets(rng):
    logits = rng.normal(size=(2, 2, 2, 1)).astype(np.float32)
    x = rng.random((2, 2, 2, 1)).astype(np.float32)
    p = 1 / (1 + np.exp(-logits.astype(np.float64)))
    expected = -(x * np.log(p) + (1 - x) * np.log(1 - p)).reshape(2, -1).sum(-1)
    np.testing.assert_allclose(losses.recon(logits, x), expected, rtol=1e-5)


def test_kl_against_closed_form(rng):
    mean = rng.normal(size=(5, 10)).astype(np.float32)
    logvar = rng.normal(size=(5, 10)).astype(np.float32)
    var = np.exp(logvar.astype(np.float64))
    expected = 0.5 * (var + mean**2 - 1 - np.log(var)).sum(-1)
    np.testing.assert_allclose(losses.kl(mean, logvar), expected, rtol=1e-5)
    assert float(losses.kl(np.zeros((1, 10)), np.zeros((1, 10)))[0]) == 0.0


def test_code_distribution_adds_variances(rng):
    mv, lv, mp, lp = (rng.normal(size=(4, 3)).astype(np.float32) for _ in range(4))
    mean, logvar = losses.code_distribution(mv, lv, mp, lp)
    np.testing.assert_allclose(mean, mv - mp, rtol=1e-6)
    np.testing.assert_allclose(np.exp(logvar), np.exp(lv) + np.exp(lp), rtol=1e-5)


def test_latent_and_totals(rng):
    z_hat, z = rng.normal(size=(2, 6, 10)).astype(np.float32)
    np.testing.assert_allclose(losses.latent(z_hat, z), np.abs(z_hat - z).sum(-1), rtol=1e-6)
    r, k, l = np.array([10.0]), np.array([2.0]), np.array([0.5])
    assert float(losses.maganet_total(r, k, l, 2.0, 300.0)[0]) == 10 + 2 * 2 + 300 * 0.5
    assert float(losses.vae_total(r, k, 4.0)[0]) == 10 + 4 * 2
