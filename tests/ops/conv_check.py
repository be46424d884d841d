"""A convolution rewrite checked against a reference convolution: values and both gradients."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

Conv = Callable[[jax.Array, jax.Array], jax.Array]


def normal(rng: np.random.Generator, shape: tuple[int, ...]) -> jax.Array:
    """float32 N(0, 1) drawn in NumPy (jax.random's 4-D draws compile slowly on XLA:CPU)."""
    return jnp.asarray(rng.normal(size=shape), jnp.float32)


def assert_same_conv(ours: Conv, reference: Conv, x: jax.Array, kernel: jax.Array) -> jax.Array:
    """ours(x, kernel) equals reference(x, kernel), and so do the gradients of Σ conv(x, kernel)·c
    with respect to x and kernel for a random cotangent c (everything jitted). Returns the output."""
    want = jax.jit(reference)(x, kernel)
    np.testing.assert_allclose(jax.jit(ours)(x, kernel), want, rtol=1e-5, atol=1e-5)
    cot = normal(np.random.default_rng(1), want.shape)
    grads = lambda conv: jax.jit(jax.grad(lambda x, k: jnp.sum(conv(x, k) * cot), argnums=(0, 1)))(x, kernel)
    for got, expected in zip(grads(ours), grads(reference)):
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-4)
    return want
