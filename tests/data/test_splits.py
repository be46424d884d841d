"""Tests for named splits and split expressions."""

import numpy as np
import pytest

from magajax.config import DEFAULT_PIVOT, OFFICIAL_PIVOT
from magajax.data import factors
from magajax.data.splits import SPLITS, Split, held_out_mask, make_split

SIZES = {"element": 5_808, "range": 122_880, "extrapolation": 368_640,
         "element-blog": 2_366, "range-blog": 122_880, "element-cartan": 2_016, "range-cartan": 122_880, "none": 0}


@pytest.fixture(scope="module")
def classes():
    return factors.all_classes()


@pytest.fixture(scope="module")
def named(classes):
    return {name: make_split(name, classes) for name in SPLITS}


def test_split_names():
    assert set(SPLITS) == set(SIZES)


@pytest.mark.parametrize("name", list(SIZES))
def test_named_split_sizes_and_partition(name, named):
    split = named[name]
    assert isinstance(split, Split) and split.name == name
    assert len(split.test) == SIZES[name]
    assert split.train.dtype == split.test.dtype == np.int32
    assert (np.diff(split.train) > 0).all() and (np.diff(split.test) > 0).all()
    counts = np.zeros(factors.NUM_IMAGES, int)
    np.add.at(counts, np.concatenate([split.train, split.test]), 1)
    assert (counts == 1).all()  # disjoint, and together every image
    assert split.pivot_row == DEFAULT_PIVOT and DEFAULT_PIVOT in split.train


def test_named_splits_hold_out_the_design_table(classes, named):
    s, sc, o, x, y = (classes[:, i].astype(int) for i in range(5))
    expected = {
        "element": (s == 1) & (sc >= 2) & (o >= 14) & (o <= 25) & (x >= 21) & (y >= 21),
        "range": (s == 0) & (x >= 16),
        "extrapolation": x >= 16,
        "element-blog": (s == 1) & (sc == 0) & (o >= 13) & (o <= 26) & (x >= 19) & (y >= 19),
        "range-blog": (s == 1) & (x >= 16),
        "element-cartan": (s == 1) & (sc == 0) & (o >= 14) & (o <= 27) & (x >= 20) & (y >= 20),
        "range-cartan": (s == 2) & (x >= 16),
    }
    for name, mask in expected.items():
        np.testing.assert_array_equal(named[name].test, np.flatnonzero(mask))
    assert np.isin(named["element-blog"].test, named["range-blog"].test).all()


def test_expressions_select_expected_images(classes):
    s, sc, o, x, y = (classes[:, i].astype(int) for i in range(5))
    xv, scv = factors.VALUES["x"][x], factors.VALUES["scale"][sc]
    cases = {
        "shape=ellipse & x>=0.6 & scale<0.6": (s == 1) & (xv >= 0.6) & (scv < 0.6),
        # 120° and 240° are grid values (classes 13 and 26): the range includes them.
        "shape=ellipse & 120<=orientation_deg<=240": (s == 1) & (o >= 13) & (o <= 26),
        "x>=16": x >= 16,
        "  posX >= 16 & shape==heart ": (x >= 16) & (s == 2),
        "shape!=0 & 3>y": (s != 0) & (y < 3),
        "shape=2.0 & 0.7<=scale<0.9": (s == 1) & (sc >= 2) & (sc <= 3),
        "5<y<=7 & orientation=0": (y > 5) & (y <= 7) & (o == 0),
    }
    for spec, mask in cases.items():
        assert mask.any() and not mask.all()
        np.testing.assert_array_equal(held_out_mask(spec, classes), mask, err_msg=spec)
    assert held_out_mask("shape=ellipse & 120<=orientation_deg<=240", classes).sum() == 1 * 6 * 14 * 32 * 32


