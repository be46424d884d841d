"""Pair sampling and evaluation batches on small random bit-packed image sets."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from magajax.data import pairs

N = 40


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    """(N, 64, 64) random {0, 1} images, all different."""
    return (np.random.default_rng(0).random((N, 64, 64)) < 0.3).astype(np.uint8)


@pytest.fixture(scope="module")
def packed(images) -> jax.Array:
    return jnp.asarray(np.packbits(images, axis=-1))


def _rows_of(batch: np.ndarray, images: np.ndarray) -> np.ndarray:
    """The row of `images` each (B, 64, 64, 1) image in `batch` equals (-1 if none)."""
    flat = images.reshape(len(images), -1).astype(np.float32)
    eq = (batch.reshape(len(batch), 1, -1) == flat[None]).all(-1)
    return np.where(eq.any(1), eq.argmax(1), -1)


@pytest.mark.parametrize("size", [64, 32, 16, 8])
def test_unpack_pools_like_numpy(images, packed, size):
    f = 64 // size
    want = images[:5].reshape(5, size, f, size, f).mean(axis=(2, 4))[..., None]
    got = pairs.unpack_images(packed[:5], size)
    assert got.shape == (5, size, size, 1) and got.dtype == jnp.float32
    np.testing.assert_allclose(got, want, atol=1e-6)
    np.testing.assert_allclose(pairs.gather_images(packed, jnp.array([3, 1]), size), want[[3, 1]], atol=1e-6)


def test_unpack_rejects_bad_size(packed):
    with pytest.raises(ValueError, match="image_size 24 must divide 64"):
        pairs.unpack_images(packed, 24)


def test_pivot_mode_pairs_pivot_with_train_images(images, packed):
    train = np.array([2, 5, 11, 17, 30], np.int32)
    pivot = 7
    x_pivot, x_varying = pairs.sample_pairs(packed, jnp.asarray(train), pivot, jax.random.key(0),
                                            batch_size=64, mode="pivot", image_size=64)
    assert x_pivot.shape == x_varying.shape == (64, 64, 64, 1) and x_varying.dtype == jnp.float32
    assert float(x_varying.min()) >= 0 and float(x_varying.max()) <= 1
    assert (_rows_of(np.asarray(x_pivot), images) == pivot).all()
    rows = _rows_of(np.asarray(x_varying), images)
    assert set(rows) == set(train)  # only train rows, and with 64 draws from 5, every one of them


def test_shuffle_mode_permutes_the_batch(images, packed):
    train = np.arange(0, N, 3, dtype=np.int32)
    x_pivot, x_varying = pairs.sample_pairs(packed, jnp.asarray(train), 0, jax.random.key(1),
                                            batch_size=32, mode="shuffle", image_size=64)
    rows_p, rows_v = _rows_of(np.asarray(x_pivot), images), _rows_of(np.asarray(x_varying), images)
    assert set(rows_v) <= set(train)
    np.testing.assert_array_equal(np.sort(rows_p), np.sort(rows_v))
    assert not np.array_equal(rows_p, rows_v)


def test_sampling_is_deterministic_under_jit(packed):
    train = jnp.arange(N, dtype=jnp.int32)

    @jax.jit
    def step(key):
        return pairs.sample_pairs(packed, train, 3, key, batch_size=8, mode="shuffle", image_size=16)

    a, b = step(jax.random.key(5)), step(jax.random.key(5))
    c = step(jax.random.key(6))
    np.testing.assert_array_equal(a[1], b[1])
    np.testing.assert_array_equal(a[0], b[0])
    assert a[1].shape == (8, 16, 16, 1) and not np.array_equal(a[1], c[1])


def test_unknown_mode(packed):
    with pytest.raises(ValueError, match="unknown pair mode 'random'; use one of pivot, shuffle"):
        pairs.sample_pairs(packed, jnp.arange(4), 0, jax.random.key(0), batch_size=2, mode="random", image_size=8)


@pytest.mark.parametrize("n, batch", [(10, 4), (12, 4), (3, 8), (0, 4)])
def test_eval_batches_cover_rows_once(n, batch):
    rows = np.random.default_rng(n).permutation(100)[:n]
    out = list(pairs.eval_batches(rows, batch))
    assert len(out) == -(-n // batch)
    for b, m in out:
        assert b.shape == m.shape == (batch,) and b.dtype == np.int32 and m.dtype == bool
    valid = np.concatenate([b[m] for b, m in out]) if out else np.zeros(0, np.int32)
    np.testing.assert_array_equal(valid, rows)  # every row once, in order
    if n % batch:
        last, mask = out[-1]
        assert mask.sum() == n % batch and not mask[n % batch :].any()
        assert set(last[~mask]) <= set(last[mask])  # padding repeats valid rows


def test_eval_batches_rejects_bad_batch():
    with pytest.raises(ValueError, match="batch_size must be positive"):
        next(pairs.eval_batches(np.arange(3), 0))
