"""The figure of a dSprites split: sample training and held-out images beside the pivot.

    fig = split_figure(data, make_split("element", data.classes))
    fig.savefig("runs/data-element.png", dpi=120)

Drawn with matplotlib's object API (a Figure on the Agg canvas), so no global state changes.
"""

from __future__ import annotations

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from magajax.data import factors
from magajax.data.sources import DSprites
from magajax.data.splits import Split

SAMPLES = 8


def describe(classes: np.ndarray, values: np.ndarray) -> str:
    """'shape=heart (1) scale=2 (0.7) ...': each factor's class (the shape by name) and its value."""
    parts = []
    for name, c, v in zip(factors.NAMES, classes, values):
        label = factors.SHAPE_NAMES[c] if name == "shape" else str(c)
        parts.append(f"{name}={label} ({v:.3g})")
    return " ".join(parts)


def split_figure(data: DSprites, split: Split, samples: int = SAMPLES, seed: int = 0) -> Figure:
    """Two rows of `samples` images, training above and held out below (drawn without replacement by
    `seed`, titled with their factor classes), and the pivot at the end of the first row.

    Args:
      data: the dSprites container the split was made from.
      split: its Split (rows into `data`).
      samples: images per row.
      seed: seed of the sample draw.

    Returns:
      The Figure, on an Agg canvas: save it with `fig.savefig(path)`.
    """
    rng = np.random.default_rng(seed)
    panels = [(label, rows, np.sort(rng.choice(rows, min(samples, len(rows)), replace=False)))
              for label, rows in (("train", split.train), ("held out", split.test))]
    fig = Figure(figsize=(1.3 * (samples + 1), 3.2))
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, samples + 1, squeeze=False)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_frame_on(False)
    for r, (label, rows, shown) in enumerate(panels):
        axes[r, 0].set_ylabel(f"{label}\n({len(rows):,})")
        for c, (row, image) in enumerate(zip(shown, data.unpacked(shown))):
            axes[r, c].imshow(image, cmap="gray", vmin=0, vmax=1)
            axes[r, c].set_frame_on(True)
            axes[r, c].set_title(" ".join(str(k) for k in data.classes[row]), fontsize=6)
    pivot = int(factors.classes_to_index(data.classes[split.pivot_row : split.pivot_row + 1])[0])
    axes[0, samples].imshow(data.unpacked([split.pivot_row])[0], cmap="gray", vmin=0, vmax=1)
    axes[0, samples].set_frame_on(True)
    axes[0, samples].set_title(f"pivot {pivot}", fontsize=7)
    fig.suptitle(f"dSprites split '{split.name}' (titles: classes {' '.join(factors.NAMES)}); "
                 f"source {data.source.split(':')[0]}", fontsize=8)
    fig.tight_layout()
    return fig
