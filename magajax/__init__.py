"""magajax: MAGANet (Hwang et al., ICML 2023) in JAX/Flax.

    import magajax
    magajax.load("runs/maganet-element")        # the latest checkpoint of a run
    images = magajax.decode(z, x_pivot)          # D(z, x) = f⁻¹(f(logit x) + A z), then sigmoid
    z = magajax.encode(x_varying, x_pivot)       # z = E(x_varying) − E(x_pivot)

The public names are imported on first use, so `from magajax import config` does not import JAX.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from magajax.api import Model, act, decode, encode, load
    from magajax.config import Config, DataConfig, ModelConfig, TrainConfig, preset

_HOMES = {
    "Model": "magajax.api", "act": "magajax.api", "decode": "magajax.api", "encode": "magajax.api",
    "load": "magajax.api", "Config": "magajax.config", "DataConfig": "magajax.config",
    "ModelConfig": "magajax.config", "TrainConfig": "magajax.config", "preset": "magajax.config",
}

__all__ = ["Config", "DataConfig", "Model", "ModelConfig", "TrainConfig", "act", "decode", "encode", "load", "preset"]


def __getattr__(name: str) -> Any:
    """Imports a public name from its module on first access."""
    if name not in _HOMES:
        raise AttributeError(f"module 'magajax' has no attribute {name!r}")
    value = getattr(importlib.import_module(_HOMES[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
