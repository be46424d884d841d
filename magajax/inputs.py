"""Validation and conversion of what users pass to the public API (`magajax.encode`, ...).

Images: shape (H, W), (H, W, 1), (B, H, W) or (B, H, W, 1); dtype bool, an integer type with
values all in {0, 1} or all in {0, 255} (255 ↦ 1), or float in [0, 1]; returned as float32
(B, H, W, 1) in [0, 1]. Logits (the action's u): the same shapes, any real values finite in
float32. Codes: (d,) or (B, d), finite in float32 and in the model's compute dtype, returned as
float32 (B, d). Finiteness is checked after the cast, so 1e39 (finite in float64, inf in
float32) is refused, not decoded to NaN. Batches broadcast: sizes 1 and B go together, two
different sizes above 1 do not. Anything else raises a one-line ValueError naming what was
expected and what was given.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np

IMAGE_SHAPES = "(H, W), (H, W, 1), (B, H, W) or (B, H, W, 1)"


def _numeric(value: Any, name: str) -> np.ndarray:
    """`value` as a real-valued NumPy array; anything non-numeric is a ValueError."""
    try:
        array = np.asarray(value)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name}: expected a numeric array, got {type(value).__name__} ({err})") from None
    if not (array.dtype == bool or np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise ValueError(f"{name}: expected a numeric array (bool, int or float), got dtype {array.dtype}")
    return array


def _finite(array: np.ndarray, name: str) -> None:
    if np.issubdtype(array.dtype, np.floating) and not np.all(np.isfinite(array)):
        raise ValueError(f"{name}: expected finite values, got {np.sum(~np.isfinite(array))} NaN/Inf entries")


def _checked_cast(array: np.ndarray, name: str, dtype: str) -> np.ndarray:
    """`array` cast to `dtype`; values that overflow it (finite before, ±inf after) are a ValueError."""
    with np.errstate(over="ignore"):
        cast = array.astype(jnp.dtype(dtype))
    overflow = int(np.sum(~np.isfinite(cast)))
    if overflow:
        limit = float(jnp.finfo(dtype).max)
        raise ValueError(
            f"{name}: {overflow} values overflow {dtype}, the dtype the model computes in "
            f"(|{name}| > {limit:.3g}); pass values of smaller magnitude"
        )
    return cast


def _cast(array: np.ndarray, name: str, dtype: str = "float32") -> np.ndarray:
    """Finite `array` as float32, checked to stay finite in float32 and then in `dtype`."""
    out = _checked_cast(array, name, "float32")
    if jnp.dtype(dtype) != np.float32:
        _checked_cast(out, name, dtype)
    return out


def _as_batch(array: np.ndarray, size: int, name: str) -> np.ndarray:
    """Reshapes one of the accepted image shapes to (B, size, size, 1)."""
    side = (size, size)
    if array.ndim == 2 and array.shape == side:
        array = array[None, :, :, None]
    elif array.ndim == 3 and array.shape == (*side, 1):
        array = array[None]
    elif array.ndim == 3 and array.shape[1:] == side:
        array = array[..., None]
    elif not (array.ndim == 4 and array.shape[1:] == (*side, 1)):
        raise ValueError(f"{name}: expected shape {IMAGE_SHAPES} with H = W = {size}, got shape {array.shape}")
    if array.shape[0] == 0:
        raise ValueError(f"{name}: expected at least one image, got an empty batch of shape {array.shape}")
    return array


def images(value: Any, size: int, name: str = "x") -> np.ndarray:
    """Images as float32 (B, size, size, 1) in [0, 1].

    Args:
      value: array-like of a shape in `IMAGE_SHAPES`, bool, integer in {0, 1} / {0, 255}, or float in [0, 1].
      size: the model's image side.
      name: the argument's name, for error messages.
    """
    array = _as_batch(_numeric(value, name), size, name)
    if array.dtype == bool:
        return array.astype(np.float32)
    if np.issubdtype(array.dtype, np.integer):
        values = np.unique(array)
        if np.all(np.isin(values, (0, 1))):
            return array.astype(np.float32)
        if np.all(np.isin(values, (0, 255))):
            return (array == 255).astype(np.float32)
        shown = ", ".join(str(v) for v in values[:5]) + (", ..." if values.size > 5 else "")
        raise ValueError(f"{name}: expected integer images with values in {{0, 1}} or {{0, 255}}, got values {shown}")
    _finite(array, name)
    low, high = float(array.min()), float(array.max())
    if low < 0.0 or high > 1.0:
        raise ValueError(f"{name}: expected float images in [0, 1], got values in [{low:g}, {high:g}]")
    return array.astype(np.float32)


def logits(value: Any, size: int, name: str = "u") -> np.ndarray:
    """Logit-space images (the action's u) as float32 (B, size, size, 1); any values finite in float32."""
    array = _as_batch(_numeric(value, name), size, name)
    _finite(array, name)
    return _cast(array, name)


def codes(value: Any, dim: int, name: str = "z", dtype: str = "float32") -> np.ndarray:
    """Transformation codes as float32 (B, dim), from shape (dim,) or (B, dim).

    Args:
      value: array-like codes.
      dim: the model's code dimension d.
      name: the argument's name, for error messages.
      dtype: the dtype the model computes codes in ('float32' or 'bfloat16'); the values must be
        finite after the cast to float32 and to it.
    """
    array = _numeric(value, name)
    if array.ndim == 1:
        array = array[None]
    if array.ndim != 2 or array.shape[1] != dim or array.shape[0] == 0:
        raise ValueError(f"{name}: expected shape ({dim},) or (B, {dim}) with B >= 1, got shape {np.shape(value)}")
    _finite(array, name)
    return _cast(array, name, dtype)


def batch(**arrays: np.ndarray) -> int:
    """The common batch size of arrays whose leading sizes broadcast (each 1 or the same B).

    Args:
      **arrays: name → array with a leading batch axis, for error messages in argument order.
    """
    sizes = {name: a.shape[0] for name, a in arrays.items()}
    big = {name: b for name, b in sizes.items() if b != 1}
    if len(set(big.values())) > 1:
        given = ", ".join(f"{name} has {b}" for name, b in sizes.items())
        raise ValueError(f"batch sizes do not match: {given}; expected 1 or one common size B")
    return max(sizes.values())
