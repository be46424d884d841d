"""The jitted, data-parallel train step: pairs sampled on device, one pure update.

`train_step(state, key) -> (state, metrics)` draws its pairs from the images already on
the device with the step key fold_in(key, state.step), so a resumed run draws exactly the
numbers of an uninterrupted one and the host never moves an image inside the loop. The
batch is sharded over a 1-D device mesh ('data'); variables and optimiser state are
replicated. A step whose loss or gradients are not finite leaves the state unchanged and
reports it in its metrics, so the last good state (and checkpoint) survives.
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

from magajax import objective as losses
from magajax.config import Config, TrainConfig
from magajax.data.pairs import pair_rows, sample_pairs, unpack_images
from magajax.models.maganet import MAGANet
from magajax.models.vae import VAE

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

    The state's structure does not depend on `clip`, so a run can resume with clipping turned on or off.
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


def _pairs(config: Config, data: DeviceData, key: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array | None]:
    """(x_pivot, x_varying, π): in 'shuffle' mode x_pivot = x_varying[π], in 'pivot' mode π is None."""
    if config.data.pairs != "shuffle":
        return (*sample_pairs(
            data.images, data.train_rows, data.pivot_row, key,
            batch_size=config.train.batch_size, mode=config.data.pairs, image_size=config.model.image_size,
        ), None)
    rows, perm = pair_rows(data.train_rows, key, config.train.batch_size, "shuffle")
    x_varying = unpack_images(data.images[rows], config.model.image_size)
    return x_varying[perm], x_varying, perm


def maganet_loss(
    model: MAGANet, variables: Any, x_pivot: jax.Array, x_varying: jax.Array, key: jax.Array,
    config: Config, pivot_index: jax.Array | None = None,
) -> tuple[jax.Array, Metrics]:
    """Mean over the batch of recon + β_KL·kl + β_lat·latent (DESIGN §4).

    Nothing is computed twice: with `pairs=pivot` every x_pivot is the same image, so its
    encoding and its flow image f(embed(x_pivot)) are computed once and broadcast over the
    batch; with `pivot_index` (x_pivot = x_varying[pivot_index], 'shuffle' pairs) the pivots'
    encodings are the varying images' ones, permuted.
    """
    apply = lambda *a, method: model.apply(variables, *a, method=method)
    if config.data.pairs == "pivot":
        x_pivot = x_pivot[:1]
    if pivot_index is not None:
        mean_v, logvar_v = apply(x_varying, method="posterior")
        mean_p, logvar_p = mean_v[pivot_index], logvar_v[pivot_index]
    else:
        n_pivot = x_pivot.shape[0]
        mean, logvar = apply(jnp.concatenate([x_pivot, x_varying]), method="posterior")
        mean_p, logvar_p, mean_v, logvar_v = mean[:n_pivot], logvar[:n_pivot], mean[n_pivot:], logvar[n_pivot:]
    k_p, k_v = jax.random.split(key)
    noise_p = jax.random.normal(k_p, mean_v.shape)
    noise_v = jax.random.normal(k_v, mean_v.shape)
    z = (mean_v + jnp.exp(0.5 * logvar_v) * noise_v) - (mean_p + jnp.exp(0.5 * logvar_p) * noise_p)
    y_pivot = apply(apply(x_pivot, method="embed"), method="to_flow")
    logits = apply(y_pivot + apply(z, method="shift"), method="from_flow")
    mean_hat, _ = apply(jax.nn.sigmoid(logits), method="posterior")
    recon = losses.recon(logits, x_varying)
    kl = losses.kl(*losses.code_distribution(mean_v, logvar_v, mean_p, logvar_p))
    latent = losses.latent(mean_hat - mean_p, z)
    total = losses.maganet_total(recon, kl, latent, config.train.beta_kl, config.train.beta_lat)
    metrics = {"recon": recon.mean(), "kl": kl.mean(), "latent": latent.mean()}
    return total.mean(), metrics


def vae_loss(
    model: VAE, variables: Any, x_pivot: jax.Array, x_varying: jax.Array, key: jax.Array, config: Config,
) -> tuple[jax.Array, Metrics]:
    """Mean over the batch of recon + β·kl (β = train.beta_kl); the VAE reconstructs x_varying."""
    del x_pivot
    logits, mean, logvar = model.apply(variables, x_varying, key)
    recon = losses.recon(logits, x_varying)
    kl = losses.kl(mean, logvar)
    total = losses.vae_total(recon, kl, config.train.beta_kl)
    return total.mean(), {"recon": recon.mean(), "kl": kl.mean()}


def init_state(
    config: Config, model: nn.Module, tx: optax.GradientTransformation, data: DeviceData, key: jax.Array
) -> TrainState:
    """Parameters initialised on a real batch (ActNorm's data-dependent init), step 0."""
    pair_key, init_key, sample_key = jax.random.split(key, 3)
    x_pivot, x_varying, _ = _pairs(config, data, pair_key)
    init = jax.jit(model.init)
    if config.model.kind == "vae":
        variables = init(init_key, x_varying, sample_key)
    else:
        variables = init(init_key, x_pivot, x_varying)
    return TrainState(step=jnp.zeros((), jnp.int32), variables=variables, opt_state=tx.init(variables))


def make_step_fn(
    config: Config, model: nn.Module, tx: optax.GradientTransformation, mesh: Mesh
) -> Callable[[TrainState, jax.Array, DeviceData], tuple[TrainState, Metrics]]:
    """The jitted step `(state, root_key, data) -> (state, metrics)`, state donated.

    `make_train_step` binds `data`; this form is what `.lower(...).compile()` takes (benchmarks).
    """
    check_batch(config.train.batch_size, mesh)
    loss_fn = vae_loss if config.model.kind == "vae" else maganet_loss
    batch_sharding = NamedSharding(mesh, P("data"))
    replicated = NamedSharding(mesh, P())

    def step(state: TrainState, root_key: jax.Array, data: DeviceData) -> tuple[TrainState, Metrics]:
        key = jax.random.fold_in(root_key, state.step)
        pair_key, loss_key = jax.random.split(key)
        x_pivot, x_varying, perm = _pairs(config, data, pair_key)
        x_pivot = jax.lax.with_sharding_constraint(x_pivot, batch_sharding)
        x_varying = jax.lax.with_sharding_constraint(x_varying, batch_sharding)
        extra = () if perm is None or config.model.kind == "vae" else (perm,)
        grad_fn = jax.value_and_grad(loss_fn, argnums=1, has_aux=True)
        (loss, metrics), grads = grad_fn(model, state.variables, x_pivot, x_varying, loss_key, config, *extra)
        grad_norm = optax.global_norm(grads)
        finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
        updates, opt_state = tx.update(grads, state.opt_state, state.variables)
        variables = optax.apply_updates(state.variables, updates)
        keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)
        new_state = TrainState(
            step=state.step + 1,
            variables=keep(variables, state.variables),
            opt_state=keep(opt_state, state.opt_state),
        )
        metrics = dict(metrics, loss=loss, grad_norm=grad_norm, param_norm=optax.global_norm(new_state.variables),
                       finite=finite.astype(jnp.float32))
        return new_state, metrics

    return jax.jit(step, donate_argnums=0, out_shardings=(replicated, replicated))


def make_train_step(
    config: Config, model: nn.Module, tx: optax.GradientTransformation, data: DeviceData, mesh: Mesh
) -> Callable[[TrainState, jax.Array], tuple[TrainState, Metrics]]:
    """The jitted step `(state, root_key) -> (state, metrics)`, state donated.

    Metrics: each loss term, the total, gradient and parameter global norms, and `finite`
    (1 when the update was applied, 0 when a non-finite loss or gradient skipped it).
    """
    jitted = make_step_fn(config, model, tx, mesh)
    return lambda state, key: jitted(state, key, data)


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Places host arrays on every device of the mesh (works across hosts too)."""
    sharding = NamedSharding(mesh, P())

    def put(x: Any) -> jax.Array:
        x = np.asarray(x)
        return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])

    return jax.tree.map(put, tree)
