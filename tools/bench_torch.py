"""Times the official MAGANet PyTorch code (github.com/GIST-IRR/CartanFM) on this CPU; prints one JSON line.

    pip install torch numpy scipy
    git clone https://github.com/GIST-IRR/CartanFM && git -C CartanFM checkout 122bf9c
    LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libtcmalloc.so.4 python tools/bench_torch.py --official=CartanFM

The model is the official main.py's default: 64×64×1 images, d 10, L 3 levels of K 3 steps,
hidden 128, additive couplings, 1×1 convs plain (--lu for LU_decomposed), Adam 1e-3 with
clip_grad_norm 1 and β_KL = β_lat = 300. On `--threads` threads (2 by default) it measures:

- train_pairs_per_s: batch / median time of one official training step at --batch (64): forward with
  the in-batch shuffled pairs and the latent term, backward, clip, Adam; after --warmup steps;
- eval_images_per_s: held-out decoding from the pivot at --eval-batch (128), as the official
  evaluation does it (eval mode, no grad): z = μ(x) − μ(pivot), sigmoid(Decoder(z, pivot repeated));
- peak_rss_mib: the process's peak resident memory (getrusage).

glibc's malloc returns and refetches the large activations of every step, which slows torch on the
CPU by a large factor: preload tcmalloc (libtcmalloc.so.4, from the libgoogle-perftools4 package) as
above when it is installed; the output's `tcmalloc` says whether it was. The images are binary shapes
drawn in NumPy, so no dSprites is needed.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import time
import types
from pathlib import Path

import numpy as np
import torch

SIZE, LATENT, BETA_KL, BETA_LAT, LR, CLIP = 64, 10, 300.0, 300.0, 1e-3, 1.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--official", required=True, help="a checkout of github.com/GIST-IRR/CartanFM at 122bf9c")
    parser.add_argument("--steps", type=int, default=10, help="timed train steps (and eval batches)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--eval-batch", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--levels", type=int, default=3)
    parser.add_argument("--flow-steps", type=int, default=3)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--lu", action="store_true", help="LU-decomposed 1×1 convs (the official --LU_decomposed)")
    args = parser.parse_args()
    if args.steps < 1 or args.warmup < 0:
        parser.error("--steps must be >= 1 and --warmup >= 0")
    sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(args.official).resolve())]
    from make_parity_fixture import shapes
    from models.maganet import MAGANet

    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    config = types.SimpleNamespace(
        latent_dim=LATENT, in_channel=1, flow_coupling="additive", hidden_channels=args.hidden,
        LU_decomposed=args.lu, K=args.flow_steps, L=args.levels, image_shape=(1, SIZE, SIZE), actnorm_scale=1.0,
        flow_permutation="invconv",
    )
    model = MAGANet(config)
    model.init_weights()
    rng = np.random.default_rng(0)
    to_torch = lambda a: torch.from_numpy(a).permute(0, 3, 1, 2).contiguous()
    train_x = to_torch(shapes(args.batch, SIZE, rng))
    eval_x, pivot = to_torch(shapes(args.eval_batch, SIZE, rng)), to_torch(shapes(1, SIZE, rng))
    loss_fn = torch.nn.BCEWithLogitsLoss(reduction="sum")
    optimizer = torch.optim.Adam(model.parameters(), lr=LR, betas=(0.9, 0.999))

    def train_step() -> None:
        model.train()
        obj = model(train_x, loss_fn)[0]["obj"]
        loss = obj["reconst"] + BETA_KL * obj["kld"] + BETA_LAT * obj["latent_recon_loss"]
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP)
        optimizer.step()
        model.zero_grad()

    def decode() -> None:
        model.eval()
        with torch.no_grad():
            z = model.encoder(eval_x)[1] - model.encoder(pivot)[1]
            torch.sigmoid(model.decoder(z, pivot.repeat(args.eval_batch, 1, 1, 1)))

    def timed(fn, n: int) -> float:
        times = []
        for _ in range(n):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return statistics.median(times)

    for _ in range(args.warmup):
        train_step()
    step_s = timed(train_step, args.steps)
    decode()
    eval_s = timed(decode, args.steps)
    print(json.dumps({
        "implementation": "official-pytorch", "torch": torch.__version__, "threads": args.threads,
        "tcmalloc": "tcmalloc" in os.environ.get("LD_PRELOAD", ""), "levels": args.levels,
        "flow_steps": args.flow_steps, "hidden": args.hidden, "lu": args.lu, "batch_size": args.batch,
        "eval_batch_size": args.eval_batch, "steps": args.steps, "step_s": step_s,
        "train_pairs_per_s": args.batch / step_s, "eval_images_per_s": args.eval_batch / eval_s,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }))


if __name__ == "__main__":
    main()
