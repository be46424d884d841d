"""Figures of a run: reconstructions, traversals, the latent space, group laws, losses.

Each figure is one function that takes a Model (or arrays) and a path, so it can be drawn and
tested on its own; `draw_all(workdir)` draws every figure of a run into workdir/figures:

  recon.png        pivot | target | decoded, for held-out and training images
  traversal.png    each code dimension swept over ±2 around a target's code (the blog's fig. 10), in
                   units of that dimension's std over the data
  traversal.gif    the same sweep, animated
  latents.png      codes embedded in 2-D (PCA, or UMAP when umap-learn is installed), one panel per factor
  identity.png     x | decode(0, x) | difference: act(0, ·) is the identity (the blog's fig. 11)
  composition.png  decode(z2, decode(z1, x)) beside decode(z1 + z2, x)
  loss.png         the curves of metrics.jsonl

Images are float arrays (N, H, W, 1) or (N, H, W) in [0, 1]; MAGANet decodes from `x_pivot`
(1, H, W, 1), the VAE takes x_pivot=None and decodes an image's own code. The numbers shown (BCE per
image) come from `magajax.analysis.evaluate`, and every model call runs through its fixed-size
batches. Figures are `matplotlib.figure.Figure`s drawn on the Agg canvas: importing this module
neither imports pyplot nor changes matplotlib's backend.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

from magajax.analysis.evaluate import apply_in_batches, array_terms, load_model

CURVES = ("loss", "recon", "kl", "latent", "grad_norm")
DPI = 100
TILE = 0.9  # inches per image in the reconstruction and group-law figures
SMALL_TILE = 0.55  # inches per image in the traversal grid and animation
CHUNK = 64  # rows per model call


def loss_curves(records: Sequence[dict[str, Any]], path: str | os.PathLike, title: str = "") -> None:
    """One panel per logged term against the step (log-scaled where positive), saved as a PNG."""
    names = [n for n in CURVES if any(n in r for r in records)]
    fig = Figure(figsize=(3.2 * max(1, len(names)), 2.8))
    axes = fig.subplots(1, max(1, len(names)), squeeze=False)
    for ax, name in zip(axes[0], names):
        points = [(r["step"], r[name]) for r in records if name in r]
        steps, values = zip(*points)
        ax.plot(steps, values, lw=1)
        if min(values) > 0:
            ax.set_yscale("log")
        ax.set_title(name + (" (nats/image)" if name == "recon" else ""), fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def _plain(x: Any) -> np.ndarray:
    """Images as a float (N, H, W) NumPy array."""
    x = np.asarray(x, np.float32)
    return x[..., 0] if x.ndim == 4 else x


def mosaic(images: np.ndarray, pad: int = 1, fill: float = 1.0) -> np.ndarray:
    """Tiles (R, C, H, W) images into one (R·(H + pad) − pad, C·(W + pad) − pad) image, `fill` between."""
    r, c, h, w = images.shape
    out = np.full((r * (h + pad) - pad, c * (w + pad) - pad), fill, np.float32)
    for i in range(r):
        for j in range(c):
            out[i * (h + pad) : i * (h + pad) + h, j * (w + pad) : j * (w + pad) + w] = images[i, j]
    return out


def _tile(ax: Any, image: np.ndarray, title: str = "", xlabel: str = "", vmax: float = 1.0) -> None:
    ax.imshow(image, cmap="gray", vmin=0.0, vmax=vmax, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=8)
    if xlabel:
        ax.set_xlabel(xlabel, fontsize=7)


def _blank(ax: Any) -> None:
    ax.axis("off")


def _save(fig: Figure, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    return path


def call(fn: Callable[..., Any], *args: np.ndarray | None) -> np.ndarray:
    """`fn(*args)` (a Model method) in evaluation's fixed-size batches of CHUNK rows, as a NumPy array."""
    return apply_in_batches(fn, *args, batch_size=CHUNK)


