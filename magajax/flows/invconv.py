"""Invertible 1×1 convolution (Glow, §3.2): LU-parameterised, or one plain C×C weight."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

HIGHEST = jax.lax.Precision.HIGHEST  # GPUs/TPUs would otherwise round float32 matmuls (TF32/bf16)


def _init_factors(key: jax.Array, c: int) -> dict[str, jax.Array]:
    """Strict L, strict U and log s of a random rotation W0 = P L (U + diag s), s > 0.

    Q = qr(N(0, 1)^{C×C}) factors with pivoting as Q = P_q L U. With D = diag(sign(diag U)),
    W0 = P D P_qᵀ Q = P (D L D)(D U) is orthogonal, D L D is unit lower triangular and D U has
    a positive diagonal: the fixed P of `_permutation` and sign(s) = +1 need no stored state.
    """
    q, _ = jnp.linalg.qr(jax.random.normal(key, (c, c), jnp.float32))
    _, lower, upper = jax.scipy.linalg.lu(q)
    sign = jnp.sign(jnp.diag(upper))
    lower = sign[:, None] * lower * sign[None, :]
    upper = sign[:, None] * upper
    return {"lower": jnp.tril(lower, -1), "upper": jnp.triu(upper, 1), "log_s": jnp.log(jnp.diag(upper))}


def _permutation(c: int) -> jax.Array:
    """The fixed permutation P: channel reversal (a constant of C, not a parameter)."""
    return jnp.eye(c, dtype=jnp.float32)[::-1]


class InvConv1x1(nn.Module):
    """1×1 convolution y = W x over channels, with W = P L (U + diag(exp(log_s))).

    P is a fixed permutation (channel reversal), L unit lower triangular, U strictly upper
    triangular and s > 0 (its sign is fixed at +1 by construction); L, U, log_s are trained.
    Initialised from a random rotation drawn from the `params` key (each layer its own).

    Forward:  y[b, h, w] = W x[b, h, w]          (a matmul over channels)
    Inverse:  x[b, h, w] = W⁻¹ y[b, h, w],  W⁻¹ = (U + diag s)⁻¹ L⁻¹ Pᵀ by triangular solves
    Log-det:  H · W · Σ_c log_s_c  (forward; the inverse's is its negation)
    """

    @nn.compact
    def _factors(self, c: int) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
        """(P, L, U + diag s, log s), the first three as dense C×C matrices."""
        lu = self.param("lu", _init_factors, c)  # one rotation -> {lower, upper, log_s}
        lmat = jnp.tril(lu["lower"], -1) + jnp.eye(c, dtype=lu["lower"].dtype)
        umat = jnp.triu(lu["upper"], 1) + jnp.diag(jnp.exp(lu["log_s"]))
        return _permutation(c).astype(lmat.dtype), lmat, umat, lu["log_s"]

    @staticmethod
    def _apply(x: jax.Array, weight: jax.Array, log_s: jax.Array) -> tuple[jax.Array, jax.Array]:
        """(x W'ᵀ over channels, H·W·Σ log s per example); full float32 precision on every backend.

        One 2-D matmul over the flattened pixels (XLA:CPU differentiates it faster than a 4-D einsum).
        """
        y = jnp.matmul(x.reshape(-1, x.shape[-1]), weight.T, precision=HIGHEST).reshape(x.shape)
        return y, jnp.full((x.shape[0],), x.shape[1] * x.shape[2] * jnp.sum(log_s), log_s.dtype)

    def forward(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        p, lmat, umat, log_s = self._factors(x.shape[-1])
        return self._apply(x, jnp.matmul(p, jnp.matmul(lmat, umat, precision=HIGHEST)), log_s)

    def inverse(self, y: jax.Array) -> tuple[jax.Array, jax.Array]:
        p, lmat, umat, log_s = self._factors(y.shape[-1])
        solve = jax.scipy.linalg.solve_triangular
        weight_inv = solve(umat, solve(lmat, p.T, lower=True, unit_diagonal=True), lower=False)
        x, logdet = self._apply(y, weight_inv, log_s)
        return x, -logdet


def _rotation(key: jax.Array, c: int) -> jax.Array:
    """A random rotation: Q of the QR decomposition of a C×C standard-normal matrix."""
    return jnp.linalg.qr(jax.random.normal(key, (c, c), jnp.float32))[0]


class PlainInvConv1x1(nn.Module):
    """1×1 convolution y = W x over channels with one trained C×C weight W (Glow's plain kind).

    The parameter `weight` is (out, in), as torch's conv weight[:, :, 0, 0]:
    y[..., o] = Σ_i W[o, i] x[..., i]. Initialised from a random rotation drawn from the `params` key.

    Forward:  y[b, h, w] = W x[b, h, w]
    Inverse:  x[b, h, w] = W⁻¹ y[b, h, w]   (W⁻¹ by a linear solve)
    Log-det:  H · W · log|det W|  (forward; the inverse's is its negation)
    """

    @nn.compact
    def _weight(self, c: int) -> jax.Array:
        return self.param("weight", _rotation, c)

    def forward(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        weight = self._weight(x.shape[-1])
        return InvConv1x1._apply(x, weight, jnp.linalg.slogdet(weight)[1][None])

    def inverse(self, y: jax.Array) -> tuple[jax.Array, jax.Array]:
        weight = self._weight(y.shape[-1])
        eye = jnp.eye(weight.shape[0], dtype=weight.dtype)
        x, logdet = InvConv1x1._apply(y, jnp.linalg.solve(weight, eye), jnp.linalg.slogdet(weight)[1][None])
        return x, -logdet


KINDS = {"lu": InvConv1x1, "plain": PlainInvConv1x1}
