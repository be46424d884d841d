"""magajax: MAGANet (Hwang et al., ICML 2023) in JAX/Flax.

    import magajax
    magajax.load("runs/maganet-element")        # the latest checkpoint of a run
    images = magajax.decode(z, x_pivot)          # D(z, x) = f⁻¹(f(logit x) + A z), then sigmoid
    z = magajax.encode(x_varying, x_pivot)       # z = E(x_varying) − E(x_pivot)
"""

from magajax.api import Model, act, decode, encode, load
from magajax.config import Config, DataConfig, ModelConfig, TrainConfig, preset

__all__ = ["Config", "DataConfig", "Model", "ModelConfig", "TrainConfig", "act", "decode", "encode", "load", "preset"]
