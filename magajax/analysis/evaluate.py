"""Held-out evaluation of a run: the loss terms per image, group-law errors, statistics by factor class.

This module computes; `magajax.analysis.report` formats. MAGANet decodes every held-out image x
from the pivot, with z = μ(x) − μ(x_pivot) (or, with `sample=True`, a reparameterised sample of
each, as the blog's evaluation did), and scores it with the training loss, `magajax.objective.terms`,
kept per image ('bce' is the objective's 'recon'):

  bce    = Σ_pixels BCE-with-logits(act(z, embed(x_pivot)), x)      nats per image
  kl     = KL(N(μ_v − μ_p, σ_v² + σ_p²) ‖ N(0, I))                     (train.kl = 'code')
  latent = Σ_d |μ(σ(act(z, embed(x_pivot)))) − μ_p − z|                (train.latent = 'mean')
  total  = bce + β_KL·kl + β_lat·latent

with the run's own kl and latent choices (see `magajax.objective`).

The VAE reconstructs x itself: z = μ(x) (or a sample), bce of its decoder's logits, kl of q(z | x).
The same terms on a fixed subset of the training images show the generalisation gap.

Group-law errors (MAGANet), max and mean |·| in logit space over held-out images u = embed(x)
and random codes z1, z2 ~ N(0, diag(s²)), s the per-dimension std of the held-out codes:

  identity     act(0, u) − u
  inverse      act(−z1, act(z1, u)) − u
  composition  act(z2, act(z1, u)) − act(z1 + z2, u)

`to_diff` compares two models' decodes of the same images (the to-Diff column of the blog's table).
Every model call runs in fixed-size batches (`batched`), so each compiles once per batch size.

Evaluation uses every device, as training does: each batch is sharded over the 1-D 'data' mesh
(`magajax.training.step.make_mesh`), the variables and the packed images are replicated, and the
batch size is rounded up to a multiple of the device count (`mesh_batch_size`). The last batch is
padded and its padding masked out before any statistic, so the numbers do not depend on the
number of devices beyond float rounding.
"""

from __future__ import annotations

import functools
import json
import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P
from tqdm.auto import tqdm

from magajax import api, objective
from magajax.config import TrainConfig
from magajax.data import factors, provenance
from magajax.data.pairs import eval_batches, gather_images
from magajax.data.sources import DSprites
from magajax.data.splits import make_split
from magajax.training.step import make_mesh

TERMS = ("bce", "kl", "latent", "total")
LAW_IMAGES = 256  # held-out images the group laws are checked on
WORST = 5  # (factor, class) cells and images listed as the worst
SEEDS = {"train_subset": 0, "heldout_subset": 1, "law_images": 2, "law_codes": 3, "sample": 4}


def load_model(workdir: str | os.PathLike, step: int | None = None) -> tuple[api.Model, int]:
    """The run's Model at its latest (or the given) checkpoint, and that step.

    A workdir without a run or without checkpoints raises FileNotFoundError saying how to train one.
    """
    model = api.Model.from_checkpoint(workdir, step)
    return model, model.step


def replicated(tree: Any, mesh: Mesh) -> Any:
    """`tree` (host or device arrays) placed whole on every device of `mesh`."""
    return jax.device_put(tree, NamedSharding(mesh, P()))


def sharded(batch: Any, mesh: Mesh) -> Any:
    """Arrays whose leading axis is a batch, split evenly over the devices of `mesh` along it."""
    return jax.device_put(batch, NamedSharding(mesh, P("data")))


