"""Offline dSprites renderer: binary 64×64 sprites on the dSprites factor grid.

Re-creates dSprites' generative process (numpy only, no anti-aliasing). Geometry, in pixels,
with the image's continuous coordinates placing pixel (row r, column c) on [c, c+1) × [r, r+1):

- Position: x is the horizontal axis (column), y the vertical axis (row, growing downwards, as
  the image is stored). Class k of x (or y) puts the shape's centre at the centre of pixel
  column (row) 16 + k, so positions 0 → 1 move the centre from pixel 16 to pixel 47 in steps of
  exactly one pixel, symmetrically about the frame's centre.
- Shapes at scale s (the scale value, 0.5 … 1), centred on their bounding box:
  square: side 19.2·s (≈ 369 px at s = 1);
  ellipse: semi-axes 12.8·s and 6.4·s (2:1, ≈ 257 px at s = 1), long axis horizontal at
  orientation 0;
  heart: (u² + v² − 1)³ ≤ u² v³ in units of 7.83·s px (17.8 × 17.5 px, ≈ 225 px at s = 1;
  ≈ 110 px in a 13 × 13 box at s = 0.7), lobes up and point down at orientation 0, mirror axis
  vertical.
- Orientation θ (the value, radians) rotates the shape about its centre, counter-clockwise as
  displayed (row 0 at the top); θ ≈ π shows the heart upside down.
- A pixel is foreground when at least half of its 4 × 4 sub-samples fall inside the shape.
  Every shape reaches at most 13.6 px from its centre, so every sprite lies within pixels
  2 … 61 on both axes at every position.

Position is a pure translation, so the 3 · 6 · 40 = 720 base sprites (one per shape, scale and
orientation) are rendered once and shifted into place.
"""

from __future__ import annotations

import functools

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from magajax.data import factors

RENDER_VERSION = 1  # bumped whenever the rendered images change; runs record it (magajax.data.provenance)
IMAGE_SIZE = 64
RADIUS = 14  # a base sprite is a (2·RADIUS + 1)² patch centred on its middle pixel
FIRST_CENTRE = 16  # pixel row/column of the centre at position class 0
SUBSAMPLES = 4
SQUARE_HALF_SIDE = 9.6
ELLIPSE_SEMI_AXES = (12.8, 6.4)
HEART_UNIT = 7.83
_HEART_CENTRE_V = (1.236 - 1.0) / 2  # centre of the heart's bounding box, v from -1 to 1.236
_CHUNK = 4096  # images gathered at a time


def _inside(shape: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Whether points (u right, v up; pixels at scale 1, centred) lie inside the upright shape."""
    if shape == 0:
        return (np.abs(u) <= SQUARE_HALF_SIDE) & (np.abs(v) <= SQUARE_HALF_SIDE)
    if shape == 1:
        a, b = ELLIPSE_SEMI_AXES
        return (u / a) ** 2 + (v / b) ** 2 <= 1.0
    if shape == 2:
        u, v = u / HEART_UNIT, v / HEART_UNIT + _HEART_CENTRE_V
        return (u * u + v * v - 1.0) ** 3 <= u * u * v**3
    raise ValueError(f"shape class {shape} out of range; shapes are 0 (square), 1 (ellipse), 2 (heart)")


def sprite(shape: int, scale: float, angle: float) -> np.ndarray:
    """One shape centred in a (29, 29) uint8 {0, 1} patch, its centre at the middle pixel's centre.

    A point at offset (du right, dv up) from the centre is inside when R(−angle)(du, dv) / scale
    lies inside the upright shape (R a counter-clockwise rotation).

    Args:
      shape: shape class (0 square, 1 ellipse, 2 heart).
      scale: scale value (dSprites uses 0.5 … 1).
      angle: orientation in radians, counter-clockwise as displayed.
    """
    side = 2 * RADIUS + 1
    sub = (np.arange(side * SUBSAMPLES) + 0.5) / SUBSAMPLES - (RADIUS + 0.5)
    du, dv = sub[None, :], -sub[:, None]
    c, s = np.cos(angle), np.sin(angle)
    inside = _inside(shape, (c * du + s * dv) / scale, (-s * du + c * dv) / scale)
    coverage = inside.reshape(side, SUBSAMPLES, side, SUBSAMPLES).sum(axis=(1, 3))
    return (2 * coverage >= SUBSAMPLES**2).astype(np.uint8)


@functools.lru_cache(maxsize=1)
def _canvases() -> np.ndarray:
    """(720, 95, 95) uint8: base sprite b = (shape·6 + scale)·40 + orientation placed so that
    canvas[b, 31 − y : 95 − y, 31 − x : 95 − x] is the image at position (x, y)."""
    n_pos = factors.SIZES[3]
    size = IMAGE_SIZE + n_pos - 1
    offset = FIRST_CENTRE + n_pos - 1 - RADIUS
    n_base = factors.SIZES[0] * factors.SIZES[1] * factors.SIZES[2]
    out = np.zeros((n_base, size, size), np.uint8)
    b = 0
    for shape in range(factors.SIZES[0]):
        for scale in factors.VALUES["scale"]:
            for angle in factors.VALUES["orientation"]:
                out[b, offset : offset + 2 * RADIUS + 1, offset : offset + 2 * RADIUS + 1] = sprite(
                    shape, scale, angle
                )
                b += 1
    out.setflags(write=False)
    return out


def render_dsprites(indices: np.ndarray, packed: bool = False) -> np.ndarray:
    """Renders dSprites images by dataset index.

    Args:
      indices: dataset indices in [0, 737280), any shape.
      packed: if True, return rows bit-packed along the last axis (np.packbits(images, axis=-1)),
        rendered chunk by chunk so the unpacked images never exist all at once.

    Returns:
      uint8 images in {0, 1} of shape indices.shape + (64, 64), or packed, indices.shape + (64, 8).
    """
    indices = np.asarray(indices)
    flat = indices.reshape(-1)
    n_pos = factors.SIZES[3]
    windows = sliding_window_view(_canvases(), (IMAGE_SIZE, IMAGE_SIZE), axis=(1, 2))
    width = IMAGE_SIZE // 8 if packed else IMAGE_SIZE
    out = np.empty((flat.size, IMAGE_SIZE, width), np.uint8)
    for start in range(0, flat.size, _CHUNK):
        classes = factors.index_to_classes(flat[start : start + _CHUNK])
        base = (classes[:, 0] * factors.SIZES[1] + classes[:, 1]) * factors.SIZES[2] + classes[:, 2]
        images = windows[base, n_pos - 1 - classes[:, 4], n_pos - 1 - classes[:, 3]]
        out[start : start + len(classes)] = np.packbits(images, axis=-1) if packed else images
    return out.reshape((*indices.shape, IMAGE_SIZE, width))
