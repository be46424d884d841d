"""The VAE baseline (burgess and blog): output shape equals input shape, finite forward, parameter counts."""

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from magajax import config as cfg
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


def blog_vae_params(d: int = 10) -> int:
    """The blog's VAE at 64×64: convs 1 → 32 → 64 → 128 → 256 (64 → 4), heads 4,096 → d twice;
    Dense(d → 4,096), transposed convs 256 → 128 → 64 → 32 → 1."""
    channels = [1, 32, 64, 128, 256]
    convs = sum(conv_params(a, b, 4) for a, b in itertools.pairwise(channels))
    heads = 2 * dense_params(256 * 4 * 4, d)
    deconvs = sum(conv_params(b, a, 4) for a, b in itertools.pairwise(channels))
    return convs + heads + dense_params(d, 256 * 4 * 4) + deconvs


@pytest.mark.parametrize(("vae", "padding", "size"),
                         [("burgess", p, s) for p in (1, "VALID") for s in (8, 16, 32, 64)]
                         + [("blog", 1, 16), ("blog", "VALID", 32), ("blog", 1, 64)])
def test_shapes_and_finite_forward(vae, padding, size):
    config = ModelConfig(kind="vae", image_size=size, encoder_padding=padding, vae=vae)
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


def test_blog_param_count():
    """1,504,981 parameters at 64×64, d = 10; 16×16 keeps the first two convs (32, 64)."""
    shapes = jax.eval_shape(VAE(ModelConfig(kind="vae", vae="blog")).init, key(0), jnp.zeros((1, 64, 64, 1)), key(1))
    assert n_params(shapes) == blog_vae_params() == 1_504_981
    small = jax.eval_shape(VAE(ModelConfig(kind="vae", vae="blog", image_size=16)).init, key(0),
                           jnp.zeros((1, 16, 16, 1)), key(1))
    expected = (conv_params(1, 32, 4) + conv_params(32, 64, 4) + 2 * dense_params(64 * 4 * 4, 10)
                + dense_params(10, 64 * 4 * 4) + conv_params(64, 32, 4) + conv_params(32, 1, 4))
    assert n_params(small) == expected
    assert cfg.preset("blog").model.vae == "blog" and cfg.preset("quick").model.vae == "burgess"


def test_burgess_keeps_its_parameter_names():
    """Checkpoints of the burgess VAE load: the encoder's and decoder's names are unchanged."""
    shapes = jax.eval_shape(VAE(ModelConfig(kind="vae", image_size=16)).init, key(0), jnp.zeros((1, 16, 16, 1)), key(1))
    params = shapes["params"]
    assert sorted(params) == ["deconvs_0", "deconvs_1", "dense_0", "dense_1", "dense_2", "encoder"]
    assert sorted(params["encoder"]) == ["Conv_0", "Conv_1", "Dense_0", "Dense_1", "Dense_2"]
