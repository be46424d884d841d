"""ActNorm: per-channel affine map with data-dependent initialisation (Glow, §3.1)."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp


class ActNorm(nn.Module):
    """Per-channel shift and scale, initialised so the first batch is normalised.

    Forward:  y = (x + b) · exp(logs)              (b, logs ∈ R^C, broadcast over B, H, W)
    Inverse:  x = y · exp(−logs) − b
    Log-det:  H · W · Σ_c logs_c  (forward; the inverse's is its negation)

    Initialisation is data-dependent: the batch passed to `init` (through `forward`) sets
    b = −mean(x) and logs = −log(std(x) + eps) per channel, so that batch comes out with zero
    mean and unit variance in every channel. `apply` never re-initialises.

    Attributes:
      eps: added to the initial standard deviation (guards constant channels).
    """

    eps: float = 1e-6

    @nn.compact
    def _params(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """The (b, logs) parameters; at `init` they are computed from the batch `x`."""
        axes = tuple(range(x.ndim - 1))
        mean = lambda _: -jnp.mean(x, axis=axes).astype(jnp.float32)
        logs = lambda _: -jnp.log(jnp.std(x, axis=axes) + self.eps).astype(jnp.float32)
        return self.param("bias", mean), self.param("logs", logs)

    def _logdet(self, x: jax.Array, logs: jax.Array) -> jax.Array:
        h, w = x.shape[1:3]
        return jnp.full((x.shape[0],), h * w * jnp.sum(logs), dtype=logs.dtype)

    def forward(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        bias, logs = self._params(x)
        return (x + bias) * jnp.exp(logs), self._logdet(x, logs)

    def inverse(self, y: jax.Array) -> tuple[jax.Array, jax.Array]:
        bias, logs = self._params(y)
        return y * jnp.exp(-logs) - bias, -self._logdet(y, logs)
