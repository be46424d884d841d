"""Coupling layer: transform half the channels conditioned on the other half (Glow, §3.3)."""

from __future__ import annotations

import functools
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from magajax.flows.actnorm import ActNorm
from magajax.ops.conv3x3 import Conv3x3
from magajax.ops.xavier import xavier_uniform

KINDS = ("additive", "affine")
NETS = ("bias", "actnorm")
INITS = ("default", "xavier")
LOGSCALE_FACTOR = 3.0  # the actnorm net's output is scaled by exp(3·out_logs), as Glow's


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

    net 'bias':     Conv3×3(hidden) → ReLU → Conv1×1(hidden) → ReLU → Conv3×3(out), convs with biases.
    net 'actnorm':  Glow's original: Conv3×3(hidden, no bias) → ActNorm → ReLU → Conv1×1(hidden, no bias)
                    → ActNorm → ReLU → Conv3×3(out) whose output is multiplied by exp(3·out_logs)
                    (out_logs per output channel, initialised 0). Its ActNorms are initialised from the
                    batch at `init`, like the flow's. The affine kind keeps the formula above whatever
                    the net (only the net changes).

    init 'default': LeCun-normal convs and a zero-initialised last conv, so both kinds start as the
    identity (s = 1, t = 0). init 'xavier': Xavier-uniform for every conv including the last one,
    biases zero, so the coupling does not start as the identity.
    The net computes in `dtype`; its output is cast back to the input's dtype, so the inverse
    recomputes exactly the same t and s and stays exact whatever the compute dtype.

    Attributes:
      hidden: width of the coupling net.
      kind: 'additive' or 'affine'.
      dtype: compute dtype of the coupling net (parameters stay float32).
      net: 'bias' or 'actnorm'.
      weight_init: 'default' or 'xavier'.
      conv: the 3×3 convs' form, 'matmul' or 'lax' (`magajax.ops.conv_impl`).
    """

    hidden: int
    kind: str = "additive"
    dtype: Any = jnp.float32
    net: str = "bias"
    weight_init: str = "default"
    conv: str = "matmul"

    def _split(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        c = x.shape[-1]
        if c < 2 or c % 2:
            raise ValueError(f"Coupling needs an even number (>= 2) of channels, got {c}; squeeze first")
        return x[..., : c // 2], x[..., c // 2 :]

    @nn.compact
    def _shift_scale(self, x_a: jax.Array, c_b: int) -> tuple[jax.Array, jax.Array | None]:
        """(t, h) = net(x_a); h is None for the additive kind.

        The 1×1 conv is a Dense over the pixels flattened to 2-D (one matmul) and the 3×3 convs are
        `Conv3x3` (shifted copies and one 2-D matmul): the same parameters as `nn.Conv`, and
        faster on XLA:CPU than `lax.conv` and 4-D products (docs/performance.md).
        """
        if self.kind not in KINDS:
            raise ValueError(f"unknown coupling kind {self.kind!r}; use one of {KINDS}")
        if self.net not in NETS or self.weight_init not in INITS:
            raise ValueError(f"unknown coupling net {self.net!r} or init {self.weight_init!r}; "
                             f"use one of {NETS} and {INITS}")
        out = c_b if self.kind == "additive" else 2 * c_b
        xavier = self.weight_init == "xavier"
        first = xavier_uniform if xavier else conv_init
        last = xavier_uniform if xavier else nn.initializers.zeros
        mid = xavier_uniform if xavier else nn.initializers.lecun_normal()
        bias = self.net == "bias"
        conv = functools.partial(Conv3x3, dtype=self.dtype, impl=self.conv)
        norm = (lambda h, name: h) if bias else (lambda h, name: ActNorm(name=name).forward(h)[0])
        h = nn.relu(norm(conv(self.hidden, kernel_init=first, use_bias=bias, name="conv_in")(x_a), "actnorm_in"))
        h = nn.Dense(self.hidden, use_bias=bias, kernel_init=mid, dtype=self.dtype, name="conv_mid")(
            h.reshape(-1, self.hidden))
        h = nn.relu(norm(h.reshape(*x_a.shape[:-1], self.hidden), "actnorm_mid"))
        h = conv(out, kernel_init=last, name="conv_out")(h)
        if not bias:
            h = h * jnp.exp(LOGSCALE_FACTOR * self.param("out_logs", nn.initializers.zeros, (out,), jnp.float32))
        h = h.astype(x_a.dtype)
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
