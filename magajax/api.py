"""The public API: a trained `Model`, `load(workdir)`, and module-level `encode`, `decode`, `act`.

    model = magajax.load("runs/element")          # also makes it the current model
    z = magajax.encode(x_varying, x_pivot)        # transformation codes (B, d)
    images = magajax.decode(z, x_pivot)           # (B, H, W, 1) in [0, 1]
    u2 = magajax.act(z, u)                        # the group action on logits

Inputs are validated and converted by `magajax.inputs` (NumPy or JAX arrays, several shapes
and dtypes; see there); results are NumPy arrays on the host. Each network method is jitted once
per model config (`jitted`) and reused by every `Model` of that config.

Batches of any size run in bounded memory: B rows are computed `Model.chunk` (default `CHUNK`)
rows at a time, the last chunk padded to the same shape, and copied into the (B, ...) result;
a batch of B ≤ chunk rows is padded to `padded_rows(B, chunk)` (a power of two, at least
`MIN_ROWS`). So one compiled function serves every chunk, a method compiles for at most
log2(chunk / MIN_ROWS) + 1 shapes, and a row gets bit-identical results in any two batches that
pad to the same shape (every batch of up to MIN_ROWS rows, and every chunk of a larger one).

Every call computes its matmuls and convolutions at full float32 precision (`PRECISION`): on a
GPU, jax's default TensorFloat-32 moves decodes by up to 0.2 in a pixel against the CPU's and
triples the identity error |D(0, x) − x|; at 'highest' a GPU decode matches the CPU's to 1e-3.

For the VAE baseline (`config.model.kind == 'vae'`) there is no pivot: `encode(x)` returns the
code of x itself (its posterior mean, or a sample with `sample_key`), `decode(z)` decodes it,
and `act` / `embed` raise.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from magajax import compile_cache, inputs
from magajax.config import Config, ModelConfig
from magajax.models import build

CHUNK = 1024  # rows per compiled call: 64×64 MAGANet activations of ~250 MB
MIN_ROWS = 8  # the fewest rows of a compiled call: batches of 1 to 8 share one shape
PRECISION = "highest"  # jax.default_matmul_precision of every API call: full float32, also on GPUs and TPUs

_current: Model | None = None


def padded_rows(n: int, chunk: int) -> int:
    """Rows of each compiled call for a batch of n: `chunk` if n > chunk, else the power of two
    ≥ n, at least MIN_ROWS and at most `chunk`."""
    if n > chunk:
        return chunk
    return min(chunk, max(MIN_ROWS, 1 << (n - 1).bit_length()))


def _padded(array: np.ndarray, rows: int) -> np.ndarray:
    """`array` with its last row repeated up to `rows` rows."""
    if len(array) == rows:
        return array
    return np.concatenate([array, np.repeat(array[-1:], rows - len(array), axis=0)])


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
      chunk: the most rows one compiled call computes (see the module docstring).
      step: the training step of the checkpoint the variables come from (None if not loaded).
      workdir: the run the model was loaded from (None if not loaded).
    """

    def __init__(
        self, config: Config, variables: Any, *, chunk: int = CHUNK, step: int | None = None,
        workdir: str | os.PathLike | None = None,
    ):
        """Builds `config.model`'s network around `variables`.

        Args:
          config: the run config.
          variables: `module.init(...)`'s variables {"params": ...} (what
            `magajax.training.checkpoint.load` returns), or the inner "params" collection.
          chunk: the most rows one compiled call computes; memory grows with it, not with B.
          step: the checkpoint's training step, recorded as `self.step`.
          workdir: the run's workdir, recorded as `self.workdir`.
        """
        if chunk < 1:
            raise ValueError(f"chunk: expected a positive number of rows, got {chunk}")
        self.config = config
        variables = variables if "params" in variables else {"params": variables}
        self.variables = jax.device_put(variables)  # on the device once, not at every call
        self.module = build(config.model)
        self.chunk = chunk
        self.step = step
        self.workdir = workdir

    def _call(
        self, method: str, sample_key: jax.Array | None = None, tile: bool = False, **arrays: np.ndarray | None
    ) -> np.ndarray:
        """`method(variables, *arrays[, key])` on B rows, `padded_rows(B, chunk)` rows per call.

        Arrays of B rows are split into chunks, the last padded by repeating its last row. Arrays
        of one row broadcast and go whole (with B = 1 the first array is the one padded), or with
        `tile` are repeated to the chunk's rows, so that every row is computed in the same shape.
        None arrays (the VAE's pivot) are left out. `encode` gets `fold_in(sample_key, c)` for
        chunk c, or None.
        """
        given = [a for a in arrays.values() if a is not None]
        n = inputs.batch(**{name: a for name, a in arrays.items() if a is not None})
        rows = padded_rows(n, self.chunk)
        split = [len(a) == n and (n > 1 or i == 0) for i, a in enumerate(given)]
        whole = [_padded(a, rows) if tile and not s else a for a, s in zip(given, split, strict=True)]
        fn = jitted(self.config.model, method)
        out = None
        for c, start in enumerate(range(0, n, rows)):
            stop = min(start + rows, n)
            args = [_padded(a[start:stop], rows) if s else w for a, w, s in zip(given, whole, split, strict=True)]
            if method == "encode":
                args.append(None if sample_key is None else jax.random.fold_in(sample_key, c))
            with jax.default_matmul_precision(PRECISION):  # traced (once) and run at this precision
                result = np.asarray(fn(self.variables, *args))
            if out is None:
                out = np.empty((n, *result.shape[1:]), result.dtype)
            out[start:stop] = result[: stop - start]
        return out

    @property
    def code_dtype(self) -> str:
        """The dtype the network computes codes in: MAGANet applies A to z in float32
        (`MAGANet.shift`); the VAE's decoder casts z to `config.model.dtype`."""
        return self.config.model.dtype if self.is_vae else "float32"

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

    @classmethod
    def from_checkpoint(cls, workdir: str | os.PathLike, step: int | None = None) -> Model:
        """The run's model at its latest (or the given) verified checkpoint; says nothing, activates nothing.

        Turns on the persistent compilation cache (`magajax.compile_cache`) unless one is configured.
        """
        from magajax.training import checkpoint  # imported here: checkpointing pulls in orbax

        compile_cache.enable()
        config, variables, loaded = checkpoint.load(workdir, step)
        return cls(config, variables, step=loaded, workdir=workdir)

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

    def embed(self, x: Any) -> np.ndarray:
        """Logits u = logit(clip(x, ε, 1 − ε)) of images x, (B, H, W, 1); MAGANet only."""
        self._action("embed")
        return self._call("embed", x=self._images(x, "x"))

    def encode(self, x_varying: Any, x_pivot: Any = None, sample_key: jax.Array | None = None) -> np.ndarray:
        """Transformation codes z = s(x_varying) − s(x_pivot), (B, d).

        s is the posterior mean, or a reparameterised sample with `sample_key` (drawn per chunk, so
        a sample depends on the key and on the padded batch shape). One pivot broadcasts against B
        varying images. VAE: the code s(x_varying) of x_varying itself (x_pivot=None).
        """
        x_varying = self._images(x_varying, "x_varying")
        x_pivot = self._pivot(x_pivot, "encode")
        # a pivot is encoded in the varying images' batch shape, so encode(x, x) is exactly 0
        return self._call("encode", sample_key, tile=True, x_varying=x_varying, x_pivot=x_pivot)

    def _decode(self, method: str, z: Any, x_pivot: Any) -> np.ndarray:
        z = inputs.codes(z, self.config.model.latent_dim, "z", self.code_dtype)
        return self._call(method, z=z, x_pivot=self._pivot(x_pivot, "decode"))

    def decode_logits(self, z: Any, x_pivot: Any = None) -> np.ndarray:
        """Logits act(z, embed(x_pivot)), (B, H, W, 1); VAE: its decoder's logits (x_pivot=None)."""
        return self._decode("decode_logits", z, x_pivot)

    def decode(self, z: Any, x_pivot: Any = None) -> np.ndarray:
        """Images sigmoid(decode_logits(z, x_pivot)) in [0, 1], (B, H, W, 1). One pivot broadcasts
        against B codes, one code against B pivots. VAE: the decoder's images (x_pivot=None)."""
        return self._decode("decode", z, x_pivot)

    def act(self, z: Any, u: Any) -> np.ndarray:
        """The group action act(z, u) = f⁻¹(f(u) + A z) on logits u, (B, H, W, 1); MAGANet only."""
        self._action("act")
        z = inputs.codes(z, self.config.model.latent_dim, "z", self.code_dtype)
        u = inputs.logits(u, self.config.model.image_size, "u")
        return self._call("act", z=z, u=u)


