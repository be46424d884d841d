"""Evaluation on 8 devices gives the numbers of 1 device: batches sharded, padding masked, and the
same sampled codes (jax's partitionable random bits do not depend on the sharding).

The 8 devices run in a subprocess because XLA_FLAGS must be set before jax is imported. The
per-image terms are the same computation on either; only XLA's choice of kernels for a
different per-device batch (12 images on 1 device, 2 on each of 8, the batch rounded up to 16)
may reorder float32 sums, so the means must agree to a relative 1e-5 (float32's epsilon is
1.2e-7; a term sums 256 pixels through a flow); on the CPU they come out identical. The group-law
errors are themselves float32 rounding (~1e-6), so they must agree to an absolute 1e-5.
"""

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import numpy as np
import pytest

from magajax.analysis import evaluate as ev

ROOT = Path(__file__).resolve().parents[2]
KW = dict(batch_size=12, train_subset=40, progress=False, write=False)
SAMPLED = dict(KW, batch_size=16, sample=True)  # the same batches on 1 and 8 devices, so the same keys

SCRIPT = """
    import json, sys
    import jax
    from magajax.analysis import evaluate as ev

    assert jax.device_count() == 8, jax.devices()
    placed = []
    terms = ev.pivot_terms

    def spy(variables, x_pivot, x, key, **kw):
        placed.append((x.shape[0], len(x.sharding.device_set), x.sharding.is_fully_replicated))
        return terms(variables, x_pivot, x, key, **kw)

    ev.pivot_terms = spy
    means = ev.evaluate(sys.argv[1], data=sys.argv[2], **json.loads(sys.argv[3]))
    shapes = sorted(set(placed))  # of the batches of the means' evaluation
    sampled = ev.evaluate(sys.argv[1], data=sys.argv[2], **json.loads(sys.argv[4]))
    print(json.dumps({"means": means, "sampled": sampled, "placed": shapes}))
    """


@pytest.mark.slow
def test_eight_devices_give_the_numbers_of_one(tiny_runs, small_dsprites, tmp_path):
    assert jax.device_count() == 1
    workdir = tmp_path / "run"
    shutil.copytree(tiny_runs["maganet"], workdir)
    classes = np.concatenate([np.zeros((len(small_dsprites), 1), np.uint8), small_dsprites.classes], 1)
    values = np.concatenate([np.ones((len(small_dsprites), 1), np.float32), small_dsprites.values], 1)
    path = tmp_path / "dsprites.npz"
    np.savez(path, imgs=small_dsprites.unpacked(slice(None)), latents_classes=classes, latents_values=values)

    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu")
    argv = [sys.executable, "-c", textwrap.dedent(SCRIPT), str(workdir), f"file:{path}", json.dumps(KW),
            json.dumps(SAMPLED)]
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    eight, one = out["means"], ev.evaluate(workdir, data=f"file:{path}", **KW)

    assert out["placed"] == [[16, 8, False]], "each batch of 12 is padded to 16 and split over the 8 devices"
    for part in ("heldout", "train"):
        assert eight[part]["count"] == one[part]["count"] > 12, "needs a padded last batch"
        for name, value in one[part].items():
            np.testing.assert_allclose(eight[part][name], value, rtol=1e-5, err_msg=f"{part} {name}")
    for law in ("identity", "inverse", "composition"):
        for stat in ("max", "mean"):
            np.testing.assert_allclose(eight["group_laws"][law][stat], one["group_laws"][law][stat], atol=1e-5)
    for factor, cells in one["by_factor"].items():
        assert [c["count"] for c in eight["by_factor"][factor]] == [c["count"] for c in cells]
        np.testing.assert_allclose([c["bce"] for c in eight["by_factor"][factor]], [c["bce"] for c in cells],
                                   rtol=1e-5, err_msg=factor)
    sampled = ev.evaluate(workdir, data=f"file:{path}", **SAMPLED)
    assert sampled["heldout"]["bce_mean"] != one["heldout"]["bce_mean"], "sampled codes differ from the means"
    for part in ("heldout", "train"):
        for name, value in sampled[part].items():
            np.testing.assert_allclose(out["sampled"][part][name], value, rtol=1e-5, err_msg=f"sampled {part} {name}")
