"""MAGANet (Hwang et al., ICML 2023): a learned group action on images, in logit space.

  embed:  u = logit(clip(x, ε, 1 − ε))                      (images in [0, 1] → logits)
          or u = x with input='raw' (the {0, 1} pixels enter the flow as they are)
  code:   z = s(x_varying) − s(x_pivot),  s = mean of q(z | x), or a reparameterised sample
  act:    act(z, u) = f⁻¹(f(u) + A z)                         (f: Glow, A: bias-free Dense d → H·W)
  decode: D(z, x_pivot) = sigmoid(act(z, embed(x_pivot)))     (f⁻¹'s output read as logits)

Because f is a bijection and z enters as a translation of f(u), the group laws hold exactly
(up to float error) in flow-input space for both inputs: act(0, u) = u, act(−z, act(z, u)) = u,
act(z2, act(z1, u)) = act(z1 + z2, u). Only input='logit' makes D(0, x) = x hold on images: with
'raw', act(0, x) = x is read as logits and sigmoid(x) ∈ {0.5, 0.73}.

Batches broadcast: one pivot (1, H, W, 1) against B codes gives B outputs, and f(u) is
computed once for it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import linen as nn

from magajax.config import ModelConfig
from magajax.flows.glow import Glow
from magajax.models.encoder import Encoder, sample
from magajax.ops import conv_impl
from magajax.ops.xavier import xavier_uniform


def transformation_code(
    mean_v: jnp.ndarray, logvar_v: jnp.ndarray, mean_p: jnp.ndarray, logvar_p: jnp.ndarray, key: jax.Array | None
) -> jnp.ndarray:
    """z = s_v − s_p from the posteriors N(μ_v, σ_v²) and N(μ_p, σ_p²), broadcast against each other.

    Without `key`, s = μ; with it, s = μ + σ·ε, ε ~ N(0, I) drawn for every pair (ε_p with the first
    half of split(key), ε_v with the second), so z ~ N(μ_v − μ_p, σ_v² + σ_p²).
    """
    shape = jnp.broadcast_shapes(mean_v.shape, mean_p.shape)
    if key is None:
        return jnp.broadcast_to(mean_v - mean_p, shape)
    key_p, key_v = jax.random.split(key)
    wide = lambda a: jnp.broadcast_to(a, shape)
    return sample(wide(mean_v), wide(logvar_v), key_v) - sample(wide(mean_p), wide(logvar_p), key_p)


class MAGANet(nn.Module):
    """Encoder, Glow flow f and the code map A of one MAGANet; every method works via `apply`.

    Initialise with `MAGANet(config).init(key, x_pivot, x_varying)` on a real batch: it touches
    every parameter, and Glow's ActNorms are initialised from embed(x_pivot), the input the flow's
    forward pass sees in training.

    Attributes:
      config: the model config (image_size, latent_dim, levels, steps, hidden, coupling, eps, input,
        invconv, coupling_net, init, ...). With init='xavier' A is Xavier-uniform too.
    """

    config: ModelConfig

    def setup(self) -> None:
        c = self.config
        self.encoder = Encoder(c)
        self.flow = Glow(c.levels, c.steps, c.hidden, c.coupling, jnp.dtype(c.dtype), c.invconv, c.coupling_net,
                         c.init, scan=c.scan_steps, conv=conv_impl.resolve(c.conv))
        kernel_init = xavier_uniform if c.init == "xavier" else nn.initializers.lecun_normal()
        self.A = nn.Dense(c.image_size * c.image_size, use_bias=False, kernel_init=kernel_init)

    def __call__(self, x_pivot: jnp.ndarray, x_varying: jnp.ndarray) -> jnp.ndarray:
        """Reconstruction logits of x_varying from x_pivot with the mean code (used for `init`)."""
        return self.decode_logits(self.encode(x_varying, x_pivot), x_pivot)

    def embed(self, x: jnp.ndarray) -> jnp.ndarray:
        """The flow's input u of images (B, H, W, 1) in [0, 1]: logit(clip(x, ε, 1 − ε)), |u| ≤ logit(1 − ε),
        or x itself with input='raw'."""
        x = x.astype(jnp.float32)
        if self.config.input == "raw":
            return x
        x = jnp.clip(x, self.config.eps, 1.0 - self.config.eps)
        return jnp.log(x) - jnp.log1p(-x)

    def reencoded(self, logits: jnp.ndarray) -> jnp.ndarray:
        """The image the latent term re-encodes from decoder logits: sigmoid(logits), or the logits
        themselves with input='raw' (f⁻¹'s output as it is)."""
        return logits if self.config.input == "raw" else jax.nn.sigmoid(logits)

    def posterior(self, x: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
        """q(z | x): images (B, H, W, 1) → (mean, logvar), each (B, d)."""
        return self.encoder(x)

    def encode(self, x_varying: jnp.ndarray, x_pivot: jnp.ndarray, key: jax.Array | None = None) -> jnp.ndarray:
        """Transformation code z = s(x_varying) − s(x_pivot), (B, d).

        Without `key`, s is the mean (z = μ_v − μ_p); with it, s is a reparameterised sample drawn
        independently for every pair, so z ~ N(μ_v − μ_p, σ_v² + σ_p²) even when one pivot is
        broadcast against B varying images.
        """
        return transformation_code(*self.posterior(x_varying), *self.posterior(x_pivot), key)

    def to_flow(self, u: jnp.ndarray) -> jnp.ndarray:
        """y = f(u): logits (B, H, W, 1) → (B, H/2^L, W/2^L, 4^L)."""
        return self.flow.forward(u)[0]

    def from_flow(self, y: jnp.ndarray) -> jnp.ndarray:
        """u = f⁻¹(y): (B, H/2^L, W/2^L, 4^L) → logits (B, H, W, 1)."""
        return self.flow.inverse(y)[0]

    def shift(self, z: jnp.ndarray) -> jnp.ndarray:
        """A z reshaped to f's output shape: codes (B, d) → (B, H/2^L, W/2^L, 4^L)."""
        side = self.config.image_size >> self.config.levels
        return self.A(z.astype(jnp.float32)).reshape(z.shape[0], side, side, 4**self.config.levels)

    def act(self, z: jnp.ndarray, u: jnp.ndarray) -> jnp.ndarray:
        """act(z, u) = f⁻¹(f(u) + A z): codes (B, d) and logits (B or 1, H, W, 1) → logits (B, H, W, 1)."""
        return self.from_flow(self.to_flow(u) + self.shift(z))

    def decode_logits(self, z: jnp.ndarray, x_pivot: jnp.ndarray) -> jnp.ndarray:
        """Logits act(z, embed(x_pivot)), (B, H, W, 1)."""
        return self.act(z, self.embed(x_pivot))

    def decode(self, z: jnp.ndarray, x_pivot: jnp.ndarray) -> jnp.ndarray:
        """Images sigmoid(decode_logits(z, x_pivot)) in [0, 1], (B, H, W, 1)."""
        return jax.nn.sigmoid(self.decode_logits(z, x_pivot))
