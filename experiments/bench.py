"""Benchmark the train step and held-out decoding (pairs/s, images/s, GFLOP/s vs the matmul ceiling).

  python -m experiments.bench                                        # blog preset, pivot pairs, batch 64
  python -m experiments.bench --pairs=shuffle --steps=5
  python -m experiments.bench --dtype=bfloat16                       # bfloat16 compute (GPU/TPU)
  python -m experiments.bench --model.hidden=32 --ceiling-size=1024  # any config field

Prints a table and writes bench.json (--out). Every config field is a flag --SECTION.FIELD;
--steps here counts the timed train steps.
"""

from __future__ import annotations

import dataclasses
import sys
from typing import Annotated

import tyro

from experiments import _cli
from magajax import config as cfg

PROG = "python -m experiments.bench"
SHORTHANDS = ("model", "pairs", "batch_size", "dtype")


@dataclasses.dataclass(frozen=True)
class Options:
    """Flags of the benchmark itself."""

    steps: Annotated[int, tyro.conf.arg(help="timed train steps (after compilation)")] = 5
    ceiling_size: Annotated[int, tyro.conf.arg(help="N of the N×N float32 matmul ceiling")] = 4096
    train_images: Annotated[int, tyro.conf.arg(help="rendered train images")] = 4096
    out: Annotated[str, tyro.conf.arg(metavar="PATH", help="where the results go")] = "bench.json"


def parse(argv: list[str] | None = None) -> tuple[Options, cfg.Config]:
    """Flags -> (options, Config)."""
    args, config = _cli.parse_run(Options, argv, PROG, __doc__, SHORTHANDS)
    for name in ("steps", "ceiling_size", "train_images"):
        if getattr(args, name) <= 0:
            _cli.fail(f"{_cli.flag(name)} must be a positive integer, got {getattr(args, name)}")
    return args, config


def main(argv: list[str] | None = None) -> int:
    args, config = parse(argv)

    def body() -> int:
        from magajax.analysis import bench as bn

        _cli.say_runtime()

        result = bn.bench(config, steps=args.steps, ceiling_size=args.ceiling_size, train_images=args.train_images)
        print(bn.table(result))
        bn.save(result, args.out)
        print(f"wrote {args.out}")
        return 0

    return _cli.run(body)


if __name__ == "__main__":
    sys.exit(main())
