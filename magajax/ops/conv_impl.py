"""Which form computes the model's convolutions: `model.conv` = auto, matmul or lax.

- matmul: shifted copies and one 2-D matmul (`conv3x3`, `stride2_conv`), the fastest on XLA:CPU
  (docs/performance.md);
- lax: `jax.lax.conv_general_dilated`, which GPUs and TPUs run as their native convolutions;
- auto: matmul on the CPU, lax on any other backend.

Both forms take the same parameters and compute the same sums (up to float rounding).
"""

from __future__ import annotations

import jax

CHOICES = ("auto", "matmul", "lax")
DIMENSIONS = ("NHWC", "HWIO", "NHWC")  # images, kernels (k, k, c_in, c_out), outputs


def resolve(choice: str) -> str:
    """'matmul' or 'lax' for `choice`; 'auto' is 'matmul' on the CPU backend and 'lax' elsewhere."""
    if choice not in CHOICES:
        raise ValueError(f"unknown conv implementation {choice!r}; use one of {', '.join(CHOICES)}")
    if choice == "auto":
        return "matmul" if jax.default_backend() == "cpu" else "lax"
    return choice


def lax_conv(x: jax.Array, kernel: jax.Array, stride: int, padding: str | tuple[int, int]) -> jax.Array:
    """`lax.conv_general_dilated` of x (B, H, W, c_in) with a (k, k, c_in, c_out) kernel: 'SAME' or (lo, hi)
    zeros on both spatial sides."""
    pads = padding if isinstance(padding, str) else (padding, padding)
    return jax.lax.conv_general_dilated(x, kernel, (stride, stride), pads, dimension_numbers=DIMENSIONS)
