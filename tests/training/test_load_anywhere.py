"""A checkpoint restores on any number of devices: saved on 8, loaded on 1; saved on 1, restored onto 4.

The other device counts run in a subprocess because XLA_FLAGS must be set before jax is imported.
"""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import numpy as np
import optax
import pytest

from magajax import api
from magajax import config as cfg
from magajax.training import workdir as wd
from magajax.training.checkpoint import Checkpoints, load
from magajax.training.step import TrainState
from tests.helpers import binary_images

ROOT = Path(__file__).resolve().parents[2]


def host_state(step: int) -> TrainState:
    """A small TrainState of NumPy arrays, the same in every process."""
    rng = np.random.default_rng(step)
    params = {"dense": {"kernel": rng.standard_normal((4, 3)).astype(np.float32),
                        "bias": rng.standard_normal(3).astype(np.float32)}}
    opt_state = jax.device_get(optax.adam(1e-3).init(params))
    return TrainState(step=np.int32(step), variables=params, opt_state=opt_state)


def _run(devices: int, script: str, *args: str) -> None:
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}", JAX_PLATFORMS="cpu")
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(script), *args], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]


def _equal(a, b) -> bool:
    return all(jax.tree.leaves(jax.tree.map(lambda x, y: bool(np.array_equal(x, y)), a, b)))


@pytest.mark.slow
def test_saved_on_8_devices_loads_and_restores_on_1(tmp_path):
    _run(8, """
        import sys, jax
        from magajax import config as cfg
        from magajax.training import step as tr, workdir as wd
        from magajax.training.checkpoint import Checkpoints
        from tests.training.test_load_anywhere import host_state

        assert jax.device_count() == 8, jax.devices()
        wd.prepare(sys.argv[1], cfg.preset("quick"))
        ckpt = Checkpoints(sys.argv[1])
        ckpt.save(5, tr.replicate(host_state(5), tr.make_mesh()))
        ckpt.close()
        """, str(tmp_path))
    assert jax.device_count() == 1
    config, variables, step = load(tmp_path)
    assert config == cfg.preset("quick") and step == 5 and _equal(variables, host_state(5).variables)
    state, step = Checkpoints(tmp_path).restore(jax.device_put(host_state(0)))
    assert step == 5 and _equal(state, host_state(5))
    assert {d for x in jax.tree.leaves(state) for d in x.sharding.device_set} == {jax.devices()[0]}


@pytest.mark.slow
def test_saved_on_1_device_restores_onto_4_replicated(tmp_path):
    wd.prepare(tmp_path, cfg.preset("quick"))
    ckpt = Checkpoints(tmp_path)
    ckpt.save(3, jax.device_put(host_state(3)))
    ckpt.close()
    _run(4, """
        import sys, jax, numpy as np
        from magajax.training import step as tr
        from magajax.training.checkpoint import Checkpoints, load
        from tests.training.test_load_anywhere import host_state

        assert jax.device_count() == 4, jax.devices()
        target = tr.replicate(host_state(0), tr.make_mesh())
        state, step = Checkpoints(sys.argv[1]).restore(target)
        assert step == 3
        for got, want in zip(jax.tree.leaves(state), jax.tree.leaves(host_state(3)), strict=True):
            assert len(got.sharding.device_set) == 4 and got.sharding.is_fully_replicated, got.sharding
            np.testing.assert_array_equal(np.asarray(got), want)
        _, variables, step = load(sys.argv[1])
        for got, want in zip(jax.tree.leaves(variables), jax.tree.leaves(host_state(3).variables), strict=True):
            assert got.sharding.device_set == {jax.devices()[0]}, got.sharding
            np.testing.assert_array_equal(np.asarray(got), want)
        """, str(tmp_path))


TRAIN_AND_DECODE = """
    import sys, jax, numpy as np
    import magajax
    from magajax import config as cfg
    from magajax.config import DEFAULT_PIVOT
    from magajax.data import factors
    from magajax.data.render import render_dsprites
    from magajax.data.sources import DSprites
    from magajax.training import loop
    from tests import helpers

    workdir, steps, devices = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    assert jax.device_count() == devices, jax.devices()
    rng = np.random.default_rng(0)
    index = np.unique(np.concatenate([[DEFAULT_PIVOT], rng.choice(factors.NUM_IMAGES, 300, replace=False)]))
    classes = factors.index_to_classes(index)
    data = DSprites(images=render_dsprites(index, packed=True), classes=classes.astype(np.uint8),
                    values=factors.classes_to_values(classes), source="render (test subset)")
    loop.train(cfg.override(helpers.tiny_config(), {"train.steps": steps}), workdir, data=data, progress=False)
    model = magajax.load(workdir)
    z = np.random.default_rng(1).standard_normal((5, 10)).astype(np.float32)
    np.save(f"{workdir}/decodes-{devices}.npy", model.decode(z, helpers.binary_images(2, 1, 16)))
    """


@pytest.mark.slow
def test_a_model_trained_on_8_devices_resumes_on_4_and_decodes_the_same_on_1(tmp_path):
    """Trained 4 steps on 8 devices, resumed to step 6 on 4: each run's decodes, made on its own
    devices, equal those of the same checkpoint loaded here on 1 device."""
    _run(8, TRAIN_AND_DECODE, str(tmp_path), "4", "8")
    _run(4, TRAIN_AND_DECODE, str(tmp_path), "6", "4")
    assert [r["step"] for r in wd.read_metrics(tmp_path)] == [2, 4, 6]
    z = np.random.default_rng(1).standard_normal((5, 10)).astype(np.float32)
    for step, devices in ((4, 8), (6, 4)):
        model = api.load(tmp_path, step=step)
        np.testing.assert_array_equal(model.decode(z, binary_images(2, 1, 16)),
                                      np.load(tmp_path / f"decodes-{devices}.npy"))
