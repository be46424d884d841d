"""Coupling layer: transform half the channels conditioned on the other half (Glow, §3.3)."""

from __future__ import annotations

import functools
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from magajax.ops.conv3x3 import Conv3x3

KINDS = ("additive", "affine")


def conv_init(key: jax.Array, shape: tuple[int, ...], dtype: Any = jnp.float32) -> jax.Array:
    """LeCun-normal conv kernel (fan-in = kh·kw·c_in) drawn as a (fan-in, c_out) matrix.

    The same distribution as `nn.initializers.lecun_normal()`, but XLA:CPU compiles the random
    bits of a 4-D shape several seconds slower than those of a 2-D one (jax 0.10.2).
    """
    return nn.initializers.lecun_normal()(key, (math.prod(shape[:-1]), shape[-1]), dtype).reshape(shape)


class Coupling(nn.Module):
    """Coupling on the channel halves x = (x_a, x_b), x_a the first C/2 channels.

    additive:  forward  y = (x_a, x_b + t),          t = net(x_a)
               inverse  x = (y_a, y_b − t),          t = net(y_a)
               log-det  0
    affine:    forward  y = (x_a, x_b · s + t),      (t, h) = net(x_a),  s = 2·sigmoid(h) ∈ (0, 2)
               inverse  x = (y_a, (y_b − t) / s),    (t, h) = net(y_a)
               log-det  Σ_{h,w,c} (log 2 + log_sigmoid(h))  (forward; the inverse's is its negation)

    The net's last conv is zero-initialised, so both kinds start as the identity (s = 1, t = 0).
    The net computes in `dtype`; its output is cast back to the input's dtype, so the inverse
    recomputes exactly the same t and s and stays exact whatever the compute dtype.

    Attributes:
      hidden: width of the coupling net.
      kind: 'additive' or 'affine'.
      dtype: compute dtype of the coupling net (parameters stay float32).
      conv: the 3×3 convs' form, 'matmul' or 'lax' (`magajax.ops.conv_impl`).
    """

    hidden: int
    kind: str = "additive"
    dtype: Any = jnp.float32
    conv: str = "matmul"

    def _split(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        c = x.shape[-1]
        if c < 2 or c % 2:
            raise ValueError(f"Coupling needs an even number (>= 2) of channels, got {c}; squeeze first")
        return x[..., : c // 2], x[..., c // 2 :]

    @nn.compact
    def _shift_scale(self, x_a: jax.Array, c_b: int) -> tuple[jax.Array, jax.Array | None]:
        """(t, h) = net(x_a); h is None for the additive kind.

        net: Conv3×3(hidden) → ReLU → Conv1×1(hidden) → ReLU → zero-initialised Conv3×3. The 1×1
        conv is a Dense over the pixels flattened to 2-D (one matmul) and the 3×3 convs are
        `Conv3x3` (shifted copies and one 2-D matmul): the same parameters as `nn.Conv`, and
        faster on XLA:CPU than `lax.conv` and 4-D products (docs/performance.md).
        """
        if self.kind not in KINDS:
            raise ValueError(f"unknown coupling kind {self.kind!r}; use one of {KINDS}")
        out = c_b if self.kind == "additive" else 2 * c_b
        conv = functools.partial(Conv3x3, dtype=self.dtype, impl=self.conv)
        h = nn.relu(conv(self.hidden, kernel_init=conv_init, name="conv_in")(x_a))
        h = nn.relu(nn.Dense(self.hidden, dtype=self.dtype, name="conv_mid")(h.reshape(-1, self.hidden)))
        h = h.reshape(*x_a.shape[:-1], self.hidden)
        h = conv(out, kernel_init=nn.initializers.zeros, name="conv_out")(h).astype(x_a.dtype)
        return (h, None) if self.kind == "additive" else (h[..., :c_b], h[..., c_b:])

    def _logdet(self, h: jax.Array | None, x: jax.Array) -> jax.Array:
        if h is None:
            return jnp.zeros((x.shape[0],), x.dtype)
        return jnp.sum(jnp.log(2.0) + jax.nn.log_sigmoid(h), axis=(1, 2, 3))

    def forward(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        x_a, x_b = self._split(x)
        t, h = self._shift_scale(x_a, x_b.shape[-1])
        y_b = x_b + t if h is None else x_b * (2.0 * jax.nn.sigmoid(h)) + t
        return jnp.concatenate([x_a, y_b], axis=-1), self._logdet(h, x)

    def inverse(self, y: jax.Array) -> tuple[jax.Array, jax.Array]:
        y_a, y_b = self._split(y)
        t, h = self._shift_scale(y_a, y_b.shape[-1])
        x_b = y_b - t if h is None else (y_b - t) / (2.0 * jax.nn.sigmoid(h))
        return jnp.concatenate([y_a, x_b], axis=-1), -self._logdet(h, y)
