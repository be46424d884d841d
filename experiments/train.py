"""Train MAGANet or the VAE baseline on dSprites.

  python -m experiments.train --split=element                  # blog preset, runs/maganet-element
  python -m experiments.train --split=element --preset=quick   # a few minutes on a CPU
  python -m experiments.train --split="shape=ellipse & x>=16" --model=vae --steps=5000
  python -m experiments.train --split=range --model.hidden=64 --train.beta-lat=100   # any config field
  python -m experiments.train --config=runs/maganet-element --train.steps=200000   # start from a run's config
  python -m experiments.train --distributed                    # on every host of a TPU pod or SLURM job
  python -m experiments.train --distributed --coordinator-address=10.0.0.1:1234 --num-processes=2 --process-id=0

Every config field is a flag --SECTION.FIELD; --help lists them with the preset's defaults.
Starting again in the same workdir resumes from its latest checkpoint.
"""

from __future__ import annotations

import dataclasses
import re
import sys
from typing import Annotated

import tyro
from etils import epath

from experiments import _cli
from magajax import config as cfg

PROG = "python -m experiments.train"
SHORTHANDS = ("split", "model", "steps", "batch_size", "data", "seed", "pairs")


@dataclasses.dataclass(frozen=True)
class Options:
    """Flags of the training run itself (the config fields come from magajax.config)."""

    workdir: Annotated[str | None, tyro.conf.arg(metavar="PATH", help="the run's folder",
                                                 help_behavior_hint="(default: runs/<model>-<split>)")] = None
    overwrite: Annotated[bool, tyro.conf.arg(
        help="start afresh: move a previous run (any config) to WORKDIR/previous-<time>/")] = False
    distributed: Annotated[bool, tyro.conf.arg(
        help="multi-host: call jax.distributed.initialize() (alone: JAX detects the cluster, e.g. a TPU pod)")] = False
    coordinator_address: Annotated[str | None, tyro.conf.arg(
        metavar="HOST:PORT", help="with --distributed: process 0's machine and a free port",
        help_behavior_hint="")] = None
    num_processes: Annotated[int | None, tyro.conf.arg(
        metavar="N", help="with --distributed: how many processes (usually one per machine)",
        help_behavior_hint="")] = None
    process_id: Annotated[int | None, tyro.conf.arg(
        metavar="I", help="with --distributed: this process's number, 0 .. N-1 (0 writes the workdir)",
        help_behavior_hint="")] = None
    no_progress: Annotated[bool, tyro.conf.arg(help="no progress bar")] = False
    tensorboard: Annotated[bool, tyro.conf.arg(help="also write TensorBoard event files into the workdir")] = False


def parse(argv: list[str] | None = None) -> tuple[Options, cfg.Config]:
    """Flags -> (options, Config)."""
    return _cli.parse_run(Options, argv, PROG, __doc__, SHORTHANDS)


def default_workdir(config: cfg.Config) -> str:
    """runs/<model>-<split>, the split made safe for a folder name."""
    slug = re.sub(r"[^\w.-]+", "_", config.data.split).strip("_")
    return f"runs/{config.model.kind}-{slug}"


def main(argv: list[str] | None = None) -> int:
    args, config = parse(argv)
    workdir = args.workdir or default_workdir(config)
    cluster = _cli.distributed_arguments(args.distributed, args.coordinator_address, args.num_processes,
                                         args.process_id)

    def body() -> int:
        import jax

        if cluster is not None:
            jax.distributed.initialize(**cluster)
        from magajax.training import hosts
        from magajax.training.loop import final_metrics, train

        _cli.say_runtime()

        train(config, workdir, overwrite=args.overwrite, progress=not args.no_progress,
              tensorboard=args.tensorboard)
        if not hosts.is_lead():
            return 0
        last = final_metrics(workdir)
        parts = [f"done: {workdir} at step {last.get('step', 0)}"]
        if "recon" in last:
            parts.append(f"recon {last['recon']:.2f} nats/image")
        loss = epath.Path(workdir) / "figures" / "loss.png"
        if loss.is_file():
            parts.append(f"loss curve in {loss}")
        print(", ".join(parts))
        return 0

    return _cli.run(body)


if __name__ == "__main__":
    sys.exit(main())
