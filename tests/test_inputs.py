"""Input validation: every accepted form converts, every bad one is a one-line ValueError."""

import re

import jax.numpy as jnp
import numpy as np
import pytest

from magajax import inputs

SIZE = 8


def image(batch: int = 1) -> np.ndarray:
    return np.random.default_rng(batch).random((batch, SIZE, SIZE, 1)) < 0.5


@pytest.mark.parametrize(
    "shape, batch",
    [((SIZE, SIZE), 1), ((SIZE, SIZE, 1), 1), ((3, SIZE, SIZE), 3), ((3, SIZE, SIZE, 1), 3), ((1, SIZE, SIZE), 1)],
)
def test_image_shapes(shape, batch):
    x = image(batch)
    out = inputs.images(x.reshape(shape), SIZE)
    assert out.shape == (batch, SIZE, SIZE, 1) and out.dtype == np.float32
    np.testing.assert_array_equal(out, x.astype(np.float32))


@pytest.mark.parametrize(
    "convert",
    [
        lambda x: x,  # bool
        lambda x: x.astype(np.uint8),  # {0, 1}
        lambda x: x.astype(np.uint8) * 255,  # {0, 255}
        lambda x: x.astype(np.int64).tolist(),  # a nested list of ints
        lambda x: x.astype(np.float64),
        lambda x: jnp.asarray(x, jnp.float32),
    ],
    ids=["bool", "uint8-01", "uint8-0255", "int-list", "float64", "jax-float32"],
)
def test_image_dtypes(convert):
    x = image(2)
    np.testing.assert_array_equal(inputs.images(convert(x), SIZE), x.astype(np.float32))


def test_float_images_keep_grey_values():
    x = np.linspace(0, 1, SIZE * SIZE).reshape(SIZE, SIZE)
    np.testing.assert_allclose(inputs.images(x, SIZE)[0, ..., 0], x, rtol=1e-6)


BAD_IMAGES = [
    (
        np.zeros((16, 16)),
        "x: expected shape (H, W), (H, W, 1), (B, H, W) or (B, H, W, 1) with H = W = 8, got shape (16, 16)",
    ),
    (np.zeros((SIZE, SIZE, 3)), "with H = W = 8, got shape (8, 8, 3)"),
    (np.zeros((2, SIZE, SIZE, 1, 1)), "got shape (2, 8, 8, 1, 1)"),
    (np.zeros(SIZE), "got shape (8,)"),
    (np.zeros((0, SIZE, SIZE, 1)), "x: expected at least one image, got an empty batch of shape (0, 8, 8, 1)"),
    (np.full((SIZE, SIZE), np.nan), "x: expected finite values, got 64 NaN/Inf entries"),
    (np.full((SIZE, SIZE), np.inf), "x: expected finite values, got 64 NaN/Inf entries"),
    (np.full((SIZE, SIZE), 1.5), "x: expected float images in [0, 1], got values in [1.5, 1.5]"),
    (-0.1 * np.ones((SIZE, SIZE)), "x: expected float images in [0, 1], got values in [-0.1, -0.1]"),
    (
        np.arange(SIZE * SIZE, dtype=np.uint8).reshape(SIZE, SIZE),
        "x: expected integer images with values in {0, 1} or {0, 255}, got values 0, 1, 2, 3, 4, ...",
    ),
    (np.array([0, 1, 255] + [0] * (SIZE * SIZE - 3), np.uint8).reshape(SIZE, SIZE), "got values 0, 1, 255"),
    (np.full((SIZE, SIZE), "a"), "x: expected a numeric array (bool, int or float), got dtype <U1"),
    (np.zeros((SIZE, SIZE), np.complex64), "got dtype complex64"),
    (None, "x: expected a numeric array (bool, int or float), got dtype object"),
    ([[0, 1], [0]], "x: expected a numeric array, got list"),
]


@pytest.mark.parametrize("value, message", BAD_IMAGES)
def test_bad_images(value, message):
    with pytest.raises(ValueError, match=re.escape(message)) as info:
        inputs.images(value, SIZE)
    assert "\n" not in str(info.value)


def test_logits_accept_any_finite_values_only():
    u = np.random.default_rng(0).normal(scale=20, size=(2, SIZE, SIZE))
    np.testing.assert_allclose(inputs.logits(u, SIZE)[..., 0], u.astype(np.float32))
    with pytest.raises(ValueError, match=re.escape("u: expected finite values, got 1 NaN/Inf entries")):
        inputs.logits(np.where(np.arange(SIZE * SIZE).reshape(SIZE, SIZE) == 5, np.nan, 0.0), SIZE)
    with pytest.raises(ValueError, match=re.escape("u: expected shape (H, W), (H, W, 1), (B, H, W) or (B, H, W, 1)")):
        inputs.logits(np.zeros((4, 4)), SIZE)


def test_codes():
    z = np.arange(10.0)
    assert inputs.codes(z, 10).shape == (1, 10)
    assert inputs.codes(np.stack([z, z, z]), 10).shape == (3, 10)
    assert inputs.codes(jnp.asarray(z), 10).dtype == np.float32
    for bad, message in [
        (np.zeros(9), "z: expected shape (10,) or (B, 10) with B >= 1, got shape (9,)"),
        (np.zeros((2, 11)), "got shape (2, 11)"),
        (np.zeros((2, 1, 10)), "got shape (2, 1, 10)"),
        (np.zeros((0, 10)), "got shape (0, 10)"),
        (3.0, "got shape ()"),
        (np.full(10, np.nan), "z: expected finite values, got 10 NaN/Inf entries"),
        ("abc", "z: expected a numeric array (bool, int or float), got dtype <U3"),
    ]:
        with pytest.raises(ValueError, match=re.escape(message)):
            inputs.codes(bad, 10)


def test_batch_broadcasting():
    one, three = np.zeros((1, 2)), np.zeros((3, 2))
    assert inputs.batch(z=three, x_pivot=one) == 3
    assert inputs.batch(z=one, x_pivot=three) == 3
    assert inputs.batch(z=three, x_pivot=three) == 3
    assert inputs.batch(z=one, x_pivot=one) == 1
    message = "batch sizes do not match: z has 3, x_pivot has 2; expected 1 or one common size B"
    with pytest.raises(ValueError, match=re.escape(message)):
        inputs.batch(z=three, x_pivot=np.zeros((2, 2)))


def test_values_are_checked_after_the_cast():
    """1e39 is finite in float64 and inf in float32; 3.4e38 is finite in float32 and inf in bfloat16."""
    z = np.zeros((2, 10))
    z[0, :3] = [1e39, -1e39, 2e39]
    message = "z: 3 values overflow float32, the dtype the model computes in (|z| > 3.4e+38); pass values of smaller"
    with pytest.raises(ValueError, match=re.escape(message)):
        inputs.codes(z, 10)
    u = np.zeros((SIZE, SIZE))
    u[2, 3] = -1e300
    with pytest.raises(ValueError, match=re.escape("u: 1 values overflow float32, the dtype the model computes in")):
        inputs.logits(u, SIZE)
    big = np.full(10, 3.4e38)
    assert np.all(np.isfinite(inputs.codes(big, 10)))
    with pytest.raises(ValueError, match=re.escape("z: 10 values overflow bfloat16, the dtype the model computes in")):
        inputs.codes(big, 10, dtype="bfloat16")
    largest = np.full(10, float(np.finfo(np.float32).max), np.float64)
    np.testing.assert_array_equal(inputs.codes(largest, 10), largest[None].astype(np.float32))
