"""Data parallel: the step sharded over 8 (simulated CPU) devices equals the single-device step.

Runs in a subprocess because XLA_FLAGS must be set before jax is imported. Each step blocks
on its loss (an unblocked all-reduce of 8 simulated devices on 2 CPU cores can hang), under a timeout.
"""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

SCRIPT = textwrap.dedent(
    """
    import jax, numpy as np, optax
    from magajax import config as cfg
    from magajax.models import build
    from magajax.training import step as tr
    from magajax.config import DEFAULT_PIVOT
    from magajax.data import factors
    from magajax.data.render import render_dsprites
    from magajax.data.sources import DSprites
    from magajax.data.splits import make_split

    assert jax.device_count() == 8, jax.devices()
    index = np.unique(np.concatenate([[DEFAULT_PIVOT], np.arange(0, 737280, 997)]))
    classes = factors.index_to_classes(index)
    data = DSprites(render_dsprites(index, packed=True), classes.astype(np.uint8),
                    factors.classes_to_values(classes), "test")
    config = cfg.override(cfg.preset("quick"), {"image_size": 16, "levels": 1, "model.steps": 1, "hidden": 8,
                                                "batch_size": 16, "pairs": "shuffle", "split": "element"})
    split = make_split(config.data.split, data.classes, config.data.pivot)
    model, tx = build(config.model), tr.create_optimizer(config.train)
    host_data = tr.DeviceData(images=data.images, train_rows=split.train.astype(np.int32),
                              pivot_row=np.int32(split.pivot_row))

    def run(devices):
        mesh = tr.make_mesh(devices)
        device_data = tr.replicate(host_data, mesh)
        state = tr.init_state(config, model, tx, device_data, jax.random.PRNGKey(0))
        state = tr.replicate(jax.device_get(state), mesh)
        step = tr.make_train_step(config, model, tx, mesh)
        key = tr.replicate(jax.random.PRNGKey(1), mesh)
        history, after_one = [], None
        for _ in range(3):
            state, metrics = step(state, key, device_data)
            history.append({k: float(v) for k, v in metrics.items()})  # blocks on every step
            after_one = after_one or jax.device_get(state)
        devices_used = len(jax.tree.leaves(state.variables)[0].sharding.device_set)
        return after_one, history, devices_used

    sharded, history_8, n_8 = run(jax.devices())
    single, history_1, n_1 = run(jax.devices()[:1])
    assert (n_8, n_1) == (8, 1), (n_8, n_1)
    for h8, h1 in zip(history_8, history_1):  # losses, gradient and parameter norms of 3 steps
        for name in h1:
            np.testing.assert_allclose(h8[name], h1[name], rtol=1e-5, err_msg=name)

    def worst(a, b):
        # largest difference, relative to the largest entry of b
        gap = max(jax.tree.leaves(jax.tree.map(lambda x, y: float(np.abs(x - y).max()), a, b)))
        return gap / max(jax.tree.leaves(jax.tree.map(lambda y: float(np.abs(y).max()), b)))

    # Adam's first moment after one step is 0.1 * gradient: the gradients must agree.
    grads = worst(*(optax.tree_utils.tree_get(s.opt_state, 'mu') for s in (sharded, single)))
    assert grads < 1e-4, f"sharded and single-device gradients differ by {grads:.2e} (relative)"
    # Adam moves each coordinate by ~lr * g / |g|: where g is zero up to rounding (e.g. the mean
    # half of the encoder's output bias cancels in z = mu_v - mu_p) the sign of the rounding
    # decides, so parameters agree to within 2 * lr there and to float precision elsewhere.
    diffs = jax.tree.map(lambda x, y: float(np.abs(x - y).max()), sharded.variables, single.variables)
    gap = max(jax.tree.leaves(diffs))
    assert gap <= 2 * config.train.lr, f"parameters differ by {gap:.2e} after one step"
    try:
        tr.check_batch(12, tr.make_mesh())
    except ValueError as e:
        assert "not divisible by the 8 devices" in str(e), e
    else:
        raise AssertionError("batch 12 on 8 devices must be refused")
    print(f"OK worst relative difference {grads:.2e}")
    """
)


def test_sharded_step_equals_single_device_step():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu")
    root = Path(__file__).resolve().parents[2]  # the repository root: its magajax is imported
    proc = subprocess.run([sys.executable, "-c", SCRIPT], cwd=root, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert "OK worst relative difference" in proc.stdout
