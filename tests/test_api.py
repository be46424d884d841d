"""The public API: Model, load, and module-level encode / decode / act."""

import re

import jax
import jax.monitoring
import jax.numpy as jnp
import numpy as np
import pytest

from magajax import api
from magajax.config import Config, ModelConfig
from magajax.models.vae import VAE
from tests.helpers import binary_images, key, random_params, tiny_maganet


@pytest.fixture(autouse=True)
def no_current_model(monkeypatch):
    monkeypatch.setattr(api, "_current", None)


@pytest.fixture(scope="module")
def model() -> api.Model:
    config, variables = tiny_maganet()
    return api.Model(Config(model=config), variables)


@pytest.fixture(scope="module")
def vae() -> api.Model:
    config = ModelConfig(kind="vae", image_size=16)
    params = random_params(VAE(config).init, key(0), np.zeros((1, 16, 16, 1), np.float32), key(1))
    return api.Model(Config(model=config), params["params"])


def codes(batch: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((batch, 10)).astype(np.float32)


def test_methods_agree(model):
    """decode = sigmoid(decode_logits) = sigmoid(act(z, embed(x_pivot))); encode(x, x) = 0."""
    x_v, x_p, z = binary_images(1, 5, 16), binary_images(2, 1, 16), codes(5)
    logits = model.decode_logits(z, x_p)
    images = model.decode(z, x_p)
    assert images.shape == (5, 16, 16, 1) and np.all((images >= 0) & (images <= 1))
    np.testing.assert_allclose(images, jax.nn.sigmoid(logits), atol=1e-6)
    np.testing.assert_allclose(model.act(z, model.embed(x_p)), logits, rtol=1e-5, atol=1e-5)
    assert float(np.max(np.abs(logits - model.embed(x_p)))) > 1.0, "a random code moves the pivot"
    assert np.all(model.encode(x_p, x_p) == 0.0)
    z_mean = model.encode(x_v, x_p)
    assert z_mean.shape == (5, 10) and np.all(np.isfinite(z_mean))
    sampled = model.encode(x_v, x_p, sample_key=key(3))
    assert sampled.shape == (5, 10) and not np.allclose(sampled, z_mean)


def forms(x: np.ndarray) -> list:
    """One binary image (1, H, W, 1) in every accepted shape and dtype."""
    image = x[0, ..., 0]
    return [
        image > 0.5, x[0].astype(np.uint8) * 255, x[..., 0].astype(np.float64), x, jnp.asarray(x),
        image.astype(int).tolist(),
    ]


def test_every_input_form(model):
    x_v, x_p, z = binary_images(1, 5, 16), binary_images(2, 1, 16), codes(5)
    z_ref, images_ref = model.encode(x_v, x_p), model.decode(z, x_p)
    u = np.asarray(model.embed(x_p))
    acted_ref = model.act(z, u)
    for pivot in forms(x_p):
        np.testing.assert_array_equal(model.encode(x_v, pivot), z_ref)
        np.testing.assert_array_equal(api.decode(z, pivot, model=model), images_ref)
    for form in (u[0, ..., 0], u[0], u[..., 0], jnp.asarray(u)):
        np.testing.assert_array_equal(api.act(z, form, model=model), acted_ref)
    varying = [x_v[..., 0].astype(bool), x_v.astype(np.uint8), jnp.asarray(x_v)]
    for form in varying:
        np.testing.assert_array_equal(api.encode(form, x_p, model=model), z_ref)
    # a code of shape (d,) is one code; batches of 1 and 5 rows both run padded to api.MIN_ROWS rows,
    # so the same compiled function computes row 1 in both calls and the results are bit-identical
    one = model.decode(z[1], x_p)
    np.testing.assert_array_equal(one[0], images_ref[1])
    many_pivots = model.decode(z, np.repeat(x_p, 5, axis=0))
    np.testing.assert_allclose(many_pivots, images_ref, rtol=1e-5, atol=1e-5)


PIVOT = np.zeros((16, 16))
BAD_CALLS = {  # the call → the message it must raise
    "wrong size": (
        lambda m: m.encode(np.zeros((8, 8)), PIVOT),
        "x_varying: expected shape (H, W), (H, W, 1), (B, H, W) or (B, H, W, 1) with H = W = 16, got shape (8, 8)",
    ),
    "uint8 values": (
        lambda m: m.encode(PIVOT, np.full((16, 16), 7, np.uint8)),
        "x_pivot: expected integer images with values in {0, 1} or {0, 255}, got values 7",
    ),
    "no pivot": (
        lambda m: m.encode(PIVOT, None),
        "encode: MAGANet needs x_pivot, the image the action starts from, got None",
    ),
    "encode batches": (
        lambda m: m.encode(np.zeros((3, 16, 16)), np.zeros((2, 16, 16))),
        "batch sizes do not match: x_varying has 3, x_pivot has 2",
    ),
    "out of range": (
        lambda m: m.encode(np.full((16, 16), 2.0), PIVOT),
        "x_varying: expected float images in [0, 1], got values in [2, 2]",
    ),
    "wrong d": (
        lambda m: m.decode(np.zeros(3), PIVOT),
        "z: expected shape (10,) or (B, 10) with B >= 1, got shape (3,)",
    ),
    "inf code": (lambda m: m.decode(np.full(10, np.inf), PIVOT), "z: expected finite values, got 10 NaN/Inf entries"),
    "decode batches": (
        lambda m: m.decode(np.zeros((3, 10)), np.zeros((2, 16, 16))),
        "batch sizes do not match: z has 3, x_pivot has 2",
    ),
    "rgb pivot": (lambda m: m.decode(np.zeros(10), np.zeros((16, 16, 3))), "x_pivot: expected shape"),
    "nan logits": (
        lambda m: m.act(np.zeros(10), np.full((16, 16), np.nan)),
        "u: expected finite values, got 256 NaN/Inf entries",
    ),
    "act batches": (
        lambda m: m.act(np.zeros((2, 10)), np.zeros((3, 16, 16))),
        "batch sizes do not match: z has 2, u has 3",
    ),
    "strings": (
        lambda m: m.act(["a"] * 10, PIVOT),
        "z: expected a numeric array (bool, int or float), got dtype <U1",
    ),
}


@pytest.mark.parametrize("call, message", BAD_CALLS.values(), ids=BAD_CALLS.keys())
def test_bad_inputs(model, call, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        call(model)


def test_no_model_loaded():
    message = "no model loaded: call magajax.load(workdir) or Model(config, variables).activate() first"
    calls = (
        lambda: api.encode(PIVOT, PIVOT), lambda: api.decode(np.zeros(10), PIVOT), lambda: api.act(np.zeros(10), PIVOT)
    )
    for call in calls:
        with pytest.raises(ValueError, match=re.escape(message)):
            call()


def test_activate_sets_the_current_model(model):
    x_p, z = binary_images(2, 1, 16), codes(5)
    assert model.activate() is model and api.current() is model
    np.testing.assert_array_equal(api.decode(z, x_p), model.decode(z, x_p))


def test_load_uses_the_checkpoint_and_activates(model, monkeypatch, tmp_path, capsys):
    seen = []

    def load(workdir, step=None):
        seen.append((workdir, step))
        return model.config, model.variables, 7 if step is None else step

    monkeypatch.setattr("magajax.training.checkpoint.load", load)
    loaded = api.load(str(tmp_path))
    assert seen == [(str(tmp_path), None)] and api.current() is loaded and loaded.config == model.config
    assert (loaded.step, loaded.workdir) == (7, str(tmp_path))
    assert capsys.readouterr().out == f"magajax: loaded {tmp_path} at step 7 (maganet, split element)\n"
    x_v, x_p = binary_images(1, 2, 16), binary_images(2, 1, 16)
    np.testing.assert_array_equal(api.encode(x_v, x_p), model.encode(x_v, x_p))
    older = api.load(tmp_path, step=3)
    assert seen[-1] == (tmp_path, 3) and older.step == 3 and api.current() is older
    assert capsys.readouterr().out == f"magajax: loaded {tmp_path} at step 3 (maganet, split element)\n"


def test_load_passes_checkpoint_errors_through(monkeypatch, tmp_path):
    from magajax.training import checkpoint

    def load(workdir, step=None):
        raise checkpoint.CheckpointError(f"checkpoint {workdir}/checkpoints/{step} cannot be restored")

    monkeypatch.setattr(checkpoint, "load", load)
    with pytest.raises(checkpoint.CheckpointError, match=re.escape(f"checkpoint {tmp_path}/checkpoints/5 cannot be")):
        api.load(tmp_path, step=5)
    with pytest.raises(ValueError, match="no model loaded"):
        api.current()


def test_repeated_calls_do_not_retrace(model):
    traces = []
    listener = lambda event, duration, **kw: traces.append(event) if event.endswith("jaxpr_trace_duration") else None
    x_v, x_p, z = binary_images(1, 5, 16), binary_images(2, 1, 16), codes(5)
    twin = api.Model(model.config, model.variables["params"])  # same config: shares the compiled code
    calls = [
        lambda i: model.encode(x_v * (i % 2), x_p),
        lambda i: model.decode(z + i, x_p[0, ..., 0] > 0.5),
        lambda i: model.act(z, np.full((16, 16), float(i))),
        lambda i: twin.decode(z - i, x_p),
    ]
    for call in calls[:3]:
        call(0)  # the first call with these shapes traces and compiles
    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        for i in range(1, 4):
            for call in calls:
                call(i)
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)
    assert traces == [], f"{len(traces)} retraces on repeated calls with the same shapes"


def test_vae(vae):
    x, z = binary_images(3, 3, 16), codes(3)
    variables = vae.variables
    mean, _ = VAE(vae.config.model).apply(variables, x, method="posterior")
    np.testing.assert_allclose(vae.encode(x), mean, atol=1e-6)
    assert not np.allclose(vae.encode(x, sample_key=key(2)), mean)
    images = api.decode(z, model=vae)
    assert images.shape == (3, 16, 16, 1) and np.all((images >= 0) & (images <= 1))
    message = "encode: the VAE has no pivot, expected x_pivot=None, got an array"
    with pytest.raises(ValueError, match=re.escape(message)):
        vae.encode(x, x)
    with pytest.raises(ValueError, match=re.escape("decode: the VAE has no pivot")):
        vae.decode(z, x)
    for call in (lambda: vae.act(z, x), lambda: vae.embed(x)):
        with pytest.raises(ValueError, match="the VAE has no logit-space action; load a MAGANet model"):
            call()
