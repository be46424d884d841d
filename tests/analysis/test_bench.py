"""The benchmark in CI size, bfloat16 compute against float32, and one trace per train step."""

import jax
import jax.numpy as jnp
import numpy as np

from magajax import config as cfg
from magajax import objective
from magajax.analysis import bench as bn
from magajax.data.splits import make_split
from magajax.models import build
from magajax.training import step as tr

FIGURES = ["train_pairs_per_s", "eval_images_per_s", "compile_s", "compile_warm_s", "train_peak_rss_mib",
           "peak_rss_mib", "flops_per_step", "gflops_per_s", "ceiling_gflops_per_s", "ceiling_fraction"]


def test_bench_reports_every_figure(tiny_config, tmp_path):
    config = cfg.override(tiny_config, {"train.steps_per_call": 2})
    result = bn.bench(config, steps=2, ceiling_size=128, train_images=64)
    for name in FIGURES:
        assert np.isfinite(result[name]) and result[name] > 0, (name, result[name])
    assert result["compile_warm_s"] < result["compile_s"], "the warm compilation must come from the cache"
    assert result["train_peak_rss_mib"] <= result["peak_rss_mib"]
    assert result["steps_per_call"] == 2
    assert "train pairs/s" in bn.table(result)
    bn.save(result, str(tmp_path / "bench.json"))
    assert (tmp_path / "bench.json").read_text().startswith("{")


def _device_data(config, data):
    split = make_split(config.data.split, data.classes, config.data.pivot)
    return tr.replicate(tr.DeviceData(images=data.images, train_rows=split.train.astype(np.int32),
                                      pivot_row=np.int32(split.pivot_row)), tr.make_mesh())


def test_bfloat16_loss_is_close_to_float32(tiny_config, small_dsprites):
    """bfloat16 compute (float32 parameters and loss) stays within 2% of the float32 loss."""
    config = cfg.override(tiny_config, {"pairs": "shuffle"})
    bf16 = cfg.override(config, {"dtype": "bfloat16"})
    data = _device_data(config, small_dsprites)
    model, tx = build(config.model), tr.create_optimizer(config.train)
    params = tr.init_state(config, model, tx, data, jax.random.PRNGKey(0)).variables
    x_pivot, x_varying, perm = tr.draw_pairs(config, data, jax.random.PRNGKey(1))
    key = jax.random.PRNGKey(2)
    loss32, _ = tr.mean_loss(model, params, x_pivot, x_varying, perm, key, config)
    loss16, _ = tr.mean_loss(build(bf16.model), params, x_pivot, x_varying, perm, key, bf16)
    assert loss16.dtype == jnp.float32
    assert jax.tree.leaves(jax.tree.map(lambda p: p.dtype, params)) == [jnp.float32] * len(jax.tree.leaves(params))
    np.testing.assert_allclose(loss16, loss32, rtol=2e-2)
    assert float(loss16) != float(loss32), "bfloat16 compute must actually change the arithmetic"


def test_train_step_is_traced_once(tiny_config, small_dsprites, monkeypatch):
    tiny_config = cfg.override(tiny_config, {"pairs": "shuffle"})
    traces = []
    terms = objective.terms
    monkeypatch.setattr(objective, "terms", lambda *a, **k: (traces.append(1), terms(*a, **k))[1])
    data = _device_data(tiny_config, small_dsprites)
    model, tx = build(tiny_config.model), tr.create_optimizer(tiny_config.train)
    mesh = tr.make_mesh()
    state = tr.init_state(tiny_config, model, tx, data, jax.random.PRNGKey(0))
    state = tr.replicate(jax.device_get(state), mesh)  # as `run.train` does: the step's output sharding
    step = tr.make_train_step(tiny_config, model, tx, mesh)
    key = jax.random.PRNGKey(1)
    for _ in range(3):
        state, metrics = step(state, key, data)
    jax.block_until_ready(metrics)
    assert int(state.step) == 3 and len(traces) == 1
