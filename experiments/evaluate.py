"""Evaluate a trained run on its held-out images: BCE, KL and latent terms, group laws, per-factor BCE.

  python -m experiments.evaluate --workdir=runs/maganet-element
  python -m experiments.evaluate --workdir=runs/maganet-element --split=element-blog   # another held-out set
  python -m experiments.evaluate --workdir=runs/vae-range --sample --data=render

Writes eval.json into the workdir (eval-<split>.json for another split, '-sample' with --sample)
and prints a table. Numbers are nats per image, summed over the pixels. The images come from the
source the run recorded in its data.json, checked to be the same data; --data uses another.
Every device takes a share of each batch.
"""

from __future__ import annotations

import dataclasses
import sys
from typing import Annotated

import tyro

from experiments import _cli

PROG = "python -m experiments.evaluate"


@dataclasses.dataclass(frozen=True)
class Options:
    """Flags of an evaluation."""

    workdir: Annotated[str, tyro.conf.arg(metavar="PATH", help="the run's folder")]
    split: Annotated[str | None, _cli.SPLIT, tyro.conf.arg(help_behavior_hint="(default: the run's own)")] = None
    sample: Annotated[bool, tyro.conf.arg(help="sampled codes (fixed key) instead of the means")] = False
    data: Annotated[str | None, _cli.SOURCE, tyro.conf.arg(help_behavior_hint="(default: the run's own)")] = None
    batch_size: Annotated[int, tyro.conf.arg(help="images per evaluation batch")] = 256
    train_subset: Annotated[int, tyro.conf.arg(help="training images scored for the gap")] = 2048
    heldout_subset: Annotated[int | None, tyro.conf.arg(metavar="INT", help="score only this many held-out images",
                                                        help_behavior_hint="(default: all)")] = None
    step: Annotated[int | None, tyro.conf.arg(metavar="INT", help="checkpoint step",
                                              help_behavior_hint="(default: the latest)")] = None
    no_progress: Annotated[bool, tyro.conf.arg(help="no progress bar")] = False


def main(argv: list[str] | None = None) -> int:
    args = _cli.parse(Options, argv, PROG, __doc__)

    def body() -> int:
        from magajax.analysis.evaluate import evaluate
        from magajax.analysis.report import format_table

        _cli.say_runtime()

        result = evaluate(args.workdir, split=args.split, sample=args.sample, data=args.data,
                          batch_size=args.batch_size, train_subset=args.train_subset,
                          heldout_subset=args.heldout_subset, step=args.step, progress=not args.no_progress)
        print(format_table(result))
        return 0

    return _cli.run(body)


if __name__ == "__main__":
    sys.exit(main())
