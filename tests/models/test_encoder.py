"""The Burgess encoder: conv schedule per image size, output shapes, parameter count."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from magajax.config import ModelConfig
from magajax.models.encoder import Encoder, conv_sides
from tests.helpers import default_encoder_params, key, n_params, random_params


@pytest.mark.parametrize(
    "padding, size, sides",
    [
        (1, 64, [64, 32, 16, 8, 4]),
        (1, 32, [32, 16, 8, 4]),
        (1, 16, [16, 8, 4]),
        (1, 8, [8, 4]),
        ("VALID", 64, [64, 31, 14, 6, 2]),
        ("VALID", 32, [32, 15, 6, 2]),
        ("VALID", 16, [16, 7, 2]),
        ("VALID", 8, [8, 3]),
    ],
)
def test_conv_sides(padding, size, sides):
    assert conv_sides(size, padding) == sides


@pytest.mark.parametrize("padding", [1, "VALID"])
@pytest.mark.parametrize("size", [8, 16, 32, 64])
def test_output_shapes(size, padding):
    config = ModelConfig(image_size=size, encoder_padding=padding)
    x = np.random.default_rng(0).random((3, size, size, 1), dtype=np.float32)
    encoder = Encoder(config)
    params = random_params(encoder.init, key(1), x)
    mean, logvar = jax.jit(encoder.apply)(params, x)
    assert mean.shape == logvar.shape == (3, config.latent_dim)
    assert mean.dtype == logvar.dtype == jnp.float32
    assert np.all(np.isfinite(mean)) and np.all(np.isfinite(logvar))
    n_convs = sum(name.startswith("Conv") for name in params["params"])
    assert n_convs == len(conv_sides(size, padding)) - 1
    assert not np.allclose(mean[0], mean[1]), "different images should get different codes"


def test_default_param_count():
    config = ModelConfig()
    x = jnp.zeros((1, 64, 64, 1))
    shapes = jax.eval_shape(Encoder(config).init, key(0), x)
    count = n_params(shapes)
    print(f"default encoder parameters: {count:,}")
    assert count == default_encoder_params()


def test_bfloat16_compute_returns_float32():
    config = ModelConfig(image_size=16, dtype="bfloat16")
    x = np.ones((2, 16, 16, 1), np.float32)
    shapes = jax.eval_shape(Encoder(config).init, key(0), x)
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(shapes)), "parameters stay float32"
    mean, _ = jax.jit(Encoder(config).apply)(random_params(Encoder(config).init, key(0), x), x)
    assert mean.dtype == jnp.float32


def test_bad_padding_and_too_small_image():
    with pytest.raises(ValueError, match=r"encoder_padding must be an int in 0\.\.3 or 'VALID', got 'SAME'"):
        conv_sides(64, "SAME")
    with pytest.raises(ValueError, match="image_size 4 is too small for the encoder"):
        conv_sides(4, 1)
