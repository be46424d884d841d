"""Loss terms of MAGANet and of the VAE baseline (DESIGN §4).

Every term is computed per image and returned with shape (B,); the train step averages
over the batch. Reconstruction is in nats per image, summed over pixels.

  recon  = Σ_pixels BCE-with-logits(D(z, x_pivot), x_varying)
  kl     = KL(N(μ_v − μ_p, σ_v² + σ_p²) ‖ N(0, I)), summed over the d code dimensions
  latent = Σ_d |E(x_pivot, sigmoid(D(z, x_pivot))) − z|
  total  = recon + β_KL·kl + β_lat·latent          (VAE: recon + β·kl)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def recon(logits: jax.Array, targets: jax.Array) -> jax.Array:
    """Σ over pixels of BCE-with-logits; images (B, H, W, C) → (B,) nats per image."""
    bce = optax.sigmoid_binary_cross_entropy(logits, targets)
    return bce.reshape(bce.shape[0], -1).sum(axis=-1)


def kl(mean: jax.Array, logvar: jax.Array) -> jax.Array:
    """KL(N(mean, exp(logvar)) ‖ N(0, I)) = ½ Σ_d (σ² + μ² − 1 − log σ²); (B, d) → (B,)."""
    return 0.5 * jnp.sum(jnp.exp(logvar) + jnp.square(mean) - 1.0 - logvar, axis=-1)


def code_distribution(
    mean_v: jax.Array, logvar_v: jax.Array, mean_p: jax.Array, logvar_p: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Distribution of z = s_v − s_p for independent Gaussians: N(μ_v − μ_p, σ_v² + σ_p²).

    Returns (mean, logvar), with log(σ_v² + σ_p²) = logaddexp(logvar_v, logvar_p).
    """
    return mean_v - mean_p, jnp.logaddexp(logvar_v, logvar_p)


def latent(z_hat: jax.Array, z: jax.Array) -> jax.Array:
    """Σ_d |ẑ − z|: the code re-encoded from the decoded image against the code used; (B,)."""
    return jnp.sum(jnp.abs(z_hat - z), axis=-1)


def maganet_total(
    recon_: jax.Array, kl_: jax.Array, latent_: jax.Array, beta_kl: float, beta_lat: float
) -> jax.Array:
    """recon + β_KL·kl + β_lat·latent, per image."""
    return recon_ + beta_kl * kl_ + beta_lat * latent_


def vae_total(recon_: jax.Array, kl_: jax.Array, beta: float) -> jax.Array:
    """Negative ELBO with a β on the KL (β-VAE): recon + β·kl, per image."""
    return recon_ + beta * kl_
