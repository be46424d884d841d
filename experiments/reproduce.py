"""Reproduce the blog's table: held-out BCE of the VAE and MAGANet on the element and range splits.

  python -m experiments.reproduce --budget=quick              # CPU, rendered dSprites, ~25–30 min on 2 cores
  python -m experiments.reproduce --budget=full --data=tfds   # GPU/TPU, real dSprites, 100 epochs per run

Trains MAGANet and the VAE on element, range, element-blog and range-blog (workdirs under
--out, default runs/reproduce-<budget>), evaluates each run with magajax.evaluate and writes
OUT/results.md (the table, beside the blog's numbers) and OUT/results.json. Rerunning skips
finished runs and evaluations and resumes unfinished ones from their checkpoints.

Columns: to-Element and to-Range are the held-out BCE (nats per image, summed over 4,096 pixels)
of the runs on element and range; to-Diff compares the decodes of the element-blog and the
range-blog runs on the images both hold out (element-blog ⊂ range-blog; element and range hold
out disjoint images, ellipses against squares), see magajax.evaluate.to_diff.

Budgets:
- quick: the 'quick' preset architecture (Glow 3 levels × 1 step, hidden 32) and the VAE, 400
  steps at batch 32 per run; 2,048 held-out (fixed seed) and 1,024 training images scored per run.
  Measured on this 2-core CPU while shared: MAGANet ~0.3 s per step at batch 32, the VAE ~0.8 s
  per step at batch 64; with start-up and evaluation about 3–4 min per run, 25–30 min in all.
- full: the blog preset (faithful Glow, β_KL 2, β_lat 300, Adam 5e-4, batch 64), 100 epochs of
  each split's training set (≈ 1.1M steps on element), every held-out image scored: a GPU or TPU
  budget on real dSprites (--data=tfds or file:PATH).
The VAE is trained with β = 1 (a plain VAE) in both budgets.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from magajax.analysis.reproduce import BUDGETS, reproduce


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--budget", default="quick", choices=list(BUDGETS))
    p.add_argument("--out", default=None, help="folder for the runs and results (default runs/reproduce-<budget>)")
    p.add_argument("--data", default=None, help="auto | tfds | render | file:PATH (default: auto)")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    out = Path(args.out or f"runs/reproduce-{args.budget}")
    try:
        reproduce(BUDGETS[args.budget](), out, data=args.data, progress=not args.no_progress)
    except (ValueError, FileNotFoundError, FloatingPointError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print((out / "results.md").read_text())
    print(f"wrote {out / 'results.md'} and {out / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
