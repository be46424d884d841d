"""The 3×3 conv as shifted copies + one matmul equals lax.conv, values and gradients."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from magajax.ops.conv3x3 import Conv3x3, conv3x3
from tests.ops.conv_check import assert_same_conv, normal


def _lax(x, kernel):
    return jax.lax.conv_general_dilated(x, kernel, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                        precision=jax.lax.Precision.HIGHEST)


@pytest.mark.parametrize("c_in, c_out", [(2, 16), (16, 2), (4, 4), (3, 5)])  # im2col and col2im branches
def test_equals_lax_conv_with_gradients(c_in, c_out):
    rng = np.random.default_rng(0)
    assert_same_conv(conv3x3, _lax, normal(rng, (3, 6, 5, c_in)), normal(rng, (3, 3, c_in, c_out)))


def test_module_matches_flax_conv():
    x = normal(np.random.default_rng(1), (2, 8, 8, 4))
    flax_conv = nn.Conv(6, (3, 3), padding="SAME")
    params = flax_conv.init(jax.random.key(2), x)
    params = jax.tree.map(lambda p: p + 0.1, params)  # a non-zero bias
    ours = Conv3x3(6)
    assert jax.tree.map(jnp.shape, ours.init(jax.random.key(2), x)) == jax.tree.map(jnp.shape, params)
    np.testing.assert_allclose(ours.apply(params, x), flax_conv.apply(params, x), rtol=1e-5, atol=1e-5)


def test_bad_kernel_is_one_clear_error():
    with pytest.raises(ValueError, match="kernel"):
        conv3x3(jnp.zeros((1, 4, 4, 2)), jnp.zeros((3, 3, 3, 4)))
