"""Draw the figures of a trained run into its figures/ folder.

  python -m experiments.figures --workdir=runs/maganet-element
  python -m experiments.figures --workdir=runs/vae-range --data=render

recon.png, traversal.png, traversal.gif, latents.png, identity.png and composition.png (MAGANet
only) and loss.png; see magajax/analysis/figures.py. The images come from the source the run
recorded in its data.json, checked to be the same data; --data uses another.
"""

from __future__ import annotations

import dataclasses
import sys
from typing import Annotated

import tyro

from experiments import _cli

PROG = "python -m experiments.figures"


@dataclasses.dataclass(frozen=True)
class Options:
    """Flags of the figures."""

    workdir: Annotated[str, tyro.conf.arg(metavar="PATH", help="the run's folder")]
    data: Annotated[str | None, _cli.SOURCE, tyro.conf.arg(help_behavior_hint="(default: the run's own)")] = None
    out: Annotated[str | None, tyro.conf.arg(metavar="PATH", help="folder for the figures",
                                             help_behavior_hint="(default: WORKDIR/figures)")] = None
    examples: Annotated[int, tyro.conf.arg(help="images per reconstruction block")] = 6
    latent_images: Annotated[int, tyro.conf.arg(help="images embedded in latents.png")] = 2000
    seed: Annotated[int, tyro.conf.arg(help="seed for the images drawn")] = 0


def main(argv: list[str] | None = None) -> int:
    args = _cli.parse(Options, argv, PROG, __doc__)

    def body() -> int:
        from magajax.analysis.figures import draw_all

        _cli.say_runtime()

        paths = draw_all(args.workdir, data=args.data, out=args.out, examples=args.examples,
                         latent_images=args.latent_images, seed=args.seed)
        for path in paths:
            print(f"wrote {path}")
        return 0

    return _cli.run(body)


if __name__ == "__main__":
    sys.exit(main())
