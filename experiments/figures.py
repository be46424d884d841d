"""Draw the figures of a trained run into its figures/ folder.

  python -m experiments.figures --workdir=runs/maganet-element
  python -m experiments.figures --workdir=runs/vae-range --data=render

recon.png, traversal.png, traversal.gif, latents.png, identity.png and composition.png (MAGANet
only) and loss.png; see magajax/figures.py.
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workdir", required=True, help="the run's folder")
    p.add_argument("--data", default=None, help="auto | tfds | render | file:PATH (default: the run's source)")
    p.add_argument("--out", default=None, help="folder for the figures (default: WORKDIR/figures)")
    p.add_argument("--examples", type=int, default=6, help="images per reconstruction block")
    p.add_argument("--latent-images", type=int, default=2000, help="images embedded in latents.png")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    from magajax.analysis.figures import draw_all

    try:
        paths = draw_all(args.workdir, data=args.data, out=args.out, examples=args.examples,
                         latent_images=args.latent_images, seed=args.seed)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for path in paths:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
