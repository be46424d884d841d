"""Throughput of the train step and of held-out decoding, against this machine's matmul ceiling.

`bench(config)` measures, in one run:

- train pairs/s: batch / median time of a train step, after compilation, with the loop run
  under `jax.transfer_guard('disallow')` (pairs, keys and state live on the device, so a
  host↔device copy inside the loop is an error, not a slowdown);
- eval images/s: held-out images decoded from the pivot as evaluation does it (`objective.reconstruct`
  with mean codes), jitted, batch B;
- compile seconds of the train step, cold (an empty persistent compilation cache) and warm (the
  same compilation again, read from that cache, as a second run of the config does);
- peak host RSS (getrusage's process maximum): of training alone (read after the timed train
  steps, before anything of evaluation is compiled or run) and of the whole benchmark;
- FLOPs per train step from XLA's cost analysis and the GFLOP/s they give at the measured step
  time (with a `lax.scan`, e.g. train.steps_per_call > 1 or model.scan_steps, XLA counts a loop's
  body once, so these undercount);
- the matmul ceiling: GFLOP/s of a jitted float32 `jnp.dot` of two N×N matrices (2N³ FLOPs),
  and the ratio achieved / ceiling.

The images are a rendered subset of dSprites (the pivot, `train_images` random train images and
B held-out images of the config's split), so the benchmark starts in seconds. With
train.steps_per_call = K, each timed call runs K steps and a step's time is the call's over K.
"""

from __future__ import annotations

import json
import resource
import statistics
import tempfile
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from magajax import compile_cache, objective
from magajax.config import Config
from magajax.data import factors
from magajax.data.pairs import gather_images
from magajax.data.render import render_dsprites
from magajax.data.sources import DSprites
from magajax.data.splits import held_out_mask
from magajax.training import step as tr
from magajax.training.setup import setup

TRAIN_IMAGES = 4096


def bench_data(config: Config, train_images: int = TRAIN_IMAGES, seed: int = 0) -> DSprites:
    """The pivot, `train_images` random train images and one batch of held-out images, rendered.

    Held-out images are the config's split's test set (all of it if smaller than a batch; none
    for the split 'none', where evaluation decodes train images instead).
    """
    rng = np.random.default_rng(seed)
    classes = factors.all_classes()
    held_out = held_out_mask(config.data.split, classes)
    pick = lambda rows, n: rng.choice(rows, min(n, len(rows)), replace=False)
    index = np.unique(np.concatenate([
        [config.data.pivot],
        pick(np.flatnonzero(~held_out), train_images),
        pick(np.flatnonzero(held_out), config.train.batch_size),
    ]))
    chosen = classes[index]
    return DSprites(render_dsprites(index, packed=True), chosen.astype(np.uint8),
                    factors.classes_to_values(chosen), "render (benchmark subset)")


def matmul_ceiling(size: int = 4096, repeats: int = 3) -> float:
    """GFLOP/s of a jitted float32 (size × size) @ (size × size) product: 2·size³ / median time."""
    a = jax.random.normal(jax.random.key(0), (size, size), jnp.float32)
    dot = jax.jit(lambda x: jnp.dot(x, x))
    jax.block_until_ready(dot(a))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(dot(a))
        times.append(time.perf_counter() - start)
    return 2 * size**3 / statistics.median(times) / 1e9


def _timed(fn: Callable[[], Any], steps: int) -> list[float]:
    """Seconds of each of `steps` calls of fn, each blocked on, with no host↔device transfers."""
    times = []
    with jax.transfer_guard("disallow"):
        for _ in range(steps):
            start = time.perf_counter()
            jax.block_until_ready(fn())
            times.append(time.perf_counter() - start)
    return times


def _decoder(model: Any) -> Callable[..., jax.Array]:
    """Jitted held-out decoding as evaluation does it: images (B, H, W, 1) → the logits of their
    reconstructions from the pivot (1, H, W, 1) with mean codes (the VAE: from their own codes)."""
    return jax.jit(lambda variables, x, x_pivot: objective.reconstruct(
        model, variables, x_pivot, x, None, pairs="pivot").logits)