def mesh_batch_size(batch_size: int, mesh: Mesh) -> int:
    """`batch_size` rounded up to a multiple of the mesh's device count, so every device gets a share."""
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    return -(-batch_size // mesh.size) * mesh.size


def on_device(
    images: np.ndarray, rows: np.ndarray, mesh: Mesh | None = None,
) -> tuple[jax.Array, Callable[[np.ndarray], np.ndarray]]:
    """The packed images of `rows` (each once) on every device of `mesh` (default all devices), and
    the map from rows to their place there.

    The device array holds a power-of-two number of images (at least 1,024; the last repeated),
    so evaluations of similar sizes share one compiled step.
    """
    needed = np.unique(np.asarray(rows, np.int64))
    size = max(1024, 1 << int(np.ceil(np.log2(max(len(needed), 1)))))
    packed = replicated(images[np.pad(needed, (0, size - len(needed)), mode="edge")], mesh or make_mesh())
    return packed, lambda r: np.searchsorted(needed, np.asarray(r, np.int64)).astype(np.int32)


def batched(
    step: Callable[[np.ndarray, int], dict], rows: np.ndarray, batch_size: int, progress: bool = False,
    desc: str = "",
) -> dict[str, np.ndarray]:
    """Runs `step(batch_rows, batch_index)` over `rows` in masked batches; concatenates the valid entries.

    Every batch has exactly `batch_size` rows (the last padded, see `eval_batches`). Batch i + 1 is
    dispatched before batch i's results are fetched, so the host never stalls the device.
    """
    out: dict[str, list[np.ndarray]] = {}

    def collect(result: dict, mask: np.ndarray) -> None:
        for k, v in jax.device_get(result).items():
            out.setdefault(k, []).append(np.asarray(v)[mask])

    pending = None
    batches = eval_batches(rows, batch_size)
    total = -(-len(rows) // batch_size)
    for i, (batch_rows, mask) in enumerate(tqdm(batches, total=total, desc=desc, disable=not progress, leave=False)):
        result = step(batch_rows, i)
        if pending is not None:
            collect(*pending)
        pending = (result, mask)
    if pending is not None:
        collect(*pending)
    return {k: np.concatenate(v) for k, v in out.items()}


def apply_in_batches(fn: Callable[..., Any], *args: Any, batch_size: int = 64) -> np.ndarray:
    """`fn(*args)` in batches of `batch_size` rows, as one NumPy array.

    Arguments with the batch's N rows are split; those with one row (a pivot) are passed whole and
    broadcast (all are split when N is 1); None passes through. Every call has the same shapes.
    The batches are not placed: `fn` decides where it runs (a `Model` method runs on one device).
    """
    arrays = [None if a is None else np.asarray(a) for a in args]
    n = max(len(a) for a in arrays if a is not None)
    split = [a is not None and (len(a) == n or n == 1) for a in arrays]
    step = lambda r, i: {"out": fn(*[a[r] if s else a for a, s in zip(arrays, split)])}
    return batched(step, np.arange(n), batch_size)["out"]


@functools.partial(jax.jit, static_argnames=("module", "train", "sample"))
def pivot_terms(
    variables: Any, x_pivot: jax.Array, x: jax.Array, key: jax.Array, *, module: Any, train: TrainConfig,
    sample: bool,
) -> dict[str, jax.Array]:
    """`objective.terms` of images x decoded from one pivot (1, H, W, 1), recon named 'bce'."""
    out = objective.terms(module, variables, x_pivot, x, key, train, pairs="pivot", sample=sample)
    out["bce"] = out.pop("recon")
    return out


def _empty_terms(model: api.Model) -> dict[str, np.ndarray]:
    names = ("bce", "kl", "total") + (() if model.is_vae else ("latent",))
    out = {k: np.zeros(0, np.float32) for k in names}
    out.update(rows=np.zeros(0, np.int32), z=np.zeros((0, model.config.model.latent_dim), np.float32))
    return out


def image_terms(
    model: api.Model,
    packed: jax.Array,
    rows: np.ndarray,
    pivot_row: int,
    *,
    batch_size: int = 256,
    sample: bool = False,
    progress: bool = False,
    desc: str = "evaluating",
    mesh: Mesh | None = None,
) -> dict[str, np.ndarray]:
    """Per-image terms of `rows`, each image once, in the order of `rows`.

    Args:
      model: a MAGANet or VAE Model.
      packed: (N, 64, 8) uint8 bit-packed images, replicated over `mesh` (`on_device`, once).
      rows: (T,) rows of `packed` to evaluate.
      pivot_row: row of the pivot image in `packed` (unused by the VAE).
      batch_size: images per jitted step, rounded up to a multiple of the device count; the last
        batch is padded and masked.
      sample: sampled codes (fixed key) instead of the posterior means.
      progress: show a progress bar over batches.
      desc: the progress bar's label.
      mesh: the devices each batch is sharded over; default all of them.

    Returns:
      'rows' (T,), 'bce', 'kl', 'total' and for MAGANet 'latent', each (T,), and the codes 'z' (T, d).
    """
    mesh = mesh or make_mesh()
    size = model.config.model.image_size
    key = jax.random.PRNGKey(SEEDS["sample"])
    variables = replicated(model.variables, mesh)
    x_pivot = replicated(gather_images(packed, np.int32([pivot_row]), size), mesh)
    kw = dict(module=model.module, train=model.config.train, sample=sample)
    step = lambda r, i: dict(
        pivot_terms(variables, x_pivot, sharded(gather_images(packed, sharded(r, mesh), size), mesh),
                    jax.random.fold_in(key, i), **kw),
        rows=r)
    return batched(step, np.asarray(rows), mesh_batch_size(batch_size, mesh), progress, desc) or _empty_terms(model)


def array_terms(
    model: api.Model, x: np.ndarray, x_pivot: np.ndarray | None, *, batch_size: int = 64, sample: bool = False,
    mesh: Mesh | None = None,
) -> dict[str, np.ndarray]:
    """Per-image terms of images x (N, H, W, 1) in [0, 1], decoded from x_pivot (1, H, W, 1; None for the VAE),
    each batch sharded over `mesh` (default all devices).

    Returns 'bce', 'kl', 'total', for MAGANet 'latent', each (N,), and the codes 'z' (N, d).
    """
    mesh = mesh or make_mesh()
    key = jax.random.PRNGKey(SEEDS["sample"])
    x = np.asarray(x, np.float32)
    pivot = np.zeros((1, *x.shape[1:]), np.float32) if x_pivot is None else np.asarray(x_pivot, np.float32)
    variables, pivot = replicated((model.variables, pivot), mesh)
    kw = dict(module=model.module, train=model.config.train, sample=sample)
    step = lambda r, i: pivot_terms(variables, pivot, sharded(x[r], mesh), jax.random.fold_in(key, i), **kw)
    out = batched(step, np.arange(len(x)), mesh_batch_size(batch_size, mesh))
    return out or {k: v for k, v in _empty_terms(model).items() if k != "rows"}


def summary(terms: dict[str, np.ndarray]) -> dict[str, Any]:
    """Mean and std of each term over the images, and their count; None means when there are none."""
    n = len(terms["rows"])
    out: dict[str, Any] = {"count": n}
    for name in TERMS:
        if name in terms:
            out[f"{name}_mean"] = float(np.mean(terms[name], dtype=np.float64)) if n else None
            out[f"{name}_std"] = float(np.std(terms[name], dtype=np.float64)) if n else None
    return out


@functools.partial(jax.jit, static_argnames="module")
def law_errors(variables: Any, u: jax.Array, z1: jax.Array, z2: jax.Array, *, module: Any) -> dict[str, jax.Array]:
    """Per-image max and mean |error| of act's identity, inverse and composition laws, in logit space.

    `module.apply(variables, z, u, method='act')` is the action; u (B, H, W, 1), z1 and z2 (B, d).
    """
    act = lambda z, v: module.apply(variables, z, v, method="act")
    moved = act(z1, u)
    errors = {
        "identity": act(jnp.zeros_like(z1), u) - u,
        "inverse": act(-z1, moved) - u,
        "composition": act(z2, moved) - act(z1 + z2, u),
    }
    out = {}
    for name, e in errors.items():
        e = jnp.abs(e).reshape(e.shape[0], -1)
        out[f"{name}_max"], out[f"{name}_mean"] = e.max(axis=1), e.mean(axis=1)
    return out


def group_law_errors(
    model: api.Model, u: np.ndarray | jax.Array, code_scale: np.ndarray | float, seed: int,
    batch_size: int = 256, mesh: Mesh | None = None,
) -> dict[str, Any]:
    """Max and mean |error| of act's identity, inverse and composition laws, in logit space.

    Args:
      model: a MAGANet Model (its `module`, `variables` and `config.model.latent_dim` are used).
      u: (N, H, W, 1) logits to act on (e.g. embed of held-out images).
      code_scale: s, scalar or (d,): the random codes are z1, z2 ~ N(0, diag(s²)).
      seed: seed of the codes (NumPy's default_rng).
      batch_size: images per jitted step (rounded up to a multiple of the device count).
      mesh: the devices each batch is sharded over; default all of them.

    Returns:
      {'images': N, 'code_scale': mean s, law: {'max': ..., 'mean': ...} for each law}.
    """
    if model.is_vae:
        raise ValueError("group_law_errors: the VAE has no group action; pass a MAGANet model")
    u = np.asarray(u, np.float32)
    if not len(u):
        raise ValueError("group_law_errors: got no images; pass u of shape (N, H, W, 1) with N >= 1")
    d = model.config.model.latent_dim
    scale = np.broadcast_to(np.asarray(code_scale, np.float32), (d,))
    z = np.random.default_rng(seed).standard_normal((2, len(u), d)).astype(np.float32) * scale
    mesh = mesh or make_mesh()
    variables = replicated(model.variables, mesh)
    step = lambda r, i: law_errors(variables, *sharded((u[r], z[0][r], z[1][r]), mesh), module=model.module)
    per_image = batched(step, np.arange(len(u)), mesh_batch_size(batch_size, mesh))
    out: dict[str, Any] = {"images": len(u), "code_scale": float(scale.mean())}
    for law in ("identity", "inverse", "composition"):
        out[law] = {"max": float(per_image[f"{law}_max"].max()),
                    "mean": float(per_image[f"{law}_mean"].mean(dtype=np.float64))}
    return out


def class_label(factor: str, c: int) -> str:
    """A readable class with its value: 'ellipse', 'scale 2 (0.70)', 'orientation 13 (120°)', 'x 21 (0.68)'."""
    if factor == "shape":
        return factors.SHAPE_NAMES[c]
    value = factors.VALUES[factor][c]
    shown = f"{np.degrees(value):.0f}°" if factor == "orientation" else f"{value:.2f}"
    return f"{factor} {c} ({shown})"


def by_factor(values: np.ndarray, classes: np.ndarray) -> dict[str, list[dict[str, Any]]]:
    """Mean of `values` per class of each factor, for the classes present.

    Args:
      values: (T,) per-image values (e.g. held-out BCE).
      classes: (T, 5) factor classes of those images.

    Returns:
      {factor: [{'class', 'label', 'count', 'bce'}, ...]} in class order.
    """
    out = {}
    for j, (name, size) in enumerate(zip(factors.NAMES, factors.SIZES)):
        cls = classes[:, j].astype(np.int64)
        counts = np.bincount(cls, minlength=size)
        sums = np.bincount(cls, weights=values.astype(np.float64), minlength=size)
        out[name] = [
            {"class": c, "label": class_label(name, c), "count": int(counts[c]), "bce": float(sums[c] / counts[c])}
            for c in np.flatnonzero(counts).tolist()
        ]
    return out


def worst_cells(cells: dict[str, list[dict[str, Any]]], n: int = WORST) -> list[dict[str, Any]]:
    """The n (factor, class) cells of `by_factor` with the highest mean BCE."""
    flat = [dict(cell, factor=name) for name, rows in cells.items() for cell in rows]
    return sorted(flat, key=lambda cell: -cell["bce"])[:n]


def worst_images(values: np.ndarray, classes: np.ndarray, n: int = WORST) -> list[dict[str, Any]]:
    """The n images with the highest `values`: dataset index, factor classes and value."""
    top = np.argsort(-values, kind="stable")[:n]
    index = factors.classes_to_index(classes[top]) if len(top) else []
    return [{"index": int(i), "classes": dict(zip(factors.NAMES, map(int, classes[t]))), "bce": float(values[t])}
            for i, t in zip(index, top)]


@functools.partial(jax.jit, static_argnames=("module_a", "module_b"))
def decode_difference(
    variables_a: Any, variables_b: Any, pivots_a: jax.Array, pivots_b: jax.Array, x: jax.Array,
    key: jax.Array | None, *, module_a: Any, module_b: Any,
) -> dict[str, jax.Array]:
    """Per-image scores of two models' decodes of images x, both with the noise `key` draws (see `to_diff`)."""
    noise = lambda m: None if key is None else objective.draw_noise(key, x.shape[0], m.config.latent_dim)
    la, lb = (objective.reconstruct(m, v, p, x, noise(m), pairs="pivot").logits
              for m, v, p in ((module_a, variables_a, pivots_a), (module_b, variables_b, pivots_b)))
    pb = jax.nn.sigmoid(lb)
    ls = jax.nn.log_sigmoid
    kl = pb * (ls(lb) - ls(la)) + (1.0 - pb) * (ls(-lb) - ls(-la))
    return {"to_diff": kl.reshape(kl.shape[0], -1).sum(axis=1), "bce": objective.bce_per_image(la, pb),
            "bce_a": objective.bce_per_image(la, x), "bce_b": objective.bce_per_image(lb, x)}


def pivot_row(data: DSprites, pivot: int) -> int:
    """The row of dataset index `pivot` in `data` (ValueError when the data lacks it)."""
    rows = np.flatnonzero(factors.classes_to_index(data.classes) == pivot)
    if not len(rows):
        raise ValueError(f"pivot {pivot} is not in the data ({len(data)} images); load data that holds it")
    return int(rows[0])


def to_diff(
    model_a: api.Model, model_b: api.Model, data: DSprites, rows: np.ndarray, *,
    sample: bool = False, batch_size: int = 256, progress: bool = False, mesh: Mesh | None = None,
) -> dict[str, Any]:
    """How far apart two models' decodes of the same images are (the blog's to-Diff), and how well each decodes them.

    Each model decodes each image x its own way (MAGANet from its pivot, the VAE from the image's
    code), with logits l_a, l_b and p_b = σ(l_b). Per image, in nats:

      bce     = Σ_pixels BCE(l_a, target p_b)                  (the cross-entropy, ≥ H(p_b))
      to_diff = Σ_pixels KL(Bernoulli(p_b) ‖ Bernoulli(σ(l_a))) = bce − H(p_b)   (0 iff equal decodes)
      bce_a   = Σ_pixels BCE(l_a, x),  bce_b = Σ_pixels BCE(l_b, x)   (each model's held-out BCE)

    The codes are the posterior means, or with `sample=True` reparameterised samples drawn with
    the fixed key of `image_terms` (the same noise for both models, and the same numbers as
    `image_terms` on the same rows and batch size).

    Args:
      model_a, model_b: the two Models (e.g. trained on range-blog and on element-blog), same image size.
      data: the images; `rows` index it.
      rows: the images to compare, e.g. those both models held out.
      sample: sampled codes (fixed key) instead of the posterior means.
      batch_size: images per jitted step (rounded up to a multiple of the device count).
      progress: show a progress bar.
      mesh: the devices each batch is sharded over; default all of them.

    Returns:
      {'count'} and the mean and std of each per-image score ('to_diff_mean', 'to_diff_std', 'bce_mean',
      ..., 'bce_b_std'); None means when rows is empty.
    """
    if model_a.config.model.image_size != model_b.config.model.image_size:
        raise ValueError(f"to_diff: the models decode {model_a.config.model.image_size} and "
                         f"{model_b.config.model.image_size} pixel images; compare models of one image size")
    rows = np.asarray(rows, np.int64)
    pivots = [pivot_row(data, m.config.data.pivot) for m in (model_a, model_b)]
    mesh = mesh or make_mesh()
    packed, local = on_device(data.images, np.concatenate([rows, pivots]), mesh)
    size = model_a.config.model.image_size
    x_a, x_b = (gather_images(packed, local([p]), size) for p in pivots)
    variables_a, variables_b, x_a, x_b = replicated((model_a.variables, model_b.variables, x_a, x_b), mesh)
    key = jax.random.PRNGKey(SEEDS["sample"])
    step = lambda r, i: decode_difference(variables_a, variables_b, x_a, x_b,
                                          sharded(gather_images(packed, sharded(r, mesh), size), mesh),
                                          jax.random.fold_in(key, i) if sample else None,
                                          module_a=model_a.module, module_b=model_b.module)
    out = batched(step, local(rows), mesh_batch_size(batch_size, mesh), progress, "to-Diff")
    n = len(out["to_diff"]) if out else 0
    result: dict[str, Any] = {"count": n}
    for name in ("to_diff", "bce", "bce_a", "bce_b"):
        result[f"{name}_mean"] = float(np.mean(out[name], dtype=np.float64)) if n else None
        result[f"{name}_std"] = float(np.std(out[name], dtype=np.float64)) if n else None
    return result


def _slug(text: str) -> str:
    return re.sub(r"[^\w.-]+", "_", text).strip("_")


def result_path(workdir: str | os.PathLike, split: str | None, trained_split: str, sample: bool) -> Path:
    """eval.json for the trained split, eval-<split>.json for another; '-sample' with sampled codes."""
    name = "eval"
    if split is not None and split.strip() != trained_split.strip():
        name += f"-{_slug(split)}"
    return Path(workdir) / f"{name}{'-sample' if sample else ''}.json"


def _subset(rows: np.ndarray, n: int | None, seed: int) -> np.ndarray:
    """`n` of `rows` drawn without replacement with a fixed seed (all of them if n is None or ≥ len)."""
    if n is None or n >= len(rows):
        return rows
    return np.sort(np.random.default_rng(seed).choice(rows, n, replace=False))


def evaluate(
    workdir: str | os.PathLike,
    split: str | None = None,
    sample: bool = False,
    data: DSprites | str | None = None,
    batch_size: int = 256,
    train_subset: int | None = 2048,
    heldout_subset: int | None = None,
    step: int | None = None,
    progress: bool = True,
    write: bool = True,
) -> dict[str, Any]:
    """Evaluates a run's latest checkpoint on the held-out images of its split (or of `split`).

    Args:
      workdir: the run's folder.
      split: a named split or expression to take the held-out set from; default the trained split.
      sample: sampled codes with a fixed key instead of the posterior means.
      data: a DSprites container or a source ('auto', 'render', 'file:PATH', ...); default the source the
        run recorded in data.json, checked to be the same data (`magajax.data.provenance.load`).
      batch_size: images per jitted step, sharded over every device (rounded up to a multiple of their count).
      train_subset: how many training images (fixed seed) to score too; None for all.
      heldout_subset: score only this many held-out images (fixed seed); None for all of them.
      step: the checkpoint to evaluate; default the latest.
      progress: show progress bars.
      write: write the result to `result_path(...)` in the workdir.

    Returns:
      The result: 'heldout' and 'train' summaries (count, mean and std of each term), 'gap',
      'group_laws' (None for the VAE), 'by_factor', 'worst_cells', 'worst_images' and the run's details.
    """
    start = time.perf_counter()
    model, step = load_model(workdir, step)
    config = model.config
    if data is None or isinstance(data, str):
        data = provenance.load(workdir, data, config.data.source)
    allow = config.data.pairs == "shuffle"  # such training never uses the pivot: it may be held out
    trained = make_split(config.data.split, data.classes, config.data.pivot, allow_held_out_pivot=allow)
    evaluated = trained
    if split is not None and split.strip() != config.data.split.strip():
        evaluated = make_split(split, data.classes, config.data.pivot, allow_held_out_pivot=allow)
        print(f"evaluating on the held-out set of split {split!r} ({len(evaluated.test):,} images); "
              f"the model was trained on split {config.data.split!r}")
    heldout_rows = _subset(evaluated.test, heldout_subset, SEEDS["heldout_subset"])
    train_rows = _subset(trained.train, train_subset, SEEDS["train_subset"])
    law_rows = _subset(heldout_rows if len(heldout_rows) else train_rows, LAW_IMAGES, SEEDS["law_images"])
    mesh = make_mesh()
    packed, local = on_device(data.images, np.concatenate([heldout_rows, train_rows, [trained.pivot_row]]), mesh)
    pivot = int(local([trained.pivot_row])[0])

    kw = dict(batch_size=batch_size, sample=sample, progress=progress, mesh=mesh)
    heldout = image_terms(model, packed, local(heldout_rows), pivot, desc="held-out", **kw)
    train = image_terms(model, packed, local(train_rows), pivot, desc="train subset", **kw)
    held_classes = data.classes[heldout_rows]

    laws = None
    if not model.is_vae:
        codes = heldout["z"] if len(heldout["z"]) else train["z"]
        x = gather_images(packed, local(law_rows), config.model.image_size)
        laws = group_law_errors(model, model.embed(x), codes.std(axis=0), SEEDS["law_codes"], batch_size, mesh)
    cells = by_factor(heldout["bce"], held_classes)
    held, seen = summary(heldout), summary(train)
    result = {
        "workdir": str(workdir),
        "step": step,
        "kind": config.model.kind,
        "preset": config.preset,
        "trained_split": config.data.split,
        "split": evaluated.name,
        "data": data.source,
        "sample": sample,
        "heldout_size": len(evaluated.test),
        "heldout": held,
        "train": dict(seen, of=len(trained.train)),
        "gap": held["bce_mean"] - seen["bce_mean"] if held["count"] and seen["count"] else None,
        "group_laws": laws,
        "by_factor": cells,
        "worst_cells": worst_cells(cells),
        "worst_images": worst_images(heldout["bce"], held_classes),
        "seconds": time.perf_counter() - start,
    }
    if write:
        path = result_path(workdir, split, config.data.split, sample)
        path.write_text(json.dumps(result, indent=1) + "\n")
        result["path"] = str(path)
    return result
