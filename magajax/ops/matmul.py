"""A product over the last axis written as one 2-D matmul."""

from __future__ import annotations

import jax


def matmul(x: jax.Array, weight: jax.Array) -> jax.Array:
    """x (..., c_in) @ weight (c_in, c_out) as one 2-D matmul over the flattened leading axes.

    XLA:CPU differentiates a 2-D product faster than the same product of a 4-D array, which it
    may fuse with neighbouring element-wise ops into a slow loop.
    """
    return (x.reshape(-1, x.shape[-1]) @ weight).reshape(*x.shape[:-1], weight.shape[-1])
