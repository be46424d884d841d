"""Shows a dSprites split: its sizes, the pivot's factors, and sample images in a PNG.

    python -m experiments.data --split=element [--data=auto] [--out=runs/data-element.png]
"""

from __future__ import annotations

import dataclasses
import re
import sys
from pathlib import Path
from typing import Annotated

import tyro

from experiments import _cli
from magajax import config as cfg

PROG = "python -m experiments.data"


@dataclasses.dataclass(frozen=True)
class Options:
    """Flags of the split figure."""

    split: Annotated[str, _cli.SPLIT] = "element"
    data: Annotated[str, _cli.SOURCE] = "auto"
    pivot: Annotated[int, tyro.conf.arg(help="dSprites index of the pivot")] = cfg.DEFAULT_PIVOT
    out: Annotated[str | None, tyro.conf.arg(metavar="PATH", help="where the PNG goes",
                                             help_behavior_hint="(default: runs/data-<split>.png)")] = None
    seed: Annotated[int, tyro.conf.arg(help="seed for the sample images")] = 0


def parse(argv: list[str] | None = None) -> Options:
    """Flags -> options; the pivot is checked with the split and the source."""
    args = _cli.parse(Options, argv, PROG, __doc__)
    try:
        cfg.DataConfig(pivot=args.pivot)
    except ValueError as e:
        _cli.fail(f"--pivot: {e}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    out = Path(args.out or "runs/data-" + re.sub(r"[^\w.-]+", "_", args.split) + ".png")

    def body() -> int:
        from magajax.analysis.split_figure import describe, split_figure
        from magajax.data.sources import load_dsprites
        from magajax.data.splits import make_split

        data = load_dsprites(args.data)
        split = make_split(args.split, data.classes, pivot=args.pivot)
        print(f"split {split.name!r}: {len(split.train):,} train / {len(split.test):,} held out of {len(data):,}")
        print(f"pivot {args.pivot} (row {split.pivot_row}): "
              f"{describe(data.classes[split.pivot_row], data.values[split.pivot_row])}")
        out.parent.mkdir(parents=True, exist_ok=True)
        split_figure(data, split, seed=args.seed).savefig(out, dpi=120)
        print(f"wrote {out}")
        return 0

    return _cli.run(body)


if __name__ == "__main__":
    sys.exit(main())
