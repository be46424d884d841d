"""The VAE / β-VAE baseline: an encoder of k stride-2 convs and a decoder mirroring it.

Two architectures (`config.vae`), with conv channels c_1..c_k (the first k of 4, see `conv_sides`
for k and the sides n_0 > n_1 > ... > n_k; a 64×64 image has k = 4, 64 → 32 → 16 → 8 → 4):

- burgess (Burgess et al. 2018, the MAGANet encoder): c = 32, 32, 32, 32, encoder MLP 256, 256;
  decoder z → Dense(256) + ReLU → Dense(256) + ReLU → Dense(32·n_k²) + ReLU → reshape (n_k, n_k, 32)
  → (k − 1) × [ConvTranspose(32) + ReLU] → ConvTranspose(1).
- blog (the blog's VAE): c = 32, 64, 128, 256, the heads (mean, logvar) one Dense(2d) on the
  flattened c_k·n_k² features (4,096 at 64×64); decoder z → Dense(c_k·n_k²) + ReLU → reshape
  (n_k, n_k, c_k) → ConvTranspose c_k → c_{k−1} → ... → c_1 (ReLU after each) → ConvTranspose(1).
  A 16×16 image has k = 2: convs 32, 64, features 64·4·4, decoder 64 → 32 → 1.

Every transposed conv has kernel 4 and stride 2 and maps side n_{i+1} back to n_i exactly:
PyTorch's ConvTranspose2d(padding p) plus an output padding where the encoder's floor dropped a
pixel. The decoder's output is the logits (B, H, W, 1).

Sampling: z = mean + exp(logvar / 2) · ε, ε ~ N(0, I). Images are sigmoid(logits).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import linen as nn

from magajax.config import ModelConfig
from magajax.models.encoder import (
    CHANNELS,
    HIDDEN,
    KERNEL,
    MAX_CONVS,
    Encoder,
    conv_sides,
    padding_amount,
    sample,
)

# config.vae → conv channels c_1..c_4 and the hidden widths of the encoder's and decoder's MLPs.
ARCHITECTURES = {
    "burgess": {"channels": (CHANNELS,) * MAX_CONVS, "hidden": (HIDDEN, HIDDEN)},
    "blog": {"channels": (32, 64, 128, 256), "hidden": ()},
}


class VAE(nn.Module):
    """VAE baseline: `__call__(x, key) -> (logits, mean, logvar)`; d = config.latent_dim.

    Attributes:
      config: the model config (image_size, latent_dim, encoder_padding, dtype, vae).
    """

    config: ModelConfig

    def setup(self) -> None:
        c = self.config
        arch = ARCHITECTURES[c.vae]
        self.sides = conv_sides(c.image_size, c.encoder_padding)
        self.encoder = Encoder(c, **arch)
        dtype = jnp.dtype(c.dtype)
        n_k, k = self.sides[-1], len(self.sides) - 1
        self.channels = arch["channels"][:k]
        self.dense = [nn.Dense(n, dtype=dtype) for n in (*arch["hidden"], self.channels[-1] * n_k * n_k)]
        lo = KERNEL - 1 - padding_amount(c.encoder_padding)  # PyTorch padding p → lax padding k − 1 − p
        deconvs = []
        for i in range(len(self.sides) - 1, 0, -1):
            # lax output side: 2(n − 1) + 1 + lo + hi − k + 1 = target  ⇒  hi = target − 2n + k − lo.
            hi = self.sides[i - 1] - 2 * self.sides[i] + KERNEL - lo
            features = self.channels[i - 2] if i > 1 else 1
            padding = ((lo, hi), (lo, hi))
            deconvs.append(nn.ConvTranspose(features, (KERNEL, KERNEL), strides=(2, 2), padding=padding, dtype=dtype))
        self.deconvs = deconvs

    def __call__(self, x: jnp.ndarray, key: jax.Array) -> tuple[jnp.ndarray, jnp.ndarray, jnp.ndarray]:
        """Encodes x, samples z with `key`, decodes: (logits (B, H, W, 1), mean, logvar)."""
        mean, logvar = self.posterior(x)
        return self.decode_logits(sample(mean, logvar, key)), mean, logvar

    def posterior(self, x: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
        """q(z | x): images (B, H, W, 1) in [0, 1] → (mean, logvar), each (B, d)."""
        return self.encoder(x)

    def encode(self, x: jnp.ndarray, key: jax.Array | None = None) -> jnp.ndarray:
        """The code of x: a reparameterised sample with `key`, the mean without."""
        mean, logvar = self.posterior(x)
        return mean if key is None else sample(mean, logvar, key)

    def decode_logits(self, z: jnp.ndarray) -> jnp.ndarray:
        """p(x | z): codes (B, d) → Bernoulli logits (B, H, W, 1) float32."""
        h = z.astype(jnp.dtype(self.config.dtype))
        for dense in self.dense:
            h = nn.relu(dense(h))
        n_k = self.sides[-1]
        h = h.reshape(h.shape[0], n_k, n_k, self.channels[-1])
        for deconv in self.deconvs[:-1]:
            h = nn.relu(deconv(h))
        return self.deconvs[-1](h).astype(jnp.float32)

    def decode(self, z: jnp.ndarray) -> jnp.ndarray:
        """Images sigmoid(decode_logits(z)) in [0, 1], (B, H, W, 1)."""
        return jax.nn.sigmoid(self.decode_logits(z))