def current() -> Model:
    """The model set by the last `load(workdir)` or `Model.activate()`."""
    if _current is None:
        raise ValueError("no model loaded: call magajax.load(workdir) or Model(config, variables).activate() first")
    return _current


def load(workdir: str | os.PathLike, step: int | None = None) -> Model:
    """Loads workdir/config.json and the latest (or the given) checkpoint; makes it the current model.

    Prints one line saying which run, step and model it loaded (print, like the data loaders: a
    logging record would be dropped by Python's default WARNING level, and which checkpoint a
    session uses is what a user needs to see). The checkpoint's errors pass through unchanged.
    """
    model = Model.from_checkpoint(workdir, step)
    config = model.config
    print(f"magajax: loaded {workdir} at step {model.step} ({config.model.kind}, split {config.data.split})",
          flush=True)
    return model.activate()


def encode(
    x_varying: Any, x_pivot: Any = None, model: Model | None = None, sample_key: jax.Array | None = None
) -> np.ndarray:
    """`Model.encode` of `model`, or of the current model when None."""
    return (model if model is not None else current()).encode(x_varying, x_pivot, sample_key)


def decode(z: Any, x_pivot: Any = None, model: Model | None = None) -> np.ndarray:
    """`Model.decode` of `model`, or of the current model when None."""
    return (model if model is not None else current()).decode(z, x_pivot)


def act(z: Any, u: Any, model: Model | None = None) -> np.ndarray:
    """`Model.act` of `model`, or of the current model when None."""
    return (model if model is not None else current()).act(z, u)
