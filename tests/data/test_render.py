"""Tests for the offline dSprites renderer (a few hundred images, never the full set)."""

import numpy as np
import pytest

from magajax.data import factors
from magajax.data.render import render_dsprites, sprite

SQUARE, ELLIPSE, HEART = 0, 1, 2


def idx(shape, scale, orientation, x, y):
    """Dataset indices of factor classes, broadcast together (the result has the broadcast shape)."""
    cols = np.broadcast_arrays(shape, scale, orientation, x, y)
    return factors.classes_to_index(np.stack([np.ravel(c) for c in cols], axis=1)).reshape(cols[0].shape)


def centroid(images):
    """(N, 2) foreground centroids (row, column)."""
    rows, cols = np.indices(images.shape[-2:])
    area = images.sum(axis=(-2, -1))
    weighted = [(images * grid).sum(axis=(-2, -1)) for grid in (rows, cols)]
    return np.stack(weighted, -1) / area[..., None]


def bbox_centre(image):
    r, c = np.nonzero(image)
    return (r.min() + r.max()) / 2, (c.min() + c.max()) / 2


def test_binary_uint8_and_shapes():
    rng = np.random.default_rng(0)
    index = rng.integers(0, factors.NUM_IMAGES, (4, 50))
    images = render_dsprites(index)
    assert images.shape == (4, 50, 64, 64) and images.dtype == np.uint8
    assert set(np.unique(images)) == {0, 1}
    assert (images.sum(axis=(-2, -1)) > 0).all()


def test_packed_equals_packbits_of_unpacked():
    index = np.random.default_rng(1).integers(0, factors.NUM_IMAGES, 300)
    packed = render_dsprites(index, packed=True)
    assert packed.shape == (300, 64, 8) and packed.dtype == np.uint8
    np.testing.assert_array_equal(packed, np.packbits(render_dsprites(index), axis=-1))


def test_position_is_a_one_pixel_translation_from_16_to_47():
    """x moves the centre along columns, y along rows, one pixel per class, from pixel 16."""
    k = np.arange(32)
    along_x = centroid(render_dsprites(idx(SQUARE, 5, 0, k, 7)))
    along_y = centroid(render_dsprites(idx(SQUARE, 5, 0, 7, k)))
    np.testing.assert_allclose(along_x, np.stack([np.full(32, 23.0), 16.0 + k], -1))
    np.testing.assert_allclose(along_y, np.stack([16.0 + k, np.full(32, 23.0)], -1))
    hearts = centroid(render_dsprites(idx(HEART, 3, 17, k, k)))
    assert (np.diff(hearts, axis=0) > 0).all()


def test_area_grows_with_scale_and_not_with_orientation_or_position():
    """Over all orientations, every scale's areas lie strictly below the next scale's."""
    shape, scale, orientation = np.arange(3)[:, None, None], np.arange(6)[:, None], np.arange(40)
    area = render_dsprites(idx(shape, scale, orientation, 16, 16)).sum(axis=(-2, -1))
    assert (area.max(axis=2)[:, :-1] < area.min(axis=2)[:, 1:]).all()  # (shape, scale, orientation)
    spread = (area.max(axis=2) - area.min(axis=2)) / area.mean(axis=2)
    assert spread.max() < 0.2 and spread[:, -1].max() < 0.05, spread
    moved = render_dsprites(idx(HEART, 4, 11, [0, 31, 5, 20], [0, 31, 29, 3])).sum(axis=(-2, -1))
    assert (moved == moved[0]).all()


def test_geometry_matches_measured_dsprites():
    """Square at scale 1 ≈ 370 px (side 19); heart at scale 0.7 ≈ 110 px in a 13×13 box; ellipse 2:1."""
    square = render_dsprites(idx(SQUARE, 5, np.arange(40), 16, 16)).sum(axis=(-2, -1))
    assert 355 <= square.mean() <= 385
    assert np.nonzero(sprite(SQUARE, 1.0, 0.0).any(axis=0))[0].size == 19
    heart = sprite(HEART, factors.VALUES["scale"][2], 0.0)
    rows, cols = np.nonzero(heart)
    assert 100 <= heart.sum() <= 120 and 12 <= np.ptp(rows) + 1 <= 14 and 12 <= np.ptp(cols) + 1 <= 14
    ellipse = sprite(ELLIPSE, 1.0, 0.0)
    rows, cols = np.nonzero(ellipse)
    assert 1.7 <= (np.ptp(cols) + 1) / (np.ptp(rows) + 1) <= 2.3
    assert 0.5 * square.mean() < ellipse.sum() < 0.9 * square.mean()


def test_square_quarter_turn():
    """An exact quarter turn leaves the square unchanged; orientation class 10 (92.3°) nearly so."""
    np.testing.assert_array_equal(sprite(SQUARE, 1.0, np.pi / 2), sprite(SQUARE, 1.0, 0.0))
    at = render_dsprites(idx(SQUARE, 5, [0, 5, 10], 16, 16)).astype(bool)
    area = at[0].sum()
    assert (at[0] ^ at[2]).sum() < 0.1 * area < 0.3 * area < (at[0] ^ at[1]).sum()


def test_heart_has_exactly_one_mirror_axis():
    heart = sprite(HEART, 1.0, 0.0)
    np.testing.assert_array_equal(heart, heart[:, ::-1])
    for mirrored in (heart[::-1], heart.T, heart[::-1, ::-1].T):
        assert (heart != mirrored).sum() > 0.1 * heart.sum()
    ellipse = sprite(ELLIPSE, 1.0, 0.0)
    np.testing.assert_array_equal(ellipse, ellipse[::-1])
    np.testing.assert_array_equal(ellipse, ellipse[:, ::-1])


def test_heart_orientation_convention():
    """Lobes up at 0, left after a counter-clockwise quarter turn, down at class 20 (upside down)."""
    up, left, down = render_dsprites(idx(HEART, 5, [0, 10, 20], 16, 16))
    (r0, _), (r20, _) = centroid(up[None])[0], centroid(down[None])[0]
    assert r0 < bbox_centre(up)[0] - 0.5 and r20 > bbox_centre(down)[0] + 0.5
    assert centroid(left[None])[0, 1] < bbox_centre(left)[1] - 0.5
    patch = (slice(32 - 14, 32 + 15),) * 2  # the 29×29 patch around the centre pixel (32, 32)
    flipped = up[patch][::-1, ::-1].astype(bool)
    changed = (down[patch].astype(bool) ^ flipped).sum()
    assert changed < 0.1 * up.sum() < (up[patch].astype(bool) ^ flipped).sum()


@pytest.mark.parametrize("shape", [SQUARE, ELLIPSE, HEART])
def test_sprites_stay_inside_the_frame(shape):
    """Largest scale, every orientation, the four extreme positions: the border stays empty."""
    o, x, y = np.meshgrid(np.arange(40), [0, 31], [0, 31], indexing="ij")
    images = render_dsprites(idx(shape, 5, o, x, y))
    assert not images[..., [0, -1], :].any() and not images[..., [0, -1]].any()
    area = images.sum(axis=(-2, -1)).reshape(40, 4)
    assert (area == area[:, :1]).all()  # nothing clipped: the same area at every corner
