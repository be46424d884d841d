"""The loss of MAGANet and of the VAE baseline, per example: training averages it, evaluation keeps it.

MAGANet, for a pair (x_pivot, x_varying) with posteriors q(z | x) = N(μ, σ²):

  z      = s_v − s_p,  s = μ + σ·ε (sampled codes) or s = μ (mean codes)
  recon  = Σ_pixels BCE-with-logits(D(z, x_pivot), x_varying)                 nats per image
  kl     = KL(N(μ_v − μ_p, σ_v² + σ_p²) ‖ N(0, I)), summed over the d code dimensions
  latent = Σ_d |μ(σ(D(z, x_pivot))) − μ_p − z|            the code read back from the decoded image
  total  = recon + β_KL·kl + β_lat·latent

The VAE reconstructs x_varying itself: z = s(x_varying), recon of its decoder's logits,
kl = KL(q(z | x_varying) ‖ N(0, I)) and total = recon + β·kl (β = β_KL).

`terms` computes them for one of three pair modes, and the fast paths live here alone:
'pivot' (every x_pivot is one image: its posterior and f(embed(x_pivot)) are computed once and
broadcast), 'shuffle' (x_pivot = x_varying[perm]: the pivots' posteriors are the varying images'
ones, permuted) and 'general' (any pairs).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import linen as nn

from magajax.config import TrainConfig
from magajax.models.encoder import sample as reparameterise
from magajax.models.maganet import transformation_code

PAIRS = ("pivot", "shuffle", "general")


def bce_per_image(logits: jax.Array, targets: jax.Array) -> jax.Array:
    """Σ over pixels of BCE-with-logits; images (B, H, W, C) → (B,) nats per image."""
    bce = optax.sigmoid_binary_cross_entropy(logits, targets)
    return bce.reshape(bce.shape[0], -1).sum(axis=-1)


def kl_to_standard_normal(mean: jax.Array, logvar: jax.Array) -> jax.Array:
    """KL(N(mean, exp(logvar)) ‖ N(0, I)) = ½ Σ_d (σ² + μ² − 1 − log σ²); (B, d) → (B,)."""
    return 0.5 * jnp.sum(jnp.exp(logvar) + jnp.square(mean) - 1.0 - logvar, axis=-1)


def code_distribution(
    mean_v: jax.Array, logvar_v: jax.Array, mean_p: jax.Array, logvar_p: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Distribution of z = s_v − s_p for independent Gaussians: N(μ_v − μ_p, σ_v² + σ_p²).

    Returns (mean, logvar), with log(σ_v² + σ_p²) = logaddexp(logvar_v, logvar_p).
    """
    return mean_v - mean_p, jnp.logaddexp(logvar_v, logvar_p)


def code_error(z_read: jax.Array, z: jax.Array) -> jax.Array:
    """Σ_d |ẑ − z|: the code read back from the decoded image against the code used; (B, d) → (B,)."""
    return jnp.sum(jnp.abs(z_read - z), axis=-1)


class Reconstruction(NamedTuple):
    """What the model made of a batch: the decoder's logits, the code used and its distribution.

    Attributes:
      logits: (B, H, W, 1) logits of the reconstruction of x_varying.
      z: (B, d) the code decoded.
      mean, logvar: (B, d) the distribution z was drawn from: N(μ_v − μ_p, σ_v² + σ_p²) for MAGANet,
        q(z | x_varying) for the VAE.
      mean_pivot: μ_p, (B or 1, d), for MAGANet; None for the VAE.
    """

    logits: jax.Array
    z: jax.Array
    mean: jax.Array
    logvar: jax.Array
    mean_pivot: jax.Array | None


def reconstruct(
    module: nn.Module, variables: Any, x_pivot: jax.Array | None, x_varying: jax.Array, key: jax.Array | None,
    *, pairs: str, perm: jax.Array | None = None,
) -> Reconstruction:
    """Decodes x_varying: MAGANet from x_pivot with z = s_v − s_p, the VAE from its own code.

    Args:
      module: a MAGANet or VAE module.
      variables: its variables.
      x_pivot: (B, H, W, 1) pivots, or (1, H, W, 1) with pairs='pivot'; unused by the VAE.
      x_varying: (B, H, W, 1) the images to reconstruct.
      key: the codes are reparameterised samples drawn with it; None for the posterior means.
      pairs: 'pivot' (every pivot the same image), 'shuffle' (x_pivot = x_varying[perm]) or 'general'.
      perm: (B,) the permutation of 'shuffle' pairs.
    """
    if pairs not in PAIRS:
        raise ValueError(f"unknown pair mode {pairs!r}; use one of {', '.join(PAIRS)}")
    if pairs == "shuffle" and perm is None:
        raise ValueError("pairs='shuffle' needs perm, the permutation with x_pivot = x_varying[perm]")
    apply = lambda *a, method: module.apply(variables, *a, method=method)
    if module.config.kind == "vae":
        mean, logvar = apply(x_varying, method="posterior")
        z = mean if key is None else reparameterise(mean, logvar, key)
        return Reconstruction(apply(z, method="decode_logits"), z, mean, logvar, None)
    if pairs == "pivot":
        x_pivot = x_pivot[:1]
    if pairs == "shuffle":
        mean_v, logvar_v = apply(x_varying, method="posterior")
        mean_p, logvar_p = mean_v[perm], logvar_v[perm]
    else:
        n_pivot = x_pivot.shape[0]
        mean, logvar = apply(jnp.concatenate([x_pivot, x_varying]), method="posterior")
        mean_p, logvar_p, mean_v, logvar_v = mean[:n_pivot], logvar[:n_pivot], mean[n_pivot:], logvar[n_pivot:]
    z = transformation_code(mean_v, logvar_v, mean_p, logvar_p, key)
    logits = apply(z, x_pivot, method="decode_logits")  # f(embed(x_pivot)) once per pivot given
    return Reconstruction(logits, z, *code_distribution(mean_v, logvar_v, mean_p, logvar_p), mean_p)


def terms(
    module: nn.Module, variables: Any, x_pivot: jax.Array | None, x_varying: jax.Array, key: jax.Array,
    config: TrainConfig, *, pairs: str, perm: jax.Array | None = None, sample: bool = True,
) -> dict[str, jax.Array]:
    """Every term of the loss, per pair: 'z' (B, d), 'recon', 'kl', 'total' and for MAGANet 'latent', (B,).

    Args:
      module, variables, x_pivot, x_varying, pairs, perm: as `reconstruct`.
      key: the key of the sampled codes (unused with sample=False).
      config: β_KL and β_lat (`beta_kl`, `beta_lat`).
      sample: reparameterised samples as codes (training); False for the posterior means.
    """
    r = reconstruct(module, variables, x_pivot, x_varying, key if sample else None, pairs=pairs, perm=perm)
    out = {"z": r.z, "recon": bce_per_image(r.logits, x_varying), "kl": kl_to_standard_normal(r.mean, r.logvar)}
    if r.mean_pivot is None:
        out["total"] = out["recon"] + config.beta_kl * out["kl"]
        return out
    mean_read, _ = module.apply(variables, jax.nn.sigmoid(r.logits), method="posterior")
    out["latent"] = code_error(mean_read - r.mean_pivot, r.z)
    out["total"] = out["recon"] + config.beta_kl * out["kl"] + config.beta_lat * out["latent"]
    return out
