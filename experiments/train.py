"""Train MAGANet or the VAE baseline on dSprites.

  python -m experiments.train --split=element                  # blog preset, runs/maganet-element
  python -m experiments.train --split=element --preset=quick   # a few minutes on a CPU
  python -m experiments.train --split="shape=ellipse & x>=16" --model=vae --steps=5000
  python -m experiments.train --split=range --hidden=64 --beta-lat=100   # any config field

Any config field can be overridden as --FIELD=VALUE or --SECTION.FIELD=VALUE (see
magajax/config.py). Starting again in the same workdir resumes from its latest checkpoint.
"""

from __future__ import annotations

import argparse
import re
import sys

from magajax import config as cfg


def parse(argv: list[str]) -> tuple[argparse.Namespace, cfg.Config]:
    """Flags → (namespace, Config)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--split", default=None, help="named split (element, range, extrapolation, element-blog, "
                   "range-blog, none) or an expression, e.g. 'shape=ellipse & x>=16'")
    p.add_argument("--model", default=None, choices=["maganet", "vae"])
    p.add_argument("--preset", default="blog", choices=list(cfg.PRESETS))
    p.add_argument("--workdir", default=None, help="the run's folder (default runs/<model>-<split>)")
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--data", default=None, help="auto | tfds | render | file:PATH")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--pairs", default=None, choices=["pivot", "shuffle"])
    p.add_argument("--overwrite", action="store_true", help="move a previous run with another config aside")
    p.add_argument("--distributed", action="store_true", help="call jax.distributed.initialize() (multi-host)")
    p.add_argument("--no-progress", action="store_true")
    args, rest = p.parse_known_args(argv)
    named = {"data.split": args.split, "model.kind": args.model, "train.steps": args.steps,
             "train.batch_size": args.batch_size, "data.source": args.data, "train.seed": args.seed,
             "data.pairs": args.pairs}
    try:
        config = cfg.from_flags(args.preset, rest, named)
    except ValueError as e:
        p.error(str(e))
    return args, config


def main(argv: list[str] | None = None) -> int:
    args, config = parse(sys.argv[1:] if argv is None else argv)
    if args.distributed:
        import jax

        jax.distributed.initialize()
    from magajax.training.loop import final_metrics, train

    slug = re.sub(r"[^\w.-]+", "_", config.data.split).strip("_")
    workdir = args.workdir or f"runs/{config.model.kind}-{slug}"
    try:
        train(config, workdir, overwrite=args.overwrite, progress=not args.no_progress)
    except (ValueError, FileNotFoundError, FloatingPointError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    last = final_metrics(workdir)
    print(f"done: {workdir} at step {last.get('step')}, recon {last.get('recon', float('nan')):.2f} nats/image; "
          f"loss curve in {workdir}/figures/loss.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
