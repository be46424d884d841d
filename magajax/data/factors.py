"""The dSprites factor grid: names, sizes, values and index <-> factor classes.

dSprites has 3 · 6 · 40 · 32 · 32 = 737,280 images, one per combination of factor classes,
stored in the official file's order (y fastest):

    index = (((shape · 6 + scale) · 40 + orientation) · 32 + x) · 32 + y

Class k of a factor has value VALUES[name][k]: shape 1, 2, 3 (square, ellipse, heart),
scale linspace(0.5, 1, 6), orientation linspace(0, 2π, 40), x and y linspace(0, 1, 32).
"""

from __future__ import annotations

import functools

import numpy as np

NAMES = ("shape", "scale", "orientation", "x", "y")
SIZES = (3, 6, 40, 32, 32)
NUM_IMAGES = 737_280
SHAPE_NAMES = ("square", "ellipse", "heart")
VALUES: dict[str, np.ndarray] = {
    "shape": np.array([1.0, 2.0, 3.0]),
    "scale": np.linspace(0.5, 1.0, 6),
    "orientation": np.linspace(0.0, 2 * np.pi, 40),
    "x": np.linspace(0.0, 1.0, 32),
    "y": np.linspace(0.0, 1.0, 32),
}
for _v in VALUES.values():
    _v.setflags(write=False)

_SIZES = np.array(SIZES)


def _as_int_array(a: np.ndarray, what: str) -> np.ndarray:
    """`a` as an int64 array; a non-integer input is a ValueError."""
    a = np.asarray(a)
    if a.size and not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"{what} must be integers, got dtype {a.dtype}; cast with .astype(int)")
    return a.astype(np.int64)


def index_to_classes(index: np.ndarray) -> np.ndarray:
    """Factor classes of dataset indices.

    Args:
      index: (N,) dataset indices in [0, 737280) (a scalar counts as N = 1).

    Returns:
      (N, 5) int64 classes, columns in the order of NAMES.
    """
    index = np.atleast_1d(_as_int_array(index, "dSprites indices"))
    if index.ndim != 1:
        raise ValueError(f"indices must be 1-D, got shape {index.shape}; flatten them first")
    bad = (index < 0) | (index >= NUM_IMAGES)
    if bad.any():
        raise ValueError(f"dSprites index {index[bad][0]} out of range; indices lie in [0, {NUM_IMAGES})")
    return np.stack(np.unravel_index(index, SIZES), axis=1)


def check_classes(classes: np.ndarray) -> np.ndarray:
    """`classes` as an (N, 5) int64 array; a wrong shape or an out-of-range class is a ValueError."""
    classes = _as_int_array(classes, "factor classes")
    if classes.ndim != 2 or classes.shape[1] != len(NAMES):
        raise ValueError(f"factor classes must have shape (N, 5) ({', '.join(NAMES)}), got {classes.shape}")
    bad = (classes < 0) | (classes >= _SIZES)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise ValueError(
            f"{NAMES[col]} class {classes[row, col]} (row {row}) out of range; "
            f"{NAMES[col]} classes lie in [0, {SIZES[col]})"
        )
    return classes


def classes_to_index(classes: np.ndarray) -> np.ndarray:
    """Dataset indices of (N, 5) factor classes: (((shape·6 + scale)·40 + orientation)·32 + x)·32 + y."""
    classes = check_classes(classes)
    return np.ravel_multi_index(tuple(classes.T), SIZES).astype(np.int64)


def classes_to_values(classes: np.ndarray) -> np.ndarray:
    """(N, 5) float32 factor values of (N, 5) factor classes."""
    classes = check_classes(classes)
    cols = [VALUES[name][classes[:, i]] for i, name in enumerate(NAMES)]
    return np.stack(cols, axis=1).astype(np.float32)


@functools.lru_cache(maxsize=1)
def all_classes() -> np.ndarray:
    """(737280, 5) uint8 classes of every image in dataset order (row = index); read-only, cached."""
    grids = np.meshgrid(*[np.arange(n, dtype=np.uint8) for n in SIZES], indexing="ij")
    classes = np.stack([g.reshape(-1) for g in grids], axis=1)
    classes.setflags(write=False)
    return classes
