"""The start of every training: mesh → device data → model and optimiser → initial state, replicated.

`setup(config, data)` is the one place this sequence is written; the loop restores a checkpoint
into `Setup.state` (same structure and sharding) and builds its step from the rest.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import numpy as np
import optax
from jax.sharding import Mesh

from magajax.config import Config
from magajax.data.sources import DSprites
from magajax.data.splits import Split, make_split
from magajax.models import build
from magajax.training import step as tr


@dataclasses.dataclass(frozen=True)
class Setup:
    """What a run needs before its first step.

    Attributes:
      mesh: the 1-D 'data' mesh over all devices.
      model: the Flax module of `config.model`.
      tx: the optimiser of `config.train`.
      split: the data split (its train rows and pivot are in `device_data`).
      device_data: bit-packed images, train rows and pivot row, replicated over the mesh.
      state: the step-0 TrainState, replicated over the mesh.
      step_key: the root key of the steps (step t uses fold_in(step_key, t)), replicated.
    """

    mesh: Mesh
    model: Any
    tx: optax.GradientTransformation
    split: Split
    device_data: tr.DeviceData
    state: tr.TrainState
    step_key: jax.Array


def setup(config: Config, data: DSprites, split: Split | None = None, mesh: Mesh | None = None) -> Setup:
    """Places the data, initialises the model from train.seed's key and replicates everything.

    Args:
      config: the run's configuration.
      data: the dSprites images and classes.
      split: the split of `config.data` (computed when None).
      mesh: the device mesh (all devices when None).
    """
    mesh = mesh if mesh is not None else tr.make_mesh()
    tr.check_batch(config.train.batch_size, mesh)
    if split is None:
        split = make_split(config.data.split, data.classes, config.data.pivot,
                           allow_held_out_pivot=config.data.pairs == "shuffle")
    device_data = tr.replicate(
        tr.DeviceData(images=data.images, train_rows=split.train.astype(np.int32), pivot_row=np.int32(split.pivot_row)),
        mesh,
    )
    model = build(config.model)
    tx = tr.create_optimizer(config.train)
    init_key, step_key = jax.random.split(jax.random.PRNGKey(config.train.seed))
    state = tr.init_state(config, model, tx, device_data, init_key)
    return Setup(
        mesh=mesh, model=model, tx=tx, split=split, device_data=device_data,
        state=tr.replicate(jax.device_get(state), mesh), step_key=tr.replicate(step_key, mesh),
    )
