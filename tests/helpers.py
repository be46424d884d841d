"""Shared test helpers: tiny run configs, fast keys, NumPy-drawn parameters, parameter counts, tiny models,
and the NumPy oracle of the loss."""

import functools

import jax
import numpy as np

from magajax import config as cfg
from magajax.config import ModelConfig
from magajax.models.maganet import MAGANet


def key(seed: int) -> jax.Array:
    """An 'rbg' key: tests do not depend on the stream, and it compiles much faster than threefry."""
    return jax.random.key(seed, impl="rbg")


def random_params(init, *args):
    """Parameters of `init(*args)`'s shapes drawn in NumPy: weights N(0, 1/fan_in), biases 0.

    For tests of shapes and finiteness: no initialiser is compiled (that costs seconds per model).
    """
    rng = np.random.default_rng(0)

    def fill(s: jax.ShapeDtypeStruct) -> np.ndarray:
        if len(s.shape) < 2:
            return np.zeros(s.shape, np.float32)
        return (rng.standard_normal(s.shape) / np.sqrt(np.prod(s.shape[:-1]))).astype(np.float32)

    return jax.tree.map(fill, jax.eval_shape(init, *args))


def conv_params(c_in: int, c_out: int, k: int) -> int:
    return k * k * c_in * c_out + c_out


def dense_params(n_in: int, n_out: int, bias: bool = True) -> int:
    return n_in * n_out + (n_out if bias else 0)


def n_params(tree) -> int:
    return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(tree))


def default_encoder_params(d: int = 10) -> int:
    """64×64×1, padding 1: 4 convs (64 → 32 → 16 → 8 → 4), then the MLP on 32·4·4 features."""
    convs = conv_params(1, 32, 4) + 3 * conv_params(32, 32, 4)
    mlp = dense_params(32 * 4 * 4, 256) + dense_params(256, 256) + dense_params(256, 2 * d)
    return convs + mlp


def binary_images(seed: int, batch: int, size: int) -> np.ndarray:
    return (np.random.default_rng(seed).random((batch, size, size, 1)) < 0.3).astype(np.float32)


@functools.cache
def tiny_maganet() -> tuple[ModelConfig, dict]:
    """A 16×16, 2-level, 2-step, hidden-16 MAGANet, initialised on binary images, then every
    parameter perturbed by N(0, 0.05²) so no test can pass on the identity-like init."""
    config = ModelConfig(image_size=16, levels=2, steps=2, hidden=16)
    variables = jax.jit(MAGANet(config).init)(key(0), binary_images(0, 1, 16), binary_images(1, 8, 16))
    leaves, tree = jax.tree.flatten(variables)
    noise = np.random.default_rng(2)
    leaves = [leaf + 0.05 * noise.standard_normal(leaf.shape).astype(np.float32) for leaf in leaves]
    return config, jax.tree.unflatten(tree, leaves)


def tiny_config() -> cfg.Config:
    """16×16 images, one flow level of one step, hidden 8, batch 8: a step takes milliseconds."""
    return cfg.override(
        cfg.preset("quick"),
        {"image_size": 16, "levels": 1, "model.steps": 1, "hidden": 8, "batch_size": 8,
         "train.steps": 4, "log_every": 2, "checkpoint_every": 2, "split": "element"},
    )


def _f64(x) -> np.ndarray:
    return np.asarray(x, np.float64)


def oracle_sample(mean, logvar, noise=None) -> np.ndarray:
    """s = μ + exp(logvar / 2)·noise, or μ without noise."""
    return _f64(mean) + (0.0 if noise is None else np.exp(0.5 * _f64(logvar)) * _f64(noise))


def oracle_code(mean_v, logvar_v, mean_p=None, logvar_p=None, noise_v=None, noise_p=None) -> np.ndarray:
    """z = s_v − s_p, s = μ + exp(logvar / 2)·noise (μ without noise); the VAE's z = s_v (no pivot)."""
    s_v = oracle_sample(mean_v, logvar_v, noise_v)
    if mean_p is None:
        return s_v
    return s_v - oracle_sample(mean_p, logvar_p, noise_p)


def loss_oracle(
    logits, x_varying, mean_v, logvar_v, beta_kl, *, noise_v=None, mean_p=None, logvar_p=None, noise_p=None,
    mean_read=None, logvar_read=None, noise_read=None, noise_origin=None, beta_lat=0.0, kl="code", latent="mean",
) -> dict[str, np.ndarray]:
    """Every term of the loss per image, in float64 NumPy, written out from its definition.

    MAGANet (mean_p given): z = oracle_code(...), recon = Σ_pixels −[x log p + (1 − x) log(1 − p)],
    p = sigmoid(logits), kl = ½ Σ_d (σ² + μ² − 1 − log σ²) with μ = μ_v − μ_p, σ² = σ_v² + σ_p² (kl='code')
    or μ = μ_v, σ² = σ_v² (kl='varying'); total = recon + β_KL·kl + β_lat·latent, and with
    (mean_read, logvar_read) the posterior of the re-encoded image x̂ (which x̂ depends on `latent`):
      latent='mean':    Σ_d |mean_read − μ_p − z|
      latent='sampled': Σ_d |(mean_read + σ_read·noise_read) − (μ_p + σ_p·noise_origin) − z|
      latent='self':    Σ_d |(mean_read + σ_read·noise_read) − (μ_v + σ_v·noise_origin) − s_v|,
                        s_v = μ_v + σ_v·noise_v
    VAE (mean_p None): z = oracle_code(mean_v, logvar_v, noise_v=...), kl of N(μ_v, σ_v²), total = recon + β·kl.
    """
    logits, x = _f64(logits).reshape(len(logits), -1), _f64(x_varying).reshape(len(x_varying), -1)
    log_p, log_q = -np.logaddexp(0.0, -logits), -np.logaddexp(0.0, logits)  # log p, log(1 − p)
    out = {"recon": -(x * log_p + (1 - x) * log_q).sum(axis=1)}
    if mean_p is None or kl == "varying":
        mean, var = _f64(mean_v), np.exp(_f64(logvar_v))
    else:
        mean, var = _f64(mean_v) - _f64(mean_p), np.exp(_f64(logvar_v)) + np.exp(_f64(logvar_p))
    if mean_p is None:
        out["z"] = oracle_code(mean_v, logvar_v, noise_v=noise_v)
    else:
        out["z"] = oracle_code(mean_v, logvar_v, mean_p, logvar_p, noise_v, noise_p)
    out["kl"] = 0.5 * (var + mean**2 - 1.0 - np.log(var)).sum(axis=1)
    out["total"] = out["recon"] + beta_kl * out["kl"]
    if mean_p is not None:
        if latent == "mean":
            error = _f64(mean_read) - _f64(mean_p) - out["z"]
        elif latent == "sampled":
            error = (oracle_sample(mean_read, logvar_read, noise_read) - oracle_sample(mean_p, logvar_p, noise_origin)
                     - out["z"])
        else:
            error = (oracle_sample(mean_read, logvar_read, noise_read) - oracle_sample(mean_v, logvar_v, noise_origin)
                     - oracle_sample(mean_v, logvar_v, noise_v))
        out["latent"] = np.abs(error).sum(axis=1)
        out["total"] = out["total"] + beta_lat * out["latent"]
    return out
