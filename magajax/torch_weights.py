"""The official MAGANet PyTorch code's weights (github.com/GIST-IRR/CartanFM) as magajax variables.

A state_dict of the official `MAGANet` (additive couplings, 1×1 convs plain or LU, single-channel
64×64 images), given as NumPy arrays, becomes the variables of a magajax MAGANet with the `cartan`
preset, L, K, hidden and d read from the shapes. The two compute the same function; the layouts
differ, and the conversion does the layout work:

- convolution kernels: torch (out, in, kh, kw) → (kh, kw, in, out); dense kernels: (out, in) → (in, out);
- the encoder's first Dense reads the last conv's output flattened NHWC, torch flattens NCHW;
- the mean and log-variance heads → one Dense_2 (mean first);
- ActNorm (1, C, 1, 1) → (C,); an LU 1×1 conv → its weight W = P (L + I) (U + diag(sign_s·exp(log_s)));
- A's rows: torch views A z as (C, h, w), magajax as (h, w, C);
- the squeeze: torch puts pixel (dy, dx) of channel c at channel c·4 + dy·2 + dx, magajax at
  (dy·2 + dx)·C + c. The two orders differ by a permutation π of the channels from level 2 on (at
  level 1, C = 1). It is absorbed into the first step of each such level: that ActNorm's parameters
  are permuted and its 1×1 conv's input columns too, W' = W Π, so every tensor after it is in the
  official order and every later parameter is copied as it is.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from magajax import config as cfg
from magajax.models.encoder import CHANNELS, HIDDEN, KERNEL, MAX_CONVS, conv_sides

IMAGE_SIZE = 64  # the official encoder's four VALID convs and Linear(128, 256) fit 64×64 images
ACTION = "decoder.action.weight"
FIRST_CONV = "encoder.cnn1.conv.weight"
STEP_KEY = re.compile(r"decoder\.flow\.layers\.(\d+)\.actnorm\.bias")
LU_KEYS = ("p", "sign_s", "lower", "log_s", "upper")


def _shape(state: Mapping[str, np.ndarray], key: str) -> tuple[int, ...]:
    if key not in state:
        raise ValueError(f"the state dict has no {key}: not the official MAGANet's layout")
    return tuple(np.shape(state[key]))


def _step(level: int, step: int, steps: int) -> str:
    """The official name prefix of flow step `step` of level `level`: each level is a squeeze and K steps."""
    return f"decoder.flow.layers.{level * (steps + 1) + 1 + step}"


def config_from_state_dict(state: Mapping[str, np.ndarray]) -> cfg.Config:
    """The `cartan` preset with latent_dim, levels, steps and hidden read from an official state_dict's shapes.

    A layout magajax does not model (an affine coupling, a shuffle or reverse permutation instead of
    1×1 convs, a multi-channel or non-64×64 image) is a ValueError naming the key that shows it.
    """
    channels = _shape(state, FIRST_CONV)
    if len(channels) != 4 or channels[1] != 1:
        raise ValueError(f"{FIRST_CONV} has shape {channels}: a model of {channels[1:2]}-channel images; "
                         f"magajax models single-channel (dSprites) images, (32, 1, 4, 4)")
    action = _shape(state, ACTION)
    if len(action) != 2 or action[0] != IMAGE_SIZE**2:
        raise ValueError(f"{ACTION} has shape {action}: {IMAGE_SIZE}×{IMAGE_SIZE} images need "
                         f"({IMAGE_SIZE**2}, d); the official encoder fits 64×64 images only")
    steps_by_width: dict[int, int] = {}
    for key in state:
        if STEP_KEY.fullmatch(key):
            shape = _shape(state, key)
            if len(shape) != 4:
                raise ValueError(f"{key} has shape {shape}, expected (1, C, 1, 1)")
            steps_by_width[shape[1]] = steps_by_width.get(shape[1], 0) + 1
    if not steps_by_width:
        raise ValueError("the state dict has no flow step (decoder.flow.layers.N.actnorm.bias): "
                         "not the official MAGANet's layout")
    levels, steps = len(steps_by_width), max(steps_by_width.values())
    for level in range(levels):
        for step in range(steps):
            prefix = _step(level, step, steps)
            width = 4 ** (level + 1)
            if _shape(state, f"{prefix}.actnorm.bias") != (1, width, 1, 1):
                raise ValueError(f"{prefix}.actnorm.bias has shape {_shape(state, f'{prefix}.actnorm.bias')}, "
                                 f"expected (1, {width}, 1, 1) for level {level + 1} of {levels} with {steps} steps")
            if f"{prefix}.invconv.weight" not in state and f"{prefix}.invconv.lower" not in state:
                raise ValueError(f"the state dict has no {prefix}.invconv.weight (or .lower): magajax converts "
                                 f"flows with invertible 1×1 convs (flow_permutation='invconv') only")
            out = _shape(state, f"{prefix}.block.4.conv.weight")[0]
            if out != width // 2:
                raise ValueError(f"{prefix}.block.4.conv.weight has {out} output channels, {width // 2} expected: "
                                 f"an affine coupling; magajax converts additive couplings only")
    hidden = _shape(state, f"{_step(0, 0, steps)}.block.0.conv.weight")[0]
    config = cfg.override(cfg.preset("cartan"), {
        "model.image_size": IMAGE_SIZE, "model.latent_dim": action[1], "model.levels": levels,
        "model.steps": steps, "model.hidden": hidden,
    })
    check_state_dict(state, config)
    return config


def expected_shapes(config: cfg.Config, lu: bool) -> dict[str, tuple[int, ...]]:
    """Every key of the official state_dict of the model `config` describes, with its shape."""
    m = config.model
    sides = conv_sides(m.image_size, m.encoder_padding)
    if len(sides) != MAX_CONVS + 1 or m.encoder_padding != "VALID":
        raise ValueError(f"the official encoder has {MAX_CONVS} VALID convs: model.image_size must be {IMAGE_SIZE} "
                         f"and model.encoder_padding 'VALID', got {m.image_size} and {m.encoder_padding!r}")
    shapes: dict[str, tuple[int, ...]] = {}
    for i in range(MAX_CONVS):
        shapes[f"encoder.cnn{i + 1}.conv.weight"] = (CHANNELS, 1 if i == 0 else CHANNELS, KERNEL, KERNEL)
        shapes[f"encoder.cnn{i + 1}.conv.bias"] = (CHANNELS,)
    layers = {"linear1": (HIDDEN, CHANNELS * sides[-1] ** 2), "linear2": (HIDDEN, HIDDEN),
              "mu": (m.latent_dim, HIDDEN), "logvar": (m.latent_dim, HIDDEN)}
    for name, shape in layers.items():
        shapes[f"encoder.{name}.weight"], shapes[f"encoder.{name}.bias"] = shape, shape[:1]
    h = m.hidden
    for level in range(m.levels):
        c = 4 ** (level + 1)
        for step in range(m.steps):
            p = _step(level, step, m.steps)
            shapes |= {f"{p}.actnorm.bias": (1, c, 1, 1), f"{p}.actnorm.logs": (1, c, 1, 1)}
            if lu:
                shapes |= {f"{p}.invconv.{k}": (c, c) if k in ("p", "lower", "upper") else (c,) for k in LU_KEYS}
            else:
                shapes[f"{p}.invconv.weight"] = (c, c)
            shapes |= {
                f"{p}.block.0.conv.weight": (h, c // 2, 3, 3),
                f"{p}.block.0.actnorm.bias": (1, h, 1, 1), f"{p}.block.0.actnorm.logs": (1, h, 1, 1),
                f"{p}.block.2.conv.weight": (h, h, 1, 1),
                f"{p}.block.2.actnorm.bias": (1, h, 1, 1), f"{p}.block.2.actnorm.logs": (1, h, 1, 1),
                f"{p}.block.4.conv.weight": (c // 2, h, 3, 3), f"{p}.block.4.conv.bias": (c // 2,),
                f"{p}.block.4.logs": (c // 2, 1, 1),
            }
    shapes[ACTION] = (m.image_size**2, m.latent_dim)
    return shapes


def check_state_dict(state: Mapping[str, np.ndarray], config: cfg.Config) -> bool:
    """Whether the 1×1 convs are LU-parameterised; a missing, unknown or misshapen key is a ValueError naming it."""
    lu = any(k.endswith(".invconv.lower") for k in state)
    expected = expected_shapes(config, lu)
    for key, shape in expected.items():
        if key not in state:
            raise ValueError(f"the state dict has no {key} {shape}: not an official MAGANet of this config "
                             f"(levels {config.model.levels}, steps {config.model.steps})")
        if tuple(np.shape(state[key])) != shape:
            raise ValueError(f"{key} has shape {tuple(np.shape(state[key]))}, expected {shape}")
    unknown = sorted(set(state) - set(expected))
    if unknown:
        raise ValueError(f"the state dict has keys the official MAGANet of this config does not: "
                         f"{', '.join(unknown[:3])}{' ...' if len(unknown) > 3 else ''}")
    return lu


def squeeze_order(c_in: int) -> np.ndarray:
    """π with magajax's squeezed channel k = (dy·2 + dx)·c_in + c holding torch's channel π[k] = c·4 + dy·2 + dx."""
    k = np.arange(4 * c_in)
    return (k % c_in) * 4 + k // c_in


def lu_weight(p: np.ndarray, sign_s: np.ndarray, lower: np.ndarray, log_s: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """W = P (L + I) (U + diag(sign_s·exp(log_s))), L strictly lower and U strictly upper triangular, in float64."""
    f64 = lambda a: np.asarray(a, np.float64)
    eye = np.eye(len(log_s))
    lmat = np.tril(f64(lower), -1) + eye
    umat = np.triu(f64(upper), 1) + np.diag(f64(sign_s) * np.exp(f64(log_s)))
    return f64(p) @ lmat @ umat


def variables_from_state_dict(state: Mapping[str, np.ndarray], config: cfg.Config) -> dict[str, Any]:
    """magajax variables ({'params': ...}, float32 NumPy leaves) computing what the official state_dict does.

    Args:
      state: the official MAGANet's state_dict as NumPy arrays (`{k: v.numpy() for k, v in sd.items()}`).
      config: its config, as `config_from_state_dict(state)` reads it.
    """
    lu = check_state_dict(state, config)
    m = config.model
    get = lambda key: np.asarray(state[key], np.float32)
    conv = lambda key: get(key).transpose(2, 3, 1, 0)  # (out, in, kh, kw) -> (kh, kw, in, out)
    channels = lambda key: get(key).reshape(-1)  # (1, C, 1, 1) or (C, 1, 1) -> (C,)

    encoder: dict[str, Any] = {}
    for i in range(MAX_CONVS):
        encoder[f"Conv_{i}"] = {"kernel": conv(f"encoder.cnn{i + 1}.conv.weight"),
                                "bias": get(f"encoder.cnn{i + 1}.conv.bias")}
    side = conv_sides(m.image_size, m.encoder_padding)[-1]
    first = get("encoder.linear1.weight").reshape(HIDDEN, CHANNELS, side, side).transpose(2, 3, 1, 0)
    encoder["Dense_0"] = {"kernel": first.reshape(-1, HIDDEN), "bias": get("encoder.linear1.bias")}
    encoder["Dense_1"] = {"kernel": get("encoder.linear2.weight").T, "bias": get("encoder.linear2.bias")}
    encoder["Dense_2"] = {
        "kernel": np.concatenate([get("encoder.mu.weight").T, get("encoder.logvar.weight").T], axis=1),
        "bias": np.concatenate([get("encoder.mu.bias"), get("encoder.logvar.bias")]),
    }

    flow: dict[str, Any] = {}
    for level in range(m.levels):
        for step in range(m.steps):
            p = _step(level, step, m.steps)
            bias, logs = channels(f"{p}.actnorm.bias"), channels(f"{p}.actnorm.logs")
            if lu:
                weight = lu_weight(*(state[f"{p}.invconv.{k}"] for k in LU_KEYS)).astype(np.float32)
            else:
                weight = get(f"{p}.invconv.weight")
            if level > 0 and step == 0:
                order = squeeze_order(4**level)
                bias, logs, weight = bias[order], logs[order], weight[:, order]
            flow[f"actnorm_{level}_{step}"] = {"bias": bias, "logs": logs}
            flow[f"invconv_{level}_{step}"] = {"weight": weight}
            flow[f"coupling_{level}_{step}"] = {
                "conv_in": {"kernel": conv(f"{p}.block.0.conv.weight")},
                "actnorm_in": {"bias": channels(f"{p}.block.0.actnorm.bias"),
                               "logs": channels(f"{p}.block.0.actnorm.logs")},
                "conv_mid": {"kernel": get(f"{p}.block.2.conv.weight")[:, :, 0, 0].T},
                "actnorm_mid": {"bias": channels(f"{p}.block.2.actnorm.bias"),
                                "logs": channels(f"{p}.block.2.actnorm.logs")},
                "conv_out": {"kernel": conv(f"{p}.block.4.conv.weight"), "bias": get(f"{p}.block.4.conv.bias")},
                "out_logs": channels(f"{p}.block.4.logs"),
            }

    top = m.image_size >> m.levels
    c = 4**m.levels
    action = get(ACTION).reshape(c, top, top, m.latent_dim).transpose(1, 2, 0, 3)
    return {"params": {"encoder": encoder, "flow": flow, "A": {"kernel": action.reshape(-1, m.latent_dim).T}}}
