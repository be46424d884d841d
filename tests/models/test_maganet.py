"""MAGANet: the group laws in logit space, decode(0, x) = x, codes, broadcasting, parameter count."""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from magajax.api import jitted
from magajax.config import ModelConfig
from magajax.models.maganet import MAGANet
from tests.helpers import (
    binary_images,
    default_encoder_params,
    dense_params,
    key,
    n_params,
    tiny_maganet,
)

LAW_TOL = 1e-3  # max |error| on logits for the group laws, float32


def method(config: ModelConfig, name: str):
    """The jitted MAGANet method the public API uses (shared, so each shape compiles once)."""
    return jitted(config, name)


def test_group_laws():
    config, variables = tiny_maganet()
    act = functools.partial(method(config, "act"), variables)
    u = method(config, "embed")(variables, binary_images(3, 5, 16))
    np.testing.assert_allclose(np.abs(u), np.log((1 - config.eps) / config.eps), rtol=1e-4)
    z1, z2 = np.random.default_rng(4).standard_normal((2, 5, config.latent_dim)).astype(np.float32)
    moved = act(z1, u)
    assert float(jnp.mean(jnp.abs(moved - u))) > 1.0, "the perturbed action should move u a lot"
    errors = {
        "act(0, u) = u": act(jnp.zeros_like(z1), u) - u,
        "act(-z, act(z, u)) = u": act(-z1, moved) - u,
        "act(z2, act(z1, u)) = act(z1 + z2, u)": act(z2, moved) - act(z1 + z2, u),
    }
    measured = {law: float(jnp.max(jnp.abs(e))) for law, e in errors.items()}
    print(f"group-law max |error| on logits: {measured}")
    for law, err in measured.items():
        assert err <= LAW_TOL, f"{law}: max |error| {err:.2e} > {LAW_TOL:g}"


def test_decode_of_zero_code_reproduces_a_binary_pivot():
    config, variables = tiny_maganet()
    x = binary_images(5, 5, 16)
    images = method(config, "decode")(variables, np.zeros((5, config.latent_dim), np.float32), x)
    err = float(jnp.max(jnp.abs(images - x)))
    print(f"max |decode(0, x) - x| = {err:.2e}")
    assert err <= config.eps + 1e-6


def test_code_without_key_is_the_mean_difference():
    config, variables = tiny_maganet()
    x_v, x_p = binary_images(6, 5, 16), binary_images(7, 5, 16)
    encode, code = method(config, "posterior"), method(config, "encode")
    mean_v, mean_p = encode(variables, x_v)[0], encode(variables, x_p)[0]
    np.testing.assert_allclose(code(variables, x_v, x_p), mean_v - mean_p, atol=1e-6)
    assert np.all(code(variables, x_v, x_v) == 0.0)
    assert float(jnp.max(jnp.abs(code(variables, x_v, x_p)))) > 1e-3


def test_code_with_key_samples_each_pair_independently():
    """One pivot against n copies of one image: the n codes are i.i.d. N(μ_v − μ_p, σ_v² + σ_p²)."""
    config, variables = tiny_maganet()
    n = 2000
    x_v, x_p = np.repeat(binary_images(8, 1, 16), n, axis=0), binary_images(9, 1, 16)
    mean_v, logvar_v = method(config, "posterior")(variables, x_v[:1])
    mean_p, logvar_p = method(config, "posterior")(variables, x_p)
    z = method(config, "encode")(variables, x_v, x_p, key(10))
    assert z.shape == (n, config.latent_dim)
    var = np.exp(logvar_v[0]) + np.exp(logvar_p[0])
    np.testing.assert_array_less(np.abs(z.mean(0) - (mean_v[0] - mean_p[0])), 5 * np.sqrt(var / n))
    np.testing.assert_allclose(z.var(0) / var, 1.0, atol=0.2)
    other = method(config, "encode")(variables, x_v, x_p, key(11))
    assert not np.allclose(z, other)


def test_one_pivot_broadcasts_against_many_codes():
    config, variables = tiny_maganet()
    x_p = binary_images(12, 1, 16)
    z = np.random.default_rng(13).standard_normal((5, config.latent_dim)).astype(np.float32)
    decode = method(config, "decode")
    one = decode(variables, z, x_p)
    many = decode(variables, z, np.repeat(x_p, 5, axis=0))
    assert one.shape == (5, 16, 16, 1)
    np.testing.assert_allclose(one, many, rtol=1e-5, atol=1e-5)  # f(u) once vs per row: float order


def default_glow_params(levels: int = 3, steps: int = 3, hidden: int = 128, channels: int = 1) -> int:
    """Per step at level l (C = channels·4^l channels): ActNorm 2C; 1×1 conv stored as full L and U
    matrices (only their strict triangles are used) and log s: 2C² + C; additive coupling net
    Conv3×3(C/2 → h), Dense(h → h), Conv3×3(h → C/2), all with biases."""
    total = 0
    for level in range(1, levels + 1):
        c = channels * 4**level
        coupling = (9 * (c // 2) * hidden + hidden) + dense_params(hidden, hidden) + (9 * hidden * (c // 2) + c // 2)
        total += steps * (2 * c + (2 * c * c + c) + coupling)
    return total


def test_default_param_count():
    config = ModelConfig()
    x = jnp.zeros((1, 64, 64, 1))
    shapes = jax.eval_shape(MAGANet(config).init, key(0), x, x)["params"]
    counts = {name: n_params(tree) for name, tree in shapes.items()}
    print(f"default MAGANet parameters: {counts}, total {sum(counts.values()):,}")
    assert counts["encoder"] == default_encoder_params()
    assert counts["flow"] == default_glow_params()
    assert counts["A"] == dense_params(config.latent_dim, 64 * 64, bias=False)
