"""Converts the official MAGANet PyTorch weights (github.com/GIST-IRR/CartanFM) into a magajax run.

    python -m experiments.convert --state-dict=model.pt --workdir=runs/official [--overwrite]

Reads a state_dict saved by the official code (its checkpoint-N/model.pt) with torch (pip install
'magajax[convert]') and writes a workdir: config.json (the `cartan` preset with latent_dim, levels,
steps and hidden read from the weights) and a checkpoint at step 0. `magajax.load(WORKDIR)` then
decodes as the official model does, and `python -m experiments.train --config=WORKDIR --workdir=WORKDIR`
fine-tunes it (the optimiser starts afresh). An existing non-empty workdir is an error unless --overwrite, which
moves the run there to WORKDIR/previous-<time>/.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated

import numpy as np
import tyro

from experiments import _cli
from magajax import config as cfg

PROG = "python -m experiments.convert"


@dataclasses.dataclass(frozen=True)
class Options:
    """Flags of a conversion."""

    state_dict: Annotated[str, tyro.conf.arg(metavar="PATH", help="the official model's state_dict (.pt)")]
    workdir: Annotated[str, tyro.conf.arg(metavar="PATH", help="the magajax run to write")]
    overwrite: Annotated[bool, tyro.conf.arg(
        help="write into a non-empty workdir: move the run there to WORKDIR/previous-<time>/")] = False


def read_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The state_dict saved at `path` by torch.save, as NumPy arrays (loaded on the CPU, weights only)."""
    try:
        import torch
    except ImportError:
        raise ValueError("reading PyTorch weights needs torch: pip install 'magajax[convert]'") from None
    if not Path(path).is_file():
        raise FileNotFoundError(f"no state dict at {path}: give the official run's checkpoint-N/model.pt")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, Mapping):
        raise ValueError(f"{path} holds a {type(state).__name__}, not a state_dict; save model.state_dict()")
    return {k: v.detach().cpu().numpy() for k, v in state.items() if isinstance(v, torch.Tensor)}


def convert(state: Mapping[str, np.ndarray], workdir: str | os.PathLike, overwrite: bool = False) -> cfg.Config:
    """Writes the official state_dict `state` (NumPy arrays) as a magajax run in `workdir`; returns its config.

    The run is config.json and a checkpoint at step 0 holding the converted variables and a fresh
    optimiser state, as `experiments.train` would have saved it.
    """
    import jax
    import jax.numpy as jnp

    from magajax import torch_weights
    from magajax.training import checkpoint
    from magajax.training import workdir as wd
    from magajax.training.step import TrainState, create_optimizer

    config = torch_weights.config_from_state_dict(state)
    variables = jax.tree.map(jnp.asarray, torch_weights.variables_from_state_dict(state, config))
    root = Path(workdir)
    if root.exists() and (not root.is_dir() or any(root.iterdir())) and not overwrite:
        raise ValueError(f"{root} is not an empty folder; use another --workdir, or --overwrite to move the run "
                         f"there to {root}/previous-<time>/")
    wd.prepare(root, config, overwrite=overwrite)
    state0 = TrainState(step=jnp.zeros((), jnp.int32), variables=variables,
                        opt_state=create_optimizer(config.train).init(variables))
    ckpt = checkpoint.Checkpoints(root, keep=config.train.keep)
    try:
        ckpt.save(0, state0)
    finally:
        ckpt.close()
    return config


def main(argv: list[str] | None = None) -> int:
    args = _cli.parse(Options, argv, PROG, __doc__)

    def body() -> int:
        config = convert(read_state_dict(args.state_dict), args.workdir, overwrite=args.overwrite)
        m = config.model
        print(f"wrote {args.workdir}: the cartan preset with latent_dim {m.latent_dim}, levels {m.levels}, "
              f"steps {m.steps}, hidden {m.hidden}; checkpoint at step 0")
        return 0

    return _cli.run(body)


if __name__ == "__main__":
    sys.exit(main())
