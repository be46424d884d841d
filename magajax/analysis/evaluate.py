"""Held-out evaluation of a run: BCE, KL and latent terms, group-law errors, BCE per factor class.

MAGANet decodes every held-out image x from the pivot, with z = μ(x) − μ(x_pivot) (or, with
`sample=True`, a reparameterised sample of each, as the blog's evaluation did), and scores it
with the training terms of DESIGN §4 (magajax.losses), per image:

  bce    = Σ_pixels BCE-with-logits(act(z, embed(x_pivot)), x)      nats per image
  kl     = KL(N(μ_v − μ_p, σ_v² + σ_p²) ‖ N(0, I))
  latent = Σ_d |μ(σ(act(z, embed(x_pivot)))) − μ_p − z|
  total  = bce + β_KL·kl + β_lat·latent

The VAE reconstructs x itself: z = μ(x) (or a sample), bce of its decoder's logits, kl of q(z | x).
The same terms on a fixed subset of the training images show the generalisation gap.

Group-law errors (MAGANet), max and mean |·| in logit space over held-out images u = embed(x)
and random codes z1, z2 ~ N(0, diag(s²)), s the per-dimension std of the held-out codes:

  identity     act(0, u) − u
  inverse      act(−z1, act(z1, u)) − u
  composition  act(z2, act(z1, u)) − act(z1 + z2, u)

`to_diff` compares two models' decodes of the same images (the to-Diff column of the blog's table).
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
from tqdm.auto import tqdm

from magajax import api
from magajax import objective as losses
from magajax.config import ModelConfig
from magajax.data import factors
from magajax.data.pairs import eval_batches, gather_images, unpack_images
from magajax.data.sources import DSprites, load_dsprites
from magajax.data.splits import make_split
from magajax.models import build
from magajax.models.vae import sample as reparameterise
from magajax.training import checkpoint

TERMS = ("bce", "kl", "latent", "total")
LAW_IMAGES = 256  # held-out images the group laws are checked on
WORST = 5  # (factor, class) cells and images listed as the worst
SEEDS = {"train_subset": 0, "heldout_subset": 1, "law_images": 2, "law_codes": 3, "sample": 4}


def load_model(workdir: str | os.PathLike, step: int | None = None) -> tuple[api.Model, int]:
    """The run's Model at its latest (or the given) checkpoint, and that step.

    A workdir without a run or without checkpoints raises FileNotFoundError saying how to train one.
    """
    config, variables, step = checkpoint.load(workdir, step)
    return api.Model(config, variables), step


def on_device(images: np.ndarray, rows: np.ndarray) -> tuple[jax.Array, Callable[[np.ndarray], np.ndarray]]:
    """The packed images of `rows` (each once) on device, and the map from rows to their place there.

    The device array holds a power-of-two number of images (at least 1,024; the last repeated),
    so evaluations of similar sizes share one compiled step.
    """
    needed = np.unique(np.asarray(rows, np.int64))
    size = max(1024, 1 << int(np.ceil(np.log2(max(len(needed), 1)))))
    packed = jax.device_put(images[np.pad(needed, (0, size - len(needed)), mode="edge")])
    return packed, lambda r: np.searchsorted(needed, np.asarray(r, np.int64)).astype(np.int32)


def _reconstruct(
    module: Any, variables: Any, x: jax.Array, x_pivot: jax.Array, key: jax.Array | None
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Logits of x decoded by the model (MAGANet from x_pivot, the VAE from x) and the code terms."""
    apply = lambda *a, method: module.apply(variables, *a, method=method)
    mean_v, logvar_v = apply(x, method="posterior")
    if module.config.kind == "vae":
        z = mean_v if key is None else reparameterise(mean_v, logvar_v, key)
        return apply(z, method="decode_logits"), {"z": z, "kl": losses.kl(mean_v, logvar_v)}
    mean_p, logvar_p = apply(x_pivot, method="posterior")
    if key is None:
        z = mean_v - mean_p
    else:
        key_v, key_p = jax.random.split(key)
        z = reparameterise(mean_v, logvar_v, key_v) - reparameterise(
            jnp.broadcast_to(mean_p, mean_v.shape), jnp.broadcast_to(logvar_p, mean_v.shape), key_p)
    logits = apply(z, x_pivot, method="decode_logits")
    mean_hat, _ = apply(jax.nn.sigmoid(logits), method="posterior")
    terms = {
        "z": z,
        "kl": losses.kl(*losses.code_distribution(mean_v, logvar_v, mean_p, logvar_p)),
        "latent": losses.latent(mean_hat - mean_p, z),
    }
    return logits, terms


