"""Stride-2 k×k convolution (k even) as space-to-depth, k²/4 shifted copies and one matmul.

  y[b, i, j] = Σ_{u, v < k} xp[b, 2i + u, 2j + v] · K[u, v] + bias,   xp = x zero-padded by p

Writing u = 2·a + r and v = 2·c + s (a, c < k/2; r, s ∈ {0, 1}), xp[2i + u, 2j + v] is entry (r, s)
of the 2×2 block (i + a, j + c) of xp. xp is cut to the 2·(H_out + k/2 − 1) rows (and likewise
columns) that outputs read, which drops at most one final row; with xs = space-to-depth(xp) of
shape (B, H_out + k/2 − 1, W_out + k/2 − 1, 4·c_in), channels ordered (r, s, c_in), the sum is a
stride-1 (k/2)×(k/2) VALID conv of xs, computed like `magajax.ops.conv3x3`, by the smaller side:

- 4·c_in ≤ c_out (im2col): the (k/2)² shifted copies of xs stacked on channels, times K arranged
  as (k²·c_in, c_out);
- otherwise (col2im): xs times K arranged as (4·c_in, (k/2)²·c_out), then the (k/2)² shifted
  (B, H_out, W_out, c_out) slices of the product added.

One 2-D matmul either way, so the gradients are 2-D matmuls too; `lax.conv` on XLA:CPU transposes
its operands for the weight gradient (docs/performance.md has the measurements).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from magajax.ops import conv_impl
from magajax.ops.conv_impl import lax_conv
from magajax.ops.matmul import matmul


def output_side(side: int, kernel: int, pad: int) -> int:
    """Side after one stride-2 conv: ⌊(n + 2p − k) / 2⌋ + 1."""
    return (side + 2 * pad - kernel) // 2 + 1


def stride2_conv(x: jax.Array, kernel: jax.Array, pad: int) -> jax.Array:
    """Stride-2 convolution with `pad` zeros on each side, no bias.

    Args:
      x: (B, H, W, c_in).
      kernel: (k, k, c_in, c_out), k even.
      pad: zero padding on each side (0 is 'VALID').

    Returns:
      (B, H_out, W_out, c_out), H_out = ⌊(H + 2·pad − k) / 2⌋ + 1 (likewise W_out).
    """
    k, k2, c_in, c_out = kernel.shape
    if k != k2 or k % 2 or c_in != x.shape[-1]:
        raise ValueError(f"stride2_conv needs a (k, k, {x.shape[-1]}, c_out) kernel with k even, got {kernel.shape}")
    b, h, w, _ = x.shape
    h_out, w_out = output_side(h, k, pad), output_side(w, k, pad)
    if h_out < 1 or w_out < 1:
        raise ValueError(f"a {h}x{w} input padded by {pad} is smaller than the {k}x{k} kernel; "
                         f"use a larger image or more padding")
    half = k // 2
    # Pad (or crop, where negative) to exactly 2·(out + half − 1) rows and columns: the blocks
    # the outputs read, no more.
    rows, cols = 2 * (h_out + half - 1), 2 * (w_out + half - 1)
    zero = jnp.zeros((), x.dtype)
    xp = jax.lax.pad(x, zero, ((0, 0, 0), (pad, rows - h - pad, 0), (pad, cols - w - pad, 0), (0, 0, 0)))
    xs = xp.reshape(b, rows // 2, 2, cols // 2, 2, c_in).transpose(0, 1, 3, 2, 4, 5)
    xs = xs.reshape(b, rows // 2, cols // 2, 4 * c_in)
    # K[2a + r, 2c + s, ci, co] → (a, c, r, s, ci, co), the order of the blocks' channels.
    weight = kernel.reshape(half, 2, half, 2, c_in, c_out).transpose(0, 2, 1, 3, 4, 5)
    shifts = [(a, c) for a in range(half) for c in range(half)]
    if 4 * c_in <= c_out:  # im2col: stack the shifted blocks, one (k²·c_in, c_out) matmul
        patches = jnp.concatenate([xs[:, a : a + h_out, c : c + w_out] for a, c in shifts], axis=-1)
        return matmul(patches, weight.reshape(k * k * c_in, c_out))
    # col2im: one (4·c_in, (k/2)²·c_out) matmul, then add the shifted (B, H_out, W_out, c_out) taps
    taps = matmul(xs, weight.transpose(2, 3, 4, 0, 1, 5).reshape(4 * c_in, half * half * c_out))
    out = None
    for n, (a, c) in enumerate(shifts):
        tap = taps[:, a : a + h_out, c : c + w_out, n * c_out : (n + 1) * c_out]
        out = tap if out is None else out + tap
    return out


class Stride2Conv(nn.Module):
    """`nn.Conv(features, (k, k), strides=2, padding=pad)` computed by `stride2_conv`; same parameters.

    Attributes:
      features: output channels.
      kernel_size: k (even).
      pad: zero padding on each side.
      kernel_init: initialiser of the (k, k, c_in, features) kernel.
      dtype: compute dtype (parameters stay float32).
      impl: 'matmul' (`stride2_conv`) or 'lax' (`lax.conv_general_dilated`); see `magajax.ops.conv_impl`.
    """

    features: int
    kernel_size: int = 4
    pad: int = 1
    kernel_init: Callable[..., jax.Array] = nn.initializers.lecun_normal()
    dtype: Any = jnp.float32
    impl: str = "matmul"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        k = self.kernel_size
        kernel = self.param("kernel", self.kernel_init, (k, k, x.shape[-1], self.features), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32)
        x, kernel = x.astype(self.dtype), kernel.astype(self.dtype)
        if conv_impl.resolve(self.impl) == "lax":
            return lax_conv(x, kernel, 2, (self.pad, self.pad)) + bias.astype(self.dtype)
        return stride2_conv(x, kernel, self.pad) + bias.astype(self.dtype)