def reconstructions(
    model: Any, heldout: np.ndarray, train: np.ndarray, path: str | os.PathLike, x_pivot: np.ndarray | None = None
) -> Path:
    """Rows of pivot | target | decoded, held-out images on the left and training images on the right.

    Each decoded image is labelled with its BCE (nats per image). The VAE has no pivot column.
    """
    blocks = [("held-out", heldout), ("train", train)]
    width = 2 if x_pivot is None else 3
    rows = max(len(heldout), len(train))
    fig = Figure(figsize=((2 * width + 0.4) * TILE, rows * TILE + 0.5))
    axes = fig.subplots(rows, 2 * width + 1, squeeze=False,
                        gridspec_kw={"width_ratios": [1] * width + [0.4] + [1] * width})
    for ax in axes.flat:
        _blank(ax)
    for b, (name, x) in enumerate(blocks):
        if not len(x):
            continue
        terms = array_terms(model, x, x_pivot, batch_size=CHUNK)
        decoded, bce = call(model.decode, terms["z"], x_pivot), terms["bce"]
        for i in range(len(x)):
            cols = axes[i, b * (width + 1) : b * (width + 1) + width]
            columns = ([("pivot", _plain(x_pivot)[0], "")] if x_pivot is not None else []) + [
                (f"{name} target", _plain(x)[i], ""), ("decoded", _plain(decoded)[i], f"bce {bce[i]:.1f}")]
            for ax, (title, image, label) in zip(cols, columns):
                ax.axis("on")
                _tile(ax, image, title if i == 0 else "", label)
    fig.suptitle(f"{model.config.model.kind} reconstructions (nats per image)", fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


def _sweeps(
    model: Any, targets: np.ndarray, x_pivot: np.ndarray | None, offsets: np.ndarray
) -> np.ndarray:
    """Decodes of each target's code with one dimension moved: (n, d, m, H, W).

    Entry [k, i, j] decodes z_k + offsets[i, j]·e_i, z_k the target's code (from x_pivot for
    MAGANet), `offsets` of shape (d, m).
    """
    z0 = call(model.encode, targets, x_pivot)
    n, d = z0.shape
    shifts = np.eye(d, dtype=np.float32)[:, None, :] * offsets[:, :, None]  # (d, m, d)
    z = (z0[:, None, None, :] + shifts[None]).reshape(-1, d)
    images = _plain(call(model.decode, z, x_pivot))
    return images.reshape(n, d, offsets.shape[1], *images.shape[1:])


def _offsets(t: np.ndarray, d: int, scale: np.ndarray | None) -> np.ndarray:
    """(d, m) offsets t·scale_i (t in code units when scale is None)."""
    unit = np.ones(d, np.float32) if scale is None else np.broadcast_to(np.asarray(scale, np.float32), (d,))
    return unit[:, None] * np.asarray(t, np.float32)[None, :]


def traversal_grid(
    model: Any, targets: np.ndarray, path: str | os.PathLike, x_pivot: np.ndarray | None = None,
    span: float = 2.0, steps: int = 7, scale: np.ndarray | None = None,
) -> Path:
    """One panel per target: row i sweeps code dimension i over z_i + scale_i·linspace(−span, span, steps).

    Args:
      model: the Model.
      targets: (n, H, W, 1) images whose codes are swept.
      path: the PNG.
      x_pivot: (1, H, W, 1) the pivot (MAGANet), None for the VAE.
      span: the sweep's reach on each side.
      steps: images per sweep.
      scale: (d,) unit of each dimension's sweep (e.g. the std of its codes over the data);
        None sweeps in code units.
    """
    d = model.config.model.latent_dim
    t = np.linspace(-span, span, steps, dtype=np.float32)
    sweeps = _sweeps(model, targets, x_pivot, _offsets(t, d, scale))
    n, _, m, h, _ = sweeps.shape
    unit = "" if scale is None else "σ"
    rows = [f"z{i + 1}" + ("" if scale is None else f" (σ {np.broadcast_to(scale, (d,))[i]:.2g})") for i in range(d)]
    fig = Figure(figsize=(n * (m * SMALL_TILE + 0.9), d * SMALL_TILE + 0.9))
    axes = fig.subplots(1, n, squeeze=False)
    for k, ax in enumerate(axes[0]):
        ax.imshow(mosaic(sweeps[k]), cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
        ax.set_yticks([(h + 1) * i + h / 2 for i in range(d)], rows, fontsize=6)
        ax.set_xticks([(h + 1) * j + h / 2 for j in range(m)], [f"{o:+.1f}{unit}" for o in t], fontsize=6)
        ax.set_title(f"target {k + 1}", fontsize=8)
    what = f"±{span:g}" + (" in code units" if scale is None else " σ, σ its codes' std over the data")
    fig.suptitle(f"{model.config.model.kind}: each code dimension moved by {what} around a target's code", fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


def traversal_animation(
    model: Any, targets: np.ndarray, path: str | os.PathLike, x_pivot: np.ndarray | None = None,
    span: float = 2.0, frames: int = 24, fps: int = 8, scale: np.ndarray | None = None,
) -> Path:
    """An animated GIF: row k is target k, column i its code with dimension i moved by scale_i·span·sin(2πt)."""
    d = model.config.model.latent_dim
    t = (span * np.sin(2 * np.pi * np.arange(frames) / frames)).astype(np.float32)
    sweeps = _sweeps(model, targets, x_pivot, _offsets(t, d, scale))  # (n, d, frames, H, W)
    n, _, _, h, _ = sweeps.shape
    unit = "" if scale is None else "σ"
    fig = Figure(figsize=(d * SMALL_TILE + 0.6, n * SMALL_TILE + 0.7), dpi=DPI)
    ax = fig.subplots()
    shown = ax.imshow(mosaic(sweeps[:, :, 0]), cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_xticks([(h + 1) * i + h / 2 for i in range(d)], [f"z{i + 1}" for i in range(d)], fontsize=7)
    ax.set_yticks([])
    title = ax.set_title("", fontsize=8)
    fig.tight_layout()
    canvas = FigureCanvasAgg(fig)
    images = []
    for k in range(frames):
        shown.set_data(mosaic(sweeps[:, :, k]))
        title.set_text(f"{model.config.model.kind}: code dimension (column) moved by {t[k]:+.2f}{unit}")
        canvas.draw()
        images.append(Image.fromarray(np.asarray(canvas.buffer_rgba())).convert("RGB"))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    images[0].save(path, save_all=True, append_images=images[1:], duration=round(1000 / fps), loop=0)
    return path


def embed_2d(codes: np.ndarray, method: str = "auto") -> tuple[np.ndarray, str]:
    """Codes (N, d) → 2-D points and a description of the embedding.

    Args:
      codes: (N, d) codes, N ≥ 2.
      method: 'pca' (numpy SVD of the centred codes), 'umap' (needs umap-learn) or 'auto' (UMAP
        when umap-learn is importable, else PCA).
    """
    codes = np.asarray(codes, np.float64)
    if codes.ndim != 2 or len(codes) < 2:
        raise ValueError(f"embed_2d: expected codes of shape (N, d) with N >= 2, got {codes.shape}")
    if method not in ("auto", "pca", "umap"):
        raise ValueError(f"embed_2d: unknown method {method!r}; use 'auto', 'pca' or 'umap'")
    has_umap = importlib.util.find_spec("umap") is not None
    if method == "umap" and not has_umap:
        raise ValueError("embed_2d: method 'umap' needs umap-learn (pip install umap-learn); or use 'pca'")
    if method == "umap" or (method == "auto" and has_umap):
        import umap

        return umap.UMAP(n_components=2, random_state=0).fit_transform(codes), "UMAP"
    centred = codes - codes.mean(axis=0)
    u, s, _ = np.linalg.svd(centred, full_matrices=False)
    share = s**2 / max(np.sum(s**2), 1e-30)
    points = u[:, :2] * s[:2]
    if points.shape[1] < 2:  # one-dimensional codes
        points = np.concatenate([points, np.zeros_like(points)], axis=1)
    return points, f"PCA ({100 * share[0]:.0f}% + {100 * share[1:2].sum():.0f}% of the variance)"


def latent_space(
    codes: np.ndarray, classes: np.ndarray, path: str | os.PathLike, held_out: np.ndarray | None = None,
    method: str = "auto", title: str = "",
) -> Path:
    """Codes embedded in 2-D, one panel per factor coloured by its class (and one by held-out).

    Args:
      codes: (N, d) codes of N images.
      classes: (N, 5) factor classes of those images.
      path: the PNG.
      held_out: (N,) bool, True for held-out images: adds a panel coloured by it.
      method: the embedding ('auto', 'pca', 'umap'), see `embed_2d`.
      title: a line above the panels.
    """
    from magajax.data import factors

    points, how = embed_2d(codes, method)
    panels = list(factors.NAMES) + (["held out"] if held_out is not None else [])
    fig = Figure(figsize=(3.0 * len(panels), 3.2))
    axes = fig.subplots(1, len(panels), squeeze=False)
    for ax, name in zip(axes[0], panels):
        if name == "shape":
            for c, label in enumerate(factors.SHAPE_NAMES):
                hit = classes[:, 0] == c
                ax.scatter(points[hit, 0], points[hit, 1], s=3, label=label, alpha=0.7)
            ax.legend(fontsize=6, markerscale=3, loc="best")
        elif name == "held out":
            for hit, label in ((~held_out, "train"), (held_out, "held out")):
                ax.scatter(points[hit, 0], points[hit, 1], s=3, label=f"{label} ({hit.sum()})", alpha=0.7)
            ax.legend(fontsize=6, markerscale=3, loc="best")
        else:
            j = factors.NAMES.index(name)
            cmap = "twilight" if name == "orientation" else "viridis"
            dots = ax.scatter(points[:, 0], points[:, 1], c=classes[:, j], s=3, cmap=cmap,
                              vmin=0, vmax=factors.SIZES[j] - 1)
            fig.colorbar(dots, ax=ax, fraction=0.046, pad=0.02).ax.tick_params(labelsize=6)
        ax.set_title(name, fontsize=9)
        ax.tick_params(labelsize=6)
    fig.suptitle(f"{title + ': ' if title else ''}codes of {len(codes):,} images, {how}", fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


def identity(model: Any, images: np.ndarray, path: str | os.PathLike) -> Path:
    """Rows of x | decode(0, x) | |difference| (on a 0–1 scale): the zero code gives every pivot back.

    Above each difference: its maximum in the image and of act(0, u) − u in logit space (the law);
    decode(0, x) = σ(u) differs from x by the embedding's clip ε at most.
    """
    x = np.asarray(images, np.float32)
    zero = np.zeros((len(x), model.config.model.latent_dim), np.float32)
    u = call(model.embed, x)
    logit_error = np.abs(call(model.act, zero, u) - u).reshape(len(x), -1).max(axis=1)
    back = _plain(call(model.decode, zero, x))
    diff = np.abs(back - _plain(x))
    fig = Figure(figsize=(3 * TILE + 0.9, len(x) * TILE + 0.6))
    axes = fig.subplots(len(x), 3, squeeze=False)
    for i in range(len(x)):
        _tile(axes[i, 0], _plain(x)[i], "x (pivot)" if i == 0 else "")
        _tile(axes[i, 1], back[i], "decode(0, x)" if i == 0 else "")
        _tile(axes[i, 2], diff[i], f"image {diff[i].max():.1e}\nlogits {logit_error[i]:.1e}")
    fig.suptitle("identity: act(0, u) = u (max |difference|)", fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


def composition(
    model: Any, x_pivot: np.ndarray, a: np.ndarray, b: np.ndarray, path: str | os.PathLike
) -> Path:
    """Two steps against one: σ(act(z2, act(z1, u))) beside decode(z1 + z2, x), z1 = code(a, x), z2 = code(b, a).

    Row k moves the pivot x (logits u) to image a_k and on to b_k in two steps, and directly with
    the summed code; the group law says the two agree (|difference| on a 0–1 scale, its max below).
    The last decoded column, decode(z2, decode(z1, x)), takes the second step from the decoded
    image instead of its logits: embed clips logits to ±logit(1 − ε), so it need not agree.
    """
    z1 = call(model.encode, a, x_pivot)
    z2 = call(model.encode, b, a)
    u = call(model.embed, x_pivot)
    first = call(model.act, z1, u)
    sig = lambda v: _plain(1.0 / (1.0 + np.exp(-np.asarray(v, np.float64))))
    two_step = sig(call(model.act, z2, first))
    one_step = _plain(call(model.decode, z1 + z2, x_pivot))
    via_image = _plain(call(model.decode, z2, sig(first)[..., None]))
    diff = np.abs(two_step - one_step)
    columns = ["x (pivot)", "decode(z1, x)", "σ(act(z2,\nact(z1, u)))", "decode(z1 + z2,\nx)", "|difference|",
               "decode(z2,\ndecode(z1, x))", "b (target)"]
    n = len(a)
    fig = Figure(figsize=(len(columns) * TILE + 0.3, n * TILE + 1.0))
    axes = fig.subplots(n, len(columns), squeeze=False)
    for i in range(n):
        images = [_plain(x_pivot)[0], sig(first)[i], two_step[i], one_step[i], diff[i], via_image[i], _plain(b)[i]]
        for j, (ax, image) in enumerate(zip(axes[i], images)):
            _tile(ax, image, columns[j] if i == 0 else "", f"max {diff[i].max():.1e}" if j == 4 else "")
    fig.suptitle("composition: z1 = code(a, x), z2 = code(b, a); act(z2, act(z1, u)) = act(z1 + z2, u)", fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


def host_images(data: Any, rows: np.ndarray, size: int) -> np.ndarray:
    """Images of `rows` of a DSprites container as float32 (n, size, size, 1), as the model sees them:
    each pixel the mean of a (64/size)² block (magajax.data.pairs.unpack_images, in NumPy)."""
    x = data.unpacked(np.asarray(rows)).astype(np.float32)
    f = 64 // size
    return x.reshape(len(x), size, f, size, f).mean(axis=(2, 4))[..., None]


def draw_all(
    workdir: str | os.PathLike, data: Any = None, out: str | os.PathLike | None = None,
    examples: int = 6, latent_images: int = 2000, seed: int = 0,
) -> list[Path]:
    """Draws every figure of a run's latest checkpoint into `out` (default workdir/figures).

    Args:
      workdir: the run's folder.
      data: a DSprites container or a source ('auto', 'render', 'file:PATH', ...); default the source the
        run recorded in data.json, checked to be the same data (`magajax.data.provenance.load`).
      out: the folder for the figures.
      examples: images per reconstruction block (traversals use half of them, at least one).
      latent_images: images whose codes are embedded in latents.png.
      seed: seed of the images drawn.

    Returns:
      The paths written.
    """
    from magajax.data import provenance
    from magajax.data.splits import make_split
    from magajax.training import workdir as wd

    model, step = load_model(workdir)
    config = model.config
    if data is None or isinstance(data, str):
        data = provenance.load(workdir, data, config.data.source)
    split = make_split(config.data.split, data.classes, config.data.pivot,
                       allow_held_out_pivot=config.data.pairs == "shuffle")
    out = Path(out) if out is not None else Path(workdir) / wd.FIGURES
    rng = np.random.default_rng(seed)
    images = lambda rows: host_images(data, rows, config.model.image_size)
    pick = lambda rows, n: np.sort(rng.choice(rows, min(n, len(rows)), replace=False))
    heldout, train = images(pick(split.test, examples)), images(pick(split.train, examples))
    x_pivot = None if model.is_vae else images(np.array([split.pivot_row]))
    targets = (heldout if len(heldout) else train)[: max(1, examples // 2)]
    label = f"{config.model.kind} · {split.name} · step {step}"

    rows = pick(np.arange(len(data)), latent_images)
    codes = call(model.encode, images(rows), x_pivot)
    scale = codes.std(axis=0) if len(codes) > 1 else None
    held = np.isin(rows, split.test)
    paths = [
        reconstructions(model, heldout, train, out / "recon.png", x_pivot),
        traversal_grid(model, targets, out / "traversal.png", x_pivot, scale=scale),
        traversal_animation(model, targets, out / "traversal.gif", x_pivot, scale=scale),
        latent_space(codes, data.classes[rows], out / "latents.png", held_out=held if held.any() else None,
                     title=label),
    ]
    if model.is_vae:
        print("skipping identity.png and composition.png: the VAE has no group action")
    else:
        paths.append(identity(model, np.concatenate([x_pivot, heldout[:3]]), out / "identity.png"))
        n = min(len(train), len(heldout) or len(train), 4)
        paths.append(composition(model, x_pivot, train[:n], (heldout if len(heldout) else train[::-1])[:n],
                                 out / "composition.png"))
    records = wd.read_metrics(workdir)
    if records:
        loss_curves(records, out / "loss.png", title=label)
        paths.append(out / "loss.png")
    return paths
