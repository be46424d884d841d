"""Glow at toy size: round trip on logit-range inputs, log-det vs Jacobian, shapes, init."""

from __future__ import annotations

import functools
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from magajax.flows.glow import Glow, output_shape
from magajax.flows.squeeze import Squeeze

EPS = 1e-4  # the model's embedding u = logit(clip(x, EPS, 1 − EPS)): values ±9.21


def logit_data(batch: int, size: int, seed: int = 0) -> jax.Array:
    """Binary images in logit space, as the model feeds them to the flow."""
    binary = np.random.default_rng(seed).random((batch, size, size, 1)) < 0.3
    x = np.clip(binary.astype(np.float32), EPS, 1 - EPS)
    return jnp.asarray(np.log(x) - np.log1p(-x), jnp.float32)


def perturb(params, seed: int = 2, scale: float = 0.1):
    """Adds scale·N(0, 1) to every parameter, so no check can pass at the initial values."""
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda a: a + scale * rng.standard_normal(a.shape).astype(a.dtype), params)


@functools.cache
def glow_and_params(kind: str) -> tuple[Glow, dict, Callable]:
    """(Glow(2 levels, 2 steps, hidden 8), perturbed params initialised on 8 images, jitted apply).

    Parameters do not depend on the image size: the same ones serve 8×8 and 16×16 inputs. `init`
    runs eagerly: XLA:CPU compiles each op once per shape, so later inits cost almost nothing.
    """
    glow = Glow(levels=2, steps=2, hidden=8, coupling=kind)
    params = glow.init(jax.random.key(1), logit_data(8, 8), method="forward")
    return glow, perturb(params), glow.apply


@pytest.mark.parametrize("kind", ["additive", "affine"])
@pytest.mark.parametrize("size", [8, 16])
def test_round_trip_on_logit_range_inputs(kind, size):
    _, params, apply = glow_and_params(kind)
    u = logit_data(8, size, seed=3)
    y, ld_fwd = apply(params, u, method="forward")
    u_back, ld_inv = apply(params, y, method="inverse")
    err = float(jnp.abs(u_back - u).max())
    assert err < 1e-3, f"{kind} Glow round trip at {size}x{size}: max abs error {err:.3g}"
    np.testing.assert_allclose(ld_inv, -ld_fwd, rtol=1e-5, atol=1e-3)


