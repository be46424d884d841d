"""Every flow layer through the same checks: round trip, log-det vs Jacobian, shapes, init."""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from magajax.flows.actnorm import ActNorm
from magajax.flows.coupling import Coupling
from magajax.flows.invconv import InvConv1x1, PlainInvConv1x1
from magajax.flows.squeeze import Squeeze

LAYERS = {
    "actnorm": lambda dtype: ActNorm(),
    "invconv": lambda dtype: InvConv1x1(),
    "additive": lambda dtype: Coupling(8, "additive", dtype),
    "affine": lambda dtype: Coupling(8, "affine", dtype),
    "plain-invconv": lambda dtype: PlainInvConv1x1(),
    "additive-actnorm-net": lambda dtype: Coupling(8, "additive", dtype, "actnorm"),
    "affine-actnorm-net-xavier": lambda dtype: Coupling(8, "affine", dtype, "actnorm", "xavier"),
    "squeeze": lambda dtype: Squeeze(),
}
SHAPE = (4, 4, 4)  # per-example (H, W, C): 64 dimensions, a cheap Jacobian


def data(batch: int, seed: int = 0) -> jax.Array:
    return jnp.asarray(3.0 * np.random.default_rng(seed).standard_normal((batch, *SHAPE)) + 1.0, jnp.float32)


def perturb(params, seed: int = 2, scale: float = 0.1):
    """Adds scale·N(0, 1) to every parameter, so no check can pass at the initial values."""
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda a: a + scale * rng.standard_normal(a.shape).astype(a.dtype), params)


@functools.cache
def layer_and_params(name: str) -> tuple[nn.Module, dict]:
    """(layer, perturbed params initialised on data(8)); `init` runs eagerly, its ops cached by shape."""
    layer = LAYERS[name](jnp.float32)
    return layer, perturb(layer.init(jax.random.key(1), data(8), method="forward"))


