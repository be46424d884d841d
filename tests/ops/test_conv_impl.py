"""model.conv: the convs as shifted copies and one matmul or as lax.conv give the same numbers, from the same
parameters, in the ops and in the whole model."""

import dataclasses

import jax
import numpy as np
import pytest

from magajax.models.maganet import MAGANet
from magajax.ops import conv_impl
from magajax.ops.conv3x3 import Conv3x3
from magajax.ops.stride2_conv import Stride2Conv
from tests import helpers
from tests.ops.conv_check import normal


def test_auto_is_matmul_on_the_cpu_and_lax_elsewhere():
    assert conv_impl.resolve("auto") == ("matmul" if jax.default_backend() == "cpu" else "lax")
    assert conv_impl.resolve("lax") == "lax" and conv_impl.resolve("matmul") == "matmul"
    with pytest.raises(ValueError, match="unknown conv implementation 'fft'"):
        conv_impl.resolve("fft")


@pytest.mark.parametrize("module", [Conv3x3(6), Conv3x3(2), Stride2Conv(5, 4, 0), Stride2Conv(5, 4, 1),
                                    Stride2Conv(3, 2, 2)], ids=repr)
def test_matmul_and_lax_forms_are_equal_with_gradients(module):
    rng = np.random.default_rng(0)
    x = normal(rng, (2, 9, 8, 4))
    params = module.init(jax.random.key(1), x)
    params = jax.tree.map(lambda p: p + normal(rng, p.shape), params)  # a non-zero bias too
    forms = {impl: module.clone(impl=impl) for impl in ("matmul", "lax")}
    outputs = {impl: m.apply(params, x) for impl, m in forms.items()}
    np.testing.assert_allclose(outputs["lax"], outputs["matmul"], rtol=1e-5, atol=1e-5)
    grads = {impl: jax.grad(lambda p, x, m=m: (m.apply(p, x) ** 2).sum(), argnums=(0, 1))(params, x)
             for impl, m in forms.items()}
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-4), grads["lax"], grads["matmul"])


def test_the_model_decodes_alike_with_either_form():
    config, variables = helpers.tiny_maganet()
    x_pivot, x = helpers.binary_images(0, 1, 16), helpers.binary_images(3, 4, 16)
    outputs = {}
    for impl in ("matmul", "lax"):
        model = MAGANet(dataclasses.replace(config, conv=impl))
        outputs[impl] = jax.jit(lambda v, x, p, model=model: model.apply(v, p, x))(variables, x, x_pivot)
    np.testing.assert_allclose(outputs["lax"], outputs["matmul"], rtol=1e-5, atol=1e-5)
