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

import dataclasses
import sys
from pathlib import Path
from typing import Annotated, Literal

import tyro

from experiments import _cli

PROG = "python -m experiments.reproduce"


@dataclasses.dataclass(frozen=True)
class Options:
    """Flags of the reproduction."""

    budget: Annotated[Literal["quick", "full"], tyro.conf.arg(help="how long each run trains")] = "quick"
    out: Annotated[str | None, tyro.conf.arg(metavar="PATH", help="folder for the runs and results",
                                             help_behavior_hint="(default: runs/reproduce-<budget>)")] = None
    data: Annotated[str | None, _cli.SOURCE, tyro.conf.arg(help_behavior_hint="(default: auto)")] = None
    no_progress: Annotated[bool, tyro.conf.arg(help="no progress bars")] = False


def main(argv: list[str] | None = None) -> int:
    args = _cli.parse(Options, argv, PROG, __doc__)
    out = Path(args.out or f"runs/reproduce-{args.budget}")

    def body() -> int:
        from magajax.analysis.reproduce import BUDGETS, reproduce

        reproduce(BUDGETS[args.budget](), out, data=args.data, progress=not args.no_progress)
        print((out / "results.md").read_text())
        print(f"wrote {out / 'results.md'} and {out / 'results.json'}")
        return 0

    return _cli.run(body)


if __name__ == "__main__":
    sys.exit(main())
