"""Evaluate a trained run on its held-out images: BCE, KL and latent terms, group laws, per-factor BCE.

  python -m experiments.evaluate --workdir=runs/maganet-element
  python -m experiments.evaluate --workdir=runs/maganet-element --split=element-blog   # another held-out set
  python -m experiments.evaluate --workdir=runs/vae-range --sample --data=render

Writes eval.json into the workdir (eval-<split>.json for another split, '-sample' with --sample)
and prints a table. Numbers are nats per image, summed over the pixels.
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workdir", required=True, help="the run's folder")
    p.add_argument("--split", default=None, help="take the held-out set from this split (default: the trained one)")
    p.add_argument("--sample", action="store_true", help="sampled codes (fixed key) instead of the means")
    p.add_argument("--data", default=None, help="auto | tfds | render | file:PATH (default: the run's source)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--train-subset", type=int, default=2048, help="training images scored for the gap")
    p.add_argument("--heldout-subset", type=int, default=None, help="score only this many held-out images")
    p.add_argument("--step", type=int, default=None, help="checkpoint step (default: the latest)")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    from magajax.analysis.evaluate import evaluate, format_table

    try:
        result = evaluate(args.workdir, split=args.split, sample=args.sample, data=args.data,
                          batch_size=args.batch_size, train_subset=args.train_subset,
                          heldout_subset=args.heldout_subset, step=args.step, progress=not args.no_progress)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(format_table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
