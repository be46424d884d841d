"""(pivot, varying) training pairs sampled on device, and fixed-order evaluation batches.

Images live on device bit-packed, (N, 64, 8) uint8 (377 MB for all of dSprites), and are
unpacked per batch. Pair modes:

- 'pivot': every pair is (x_pivot, x_i), the fixed pivot image and a random train image;
- 'shuffle': B random train images x_i, paired within the batch: (x_π(i), x_i) for a random
  permutation π.

`sample_pairs` and `gather_images` are jitted with `batch_size`, `mode` and `image_size` static
(one compilation per combination); they can also be called inside another jitted function.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator

import jax
import jax.numpy as jnp
import numpy as np

PAIR_MODES = ("pivot", "shuffle")
_FULL = 64  # side of a dSprites image


def _check_size(image_size: int) -> None:
    if image_size <= 0 or _FULL % image_size:
        raise ValueError(f"image_size {image_size} must divide 64 (64, 32, 16, 8, ...)")


def unpack_images(packed: jax.Array, image_size: int = 64) -> jax.Array:
    """Bit-packed images → float32 (..., S, S, 1) in [0, 1].

    For S < 64, each output pixel is the mean of a (64/S) × (64/S) block:
    y[i, j] = mean_{a, b < f} x[f·i + a, f·j + b], f = 64 / S.

    Args:
      packed: (..., 64, 8) uint8, rows bit-packed as by np.packbits(axis=-1).
      image_size: S, a divisor of 64.
    """
    _check_size(image_size)
    x = jnp.unpackbits(packed, axis=-1).astype(jnp.float32)
    if image_size != _FULL:
        f = _FULL // image_size
        x = x.reshape(*x.shape[:-2], image_size, f, image_size, f).mean(axis=(-3, -1))
    return x[..., None]


@functools.partial(jax.jit, static_argnames=("image_size",))
def gather_images(packed: jax.Array, rows: jax.Array, image_size: int = 64) -> jax.Array:
    """Images of `rows` as float32 (B, S, S, 1) in [0, 1].

    Args:
      packed: (N, 64, 8) uint8 bit-packed images on device.
      rows: (B,) int32 rows of `packed`.
      image_size: S, a divisor of 64 (static).
    """
    return unpack_images(packed[rows], image_size)


@functools.partial(jax.jit, static_argnames=("batch_size", "mode", "image_size"))
def sample_pairs(
    packed: jax.Array,
    train_rows: jax.Array,
    pivot_row: jax.Array | int,
    key: jax.Array,
    batch_size: int,
    mode: str,
    image_size: int,
) -> tuple[jax.Array, jax.Array]:
    """A batch of (x_pivot, x_varying) pairs; varying images are drawn uniformly from train rows.

    Args:
      packed: (N, 64, 8) uint8 bit-packed images on device.
      train_rows: (T,) int32 rows the varying (and in 'shuffle' mode pivot) images come from.
      pivot_row: row of the fixed pivot image (used by mode 'pivot').
      key: PRNG key.
      batch_size: B (static).
      mode: 'pivot' or 'shuffle' (static).
      image_size: S, a divisor of 64 (static).

    Returns:
      (x_pivot, x_varying), both float32 (B, S, S, 1) in [0, 1].
    """
    rows, perm = pair_rows(train_rows, key, batch_size, mode)
    x_varying = unpack_images(packed[rows], image_size)
    if mode == "pivot":
        x_pivot = jnp.broadcast_to(unpack_images(packed[pivot_row], image_size), x_varying.shape)
    else:
        x_pivot = x_varying[perm]
    return x_pivot, x_varying


def pair_rows(train_rows: jax.Array, key: jax.Array, batch_size: int, mode: str) -> tuple[jax.Array, jax.Array]:
    """The rows `sample_pairs` draws with `key`: (varying rows (B,), in-batch permutation π (B,)).

    In 'shuffle' mode x_pivot[i] = x_varying[π(i)], so a caller can compute anything of the
    pivots by permuting what it computed of the varying images (π is unused in 'pivot' mode).

    Args:
      train_rows: (T,) int32 rows the varying images come from.
      key: PRNG key (the one given to `sample_pairs`).
      batch_size: B.
      mode: 'pivot' or 'shuffle'.
    """
    if mode not in PAIR_MODES:
        raise ValueError(f"unknown pair mode {mode!r}; use one of {', '.join(PAIR_MODES)}")
    pick_key, perm_key = jax.random.split(key)
    rows = train_rows[jax.random.randint(pick_key, (batch_size,), 0, train_rows.shape[0])]
    return rows, jax.random.permutation(perm_key, batch_size)


def eval_batches(rows: np.ndarray, batch_size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """`rows` in order, in batches of exactly `batch_size`, with a validity mask.

    The last batch is padded by repeating its last row and masked False there, so a metric
    averaged as Σ(m · mask) / Σ mask is the exact mean over `rows`. No rows, no batches.

    Args:
      rows: (T,) row indices.
      batch_size: B > 0.

    Yields:
      (batch_rows int32 (B,), mask bool (B,)).
    """
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    rows = np.asarray(rows, np.int32).reshape(-1)
    for start in range(0, len(rows), batch_size):
        batch = rows[start : start + batch_size]
        mask = np.arange(batch_size) < len(batch)
        yield np.pad(batch, (0, batch_size - len(batch)), mode="edge"), mask
