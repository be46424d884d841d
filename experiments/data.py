"""Shows a dSprites split: its sizes, the pivot's factors, and sample images in a PNG.

    python -m experiments.data --split=element [--data=auto] [--out=runs/data-element.png]
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from magajax.config import DEFAULT_PIVOT
from magajax.data import factors
from magajax.data.sources import load_dsprites
from magajax.data.splits import make_split

SAMPLES = 8


def describe(classes: np.ndarray, values: np.ndarray) -> str:
    """'shape=heart (3) scale=2 (0.7) ...': each factor's class name or index and its value."""
    parts = []
    for name, c, v in zip(factors.NAMES, classes, values):
        label = factors.SHAPE_NAMES[c] if name == "shape" else str(c)
        parts.append(f"{name}={label} ({v:.3g})")
    return " ".join(parts)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--split", default="element", help="a named split or a split expression")
    parser.add_argument("--data", default="auto", help="auto | tfds | render | file:PATH")
    parser.add_argument("--pivot", type=int, default=DEFAULT_PIVOT, help="dSprites index of the pivot")
    parser.add_argument("--out", default=None, help="PNG path (default runs/data-<split>.png)")
    parser.add_argument("--seed", type=int, default=0, help="seed for the sample images")
    args = parser.parse_args(argv)

    data = load_dsprites(args.data)
    split = make_split(args.split, data.classes, pivot=args.pivot)
    print(f"split {split.name!r}: {len(split.train):,} train / {len(split.test):,} held out of {len(data):,}")
    print(f"pivot {args.pivot} (row {split.pivot_row}): "
          f"{describe(data.classes[split.pivot_row], data.values[split.pivot_row])}")

    rng = np.random.default_rng(args.seed)
    panels = [("train", np.sort(rng.choice(split.train, min(SAMPLES, len(split.train)), replace=False))),
              ("held out", np.sort(rng.choice(split.test, min(SAMPLES, len(split.test)), replace=False)))]
    fig, axes = plt.subplots(2, SAMPLES + 1, figsize=(1.3 * (SAMPLES + 1), 3.2), squeeze=False)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_frame_on(False)
    for r, (label, rows) in enumerate(panels):
        axes[r, 0].set_ylabel(f"{label}\n({len(split.train if r == 0 else split.test):,})")
        for c, (row, image) in enumerate(zip(rows, data.unpacked(rows))):
            axes[r, c].imshow(image, cmap="gray", vmin=0, vmax=1)
            axes[r, c].set_frame_on(True)
            axes[r, c].set_title(" ".join(str(k) for k in data.classes[row]), fontsize=6)
    axes[0, SAMPLES].imshow(data.unpacked([split.pivot_row])[0], cmap="gray", vmin=0, vmax=1)
    axes[0, SAMPLES].set_frame_on(True)
    axes[0, SAMPLES].set_title(f"pivot {args.pivot}", fontsize=7)
    fig.suptitle(f"dSprites split '{split.name}' (titles: classes {' '.join(factors.NAMES)}); "
                 f"source {data.source.split(':')[0]}", fontsize=8)
    fig.tight_layout()
    out = Path(args.out or "runs/data-" + re.sub(r"[^\w.-]+", "_", args.split) + ".png")
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
