"""Shared test helpers: tiny run configs, fast keys, NumPy-drawn parameters, parameter counts, tiny models."""

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
