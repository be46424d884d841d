"""Tests for the dSprites factor grid."""

import numpy as np
import pytest

from magajax.data import factors


def test_sizes_and_values_agree():
    assert np.prod(factors.SIZES) == factors.NUM_IMAGES
    assert tuple(len(factors.VALUES[n]) for n in factors.NAMES) == factors.SIZES
    np.testing.assert_allclose(factors.VALUES["orientation"][[0, -1]], [0.0, 2 * np.pi])
    np.testing.assert_allclose(factors.VALUES["scale"][2], 0.7)


def test_index_formula_and_round_trip():
    rng = np.random.default_rng(0)
    index = rng.integers(0, factors.NUM_IMAGES, 1000)
    classes = factors.index_to_classes(index)
    s, sc, o, x, y = classes.T
    np.testing.assert_array_equal((((s * 6 + sc) * 40 + o) * 32 + x) * 32 + y, index)
    np.testing.assert_array_equal(factors.classes_to_index(classes), index)


def test_pivot_classes():
    np.testing.assert_array_equal(factors.index_to_classes(594095), [[2, 2, 20, 5, 15]])


def test_y_is_fastest():
    np.testing.assert_array_equal(factors.index_to_classes([0, 1, 32])[:, 3:], [[0, 0], [0, 1], [1, 0]])


def test_classes_to_values():
    values = factors.classes_to_values(np.array([[2, 5, 39, 31, 0], [0, 0, 0, 0, 31]]))
    assert values.dtype == np.float32
    np.testing.assert_allclose(values, [[3, 1, 2 * np.pi, 1, 0], [1, 0.5, 0, 0, 1]], rtol=1e-6)


def test_all_classes_is_dataset_order():
    classes = factors.all_classes()
    assert classes.shape == (factors.NUM_IMAGES, 5) and classes.itemsize == 1
    rows = np.array([0, 1, 1023, 594095, factors.NUM_IMAGES - 1])
    np.testing.assert_array_equal(classes[rows], factors.index_to_classes(rows))
    every = np.arange(0, factors.NUM_IMAGES, 997)
    np.testing.assert_array_equal(factors.classes_to_index(classes[every]), every)
    assert factors.all_classes() is classes and not classes.flags.writeable


@pytest.mark.parametrize("bad", [-1, factors.NUM_IMAGES])
def test_index_out_of_range(bad):
    with pytest.raises(ValueError, match="out of range"):
        factors.index_to_classes([0, bad])


def test_bad_classes():
    with pytest.raises(ValueError, match=r"orientation class 40 \(row 1\) out of range"):
        factors.classes_to_index([[0, 0, 0, 0, 0], [0, 0, 40, 0, 0]])
    with pytest.raises(ValueError, match=r"shape \(N, 5\)"):
        factors.classes_to_values(np.zeros((3, 4), int))
    with pytest.raises(ValueError, match="must be integers"):
        factors.index_to_classes(np.array([1.0]))
