"""The Burgess et al. (2018) convolutional encoder: image → (mean, logvar) of a diagonal Gaussian.

Architecture (the reference implementation's, d = config.latent_dim):
  k × [Conv(32, kernel 4, stride 2, padding p) + ReLU] → flatten   (convs by `Stride2Conv`)
  → Dense(256) + ReLU → Dense(256) + ReLU → Dense(2d) → (mean, logvar) = (first d, last d).

With config.init='xavier' every conv and dense kernel is Xavier-uniform (biases zero); the mean
and logvar halves of the last Dense are each drawn with fan_out d, as two Linear(256, d) would be.

p is `config.encoder_padding`: an int (1, the reference's, halves the side: 64 → 32 → 16 → 8 → 4)
or 'VALID' (no padding: 64 → 31 → 14 → 6 → 2). A 64×64 image uses all k = 4 convs. Smaller images
use fewer: convs are applied while the side stays at least what a 64×64 image ends with (4 for
padding 1, 2 for 'VALID'), so 32 → k = 3, 16 → k = 2, 8 → k = 1 for both paddings.

The widths are attributes: the blog's VAE uses convs of 32, 64, 128, 256 channels (the first k of
them) and no hidden layers, its heads one Dense(2d) on the flattened features (`models.vae`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import linen as nn

from magajax.config import ModelConfig
from magajax.ops import conv_impl
from magajax.ops.stride2_conv import Stride2Conv, output_side
from magajax.ops.xavier import xavier_uniform

CHANNELS = 32  # conv width
HIDDEN = 256  # MLP width
KERNEL = 4
MAX_CONVS = 4
REFERENCE_SIZE = 64  # the image side for which all MAX_CONVS convs are used


def sample(mean: jnp.ndarray, logvar: jnp.ndarray, key: jax.Array) -> jnp.ndarray:
    """Reparameterised sample of the posterior N(mean, exp(logvar)): mean + exp(logvar / 2) · ε, ε ~ N(0, I)."""
    return mean + jnp.exp(0.5 * logvar) * jax.random.normal(key, mean.shape, mean.dtype)


def xavier_heads(key: jax.Array, shape: tuple[int, int], dtype=jnp.float32) -> jax.Array:
    """Xavier-uniform (fan_in, 2d) kernel of the mean and logvar heads, each half with fan_out d."""
    half = (shape[0], shape[1] // 2)
    return jnp.concatenate([xavier_uniform(k, half, dtype) for k in jax.random.split(key)], axis=-1)


def padding_amount(padding: int | str) -> int:
    """Pixels of zero padding on each side for `config.encoder_padding` (1, 0 or 'VALID')."""
    if isinstance(padding, str) and padding.upper() == "VALID":
        return 0
    if isinstance(padding, int) and not isinstance(padding, bool) and 0 <= padding < KERNEL:
        return padding
    raise ValueError(f"encoder_padding must be an int in 0..{KERNEL - 1} or 'VALID', got {padding!r}")


def conv_sides(image_size: int, padding: int | str) -> list[int]:
    """Spatial sides [n_0 = image_size, n_1, ..., n_k] through the encoder's k stride-2 convs.

    Convs are added (at most 4) while the side stays ≥ the side a 64×64 image ends with.

    Args:
      image_size: side of the square input.
      padding: `config.encoder_padding`.
    """
    pad = padding_amount(padding)
    floor = REFERENCE_SIZE
    for _ in range(MAX_CONVS):
        floor = output_side(floor, KERNEL, pad)
    sides = [image_size]
    while len(sides) <= MAX_CONVS and output_side(sides[-1], KERNEL, pad) >= floor:
        sides.append(output_side(sides[-1], KERNEL, pad))
    if len(sides) == 1:
        raise ValueError(
            f"image_size {image_size} is too small for the encoder with padding {padding!r}: "
            f"one stride-2 conv would leave a side below {floor}; use image_size >= 8"
        )
    return sides


class Encoder(nn.Module):
    """q(z | x): images (B, H, W, 1) in [0, 1] → mean, logvar, each (B, d) float32.

    Attributes:
      config: the model config (image_size, latent_dim, encoder_padding, dtype, conv).
      channels: output channels of conv i (the first k are used).
      hidden: widths of the ReLU Dense layers between the convs and the Dense(2d) head.
    """

    config: ModelConfig
    channels: tuple[int, ...] = (CHANNELS,) * MAX_CONVS
    hidden: tuple[int, ...] = (HIDDEN, HIDDEN)

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
        c = self.config
        dtype = jnp.dtype(c.dtype)
        pad = padding_amount(c.encoder_padding)
        xavier = c.init == "xavier"
        kernel = xavier_uniform if xavier else nn.initializers.lecun_normal()
        h = x.astype(dtype)
        for i in range(len(conv_sides(c.image_size, c.encoder_padding)) - 1):
            h = Stride2Conv(self.channels[i], KERNEL, pad, kernel_init=kernel, dtype=dtype,
                            impl=conv_impl.resolve(c.conv), name=f"Conv_{i}")(h)
            h = nn.relu(h)
        h = h.reshape(h.shape[0], -1)
        for width in self.hidden:
            h = nn.relu(nn.Dense(width, kernel_init=kernel, dtype=dtype)(h))
        heads = xavier_heads if xavier else kernel
        h = nn.Dense(2 * c.latent_dim, kernel_init=heads, dtype=dtype)(h).astype(jnp.float32)
        return h[:, : c.latent_dim], h[:, c.latent_dim :]