def test_subset_in_another_order_gives_rows_of_that_subset(classes):
    rng = np.random.default_rng(0)
    some = rng.choice(factors.NUM_IMAGES, 20_000, replace=False)
    index = rng.permutation(np.union1d(some, [DEFAULT_PIVOT]))
    subset = classes[index]
    split = make_split("range", subset)
    np.testing.assert_array_equal(split.test, np.flatnonzero((subset[:, 0] == 0) & (subset[:, 3] >= 16)))
    assert index[split.pivot_row] == DEFAULT_PIVOT
    row = int(np.flatnonzero(subset[:, 3] >= 4)[0])
    custom = make_split("x<4", subset, pivot=int(index[row]))
    np.testing.assert_array_equal(custom.test, np.flatnonzero(subset[:, 3] < 4))
    assert custom.pivot_row == row


@pytest.mark.parametrize("spec, match", [
    ("elemnt", r"unknown split 'elemnt'; known splits: element, range, .*none, or an expression like"),
    ("", "unknown split ''"),
    ("x>=", r"malformed split expression 'x>=' at character 0"),
    ("x>=16 &", r"at character 6 \('&'\)"),
    ("x>=16 & y @ 3", r"at character 10 \('@ 3'\): unexpected character"),
    ("z>3", "exactly one factor of shape, scale"),
    ("3<=5<=x", "the factor in the middle"),
    ("x>=32", r"x classes lie in 0\.\.31 \(a value needs a decimal point\)"),
    ("shape=circle", "shape name"),
    ("x>=1.5", "selects no images of the 737280 given; loosen it"),
    ("x>=0.0", "selects all 737280 images, leaving none to train on"),
])
def test_bad_specs_raise_helpful_errors(spec, match, classes):
    with pytest.raises(ValueError, match=match):
        make_split(spec, classes)


def test_bad_pivots_raise_helpful_errors(classes):
    held_out = int(factors.classes_to_index([[1, 3, 20, 25, 25]])[0])
    where = r"\(ellipse, scale 3, orientation 20, x 25, y 25\) lies in the held-out set of split 'element'"
    with pytest.raises(ValueError, match=rf"pivot {held_out} {where}; choose a pivot outside it, e\.g\. \d+"):
        make_split("element", classes, pivot=held_out)
    without_pivot = np.delete(classes, DEFAULT_PIVOT, axis=0)
    missing = r"pivot 594095 \(heart, scale 2, orientation 20, x 5, y 15\) is not in the data \(737279 "
    with pytest.raises(ValueError, match=missing):
        make_split("element", without_pivot)
    with pytest.raises(ValueError, match="out of range"):
        make_split("element", classes, pivot=factors.NUM_IMAGES)


def test_official_pivot_is_heart_scale_2_orientation_20_at_16_16():
    assert OFFICIAL_PIVOT == int(factors.classes_to_index([[2, 2, 20, 16, 16]])[0])


def test_held_out_pivot_is_allowed_with_one_warning_when_asked(classes, capsys):
    with pytest.raises(ValueError, match=rf"pivot {OFFICIAL_PIVOT} \(heart, .*lies in the held-out set of split "
                                         r"'range-cartan'; choose a pivot outside it"):
        make_split("range-cartan", classes, pivot=OFFICIAL_PIVOT)
    capsys.readouterr()
    split = make_split("range-cartan", classes, pivot=OFFICIAL_PIVOT, allow_held_out_pivot=True)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"warning: pivot {OFFICIAL_PIVOT} (heart, scale 2, orientation 20, "
                                                   "x 16, y 16) lies in the held-out set of split 'range-cartan'")
    assert "never trained on" in lines[0]
    assert split.pivot_row == OFFICIAL_PIVOT and OFFICIAL_PIVOT in split.test and len(split.test) == 122_880
    make_split("element-cartan", classes, pivot=OFFICIAL_PIVOT, allow_held_out_pivot=True)
    assert capsys.readouterr().out == ""  # a pivot in train needs no warning
