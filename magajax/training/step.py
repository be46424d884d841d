"""The jitted, data-parallel train step: pairs sampled on device, one pure update.

`train_step(state, key, data) -> (state, metrics)` draws its pairs from the images already on
the device with the step key fold_in(key, state.step), so a resumed run draws exactly the
numbers of an uninterrupted one and the host never moves an image inside the loop. The
batch is sharded over a 1-D device mesh ('data'); variables and optimiser state are
replicated. The loss is the batch mean of `magajax.objective.terms`. A step whose loss,
gradients or updated state are not finite leaves the state unchanged and reports it in its
metrics, so the last good state (and checkpoint) survives.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from magajax import objective
from magajax.config import Config, TrainConfig
from magajax.data.pairs import pair_rows, sample_pairs, unpack_images

Metrics = dict[str, jax.Array]


class TrainState(struct.PyTreeNode):
    """What a checkpoint holds: the step, the parameters and the optimiser state."""

    step: jax.Array
    variables: Any
    opt_state: Any


class DeviceData(struct.PyTreeNode):
    """The training images on device: bit-packed images (N, 64, 8), train rows and the pivot row."""

    images: jax.Array
    train_rows: jax.Array
    pivot_row: jax.Array


def create_optimizer(config: TrainConfig) -> optax.GradientTransformation:
    """Adam(lr) after a global-norm clip (the identity when `config.clip` is 0).

    The optimiser state has one structure whatever `clip` and `lr` are, so a run can resume with
    another --train.clip or --train.lr (e.g. to recover from a divergence).
    """
    clip = optax.clip_by_global_norm(config.clip) if config.clip > 0 else optax.identity()
    return optax.chain(clip, optax.adam(config.lr))


def make_mesh(devices: list[jax.Device] | None = None) -> Mesh:
    """A 1-D mesh named 'data' over all devices (every host's, after jax.distributed.initialize)."""
    return Mesh(np.asarray(devices if devices is not None else jax.devices()), ("data",))


def check_batch(batch_size: int, mesh: Mesh) -> None:
    """The global batch must split evenly over the mesh."""
    if batch_size % mesh.size:
        raise ValueError(
            f"batch size {batch_size} is not divisible by the {mesh.size} devices; "
            f"use a multiple of {mesh.size}, e.g. --batch-size={mesh.size * max(1, batch_size // mesh.size)}"
        )


def draw_pairs(config: Config, data: DeviceData, key: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array | None]:
    """(x_pivot, x_varying, π) of one batch: in 'shuffle' mode x_pivot = x_varying[π], in 'pivot' mode π is None."""
    if config.data.pairs != "shuffle":
        return (*sample_pairs(
            data.images, data.train_rows, data.pivot_row, key,
            batch_size=config.train.batch_size, mode=config.data.pairs, image_size=config.model.image_size,
        ), None)
    rows, perm = pair_rows(data.train_rows, key, config.train.batch_size, "shuffle")
    x_varying = unpack_images(data.images[rows], config.model.image_size)
    return x_varying[perm], x_varying, perm


def mean_loss(
    model: nn.Module, variables: Any, x_pivot: jax.Array, x_varying: jax.Array, perm: jax.Array | None,
    key: jax.Array, config: Config,
) -> tuple[jax.Array, Metrics]:
    """The batch mean of `objective.terms` with sampled codes: (mean total, the mean of each other term)."""
    per_pair = objective.terms(model, variables, x_pivot, x_varying, key, config.train, pairs=config.data.pairs,
                               perm=perm)
    means = {name: value.mean() for name, value in per_pair.items() if name != "z"}
    return means.pop("total"), means


def all_finite(tree: Any) -> jax.Array:
    """Whether every floating-point entry of `tree` is finite, as a boolean scalar."""
    leaves = [jnp.isfinite(x).all() for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.inexact)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.bool_(True)


def init_state(
    config: Config, model: nn.Module, tx: optax.GradientTransformation, data: DeviceData, key: jax.Array
) -> TrainState:
    """Parameters initialised on a real batch (ActNorm's data-dependent init), step 0."""
    pair_key, init_key, sample_key = jax.random.split(key, 3)
    x_pivot, x_varying, _ = draw_pairs(config, data, pair_key)
    init = jax.jit(model.init)
    if config.model.kind == "vae":
        variables = init(init_key, x_varying, sample_key)
    else:
        variables = init(init_key, x_pivot, x_varying)
    return TrainState(step=jnp.zeros((), jnp.int32), variables=variables, opt_state=tx.init(variables))


def make_train_step(
    config: Config, model: nn.Module, tx: optax.GradientTransformation, mesh: Mesh
) -> Callable[[TrainState, jax.Array, DeviceData], tuple[TrainState, Metrics]]:
    """The jitted step `(state, root_key, data) -> (state, metrics)`, state donated.

    Step t draws its pairs and codes with fold_in(root_key, t). The update is applied only when
    the loss, the gradients and the updated variables and optimiser state are all finite; otherwise
    the variables and optimiser state stay as they were (the step count still advances).

    With K = `config.train.steps_per_call` > 1, one call runs K steps (a `lax.scan`, each step as
    above) and every metric is stacked to shape (K,): the same numbers as K calls of one step,
    with one dispatch and one host round trip instead of K.

    Metrics: each loss term's batch mean, the total ('loss'), the global norms of the gradients and
    of the variables, and `finite` (1 when the update was applied, 0 when it was skipped).
    `.lower(state, root_key, data).compile()` gives the compiled step (benchmarks).
    """
    check_batch(config.train.batch_size, mesh)
    batch_sharding = NamedSharding(mesh, P("data"))
    replicated = NamedSharding(mesh, P())

    def step(state: TrainState, root_key: jax.Array, data: DeviceData) -> tuple[TrainState, Metrics]:
        key = jax.random.fold_in(root_key, state.step)
        pair_key, loss_key = jax.random.split(key)
        x_pivot, x_varying, perm = draw_pairs(config, data, pair_key)
        x_pivot = jax.lax.with_sharding_constraint(x_pivot, batch_sharding)
        x_varying = jax.lax.with_sharding_constraint(x_varying, batch_sharding)
        grad_fn = jax.value_and_grad(mean_loss, argnums=1, has_aux=True)
        (loss, metrics), grads = grad_fn(model, state.variables, x_pivot, x_varying, perm, loss_key, config)
        grad_norm = optax.global_norm(grads)
        updates, opt_state = tx.update(grads, state.opt_state, state.variables)
        variables = optax.apply_updates(state.variables, updates)
        finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm) & all_finite(variables) & all_finite(opt_state)
        keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)
        new_state = TrainState(
            step=state.step + 1,
            variables=keep(variables, state.variables),
            opt_state=keep(opt_state, state.opt_state),
        )
        metrics = dict(metrics, loss=loss, grad_norm=grad_norm, param_norm=optax.global_norm(new_state.variables),
                       finite=finite.astype(jnp.float32))
        return new_state, metrics

    calls = config.train.steps_per_call
    if calls == 1:
        return jax.jit(step, donate_argnums=0, out_shardings=(replicated, replicated))

    def steps(state: TrainState, root_key: jax.Array, data: DeviceData) -> tuple[TrainState, Metrics]:
        return jax.lax.scan(lambda state, _: step(state, root_key, data), state, length=calls)

    return jax.jit(steps, donate_argnums=0, out_shardings=(replicated, replicated))


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Places host arrays on every device of the mesh (works across hosts too)."""
    sharding = NamedSharding(mesh, P())

    def put(x: Any) -> jax.Array:
        x = np.asarray(x)
        return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])

    return jax.tree.map(put, tree)
