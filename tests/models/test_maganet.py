"""MAGANet: the group laws in logit space, decode(0, x) = x, codes, broadcasting, parameter count."""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from magajax import config as cfg
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


@functools.cache
def official_maganet() -> tuple[ModelConfig, dict, dict]:
    """A 16×16 MAGANet with the official code's model options (raw input, plain 1×1 convs, ActNorm coupling
    nets, Xavier init), d = 32: (config, its initial variables, those perturbed by N(0, 0.05²))."""
    config = ModelConfig(image_size=16, levels=2, steps=1, hidden=8, latent_dim=32, input="raw", invconv="plain",
                         coupling_net="actnorm", init="xavier")
    variables = jax.jit(MAGANet(config).init)(key(0), binary_images(0, 1, 16), binary_images(1, 8, 16))
    leaves, tree = jax.tree.flatten(variables)
    noise = np.random.default_rng(2)
    perturbed = [leaf + 0.05 * noise.standard_normal(leaf.shape).astype(np.float32) for leaf in leaves]
    return config, variables, jax.tree.unflatten(tree, perturbed)


def test_group_laws_hold_in_flow_input_space_with_the_official_options():
    config, _, variables = official_maganet()
    act = functools.partial(method(config, "act"), variables)
    x = binary_images(3, 5, 16)
    u = method(config, "embed")(variables, x)
    np.testing.assert_array_equal(u, x)  # raw pixels enter the flow as they are
    z1, z2 = np.random.default_rng(4).standard_normal((2, 5, config.latent_dim)).astype(np.float32)
    moved = act(z1, u)
    assert float(jnp.mean(jnp.abs(moved - u))) > 0.1, "the action should move u"
    errors = {
        "act(0, u) = u": act(jnp.zeros_like(z1), u) - u,
        "act(-z, act(z, u)) = u": act(-z1, moved) - u,
        "act(z2, act(z1, u)) = act(z1 + z2, u)": act(z2, moved) - act(z1 + z2, u),
    }
    for law, e in errors.items():
        assert float(jnp.max(jnp.abs(e))) <= LAW_TOL, law
    # f⁻¹'s output is read as logits: D(0, x) = sigmoid(x), not x, on raw input
    np.testing.assert_allclose(method(config, "decode")(variables, np.zeros((5, config.latent_dim), np.float32), x),
                               1 / (1 + np.exp(-x)), atol=1e-4)


def test_xavier_init_draws_encoder_and_A_within_their_bounds():
    config, variables, _ = official_maganet()
    params = variables["params"]
    d, side = config.latent_dim, config.image_size
    kernels = {  # kernel, fan_in, fan_out as torch counts them
        "encoder Conv_0": (params["encoder"]["Conv_0"]["kernel"], 16 * 1, 16 * 32),
        "encoder Dense_0": (params["encoder"]["Dense_0"]["kernel"], 32 * 4 * 4, 256),
        "encoder Dense_1": (params["encoder"]["Dense_1"]["kernel"], 256, 256),
        "mean head": (params["encoder"]["Dense_2"]["kernel"][:, :d], 256, d),
        "logvar head": (params["encoder"]["Dense_2"]["kernel"][:, d:], 256, d),
        "A": (params["A"]["kernel"], d, side * side),
    }
    for name, (w, fan_in, fan_out) in kernels.items():
        w, bound = np.asarray(w), np.sqrt(6.0 / (fan_in + fan_out))
        assert 0.99 * bound < np.abs(w).max() <= bound, name
        np.testing.assert_allclose(w.std(), bound / np.sqrt(3), rtol=0.05, err_msg=name)
    biases = [b for path, b in jax.tree_util.tree_leaves_with_path(params["encoder"]) if "bias" in str(path[-1])]
    assert len(biases) == 5 and all(np.all(b == 0) for b in biases)


def test_cartan_preset_parameter_names_and_shapes():
    config = cfg.preset("cartan").model
    x = jnp.zeros((1, 64, 64, 1))
    params = jax.eval_shape(MAGANet(config).init, key(0), x, x)["params"]
    assert params["encoder"]["Dense_0"]["kernel"].shape == (32 * 2 * 2, 256)  # VALID: 64 → 31 → 14 → 6 → 2
    for level in range(config.levels):
        c = 4 ** (level + 1)
        for step in range(config.steps):
            assert jax.tree.map(np.shape, params["flow"][f"invconv_{level}_{step}"]) == {"weight": (c, c)}
            coupling = jax.tree.map(np.shape, params["flow"][f"coupling_{level}_{step}"])
            h = config.hidden
            assert coupling == {
                "conv_in": {"kernel": (3, 3, c // 2, h)}, "actnorm_in": {"bias": (h,), "logs": (h,)},
                "conv_mid": {"kernel": (h, h)}, "actnorm_mid": {"bias": (h,), "logs": (h,)},
                "conv_out": {"kernel": (3, 3, h, c // 2), "bias": (c // 2,)}, "out_logs": (c // 2,),
            }
