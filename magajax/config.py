"""Run configuration: frozen, validated dataclasses and the named presets.

A `Config` has three sections that map one-to-one onto what they configure:
`data` (source, split, pivot, pairs), `model` (the network) and `train` (losses,
optimiser, schedule). Every field is checked when a section is built, so a bad value is a
one-line ValueError naming the field, e.g. "train.batch_size must be a positive integer, got 0".
`override(config, {"model.hidden": 32, "train.steps": 100})` replaces typed values.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Mapping
from typing import Any, Literal, NoReturn, get_args

DEFAULT_PIVOT = 594095  # (heart, scale 2, orientation 20, x 5, y 15): the blog's pivot.
OFFICIAL_PIVOT = 594448  # (heart, scale 2, orientation 20, x 16, y 16): the official code's pivot.
DSPRITES_IMAGES = 737_280  # 3 shapes x 6 scales x 40 orientations x 32 x 32 positions
SOURCES = ("auto", "tfds", "render")  # or 'file:PATH'
ENCODER_KERNEL = 4  # the encoder's stride-2 conv kernel: an int padding lies in 0..3

Kind = Literal["maganet", "vae"]
Pairs = Literal["pivot", "shuffle"]
Coupling = Literal["additive", "affine"]
DType = Literal["float32", "bfloat16"]
Input = Literal["logit", "raw"]
InvConv = Literal["lu", "plain"]
CouplingNet = Literal["bias", "actnorm"]
Init = Literal["default", "xavier"]
KL = Literal["code", "varying"]
Latent = Literal["mean", "sampled", "self"]
VAEArch = Literal["burgess", "blog"]
Conv = Literal["auto", "matmul", "lax"]


def _fail(where: str, what: str, value: Any) -> NoReturn:
    raise ValueError(f"{where} must be {what}, got {value!r}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)) and math.isfinite(value)


def _positive_int(obj: Any, name: str) -> None:
    value = getattr(obj, name)
    if not _is_int(value) or value <= 0:
        _fail(f"{obj.SECTION}.{name}", "a positive integer", value)


def _real(obj: Any, name: str, what: str, ok: Callable[[float], bool]) -> None:
    """Checks a float field (ints are accepted and stored as floats)."""
    value = getattr(obj, name)
    if not _is_real(value) or not ok(value):
        _fail(f"{obj.SECTION}.{name}", what, value)
    object.__setattr__(obj, name, float(value))


def _choice(obj: Any, name: str, choices: tuple[str, ...]) -> None:
    value = getattr(obj, name)
    if value not in choices or not isinstance(value, str):
        _fail(f"{obj.SECTION}.{name}", f"one of {', '.join(choices)}", value)


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Where images come from and how training pairs are drawn.

    Attributes:
      source: where dSprites comes from: auto, tfds, render or file:PATH (the official .npz or .hdf5).
      split: a named split (element, range, extrapolation, element-blog, range-blog, element-cartan,
        range-cartan, none) or an expression, e.g. 'shape=ellipse & x>=16'.
      pivot: dSprites index of the fixed pivot image, in [0, 737280).
      pairs: how training pairs are drawn: pivot (every pair starts at the pivot) or shuffle (pairs within a batch).
    """

    SECTION = "data"

    source: str = "auto"
    split: str = "element"
    pivot: int = DEFAULT_PIVOT
    pairs: Pairs = "pivot"

    def __post_init__(self) -> None:
        source = self.source
        if not isinstance(source, str) or not (source in SOURCES or (source.startswith("file:") and source[5:])):
            _fail("data.source", f"one of {', '.join(SOURCES)} or file:PATH", source)
        if not isinstance(self.split, str) or not self.split.strip():
            _fail("data.split", "a split name or expression", self.split)
        if not _is_int(self.pivot) or not 0 <= self.pivot < DSPRITES_IMAGES:
            _fail("data.pivot", f"a dSprites index in [0, {DSPRITES_IMAGES})", self.pivot)
        _choice(self, "pairs", get_args(Pairs))


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """The network. `kind` picks MAGANet or the VAE baseline.

    Attributes:
      kind: the model: maganet or the vae baseline.
      image_size: side of the square input images (64 for dSprites; 8/16/32 in tests), divisible by 2**levels.
      latent_dim: d, the size of the transformation code z.
      levels: Glow's L, the number of squeeze levels.
      steps: Glow's K, flow steps per level.
      hidden: width of the coupling nets.
      coupling: coupling layer: additive or affine (bounded scale).
      encoder_padding: padding of the encoder's stride-2 convs: 0..3 (1 as in the reference) or VALID.
      eps: clip of the logit embedding u = logit(clip(x, eps, 1 - eps)), in (0, 0.5).
      dtype: compute dtype; parameters stay float32.
      input: what the flow acts on: logit (u = logit(clip(x, eps, 1 - eps))) or raw (u = x, the
        official code's). f⁻¹'s output is read as logits in both. The group laws hold in flow-input
        space for both; only logit makes D(0, x) = x hold on images.
      invconv: the invertible 1×1 convs: lu (LU-parameterised) or plain (one C×C weight, the official code's).
      coupling_net: the coupling nets: bias (convs with biases) or actnorm (Glow's original: bias-free convs
        followed by ActNorms, the last conv's output scaled by exp(3·logs); the official code's).
      init: default (LeCun-normal convs, zero last coupling conv, flax's Dense init) or xavier (Xavier-uniform
        for every conv and dense kernel, zero biases: the official code's; the flow then starts away from
        the identity).
      vae: the VAE's architecture (kind=vae only): burgess (the MAGANet encoder and its mirror) or blog
        (convs 32, 64, 128, 256 and linear heads, as in the blog's VAE).
      scan_steps: run each Glow level's K flow steps as one lax.scan (compiles one step, not K; the
        step is slower on XLA:CPU, see docs/performance.md).
      conv: the convs' form: matmul (shifted copies and one matmul), lax (lax.conv), or auto (matmul on
        the CPU, lax on GPUs and TPUs); the same parameters either way.
    """

    SECTION = "model"

    kind: Kind = "maganet"
    image_size: int = 64
    latent_dim: int = 10
    levels: int = 3
    steps: int = 3
    hidden: int = 128
    coupling: Coupling = "additive"
    encoder_padding: int | Literal["VALID"] = 1
    eps: float = 1e-4
    dtype: DType = "float32"
    input: Input = "logit"
    invconv: InvConv = "lu"
    coupling_net: CouplingNet = "bias"
    init: Init = "default"
    vae: VAEArch = "burgess"
    scan_steps: bool = False
    conv: Conv = "auto"

    def __post_init__(self) -> None:
        _choice(self, "kind", get_args(Kind))
        for name in ("image_size", "latent_dim", "levels", "steps", "hidden"):
            _positive_int(self, name)
        if self.image_size % 2**self.levels:
            raise ValueError(f"model.image_size must be divisible by 2**model.levels = {2**self.levels}, "
                             f"got {self.image_size}")
        _choice(self, "coupling", get_args(Coupling))
        padding = self.encoder_padding
        if padding != "VALID" and (not _is_int(padding) or not 0 <= padding < ENCODER_KERNEL):
            _fail("model.encoder_padding", f"an integer in 0..{ENCODER_KERNEL - 1} or 'VALID'", padding)
        _real(self, "eps", "a number in (0, 0.5)", lambda v: 0 < v < 0.5)
        _choice(self, "dtype", get_args(DType))
        _choice(self, "input", get_args(Input))
        _choice(self, "invconv", get_args(InvConv))
        _choice(self, "coupling_net", get_args(CouplingNet))
        _choice(self, "init", get_args(Init))
        _choice(self, "vae", get_args(VAEArch))
        if not isinstance(self.scan_steps, bool):
            _fail("model.scan_steps", "true or false", self.scan_steps)
        _choice(self, "conv", get_args(Conv))


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Losses, optimiser and schedule.

    Attributes:
      beta_kl: weight of the KL term (the VAE's beta), >= 0.
      beta_lat: weight of the latent term, >= 0.
      lr: Adam learning rate, > 0.
      clip: global-norm gradient clip, >= 0 (0 disables clipping).
      batch_size: global batch (split over all devices).
      steps: total optimisation steps (blog preset: 100,000 at batch 64, about 9 epochs of dSprites; the blog
        trained 100 epochs, --train.steps=1150000).
      seed: root PRNG seed; step keys are fold_in(key, step).
      log_every: steps per metrics record (the record is their mean).
      checkpoint_every: steps between checkpoints.
      keep: how many checkpoints are kept.
      kl: the KL term: code (KL of z's distribution N(μ_v − μ_p, σ_v² + σ_p²) to N(0, I)) or varying
        (KL of q(z | x_varying) to N(0, I), the official code's).
      latent: the latent term: mean (Σ_d |μ(x̂) − μ_p − z|, x̂ re-encoded from D(z, x_pivot)), sampled
        (Σ_d |s(x̂) − s(x_pivot) − z| with fresh samples s, the blog's) or self (each varying image's
        code applied to itself, x̂ = D(s_v, x_v): Σ_d |s(x̂) − s(x_v) − s_v|, the official code's).
      steps_per_call: K, train steps per compiled call (a scan; the same numbers as K single steps).
    """

    SECTION = "train"

    beta_kl: float = 2.0
    beta_lat: float = 300.0
    lr: float = 5e-4
    clip: float = 0.0
    batch_size: int = 64
    steps: int = 100_000
    seed: int = 0
    log_every: int = 10
    checkpoint_every: int = 1000
    keep: int = 3
    kl: KL = "code"
    latent: Latent = "mean"
    steps_per_call: int = 1

    def __post_init__(self) -> None:
        _real(self, "beta_kl", "a finite number >= 0", lambda v: v >= 0)
        _real(self, "beta_lat", "a finite number >= 0", lambda v: v >= 0)
        _real(self, "lr", "a finite number > 0", lambda v: v > 0)
        _real(self, "clip", "a finite number >= 0", lambda v: v >= 0)
        for name in ("batch_size", "steps", "log_every", "checkpoint_every", "keep", "steps_per_call"):
            _positive_int(self, name)
        if not _is_int(self.seed):
            _fail("train.seed", "an integer", self.seed)
        _choice(self, "kl", get_args(KL))
        _choice(self, "latent", get_args(Latent))


SECTIONS = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig}


@dataclasses.dataclass(frozen=True)
class Config:
    """A whole run: `data`, `model`, `train`, and the preset it started from."""

    preset: str = "blog"
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()

    def __post_init__(self) -> None:
        if self.preset not in PRESETS or not isinstance(self.preset, str):
            _fail("preset", f"one of {', '.join(PRESETS)}", self.preset)
        for name, kind in SECTIONS.items():
            if not isinstance(getattr(self, name), kind):
                _fail(name, f"a {kind.__name__}", getattr(self, name))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Config:
        """The Config of `to_dict()`'s output; an unknown or mistyped key or value is a ValueError."""
        if not isinstance(d, Mapping):
            raise ValueError(f"a config must be a JSON object, got {type(d).__name__}")
        unknown = sorted(set(d) - {"preset", *SECTIONS})
        if unknown:
            raise ValueError(f"unknown config keys {', '.join(unknown)}; a config has preset, {', '.join(SECTIONS)}")
        sections = {}
        for name, kind in SECTIONS.items():
            values = d.get(name, {})
            if not isinstance(values, Mapping):
                raise ValueError(f"config {name} must be an object of fields, got {values!r}")
            names = {f.name for f in dataclasses.fields(kind)}
            unknown = sorted(set(values) - names)
            if unknown:
                raise ValueError(f"unknown config fields {', '.join(f'{name}.{k}' for k in unknown)}; "
                                 f"{name} has {', '.join(sorted(names))}")
            sections[name] = kind(**values)
        return cls(preset=d.get("preset", "blog"), **sections)


def blog() -> Config:
    """The seed blog's hyper-parameters on the faithful Glow decoder (default).

    `python -m experiments.train --split=element`: β_KL 2, β_lat 300, Adam 5e-4, batch 64, and the
    blog's latent term, re-encoding with fresh samples (latent=sampled). Its 100,000 steps at batch 64
    are about 9 epochs of dSprites; the blog trained 100 (--train.steps=1150000 for 100 epochs of
    element-blog). With `--model=vae`, the blog's VAE (`model.vae=blog`) with β 2.
    """
    return Config(preset="blog", model=ModelConfig(vae="blog"), train=TrainConfig(latent="sampled"))


def cartan() -> Config:
    """The official MAGANet code's setup.

    Pairs within the batch (pairs=shuffle), the VALID encoder, KL of q(z | x_varying) (kl=varying),
    the latent term on each image's own code (latent=self), plain 1×1 convs (invconv=plain), Glow's
    ActNorm coupling nets (coupling_net=actnorm), Xavier init (init=xavier), raw pixels into the flow
    (input=raw), the official pivot 594448 (heart, scale 2, orientation 20, x 16, y 16) and split
    element-cartan; β_KL 300, β_lat 300, Adam 1e-3 clipped at 1, batch 128.
    """
    return Config(
        preset="cartan",
        data=DataConfig(split="element-cartan", pivot=OFFICIAL_PIVOT, pairs="shuffle"),
        model=ModelConfig(encoder_padding="VALID", input="raw", invconv="plain", coupling_net="actnorm",
                          init="xavier"),
        train=TrainConfig(beta_kl=300.0, beta_lat=300.0, lr=1e-3, clip=1.0, batch_size=128, kl="varying",
                          latent="self"),
    )


def quick() -> Config:
    """A CPU run that trains, checkpoints and draws in a few minutes.

    Shrinks the flow to 3 levels x 1 step with hidden width 32 (the default is 3 x 3, 128)
    and trains 1,000 steps at batch 32 with Adam 1e-3 (about 5 minutes on a 2-core CPU):
    `python -m experiments.train --split=element --preset=quick`.
    """
    return Config(
        preset="quick",
        model=ModelConfig(steps=1, hidden=32),
        train=TrainConfig(lr=1e-3, batch_size=32, steps=1000, log_every=10, checkpoint_every=250),
    )


PRESETS = {"blog": blog, "cartan": cartan, "quick": quick}


def preset(name: str) -> Config:
    """The named preset; an unknown name lists the known ones."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; known presets: {', '.join(PRESETS)}")
    return PRESETS[name]()


def field_names() -> dict[str, tuple[str, str]]:
    """'section.field' -> (section, field) for every config field."""
    return {f"{s}.{f.name}": (s, f.name) for s, kind in SECTIONS.items() for f in dataclasses.fields(kind)}


def override(config: Config, changes: Mapping[str, Any]) -> Config:
    """Returns `config` with fields replaced by typed values; keys are 'section.field' or a unique 'field'.

    The new sections are validated as they are built; an unknown or ambiguous key lists the fields.
    """
    fields = field_names()
    updates: dict[str, dict[str, Any]] = {s: {} for s in SECTIONS}
    for key, value in changes.items():
        matches = [k for k in fields if key in (k, fields[k][1])]
        if len(matches) > 1:
            raise ValueError(f"ambiguous config field {key!r}: write one of {', '.join(matches)}")
        if not matches:
            raise ValueError(f"unknown config field {key!r}; fields are: {', '.join(sorted(fields))}")
        section, name = fields[matches[0]]
        updates[section][name] = value
    return dataclasses.replace(
        config, **{s: dataclasses.replace(getattr(config, s), **u) for s, u in updates.items() if u}
    )