@functools.cache
def _terms_step(config: ModelConfig, beta_kl: float, beta_lat: float, sampled: bool) -> Callable[..., dict]:
    """Jitted `(variables, packed, rows, pivot_row, key) -> per-image terms` of one batch of rows."""
    module = build(config)

    def step(variables: Any, packed: jax.Array, rows: jax.Array, pivot_row: jax.Array, key: jax.Array) -> dict:
        x = unpack_images(packed[rows], config.image_size)
        x_pivot = unpack_images(packed[pivot_row][None], config.image_size)
        logits, terms = _reconstruct(module, variables, x, x_pivot, key if sampled else None)
        terms["bce"] = losses.recon(logits, x)
        if config.kind == "vae":
            terms["total"] = losses.vae_total(terms["bce"], terms["kl"], beta_kl)
        else:
            terms["total"] = losses.maganet_total(terms["bce"], terms["kl"], terms["latent"], beta_kl, beta_lat)
        return dict(terms, rows=rows)

    return jax.jit(step)


def _batched(
    step: Callable[..., dict], rows: np.ndarray, batch_size: int, progress: bool, desc: str
) -> dict[str, np.ndarray]:
    """Runs `step(batch_rows, batch_index)` over `rows` in masked batches; concatenates the valid entries.

    Batch i + 1 is dispatched before batch i's results are fetched, so the host never stalls the device.
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
) -> dict[str, np.ndarray]:
    """Per-image terms of `rows`, each image once, in the order of `rows`.

    Args:
      model: a MAGANet or VAE Model.
      packed: (N, 64, 8) uint8 bit-packed images, on device (put them there once).
      rows: (T,) rows of `packed` to evaluate.
      pivot_row: row of the pivot image in `packed` (unused by the VAE).
      batch_size: images per jitted step; the last batch is padded and masked.
      sample: sampled codes (fixed key) instead of the posterior means.
      progress: show a progress bar over batches.
      desc: the progress bar's label.

    Returns:
      'rows' (T,), 'bce', 'kl', 'total' and for MAGANet 'latent', each (T,), and the codes 'z' (T, d).
    """
    c = model.config
    step = _terms_step(c.model, c.train.beta_kl, c.train.beta_lat, sample)
    key = jax.random.PRNGKey(SEEDS["sample"])
    pivot = np.int32(pivot_row)
    out = _batched(lambda r, i: step(model.variables, packed, r, pivot, jax.random.fold_in(key, i)),
                   np.asarray(rows), batch_size, progress, desc)
    if not out:  # no rows: empty arrays of the right shapes
        names = ("bce", "kl", "total") + (() if model.is_vae else ("latent",))
        out = {k: np.zeros(0, np.float32) for k in names}
        out.update(rows=np.zeros(0, np.int32), z=np.zeros((0, c.model.latent_dim), np.float32))
    return out


def summary(terms: dict[str, np.ndarray]) -> dict[str, Any]:
    """Mean and std of each term over the images, and their count; None means when there are none."""
    n = len(terms["rows"])
    out: dict[str, Any] = {"count": n}
    for name in TERMS:
        if name in terms:
            out[f"{name}_mean"] = float(np.mean(terms[name], dtype=np.float64)) if n else None
            out[f"{name}_std"] = float(np.std(terms[name], dtype=np.float64)) if n else None
    return out


@functools.cache
def _law_step(config: ModelConfig) -> Callable[..., dict]:
    """Jitted `(variables, u, z1, z2) -> per-image max and mean |error|` of the three group laws."""
    module = build(config)

    def step(variables: Any, u: jax.Array, z1: jax.Array, z2: jax.Array) -> dict:
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

    return jax.jit(step)


def group_law_errors(
    model: api.Model, u: np.ndarray | jax.Array, code_scale: np.ndarray | float, seed: int,
    batch_size: int = 256,
) -> dict[str, Any]:
    """Max and mean |error| of act's identity, inverse and composition laws, in logit space.

    Args:
      model: a MAGANet Model.
      u: (N, H, W, 1) logits to act on (e.g. embed of held-out images).
      code_scale: s, scalar or (d,): the random codes are z1, z2 ~ N(0, diag(s²)).
      seed: seed of the codes (NumPy's default_rng).
      batch_size: images per jitted step.

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
    step = _law_step(model.config.model)
    per_image = _batched(lambda r, i: step(model.variables, u[r], z[0][r], z[1][r]),
                         np.arange(len(u)), batch_size, False, "group laws")
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


@functools.cache
def _diff_step(config_a: ModelConfig, config_b: ModelConfig) -> Callable[..., dict]:
    """Jitted per-image cross-entropy and KL between two models' decodes of one batch of rows."""
    module_a, module_b = build(config_a), build(config_b)

    def step(variables_a: Any, variables_b: Any, packed: jax.Array, rows: jax.Array, pivots: jax.Array) -> dict:
        def logits(module: Any, variables: Any, config: ModelConfig, pivot_row: jax.Array) -> jax.Array:
            x = unpack_images(packed[rows], config.image_size)
            x_pivot = unpack_images(packed[pivot_row][None], config.image_size)
            return _reconstruct(module, variables, x, x_pivot, None)[0]

        la = logits(module_a, variables_a, config_a, pivots[0])
        lb = logits(module_b, variables_b, config_b, pivots[1])
        pb = jax.nn.sigmoid(lb)
        ls = jax.nn.log_sigmoid
        kl = pb * (ls(lb) - ls(la)) + (1.0 - pb) * (ls(-lb) - ls(-la))
        return {"to_diff": kl.reshape(kl.shape[0], -1).sum(axis=1), "bce": losses.recon(la, pb), "rows": rows}

    return jax.jit(step)


def pivot_row(data: DSprites, pivot: int) -> int:
    """The row of dataset index `pivot` in `data` (ValueError when the data lacks it)."""
    rows = np.flatnonzero(factors.classes_to_index(data.classes) == pivot)
    if not len(rows):
        raise ValueError(f"pivot {pivot} is not in the data ({len(data)} images); load data that holds it")
    return int(rows[0])


def to_diff(
    model_a: api.Model, model_b: api.Model, data: DSprites, rows: np.ndarray, *,
    batch_size: int = 256, progress: bool = False,
) -> dict[str, Any]:
    """How far apart two models' decodes of the same images are (the blog's to-Diff).

    Each model decodes each image its own way (MAGANet from its pivot with the mean code, the VAE
    from the image's mean code), with logits l_a, l_b and p_b = σ(l_b). Per image, in nats:

      bce     = Σ_pixels BCE(l_a, target p_b)                  (the cross-entropy, ≥ H(p_b))
      to_diff = Σ_pixels KL(Bernoulli(p_b) ‖ Bernoulli(σ(l_a))) = bce − H(p_b)   (0 iff equal decodes)

    Args:
      model_a, model_b: the two Models (e.g. trained on element-blog and on range-blog), same image size.
      data: the images; `rows` index it.
      rows: the images to compare, e.g. those both models held out.
      batch_size: images per jitted step.
      progress: show a progress bar.

    Returns:
      {'count', 'to_diff_mean', 'to_diff_std', 'bce_mean', 'bce_std'}; None means when rows is empty.
    """
    if model_a.config.model.image_size != model_b.config.model.image_size:
        raise ValueError(f"to_diff: the models decode {model_a.config.model.image_size} and "
                         f"{model_b.config.model.image_size} pixel images; compare models of one image size")
    rows = np.asarray(rows, np.int64)
    pivots = [pivot_row(data, m.config.data.pivot) for m in (model_a, model_b)]
    packed, local = on_device(data.images, np.concatenate([rows, pivots]))
    step = _diff_step(model_a.config.model, model_b.config.model)
    local_pivots = local(pivots)
    out = _batched(lambda r, i: step(model_a.variables, model_b.variables, packed, r, local_pivots),
                   local(rows), batch_size, progress, "to-Diff")
    n = len(out["rows"]) if out else 0
    result: dict[str, Any] = {"count": n}
    for name in ("to_diff", "bce"):
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
      data: a DSprites container or a source ('auto', 'render', 'file:PATH', ...); default the run's source.
      batch_size: images per jitted step.
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
        data = load_dsprites(data or config.data.source)
    trained = make_split(config.data.split, data.classes, config.data.pivot)
    evaluated = trained
    if split is not None and split.strip() != config.data.split.strip():
        evaluated = make_split(split, data.classes, config.data.pivot)
        print(f"evaluating on the held-out set of split {split!r} ({len(evaluated.test):,} images); "
              f"the model was trained on split {config.data.split!r}")
    heldout_rows = _subset(evaluated.test, heldout_subset, SEEDS["heldout_subset"])
    train_rows = _subset(trained.train, train_subset, SEEDS["train_subset"])
    law_rows = _subset(heldout_rows if len(heldout_rows) else train_rows, LAW_IMAGES, SEEDS["law_images"])
    packed, local = on_device(data.images, np.concatenate([heldout_rows, train_rows, [trained.pivot_row]]))
    pivot = int(local([trained.pivot_row])[0])

    kw = dict(batch_size=batch_size, sample=sample, progress=progress)
    heldout = image_terms(model, packed, local(heldout_rows), pivot, desc="held-out", **kw)
    train = image_terms(model, packed, local(train_rows), pivot, desc="train subset", **kw)
    held_classes = data.classes[heldout_rows]

    laws = None
    if not model.is_vae:
        codes = heldout["z"] if len(heldout["z"]) else train["z"]
        x = gather_images(packed, local(law_rows), config.model.image_size)
        laws = group_law_errors(model, model.embed(x), codes.std(axis=0), SEEDS["law_codes"], batch_size)
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


def _fmt(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def format_table(result: dict[str, Any]) -> str:
    """A readable table of an `evaluate` result."""
    h, t = result["heldout"], result["train"]
    codes = "sampled codes" if result["sample"] else "mean codes"
    lines = [
        f"{result['kind']} {result['workdir']} at step {result['step']} (preset {result['preset']}, "
        f"trained on {result['trained_split']!r}, {codes}, data {result['data']})",
        f"held-out set of {result['split']!r}: {h['count']:,} of {result['heldout_size']:,} images; "
        f"train subset: {t['count']:,} of {t['of']:,}",
        "",
        f"{'nats per image':<16}{'held-out':>20}{'train subset':>20}",
    ]
    for name in TERMS:
        if f"{name}_mean" in h:
            cols = [f"{_fmt(s[f'{name}_mean'])} ± {_fmt(s[f'{name}_std'])}" for s in (h, t)]
            lines.append(f"{name:<16}{cols[0]:>20}{cols[1]:>20}")
    lines.append(f"{'gap (bce)':<16}{_fmt(result['gap']):>20}")
    laws = result["group_laws"]
    if laws is not None:
        lines += ["", f"group laws in logit space ({laws['images']} images, random codes of scale "
                      f"{laws['code_scale']:.3g}): max / mean |error|"]
        lines += [f"  {law:<14}{laws[law]['max']:.2e} / {laws[law]['mean']:.2e}"
                  for law in ("identity", "inverse", "composition")]
    if result["worst_cells"]:
        lines += ["", "held-out bce by factor class (worst first):"]
        lines += [f"  {c['label']:<22}{c['bce']:>9.2f}  ({c['count']:,} images)" for c in result["worst_cells"]]
        for name, cells in result["by_factor"].items():
            if len(cells) > 1:
                lo, hi = min(cells, key=lambda c: c["bce"]), max(cells, key=lambda c: c["bce"])
                lines.append(f"  {name:<12} best {lo['label']} {lo['bce']:.2f}, worst {hi['label']} {hi['bce']:.2f}")
    if result.get("path"):
        lines += ["", f"wrote {result['path']}"]
    return "\n".join(lines)
