"""Reproduce the blog's table the blog's way: to-Element, to-Range and to-Diff on one test set, over seeds.

  python -m experiments.reproduce --budget=quick              # CPU, rendered dSprites, under 30 min on 2 cores
  python -m experiments.reproduce --budget=full --data=tfds   # GPU/TPU, real dSprites, 100 epochs per run

Trains the blog's VAE and MAGANet on element-blog and range-blog with 3 seeds each, and on Montero
et al.'s element and range splits (workdirs OUT/<kind>-<split>-seed<k>, OUT default
runs/reproduce-<budget>). On the element-blog held-out images (which range-blog holds out too):
to-Element is the element-blog run's BCE, to-Range the range-blog run's, to-Diff the BCE of the
range-blog run's decode against the element-blog run's decode; codes sampled with a fixed key, and
the posterior-mean figures beside them. Each cell is the mean ± the 95% Student-t half-width over
seeds. Writes OUT/results.md (the table beside the blog's numbers) and OUT/results.json; rerunning
skips finished runs and scores and resumes unfinished runs from their checkpoints.

Budgets (magajax.analysis.reproduce.quick and .full):
- quick: the 'quick' MAGANet (Glow 3 levels × 1 step, hidden 32, the blog's latent term) for 100
  steps and the blog's VAE (β 2) for 40 steps, at batch 32, 3 seeds of every cell,
  512 held-out images scored per column (fixed seed): a check of the whole pipeline, not of the
  blog's numbers.
- full: the blog preset (faithful Glow, β_KL 2, β_lat 300, the blog's latent term, Adam 5e-4, batch 64;
  the blog's VAE, β 2), 100 epochs of each split's training set, 3 seeds everywhere, every held-out
  image: a GPU or TPU budget on real dSprites (--data=tfds or file:PATH).
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
