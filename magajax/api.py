"""The public API: a trained `Model`, `load(workdir)`, and module-level `encode`, `decode`, `act`.

    model = magajax.load("runs/element")          # also makes it the current model
    z = magajax.encode(x_varying, x_pivot)        # transformation codes (B, d)
    images = magajax.decode(z, x_pivot)           # (B, H, W, 1) in [0, 1]
    u2 = magajax.act(z, u)                        # the group action on logits

Inputs are validated and converted by `magajax.inputs` (NumPy or JAX arrays, several shapes
and dtypes; see there). Each network method is jitted once per model config (`jitted`) and
reused by every `Model` of that config: calls with the same shapes do not retrace.

For the VAE baseline (`config.model.kind == 'vae'`) there is no pivot: `encode(x)` returns the
code of x itself (its posterior mean, or a sample with `sample_key`), `decode(z)` decodes it,
and `act` / `embed` raise.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from magajax import inputs
from magajax.config import Config, ModelConfig
from magajax.models import build

_current: Model | None = None


@functools.cache
def jitted(config: ModelConfig, method: str) -> Callable[..., Any]:
    """`jax.jit` of `build(config).apply(variables, *args, method=method)`, one per (config, method)."""
    return jax.jit(functools.partial(build(config).apply, method=method))


class Model:
    """A network (MAGANet or VAE, from `config.model.kind`) with its parameters.

    Attributes:
      config: the whole run config; `config.model` builds the network.
      variables: the network's variables as `module.init(...)` returns them, {"params": ...}.
      module: the Flax module (`MAGANet` or `VAE`).
    """

    def __init__(self, config: Config, variables: Any):
        """Builds `config.model`'s network around `variables`.

        Args:
          config: the run config.
          variables: `module.init(...)`'s variables {"params": ...} (what
            `magajax.training.checkpoint.load` returns), or the inner "params" collection.
        """
        self.config = config
        variables = variables if "params" in variables else {"params": variables}
        self.variables = jax.device_put(variables)  # on the device once, not at every call
        self.module = build(config.model)

    def _call(self, method: str, *args: Any) -> jax.Array:
        return jitted(self.config.model, method)(self.variables, *args)

    @property
    def is_vae(self) -> bool:
        return self.config.model.kind == "vae"

    def _images(self, x: Any, name: str) -> np.ndarray:
        return inputs.images(x, self.config.model.image_size, name)

    def _pivot(self, x_pivot: Any, method: str) -> np.ndarray | None:
        """The validated pivot; MAGANet needs one, the VAE takes none."""
        if self.is_vae:
            if x_pivot is not None:
                raise ValueError(f"{method}: the VAE has no pivot, expected x_pivot=None, got an array")
            return None
        if x_pivot is None:
            raise ValueError(f"{method}: MAGANet needs x_pivot, the image the action starts from, got None")
        return self._images(x_pivot, "x_pivot")

    def activate(self) -> Model:
        """Makes this the current model of the module-level `encode`, `decode` and `act`; returns it."""
        global _current
        _current = self
        return self

    def _action(self, method: str) -> None:
        if self.is_vae:
            raise ValueError(
                f"{method}: the VAE has no logit-space action; load a MAGANet model (config.model.kind='maganet')"
            )

    def embed(self, x: Any) -> jax.Array:
        """Logits u = logit(clip(x, ε, 1 − ε)) of images x, (B, H, W, 1); MAGANet only."""
        self._action("embed")
        return self._call("embed", self._images(x, "x"))

    def encode(self, x_varying: Any, x_pivot: Any = None, sample_key: jax.Array | None = None) -> jax.Array:
        """Transformation codes z = s(x_varying) − s(x_pivot), (B, d).

        s is the posterior mean, or a reparameterised sample with `sample_key`. One pivot broadcasts
        against B varying images. VAE: the code s(x_varying) of x_varying itself (x_pivot=None).
        """
        x_varying = self._images(x_varying, "x_varying")
        x_pivot = self._pivot(x_pivot, "encode")
        if self.is_vae:
            return self._call("encode", x_varying, sample_key)
        inputs.batch(x_varying=x_varying, x_pivot=x_pivot)
        return self._call("encode", x_varying, x_pivot, sample_key)

    def _decode(self, method: str, z: Any, x_pivot: Any) -> jax.Array:
        z = inputs.codes(z, self.config.model.latent_dim, "z")
        x_pivot = self._pivot(x_pivot, "decode")
        if self.is_vae:
            return self._call(method, z)
        inputs.batch(z=z, x_pivot=x_pivot)
        return self._call(method, z, x_pivot)

    def decode_logits(self, z: Any, x_pivot: Any = None) -> jax.Array:
        """Logits act(z, embed(x_pivot)), (B, H, W, 1); VAE: its decoder's logits (x_pivot=None)."""
        return self._decode("decode_logits", z, x_pivot)

    def decode(self, z: Any, x_pivot: Any = None) -> jax.Array:
        """Images sigmoid(decode_logits(z, x_pivot)) in [0, 1], (B, H, W, 1). One pivot broadcasts
        against B codes, one code against B pivots. VAE: the decoder's images (x_pivot=None)."""
        return self._decode("decode", z, x_pivot)

    def act(self, z: Any, u: Any) -> jax.Array:
        """The group action act(z, u) = f⁻¹(f(u) + A z) on logits u, (B, H, W, 1); MAGANet only."""
        self._action("act")
        z = inputs.codes(z, self.config.model.latent_dim, "z")
        u = inputs.logits(u, self.config.model.image_size, "u")
        inputs.batch(z=z, u=u)
        return self._call("act", z, u)


def current() -> Model:
    """The model set by the last `load(workdir)` or `Model.activate()`."""
    if _current is None:
        raise ValueError("no model loaded: call magajax.load(workdir) or Model(config, variables).activate() first")
    return _current


def load(workdir: str) -> Model:
    """Loads workdir/config.json and the latest checkpoint's parameters; makes it the current model."""
    from magajax.training import (
        checkpoint,  # imported here: checkpointing pulls in orbax
    )

    config, variables, _ = checkpoint.load(workdir)
    return Model(config, variables).activate()


def encode(
    x_varying: Any, x_pivot: Any = None, model: Model | None = None, sample_key: jax.Array | None = None
) -> jax.Array:
    """`Model.encode` of `model`, or of the current model when None."""
    return (model if model is not None else current()).encode(x_varying, x_pivot, sample_key)


def decode(z: Any, x_pivot: Any = None, model: Model | None = None) -> jax.Array:
    """`Model.decode` of `model`, or of the current model when None."""
    return (model if model is not None else current()).decode(z, x_pivot)


def act(z: Any, u: Any, model: Model | None = None) -> jax.Array:
    """`Model.act` of `model`, or of the current model when None."""
    return (model if model is not None else current()).act(z, u)
