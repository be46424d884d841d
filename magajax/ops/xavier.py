"""Xavier (Glorot) uniform initialisation, drawn as a 2-D matrix."""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp


def xavier_uniform(key: jax.Array, shape: tuple[int, ...], dtype: Any = jnp.float32) -> jax.Array:
    """U(−b, b), b = √(6 / (fan_in + fan_out)), for a dense (in, out) or conv (kh, kw, in, out) kernel.

    fan_in = kh·kw·in and fan_out = kh·kw·out, as `nn.initializers.xavier_uniform()` and torch's
    `xavier_uniform_` on the (out, in, kh, kw) weight count them. Drawn as a (fan_in, out) matrix:
    XLA:CPU compiles the random bits of a 4-D shape several seconds slower than those of a 2-D one.
    """
    receptive = math.prod(shape[:-2])
    bound = math.sqrt(6.0 / (receptive * shape[-2] + receptive * shape[-1]))
    flat = (math.prod(shape[:-1]), shape[-1])
    return jax.random.uniform(key, flat, dtype, -bound, bound).reshape(shape)
