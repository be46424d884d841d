"""3×3 'SAME' convolution as shifted copies and one matmul (fast where channels are few).

  y[b, i, j] = Σ_{dy, dx ∈ {0,1,2}} x[b, i + dy − 1, j + dx − 1] · K[dy, dx] + bias   (zero padding)

Two exact rewrites of the same sum, chosen by the smaller side:

- c_in ≤ c_out (im2col): stack the 9 shifted copies of x into (B, H, W, 9·c_in) patches and
  multiply by K reshaped to (9·c_in, c_out);
- c_in > c_out (col2im): multiply x by K arranged as (c_in, 9·c_out), then add the 9 shifted
  (B, H, W, c_out) slices of the product.

Both are one 2-D matmul plus pads, slices and adds, so their gradients (by autodiff) are 2-D
matmuls too: faster on XLA:CPU than `lax.conv` and 4-D products where channels are few
(docs/performance.md has the measurements).
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


def _pad(x: jax.Array) -> jax.Array:
    return jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))


def conv3x3(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """SAME 3×3 convolution, stride 1, no bias: x (B, H, W, c_in), kernel (3, 3, c_in, c_out)."""
    if kernel.shape[:2] != (3, 3) or kernel.shape[2] != x.shape[-1]:
        raise ValueError(f"conv3x3 needs a (3, 3, {x.shape[-1]}, c_out) kernel, got {kernel.shape}")
    _, h, w, c_in = x.shape
    c_out = kernel.shape[-1]
    if c_in <= c_out:
        xp = _pad(x)
        patches = jnp.concatenate([xp[:, dy : dy + h, dx : dx + w] for dy in range(3) for dx in range(3)], axis=-1)
        return matmul(patches, kernel.reshape(9 * c_in, c_out))
    taps = _pad(matmul(x, kernel.transpose(2, 0, 1, 3).reshape(c_in, 9 * c_out)))
    out = None
    for dy in range(3):
        for dx in range(3):
            k = (dy * 3 + dx) * c_out
            tap = taps[:, dy : dy + h, dx : dx + w, k : k + c_out]
            out = tap if out is None else out + tap
    return out


class Conv3x3(nn.Module):
    """`nn.Conv(features, (3, 3), padding='SAME')` computed by `conv3x3` (or `lax.conv`); same parameters.

    Attributes:
      features: output channels.
      kernel_init: initialiser of the (3, 3, c_in, features) kernel.
      dtype: compute dtype (parameters stay float32).
      use_bias: add a bias (zero-initialised); without it the module has a kernel only.
      impl: 'matmul' (`conv3x3`) or 'lax' (`lax.conv_general_dilated`); see `magajax.ops.conv_impl`.
    """

    features: int
    kernel_init: Callable[..., jax.Array] = nn.initializers.lecun_normal()
    dtype: Any = jnp.float32
    use_bias: bool = True
    impl: str = "matmul"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kernel = self.param("kernel", self.kernel_init, (3, 3, x.shape[-1], self.features), jnp.float32)
        x, kernel = x.astype(self.dtype), kernel.astype(self.dtype)
        out = lax_conv(x, kernel, 1, "SAME") if conv_impl.resolve(self.impl) == "lax" else conv3x3(x, kernel)
        if not self.use_bias:
            return out
        bias = self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32)
        return out + bias.astype(self.dtype)
