"""The networks: MAGANet, its encoder and the VAE baseline; `build(config)` picks one."""

from __future__ import annotations

from magajax.config import ModelConfig
from magajax.models.maganet import MAGANet
from magajax.models.vae import VAE

KINDS = {"maganet": MAGANet, "vae": VAE}


def build(config: ModelConfig) -> MAGANet | VAE:
    """The Flax module for `config.kind`."""
    if config.kind not in KINDS:
        raise ValueError(f"config.model.kind must be one of {', '.join(KINDS)}, got {config.kind!r}")
    return KINDS[config.kind](config)
