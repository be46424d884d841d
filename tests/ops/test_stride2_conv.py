"""The stride-2 conv as space-to-depth + one matmul equals lax.conv, values and gradients."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from magajax.ops.stride2_conv import Stride2Conv, output_side, stride2_conv
from tests.ops.conv_check import assert_same_conv, normal


def _lax(x, kernel, pad):
    return jax.lax.conv_general_dilated(x, kernel, (2, 2), ((pad, pad), (pad, pad)),
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                        precision=jax.lax.Precision.HIGHEST)


@pytest.mark.parametrize("side, k, pad, c_in", [
    (8, 4, 1, 1), (9, 4, 0, 1), (9, 4, 1, 3), (8, 4, 0, 2), (7, 4, 0, 2), (10, 4, 3, 2), (8, 2, 0, 3), (11, 6, 2, 1),
])
def test_equals_lax_conv_with_gradients(side, k, pad, c_in):
    rng = np.random.default_rng(0)
    x, kernel = normal(rng, (2, side, side + 1, c_in)), normal(rng, (k, k, c_in, 5))
    out = assert_same_conv(lambda x, w: stride2_conv(x, w, pad), lambda x, w: _lax(x, w, pad), x, kernel)
    assert out.shape[1:3] == (output_side(side, k, pad), output_side(side + 1, k, pad))


def test_module_matches_flax_conv_and_its_parameters():
    x = normal(np.random.default_rng(1), (2, 16, 16, 3))
    flax_conv = nn.Conv(6, (4, 4), strides=(2, 2), padding=((1, 1), (1, 1)))
    params = flax_conv.init(jax.random.key(2), x)
    ours = Stride2Conv(6, 4, 1)
    assert jax.tree.map(jnp.shape, ours.init(jax.random.key(2), x)) == jax.tree.map(jnp.shape, params)
    np.testing.assert_array_equal(ours.init(jax.random.key(2), x)["params"]["kernel"], params["params"]["kernel"])
    params = jax.tree.map(lambda p: p + 0.1, params)  # a non-zero bias
    np.testing.assert_allclose(ours.apply(params, x), flax_conv.apply(params, x), rtol=1e-5, atol=1e-5)


def test_bad_kernel_or_too_small_input_is_one_clear_error():
    with pytest.raises(ValueError, match="kernel"):
        stride2_conv(jnp.zeros((1, 8, 8, 2)), jnp.zeros((3, 3, 2, 4)), 1)
    with pytest.raises(ValueError, match="smaller than the 4x4 kernel"):
        stride2_conv(jnp.zeros((1, 2, 8, 2)), jnp.zeros((4, 4, 2, 4)), 0)
