"""The loss of MAGANet and of the VAE baseline, per example: training averages it, evaluation keeps it.

MAGANet, for a pair (x_pivot, x_varying) with posteriors q(z | x) = N(μ, σ²), s(x) = μ + σ·ε a
reparameterised sample (sampled codes) or μ (mean codes):

  z      = s(x_varying) − s(x_pivot)
  recon  = Σ_pixels BCE-with-logits(D(z, x_pivot), x_varying)                 nats per image
  kl     = code:    KL(N(μ_v − μ_p, σ_v² + σ_p²) ‖ N(0, I)), the distribution of z
           varying: KL(q(z | x_varying) ‖ N(0, I))                             (the official code's)
  latent = mean:    Σ_d |μ(x̂) − μ_p − z|,  x̂ = D(z, x_pivot) re-encoded
           sampled: Σ_d |s'(x̂) − s'(x_pivot) − z|, fresh samples s'            (the blog's)
           self:    Σ_d |s'(x̂) − s'(x_varying) − s_v|,  x̂ = D(s_v, x_varying): each varying image's
                    own code applied to itself, fresh samples s'                (the official code's)
  total  = recon + β_KL·kl + β_lat·latent

The re-encoded image x̂ is `MAGANet.reencoded` of the decoder's output. Every sample of a step is
drawn in one place, `draw_noise`, so a caller can pass recorded noise instead (`Noise`); with mean
codes every sample is its mean.

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


class Noise(NamedTuple):
    """The standard-normal draws of one batch, each (B, d), row i for pair i.

    Attributes:
      eps_pivot: ε of s(x_pivot) in the code z (one draw per pair, also when one pivot is broadcast).
      eps_varying: ε of s(x_varying) in the code z (the VAE's code: s(x_varying) alone).
      eps_read: ε of the fresh sample s'(x̂) of the re-encoded image (latent 'sampled' and 'self').
      eps_read_origin: ε of the fresh sample of the image x̂ was decoded from: s'(x_pivot) for latent
        'sampled', s'(x_varying) for 'self'.
    """

    eps_pivot: jax.Array
    eps_varying: jax.Array
    eps_read: jax.Array
    eps_read_origin: jax.Array


def draw_noise(key: jax.Array, batch: int, latent_dim: int) -> Noise:
    """Every standard-normal draw of a batch of `batch` pairs, one split of `key` per field."""
    keys = jax.random.split(key, len(Noise._fields))
    return Noise(*(jax.random.normal(k, (batch, latent_dim), jnp.float32) for k in keys))


def reparameterised(mean: jax.Array, logvar: jax.Array, eps: jax.Array | None) -> jax.Array:
    """s = μ + exp(logvar / 2)·ε, broadcast to ε's shape; μ itself when eps is None (mean codes)."""
    return mean if eps is None else mean + jnp.exp(0.5 * logvar) * eps


class Reconstruction(NamedTuple):
    """What the model made of a batch: the decoder's logits, the code used and the posteriors.

    Attributes:
      logits: (B, H, W, 1) logits of the reconstruction of x_varying.
      z: (B, d) the code decoded: s_v − s_p for MAGANet, s_v for the VAE.
      mean, logvar: (B, d) q(z | x_varying).
      code_varying: (B, d) s_v, the sample of q(z | x_varying) in z.
      mean_pivot, logvar_pivot: (B or 1, d) q(z | x_pivot) for MAGANet; None for the VAE.
    """

    logits: jax.Array
    z: jax.Array
    mean: jax.Array
    logvar: jax.Array
    code_varying: jax.Array
    mean_pivot: jax.Array | None
    logvar_pivot: jax.Array | None


def reconstruct(
    module: nn.Module, variables: Any, x_pivot: jax.Array | None, x_varying: jax.Array, noise: Noise | None,
    *, pairs: str, perm: jax.Array | None = None,
) -> Reconstruction:
    """Decodes x_varying: MAGANet from x_pivot with z = s_v − s_p, the VAE from its own code.

    Args:
      module: a MAGANet or VAE module.
      variables: its variables.
      x_pivot: (B, H, W, 1) pivots, or (1, H, W, 1) with pairs='pivot'; unused by the VAE.
      x_varying: (B, H, W, 1) the images to reconstruct.
      noise: the codes are reparameterised samples with its eps_pivot and eps_varying; None for the
        posterior means.
      pairs: 'pivot' (every pivot the same image), 'shuffle' (x_pivot = x_varying[perm]) or 'general'.
      perm: (B,) the permutation of 'shuffle' pairs.
    """
    if pairs not in PAIRS:
        raise ValueError(f"unknown pair mode {pairs!r}; use one of {', '.join(PAIRS)}")
    if pairs == "shuffle" and perm is None:
        raise ValueError("pairs='shuffle' needs perm, the permutation with x_pivot = x_varying[perm]")
    apply = lambda *a, method: module.apply(variables, *a, method=method)
    eps_p, eps_v = (None, None) if noise is None else (noise.eps_pivot, noise.eps_varying)
    if module.config.kind == "vae":
        mean, logvar = apply(x_varying, method="posterior")
        z = reparameterised(mean, logvar, eps_v)
        return Reconstruction(apply(z, method="decode_logits"), z, mean, logvar, z, None, None)
    if pairs == "pivot":
        x_pivot = x_pivot[:1]
    if pairs == "shuffle":
        mean_v, logvar_v = apply(x_varying, method="posterior")
        mean_p, logvar_p = mean_v[perm], logvar_v[perm]
    else:
        n_pivot = x_pivot.shape[0]
        mean, logvar = apply(jnp.concatenate([x_pivot, x_varying]), method="posterior")
        mean_p, logvar_p, mean_v, logvar_v = mean[:n_pivot], logvar[:n_pivot], mean[n_pivot:], logvar[n_pivot:]
    s_v = reparameterised(mean_v, logvar_v, eps_v)
    z = s_v - reparameterised(mean_p, logvar_p, eps_p)  # (B, d) also when one pivot is broadcast
    logits = apply(z, x_pivot, method="decode_logits")  # f(embed(x_pivot)) once per pivot given
    return Reconstruction(logits, z, mean_v, logvar_v, s_v, mean_p, logvar_p)


def latent_error(
    module: nn.Module, variables: Any, r: Reconstruction, x_varying: jax.Array, noise: Noise | None, kind: str
) -> jax.Array:
    """The latent term of `kind` ('mean', 'sampled' or 'self', see the module docstring), (B,)."""
    apply = lambda *a, method: module.apply(variables, *a, method=method)
    eps_read, eps_origin = (None, None) if noise is None else (noise.eps_read, noise.eps_read_origin)
    if kind == "mean":
        mean_read, _ = apply(apply(r.logits, method="reencoded"), method="posterior")
        return code_error(mean_read - r.mean_pivot, r.z)
    if kind == "sampled":
        read = reparameterised(*apply(apply(r.logits, method="reencoded"), method="posterior"), eps_read)
        return code_error(read - reparameterised(r.mean_pivot, r.logvar_pivot, eps_origin), r.z)
    if kind == "self":
        x_hat = apply(apply(r.code_varying, x_varying, method="decode_logits"), method="reencoded")
        read = reparameterised(*apply(x_hat, method="posterior"), eps_read)
        return code_error(read - reparameterised(r.mean, r.logvar, eps_origin), r.code_varying)
    raise ValueError(f"unknown latent term {kind!r}; use one of mean, sampled, self")


def terms(
    module: nn.Module, variables: Any, x_pivot: jax.Array | None, x_varying: jax.Array, key: jax.Array | None,
    config: TrainConfig, *, pairs: str, perm: jax.Array | None = None, sample: bool = True,
    noise: Noise | None = None,
) -> dict[str, jax.Array]:
    """Every term of the loss, per pair: 'z' (B, d), 'recon', 'kl', 'total' and for MAGANet 'latent', (B,).

    Args:
      module, variables, x_pivot, x_varying, pairs, perm: as `reconstruct`.
      key: the samples are `draw_noise(key, ...)` (unused with sample=False or when `noise` is given).
      config: β_KL, β_lat and the kinds of KL and latent term (`beta_kl`, `beta_lat`, `kl`, `latent`).
      sample: reparameterised samples (training); False for the posterior means everywhere.
      noise: recorded draws to use instead of `key`'s, each (B, d).
    """
    if sample and noise is None:
        if key is None:
            raise ValueError("sampled codes need a key or noise; pass one, or sample=False for the posterior means")
        noise = draw_noise(key, x_varying.shape[0], module.config.latent_dim)
    noise = noise if sample else None
    r = reconstruct(module, variables, x_pivot, x_varying, noise, pairs=pairs, perm=perm)
    out = {"z": r.z, "recon": bce_per_image(r.logits, x_varying)}
    if r.mean_pivot is None or config.kl == "varying":
        out["kl"] = kl_to_standard_normal(r.mean, r.logvar)
    else:
        out["kl"] = kl_to_standard_normal(*code_distribution(r.mean, r.logvar, r.mean_pivot, r.logvar_pivot))
    if r.mean_pivot is None:
        out["total"] = out["recon"] + config.beta_kl * out["kl"]
        return out
    out["latent"] = latent_error(module, variables, r, x_varying, noise, config.latent)
    out["total"] = out["recon"] + config.beta_kl * out["kl"] + config.beta_lat * out["latent"]
    return out