def bench(
    config: Config,
    *,
    steps: int = 5,
    ceiling_size: int = 4096,
    train_images: int = TRAIN_IMAGES,
) -> dict[str, Any]:
    """Measures `config`'s train step and held-out decoding; returns the figures as a dict.

    Args:
      config: the run config (model, pairs, batch size, dtype, split).
      steps: timed train calls (and eval batches), after one compiling call each.
      ceiling_size: N of the N×N matmul that measures the machine's ceiling.
      train_images: rendered train images the pairs are drawn from.

    Returns:
      train_pairs_per_s, eval_images_per_s, compile_s (cold), compile_warm_s, train_peak_rss_mib,
      peak_rss_mib, flops_per_step, gflops_per_s, ceiling_gflops_per_s, ceiling_fraction, plus what
      was measured (backend, device, model, pairs, batch_size, dtype, scan_steps, steps_per_call,
      steps, step_s).
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    run = setup(config, bench_data(config, train_images))
    mesh, split, device_data, state, step_key = run.mesh, run.split, run.device_data, run.state, run.step_key
    model = run.model

    step_fn = tr.make_train_step(config, model, run.tx, mesh)
    compile_s = []
    with tempfile.TemporaryDirectory() as folder, compile_cache.isolated(folder):
        for _ in range(2):  # cold, then warm
            jax.clear_caches()  # in-memory caches: the second compilation must come from the folder
            start = time.perf_counter()
            compiled = step_fn.lower(state, step_key, device_data).compile()
            compile_s.append(time.perf_counter() - start)
    cost = compiled.cost_analysis()
    flops = float((cost[0] if isinstance(cost, (list, tuple)) else cost)["flops"])
    state, _ = compiled(state, step_key, device_data)  # first call: allocation, warm caches

    def train_once() -> Any:
        nonlocal state
        state, metrics = compiled(state, step_key, device_data)
        return metrics["loss"]

    calls = config.train.steps_per_call
    step_s = statistics.median(_timed(train_once, steps)) / calls
    train_rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    rows = split.test if len(split.test) else split.train
    rows = np.resize(rows, config.train.batch_size).astype(np.int32)
    x = gather_images(device_data.images, tr.replicate(rows, mesh), config.model.image_size)
    x_pivot = gather_images(device_data.images, tr.replicate(np.int32([split.pivot_row]), mesh),
                            config.model.image_size)
    decode = _decoder(model)
    jax.block_until_ready(decode(state.variables, x, x_pivot))
    eval_s = statistics.median(_timed(lambda: decode(state.variables, x, x_pivot), steps))

    ceiling = matmul_ceiling(ceiling_size)
    gflops = flops / step_s / 1e9
    return {
        "backend": jax.default_backend(),
        "device": str(jax.devices()[0].device_kind),
        "devices": mesh.size,
        "model": config.model.kind,
        "pairs": config.data.pairs,
        "batch_size": config.train.batch_size,
        "dtype": config.model.dtype,
        "scan_steps": config.model.scan_steps,
        "steps_per_call": calls,
        "steps": steps,
        "step_s": step_s,
        "train_pairs_per_s": config.train.batch_size / step_s,
        "eval_images_per_s": config.train.batch_size / eval_s,
        "compile_s": compile_s[0],
        "compile_warm_s": compile_s[1],
        "train_peak_rss_mib": train_rss_mib,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "flops_per_step": flops,
        "gflops_per_s": gflops,
        "ceiling_size": ceiling_size,
        "ceiling_gflops_per_s": ceiling,
        "ceiling_fraction": gflops / ceiling,
    }


def table(result: dict[str, Any]) -> str:
    """The figures of `bench` as an aligned two-column table."""
    rows = [
        ("backend", f"{result['backend']} ({result['device']}, {result['devices']} device(s))"),
        ("model / pairs / batch / dtype",
         f"{result['model']} / {result['pairs']} / {result['batch_size']} / {result['dtype']}"),
        ("flow steps scanned / train steps per call", f"{result['scan_steps']} / {result['steps_per_call']}"),
        ("train pairs/s", f"{result['train_pairs_per_s']:.1f}  (median of {result['steps']} calls, "
                          f"{result['step_s']:.3f} s/step)"),
        ("eval images/s (held-out, from the pivot)", f"{result['eval_images_per_s']:.1f}"),
        ("compile s (train step), cold / warm cache", f"{result['compile_s']:.1f} / {result['compile_warm_s']:.1f}"),
        ("peak host RSS MiB, training / whole bench", f"{result['train_peak_rss_mib']:.0f} / "
                                                      f"{result['peak_rss_mib']:.0f}"),
        ("GFLOP per train step (XLA)", f"{result['flops_per_step'] / 1e9:.2f}"),
        ("achieved GFLOP/s", f"{result['gflops_per_s']:.1f}"),
        (f"matmul ceiling GFLOP/s ({result['ceiling_size']}³ float32)", f"{result['ceiling_gflops_per_s']:.1f}"),
        ("achieved / ceiling", f"{result['ceiling_fraction']:.2f}"),
    ]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def save(result: dict[str, Any], path: str) -> None:
    """Writes `result` as JSON."""
    with open(path, "w") as f:
        json.dump(result, f, indent=2, sort_keys=True)
        f.write("\n")
