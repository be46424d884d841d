"""Run configuration: frozen dataclasses and the named presets of DESIGN §6.

A `Config` has three sections that map one-to-one onto what they configure:
`data` (source, split, pivot, pairs), `model` (the network) and `train` (losses,
optimiser, schedule). Every field can be overridden by name, e.g.
`override(config, {"model.hidden": 32, "train.steps": 100})`.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

DEFAULT_PIVOT = 594095  # (heart, scale 2, orientation 20, x 5, y 15): the blog's pivot.


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Where images come from and how training pairs are drawn.

    Attributes:
      source: 'auto' | 'tfds' | 'render' | 'file:PATH'.
      split: a named split (element, range, ...) or a split expression.
      pivot: dSprites index of the fixed pivot image.
      pairs: 'pivot' (every pair starts at the pivot) or 'shuffle' (pairs within a batch).
    """

    source: str = "auto"
    split: str = "element"
    pivot: int = DEFAULT_PIVOT
    pairs: str = "pivot"


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """The network. `kind` picks MAGANet or the VAE baseline.

    Attributes:
      kind: 'maganet' | 'vae'.
      image_size: side of the square input images (64 for dSprites; 8/16/32 in tests).
      latent_dim: d, the size of the transformation code z.
      levels, steps, hidden, coupling: Glow's L, K, coupling width and coupling kind.
      encoder_padding: padding of the encoder's stride-2 convs (1 as in the reference, or 'VALID').
      eps: clip for the logit embedding u = logit(clip(x, eps, 1 - eps)).
      dtype: compute dtype ('float32' or 'bfloat16'); parameters stay float32.
    """

    kind: str = "maganet"
    image_size: int = 64
    latent_dim: int = 10
    levels: int = 3
    steps: int = 3
    hidden: int = 128
    coupling: str = "additive"
    encoder_padding: int | str = 1
    eps: float = 1e-4
    dtype: str = "float32"


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Losses, optimiser and schedule.

    Attributes:
      beta_kl, beta_lat: weights of the KL and latent terms (beta_kl is the VAE's beta).
      lr, clip: Adam learning rate and global-norm gradient clip (0 disables clipping).
      batch_size: global batch (split over all devices).
      steps: total optimisation steps.
      seed: root PRNG seed; step keys are fold_in(key, step).
      log_every: steps per metrics record (the record is their mean).
      checkpoint_every, keep: checkpoint period and how many checkpoints are kept.
    """

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


@dataclasses.dataclass(frozen=True)
class Config:
    """A whole run: `data`, `model`, `train`, and the preset it started from."""

    preset: str = "blog"
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Config:
        return cls(
            preset=d.get("preset", "blog"),
            data=DataConfig(**d.get("data", {})),
            model=ModelConfig(**d.get("model", {})),
            train=TrainConfig(**d.get("train", {})),
        )


def blog() -> Config:
    """The seed blog's hyper-parameters on the faithful Glow decoder (default).

    `python -m experiments.train --split=element`: β_KL 2, β_lat 300, Adam 5e-4, batch 64.
    """
    return Config(preset="blog")


def cartan() -> Config:
    """The other public MAGANet implementation's: β_KL 300, β_lat 300, Adam 1e-3 clipped at 1, batch 128."""
    return Config(
        preset="cartan",
        train=TrainConfig(beta_kl=300.0, beta_lat=300.0, lr=1e-3, clip=1.0, batch_size=128),
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


def _parse(value: str, like: Any) -> Any:
    """Parses a command-line string into the type of the field's current value."""
    if isinstance(like, bool):
        if value.lower() in ("1", "true", "yes"):
            return True
        if value.lower() in ("0", "false", "no"):
            return False
        raise ValueError(f"expected a boolean, got {value!r}")
    if isinstance(like, int) and not isinstance(like, bool):
        try:
            return int(value)
        except ValueError:
            return value  # e.g. encoder_padding='VALID'
    if isinstance(like, float):
        return float(value)
    return value


def override(config: Config, overrides: Mapping[str, Any]) -> Config:
    """Returns `config` with fields replaced; keys are 'section.field' or a unique 'field'.

    String values are parsed to the field's type. An unknown or ambiguous key lists the fields.
    """
    sections = {"data": config.data, "model": config.model, "train": config.train}
    fields = {f"{s}.{f.name}": (s, f.name) for s, obj in sections.items() for f in dataclasses.fields(obj)}
    changes: dict[str, dict[str, Any]] = {s: {} for s in sections}
    for key, value in overrides.items():
        key = key.replace("-", "_")
        matches = [k for k in fields if k == key or k.split(".", 1)[1] == key]
        if len(matches) > 1:
            raise ValueError(f"ambiguous config field {key!r}: write one of {', '.join(matches)}")
        if not matches:
            raise ValueError(f"unknown config field {key!r}; fields are: {', '.join(sorted(fields))}")
        section, name = fields[matches[0]]
        current = getattr(sections[section], name)
        changes[section][name] = _parse(value, current) if isinstance(value, str) else value
    return dataclasses.replace(
        config, **{s: dataclasses.replace(sections[s], **c) for s, c in changes.items() if c}
    )


def from_flags(preset_name: str, extra: Sequence[str], named: Mapping[str, Any]) -> Config:
    """A preset with command-line overrides: `extra` are '--FIELD=VALUE' arguments and `named`
    maps 'section.field' to the value of a dedicated flag (None when the flag was not given)."""
    overrides: dict[str, Any] = {}
    for item in extra:
        m = re.fullmatch(r"--([\w.\-]+)=(.*)", item)
        if not m:
            raise ValueError(f"unrecognised argument {item!r}; config overrides take the form --FIELD=VALUE")
        overrides[m.group(1)] = m.group(2)
    overrides.update({k: v for k, v in named.items() if v is not None})
    return override(preset(preset_name), overrides)