@pytest.mark.parametrize("name", LAYERS)
def test_round_trip_and_logdet_negation(name):
    layer, params = layer_and_params(name)
    x = data(8, seed=3)
    y, ld_fwd = layer.apply(params, x, method="forward")
    x_back, ld_inv = layer.apply(params, y, method="inverse")
    np.testing.assert_allclose(x_back, x, atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(ld_inv, -ld_fwd, atol=1e-5, rtol=1e-6)


def jacobian_logdet(layer: nn.Module, params, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(log|det| of the Jacobian of the flattened per-example map at x (batch 1), the layer's log-det)."""

    @jax.jit
    def both(params, x):
        flat = lambda v: layer.apply(params, v.reshape(x.shape), method="forward")[0].reshape(-1)
        logdet = layer.apply(params, x, method="forward")[1][0]
        return jnp.linalg.slogdet(jax.jacfwd(flat)(x.reshape(-1)))[1], logdet

    return both(params, x)


@pytest.mark.parametrize("name", LAYERS)
def test_logdet_matches_jacobian_float32(name):
    layer, params = layer_and_params(name)
    expected, got = jacobian_logdet(layer, params, data(1, seed=4))
    np.testing.assert_allclose(got, expected, atol=1e-3, rtol=1e-4)


@pytest.mark.parametrize("name", LAYERS)
def test_logdet_matches_jacobian_float64(name):
    _, params = layer_and_params(name)
    with jax.enable_x64(True):
        to64 = lambda a: jnp.asarray(a, jnp.float64)
        layer, x = LAYERS[name](jnp.float64), to64(data(1, seed=4))
        expected, got = jacobian_logdet(layer, jax.tree.map(to64, params), x)
        assert got.dtype == jnp.float64
        np.testing.assert_allclose(got, expected, atol=1e-9, rtol=1e-10)


@pytest.mark.parametrize("name", LAYERS)
def test_shapes(name):
    layer, params = layer_and_params(name)
    h, w, c = SHAPE
    for batch in (1, 3, 8):  # shapes only: traced, not compiled
        x = data(batch)
        y, ld = jax.eval_shape(functools.partial(layer.apply, method="forward"), params, x)
        assert y.shape == ((batch, h // 2, w // 2, 4 * c) if name == "squeeze" else x.shape)
        x_back, ld_inv = jax.eval_shape(functools.partial(layer.apply, method="inverse"), params, y)
        assert x_back.shape == x.shape and ld.shape == ld_inv.shape == (batch,)


def test_actnorm_init_normalises_the_init_batch():
    x = data(16) * jnp.arange(1.0, 5.0) - 7.0  # channels with different scales and offsets
    y, _ = ActNorm().init_with_output(jax.random.key(0), x, method="forward")[0]
    np.testing.assert_allclose(y.mean(axis=(0, 1, 2)), 0.0, atol=1e-5)
    np.testing.assert_allclose(y.std(axis=(0, 1, 2)), 1.0, atol=1e-5)


@pytest.mark.parametrize("kind", ["additive", "affine"])
def test_coupling_starts_as_identity(kind):
    x = data(8)
    y, ld = Coupling(8, kind).init_with_output(jax.random.key(0), x, method="forward")[0]
    np.testing.assert_array_equal(y, x)
    np.testing.assert_allclose(ld, 0.0, atol=1e-5)


def test_invconv_starts_orthogonal_and_keys_differ():
    c = SHAPE[-1]
    eye = jnp.eye(c).reshape(c, 1, 1, c)  # example b is the unit vector e_b, so y[b] = W e_b

    def weight(key):
        return InvConv1x1().init_with_output(key, eye, method="forward")[0][0].reshape(c, c)

    w0, w1 = weight(jax.random.key(0)), weight(jax.random.key(1))
    np.testing.assert_allclose(w0 @ w0.T, np.eye(c), atol=1e-5)
    assert np.abs(w0 - w1).max() > 0.1


def test_plain_invconv_against_numpy():
    layer, params = layer_and_params("plain-invconv")
    weight = np.asarray(params["params"]["weight"], np.float64)
    assert weight.shape == (SHAPE[-1], SHAPE[-1])
    x = data(3, seed=5)
    y, ld = layer.apply(params, x, method="forward")
    h, w, _ = SHAPE
    np.testing.assert_allclose(y, np.einsum("oi,bhwi->bhwo", weight, np.asarray(x, np.float64)), atol=1e-5)
    np.testing.assert_allclose(ld, h * w * np.log(abs(np.linalg.det(weight))), rtol=1e-5)
    x_back, ld_inv = layer.apply(params, y, method="inverse")
    expected = np.einsum("oi,bhwi->bhwo", np.linalg.inv(weight), np.asarray(y, np.float64))
    np.testing.assert_allclose(x_back, expected, atol=1e-5)
    np.testing.assert_allclose(ld_inv, -h * w * np.log(abs(np.linalg.det(weight))), rtol=1e-5)


def test_plain_invconv_starts_as_a_rotation():
    w0 = PlainInvConv1x1().init(jax.random.key(0), data(1), method="forward")["params"]["weight"]
    w1 = PlainInvConv1x1().init(jax.random.key(1), data(1), method="forward")["params"]["weight"]
    np.testing.assert_allclose(w0 @ w0.T, np.eye(SHAPE[-1]), atol=1e-5)
    assert np.abs(w0 - w1).max() > 0.1


@pytest.mark.parametrize("kind, out", [("additive", 2), ("affine", 4)])
def test_actnorm_net_parameter_names_shapes_and_init(kind, out):
    x = data(8)
    (y, ld), variables = Coupling(8, kind, net="actnorm").init_with_output(jax.random.key(0), x, method="forward")
    shapes = jax.tree.map(np.shape, variables["params"])
    assert shapes == {
        "conv_in": {"kernel": (3, 3, 2, 8)}, "actnorm_in": {"bias": (8,), "logs": (8,)},
        "conv_mid": {"kernel": (8, 8)}, "actnorm_mid": {"bias": (8,), "logs": (8,)},
        "conv_out": {"kernel": (3, 3, 8, out), "bias": (out,)}, "out_logs": (out,),
    }
    np.testing.assert_array_equal(y, x)  # the default init's zero last conv: the identity
    np.testing.assert_allclose(ld, 0.0, atol=1e-5)
    params = variables["params"]
    assert np.all(params["out_logs"] == 0) and np.abs(params["actnorm_in"]["bias"]).max() > 0
    # data-initialised: the first ActNorm normalises conv_in's output on the init batch
    h = numpy_conv3x3(np.asarray(x)[..., :2], params["conv_in"]["kernel"])
    normed = (h + params["actnorm_in"]["bias"]) * np.exp(params["actnorm_in"]["logs"])
    np.testing.assert_allclose(normed.mean(axis=(0, 1, 2)), 0.0, atol=1e-4)
    np.testing.assert_allclose(normed.std(axis=(0, 1, 2)), 1.0, atol=1e-3)


def numpy_conv3x3(x, kernel):
    """A 'SAME' 3×3 convolution of x (B, H, W, c_in) by kernel (3, 3, c_in, c_out), in NumPy."""
    x, kernel = np.asarray(x, np.float64), np.asarray(kernel, np.float64)
    _, h, w, _ = x.shape
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    return sum(np.einsum("bhwi,io->bhwo", padded[:, dy:dy + h, dx:dx + w], kernel[dy, dx])
               for dy in range(3) for dx in range(3))


@pytest.mark.parametrize("net", ["bias", "actnorm"])
def test_xavier_init_draws_every_coupling_conv_within_its_bound(net):
    c, hidden = 16, 64
    x = jnp.asarray(np.random.default_rng(7).standard_normal((2, 4, 4, c)), jnp.float32)
    (y, _), variables = Coupling(hidden, "additive", net=net, weight_init="xavier").init_with_output(
        jax.random.key(0), x, method="forward")
    params = variables["params"]
    kernels = {"conv_in": (9 * c // 2, 9 * hidden), "conv_mid": (hidden, hidden), "conv_out": (9 * hidden, 9 * c // 2)}
    for name, (fan_in, fan_out) in kernels.items():
        w = np.asarray(params[name]["kernel"])
        bound = np.sqrt(6.0 / (fan_in + fan_out))
        assert 0.98 * bound < np.abs(w).max() <= bound, name
        np.testing.assert_allclose(w.std(), bound / np.sqrt(3), rtol=0.05, err_msg=name)
        if "bias" in params[name]:
            assert np.all(params[name]["bias"] == 0), name
    assert float(jnp.abs(y - x).max()) > 0.1  # the last conv is drawn too: not the identity


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="even height and width"):
        Squeeze().apply({}, jnp.zeros((1, 5, 4, 1)), method="forward")
    for c in (1, 3):
        with pytest.raises(ValueError, match="even number"):
            Coupling(8).init(jax.random.key(0), jnp.zeros((1, 4, 4, c)), method="forward")
    with pytest.raises(ValueError, match="unknown coupling kind"):
        Coupling(8, "spline").init(jax.random.key(0), jnp.zeros((1, 4, 4, 4)), method="forward")
    with pytest.raises(ValueError, match="unknown coupling net 'batchnorm'"):
        Coupling(8, net="batchnorm").init(jax.random.key(0), jnp.zeros((1, 4, 4, 4)), method="forward")
