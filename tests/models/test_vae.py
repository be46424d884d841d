"""The VAE baseline: output shape equals input shape, finite forward, parameter count."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from magajax.api import jitted
from magajax.config import ModelConfig
from magajax.models.vae import VAE
from tests.helpers import (
    conv_params,
    default_encoder_params,
    dense_params,
    key,
    n_params,
    random_params,
)


def default_decoder_params(d: int = 10) -> int:
    """Dense(256), Dense(256), Dense(32·4·4), then 3 ConvTranspose(32) and one ConvTranspose(1)."""
    mlp = dense_params(d, 256) + dense_params(256, 256) + dense_params(256, 32 * 4 * 4)
    return mlp + 3 * conv_params(32, 32, 4) + conv_params(32, 1, 4)


@pytest.mark.parametrize("padding", [1, "VALID"])
@pytest.mark.parametrize("size", [8, 16, 32, 64])
def test_shapes_and_finite_forward(size, padding):
    config = ModelConfig(kind="vae", image_size=size, encoder_padding=padding)
    x = (np.random.default_rng(0).random((2, size, size, 1)) < 0.3).astype(np.float32)
    vae = VAE(config)
    params = random_params(vae.init, key(1), x, key(2))
    logits, mean, logvar = jax.jit(vae.apply)(params, x, key(3))
    assert logits.shape == x.shape and logits.dtype == jnp.float32
    assert mean.shape == logvar.shape == (2, config.latent_dim)
    assert np.all(np.isfinite(logits))


def test_init_code_and_decode():
    """A real init; code: a sample with a key, the mean without; decode = sigmoid(decode_logits)."""
    config = ModelConfig(kind="vae", image_size=16)
    x = np.random.default_rng(0).random((3, 16, 16, 1), dtype=np.float32)
    (logits, mean, logvar), params = jax.jit(VAE(config).init_with_output)(key(1), x, key(2))
    assert logits.shape == x.shape and np.all(np.isfinite(logits))
    method = functools.partial(jitted, config)
    np.testing.assert_allclose(method("encode")(params, x, None), mean, atol=1e-6)
    z1, z2 = method("encode")(params, x, key(4)), method("encode")(params, x, key(5))
    assert not np.allclose(z1, mean) and not np.allclose(z1, z2)
    noise = (z1 - mean) / jnp.exp(0.5 * logvar)
    assert 0.5 < float(jnp.std(noise)) < 1.5, "the sample is mean + σ·ε with ε ~ N(0, 1)"
    images = method("decode")(params, mean)
    assert images.shape == x.shape and np.all((images >= 0) & (images <= 1))
    np.testing.assert_allclose(images, jax.nn.sigmoid(method("decode_logits")(params, mean)), atol=1e-6)


def test_default_param_count():
    x = jnp.zeros((1, 64, 64, 1))
    shapes = jax.eval_shape(VAE(ModelConfig(kind="vae")).init, key(0), x, key(1))
    count = n_params(shapes)
    print(f"default VAE parameters: {count:,}")
    assert count == default_encoder_params() + default_decoder_params()