def jacobian_logdet(glow: Glow, params, u: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(log|det| of the Jacobian of the flattened per-example map at u (batch 1), Glow's log-det)."""

    @jax.jit
    def both(params, u):
        flat = lambda v: glow.apply(params, v.reshape(u.shape), method="forward")[0].reshape(-1)
        logdet = glow.apply(params, u, method="forward")[1][0]
        return jnp.linalg.slogdet(jax.jacfwd(flat)(u.reshape(-1)))[1], logdet

    return both(params, u)


@pytest.mark.parametrize("kind", ["additive", "affine"])
def test_logdet_matches_jacobian_float32(kind):
    glow, params, _ = glow_and_params(kind)
    expected, got = jacobian_logdet(glow, params, logit_data(1, 8, seed=4))
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("kind", ["additive", "affine"])
def test_logdet_matches_jacobian_float64(kind):
    glow, params, _ = glow_and_params(kind)
    with jax.enable_x64(True):
        to64 = lambda a: jnp.asarray(a, jnp.float64)
        glow64 = glow.clone(dtype=jnp.float64)
        expected, got = jacobian_logdet(glow64, jax.tree.map(to64, params), to64(logit_data(1, 8, seed=4)))
        assert got.dtype == jnp.float64
        np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-8)


def test_shapes_and_output_shape():
    glow, params, apply = glow_and_params("additive")
    assert glow.output_shape((8, 8, 1)) == output_shape((8, 8, 1), 2) == (2, 2, 16)
    for batch in (1, 3, 8):  # shapes only: traced, not compiled
        y, ld = jax.eval_shape(functools.partial(apply, method="forward"), params, logit_data(batch, 8))
        assert y.shape == (batch, 2, 2, 16) and ld.shape == (batch,)
        u, ld_inv = jax.eval_shape(functools.partial(apply, method="inverse"), params, y)
        assert u.shape == (batch, 8, 8, 1) and ld_inv.shape == (batch,)


def unrolled(glow: Glow, params, x: jax.Array, method: str) -> tuple[jax.Array, jax.Array]:
    """Glow's layers applied one after the other (the inverse: in reverse order), summing their log-dets."""

    def run(bound: Glow, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        logdet = jnp.zeros((x.shape[0],), jnp.float32)
        for layer in bound.layers if method == "forward" else reversed(bound.layers):
            x, ld = getattr(layer, method)(x)
            logdet = logdet + ld
        return x, logdet

    return nn.apply(run, glow)(params, x)


@pytest.mark.parametrize("kind", ["additive", "affine"])
@pytest.mark.parametrize("method", ["forward", "inverse"])
def test_scanned_steps_equal_the_unrolled_layers(kind, method):
    glow, params, apply = glow_and_params(kind)
    x = logit_data(4, 8, seed=6)
    if method == "inverse":
        x = apply(params, x, method="forward")[0] + 0.1
    scanned = jax.jit(lambda p, x: glow.clone(scan=True).apply(p, x, method=method))
    reference = jax.jit(functools.partial(unrolled, glow, method=method))
    assert "scan" in str(jax.make_jaxpr(scanned)(params, x)), "the flow steps are not scanned"
    for got, expected in zip(scanned(params, x), reference(params, x), strict=True):
        np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)

    def loss(f):  # a scalar of the output and the log-det, differentiated in the parameters and the input
        return lambda p, x: (lambda y, ld: jnp.sum(jnp.sin(y)) + jnp.sum(ld))(*f(p, x))

    got = jax.jit(jax.grad(loss(scanned), argnums=(0, 1)))(params, x)
    expected = jax.jit(jax.grad(loss(reference), argnums=(0, 1)))(params, x)
    for g, e in zip(jax.tree.leaves(got), jax.tree.leaves(expected), strict=True):  # float32 sums in another order:
        np.testing.assert_allclose(g, e, rtol=0, atol=1e-6 * float(np.abs(e).max()))  # 1e-6 of the leaf's scale
    assert max(float(jnp.abs(g).max()) for g in jax.tree.leaves(got)) > 0


class Action(nn.Module):
    """act(z, u) = f⁻¹(f(u) + A z): Glow inside an enclosing module, as the model uses it."""

    scan: bool = False

    @nn.compact
    def __call__(self, z: jax.Array, u: jax.Array) -> jax.Array:
        glow = Glow(levels=2, steps=2, hidden=8, scan=self.scan, name="glow")
        y, _ = glow.forward(u)
        shift = nn.Dense(int(np.prod(y.shape[1:])), use_bias=False, name="A")(z).reshape(y.shape)
        return glow.inverse(y + shift)[0]


@pytest.mark.parametrize("scan", [False, True])
def test_init_inside_an_enclosing_module(scan):
    u, z = logit_data(8, 8), jax.random.normal(jax.random.key(5), (8, 3))
    params = Action(scan=scan).init(jax.random.key(0), z, u)
    assert set(params["params"]) == {"glow", "A"}  # forward and inverse share one Glow
    squeezed = Squeeze().apply({}, u, method="forward")[0]  # the first ActNorm's input
    glow = params["params"]["glow"]
    np.testing.assert_allclose(glow["actnorm_0_0"]["bias"], -squeezed.mean(axis=(0, 1, 2)), atol=1e-5)
    assert np.abs(glow["invconv_0_0"]["lu"]["lower"] - glow["invconv_0_1"]["lu"]["lower"]).max() > 0.1
    act = Action(scan=scan).apply
    params = perturb(params)
    np.testing.assert_allclose(act(params, jnp.zeros_like(z), u), u, atol=1e-3)
    np.testing.assert_allclose(act(params, -z, act(params, z, u)), u, atol=1e-3)


def test_bad_image_size_raises():
    with pytest.raises(ValueError, match="divisible by 8"):
        Glow(levels=3).init(jax.random.key(0), jnp.zeros((1, 12, 12, 1)), method="forward")
