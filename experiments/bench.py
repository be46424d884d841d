"""Benchmark the train step and held-out decoding (pairs/s, images/s, GFLOP/s vs the matmul ceiling).

  python -m experiments.bench                                  # blog preset, pivot pairs, batch 64
  python -m experiments.bench --pairs=shuffle --steps=5
  python -m experiments.bench --dtype=bfloat16                 # bfloat16 compute (GPU/TPU)
  python -m experiments.bench --hidden=32 --ceiling-size=1024  # any config field

Prints a table and writes bench.json (--out). Any config field can be overridden as
--FIELD=VALUE or --SECTION.FIELD=VALUE (see magajax/config.py).
"""

from __future__ import annotations

import argparse
import sys

from magajax import config as cfg
from magajax.analysis import bench as bn


def parse(argv: list[str]) -> tuple[argparse.Namespace, cfg.Config]:
    """Flags → (namespace, Config)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="blog", choices=list(cfg.PRESETS))
    p.add_argument("--model", default=None, choices=["maganet", "vae"])
    p.add_argument("--pairs", default=None, choices=["pivot", "shuffle"])
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--dtype", default=None, choices=["float32", "bfloat16"])
    p.add_argument("--steps", type=int, default=5, help="timed train steps (after compilation)")
    p.add_argument("--ceiling-size", type=int, default=4096, help="N of the N×N float32 matmul ceiling")
    p.add_argument("--train-images", type=int, default=bn.TRAIN_IMAGES, help="rendered train images")
    p.add_argument("--out", default="bench.json")
    args, rest = p.parse_known_args(argv)
    named = {"model.kind": args.model, "data.pairs": args.pairs, "train.batch_size": args.batch_size,
             "model.dtype": args.dtype}
    try:
        config = cfg.from_flags(args.preset, rest, named)
    except ValueError as e:
        p.error(str(e))
    return args, config


def main(argv: list[str] | None = None) -> int:
    args, config = parse(sys.argv[1:] if argv is None else argv)
    result = bn.bench(config, steps=args.steps, ceiling_size=args.ceiling_size, train_images=args.train_images)
    print(bn.table(result))
    bn.save(result, args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
