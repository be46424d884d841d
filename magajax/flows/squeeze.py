"""Squeeze: trade space for channels, (H, W, C) -> (H/2, W/2, 4C)."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp


class Squeeze(nn.Module):
    """Space-to-depth on 2×2 blocks; a permutation of the entries, so volume preserving.

    Forward:  y[b, i, j, (dy·2 + dx)·C + c] = x[b, 2i + dy, 2j + dx, c],
              (B, H, W, C) -> (B, H/2, W/2, 4C).
    Inverse:  the same index map read backwards, (B, H/2, W/2, 4C) -> (B, H, W, C).
    Log-det:  0 (a permutation of coordinates).
    """

    def forward(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        b, h, w, c = x.shape
        if h % 2 or w % 2:
            raise ValueError(f"Squeeze needs even height and width, got {h}x{w}; pad or resize the input")
        y = x.reshape(b, h // 2, 2, w // 2, 2, c).transpose(0, 1, 3, 2, 4, 5)
        return y.reshape(b, h // 2, w // 2, 4 * c), jnp.zeros((b,), x.dtype)

    def inverse(self, y: jax.Array) -> tuple[jax.Array, jax.Array]:
        b, h, w, c4 = y.shape
        if c4 % 4:
            raise ValueError(f"Squeeze.inverse needs a channel count divisible by 4, got {c4}")
        c = c4 // 4
        x = y.reshape(b, h, w, 2, 2, c).transpose(0, 1, 3, 2, 4, 5)
        return x.reshape(b, 2 * h, 2 * w, c), jnp.zeros((b,), y.dtype)
