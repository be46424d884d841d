"""The public API's limits: values checked in the dtype the model computes in, batches of any size
in bounded memory, and rows that do not depend on the batch they come in."""

import functools
import json
import re
import subprocess
import sys
from pathlib import Path

import jax
import jax.monitoring
import numpy as np
import pytest

from magajax import api
from magajax.config import Config, ModelConfig
from magajax.models.vae import VAE
from tests.helpers import binary_images, key, random_params, tiny_maganet

ROOT = Path(__file__).resolve().parents[1]
# Rows computed in differently shaped calls differ only by the order of the additions inside the
# matmuls and convolutions (XLA tiles each shape its own way). A reordered float32 sum moves by a
# few ulps of its terms (eps = 2^-23), and the tiny networks chain about 10 such layers (the
# encoder's 7; the flow's 2 levels × 2 steps of coupling nets, forward and inverse) without
# amplifying errors much, so results of order 1 agree to 2^5 eps: rtol = atol = 3.8e-6
# (measured here: at most 4 eps).
TOL = 2**5 * float(np.finfo(np.float32).eps)


@pytest.fixture(scope="module")
def model() -> api.Model:
    config, variables = tiny_maganet()
    return api.Model(Config(model=config), variables, chunk=8)


def codes(batch: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((batch, 10)).astype(np.float32)


def test_codes_and_logits_that_overflow_float32_are_refused(model):
    pivot = binary_images(2, 1, 16)
    z = np.full(10, 1e39)  # finite in float64, inf in float32: it would decode to NaN images
    with pytest.raises(ValueError, match=re.escape("z: 10 values overflow float32, the dtype the model computes in")):
        model.decode(z, pivot)
    with pytest.raises(ValueError, match=re.escape("z: 10 values overflow float32")):
        api.act(z, np.zeros((16, 16)), model=model)
    u = np.zeros((2, 16, 16))
    u[1, :2, :2] = -1e39
    message = "u: 4 values overflow float32, the dtype the model computes in (|u| > 3.4e+38)"
    with pytest.raises(ValueError, match=re.escape(message)):
        model.act(np.zeros(10), u)


def test_bfloat16_vae_refuses_codes_that_overflow_bfloat16():
    """The VAE's decoder casts z to config.model.dtype: 3.4e38 is finite in float32, inf in bfloat16."""
    models = {}
    for dtype in ("float32", "bfloat16"):
        config = ModelConfig(kind="vae", image_size=16, dtype=dtype)
        params = random_params(VAE(config).init, key(0), np.zeros((1, 16, 16, 1), np.float32), key(1))
        models[dtype] = api.Model(Config(model=config), params)
    z = np.zeros((3, 10))
    z[1, 4] = 3.4e38
    with pytest.raises(ValueError, match=re.escape("z: 1 values overflow bfloat16, the dtype the model computes in")):
        models["bfloat16"].decode(z)
    assert models["float32"].decode(z).shape == (3, 16, 16, 1)


def test_padded_rows():
    assert [api.padded_rows(n, 1024) for n in (1, 5, 8, 9, 16, 17, 1000, 1024, 1025, 10**6)] == [
        8, 8, 8, 16, 16, 32, 1024, 1024, 1024, 1024
    ]
    assert [api.padded_rows(n, 100) for n in (1, 64, 65, 100, 101)] == [8, 64, 100, 100, 100]
    assert [api.padded_rows(n, 3) for n in (1, 3, 4)] == [3, 3, 3]
    with pytest.raises(ValueError, match=re.escape("chunk: expected a positive number of rows, got 0")):
        api.Model(Config(model=tiny_maganet()[0]), tiny_maganet()[1], chunk=0)


@pytest.mark.slow
def test_chunks_agree_with_one_call(model):
    """21 rows in chunks of 8 (the last padded) give the network's results on all 21 at once."""
    x_v, x_p, z = binary_images(1, 21, 16), binary_images(2, 1, 16), codes(21)
    u = np.asarray(model.embed(binary_images(3, 21, 16)))

    def whole(method, *args):
        return np.asarray(jax.jit(functools.partial(model.module.apply, method=method))(model.variables, *args))

    np.testing.assert_array_equal(model.embed(x_v), whole("embed", x_v))
    for got, want in [
        (model.encode(x_v, x_p), whole("encode", x_v, x_p)),
        (model.decode_logits(z, x_p), whole("decode_logits", z, x_p)),
        (model.act(z, u), whole("act", z, u)),
    ]:
        assert got.shape == want.shape and isinstance(got, np.ndarray)
        np.testing.assert_allclose(got, want, rtol=TOL, atol=TOL)


def test_rows_are_bit_identical_in_any_batch_of_the_same_padded_shape(model):
    """Every chunk of 8 rows runs the function a batch of 1 to 8 rows runs: the same kernels."""
    x_v, x_p, z = binary_images(1, 21, 16), binary_images(2, 1, 16), codes(21)
    u = np.asarray(model.embed(binary_images(3, 21, 16)))
    big = {"decode": model.decode(z, x_p), "encode": model.encode(x_v, x_p), "act": model.act(z, u)}
    for start in (0, 8, 16):  # the first, a middle and the padded last chunk
        rows = slice(start, start + 5)
        np.testing.assert_array_equal(big["decode"][rows], model.decode(z[rows], x_p))
        np.testing.assert_array_equal(big["encode"][rows], model.encode(x_v[rows], x_p))
        np.testing.assert_array_equal(big["act"][rows], model.act(z[rows], u[rows]))
        np.testing.assert_array_equal(big["decode"][start], model.decode(z[start], x_p)[0])
    assert np.all(model.encode(x_v, x_v) == 0.0)
    assert np.all(model.encode(x_v[:1], x_v[:1]) == 0.0)


def test_all_chunks_share_one_compiled_function(model):
    x_p, z = binary_images(2, 1, 16), codes(45)
    model.decode(z[:3], x_p)  # compiles the 8-row decode
    traces = []
    listener = lambda event, duration, **kw: traces.append(event) if event.endswith("jaxpr_trace_duration") else None
    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        images = model.decode(z, x_p)  # 6 chunks of 8 rows
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)
    assert traces == [], f"{len(traces)} traces for a batch of 6 chunks"
    assert images.shape == (45, 16, 16, 1)


def test_sampled_codes_are_independent_across_chunks(model):
    x = np.repeat(binary_images(1, 1, 16), 16, axis=0)  # one image, twice a chunk of 8
    first = model.encode(x, x, sample_key=key(5))
    np.testing.assert_array_equal(first, model.encode(x, x, sample_key=key(5)))
    assert len(np.unique(first[:, 0])) == 16, "every row, in either chunk, draws its own sample"


MEMORY_SCRIPT = r"""
import json, re, sys
import numpy as np
from magajax import api
from magajax.config import Config, ModelConfig
from magajax.models.maganet import MAGANet
from tests.helpers import binary_images, key, random_params

# This process's own peak: VmHWM starts afresh at exec, while getrusage's ru_maxrss can carry the
# peak of the parent (pytest) when the child was spawned with vfork.
peak_mb = lambda: int(re.search(r"VmHWM:\s*(\d+) kB", open("/proc/self/status").read()).group(1)) / 1024
config = ModelConfig(image_size=8, levels=2, steps=2, hidden=16)
x_pivot = binary_images(0, 1, 8)
model = api.Model(Config(model=config), random_params(MAGANet(config).init, key(0), x_pivot, x_pivot))
z = np.random.default_rng(0).standard_normal((100_000, 10)).astype(np.float32)
model.decode(z[:1], x_pivot)  # imports and the first compilation are in the baseline
baseline = peak_mb()
chunked = model.decode(z, x_pivot)
after_chunked = peak_mb()
model.chunk = len(z)  # one call for the whole batch
whole = model.decode(z, x_pivot)
after_whole = peak_mb()
finite = bool(np.all(np.isfinite(chunked)) and np.all(np.isfinite(whole)))
print(json.dumps({"baseline": baseline, "chunked": after_chunked, "whole": after_whole,
                  "out_mb": chunked.nbytes / 2**20, "finite": finite}))
"""


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="reads VmHWM from Linux's /proc")
def test_100k_codes_decode_in_bounded_memory():
    """Peak RSS of a subprocess decoding 100,000 codes (8×8 model): in chunks it grows by the 24 MiB
    result and one chunk's work; in one call it grows by all activations at once."""
    result = subprocess.run(
        [sys.executable, "-c", MEMORY_SCRIPT], cwd=ROOT, capture_output=True, text=True, timeout=300, check=True
    )
    mb = json.loads(result.stdout.strip().splitlines()[-1])
    bound = 4 * mb["out_mb"] + 100  # the result, its copies in flight, and one 1024-row chunk's buffers
    grown_chunked, grown_whole = mb["chunked"] - mb["baseline"], mb["whole"] - mb["chunked"]
    assert grown_chunked < bound, f"chunked decode grew peak RSS by {grown_chunked:.0f} MiB (bound {bound:.0f}): {mb}"
    assert grown_whole > bound, f"the one-call decode stayed under the bound, so the test shows nothing: {mb}"
    assert mb["finite"]


def test_calls_compute_at_full_float32_precision(model, monkeypatch):
    """Each compiled call is traced and run with jax's default matmul precision at 'highest' (on a GPU
    the default TensorFloat-32 would move decodes by up to 0.2 in a pixel)."""
    seen = []
    real = api.jitted

    def spy(config, method):
        fn = real(config, method)
        return lambda *args: seen.append(jax.config.jax_default_matmul_precision) or fn(*args)

    monkeypatch.setattr(api, "jitted", spy)
    model.decode(codes(3), binary_images(0, 1, model.config.model.image_size))
    assert seen == [api.PRECISION] == ["highest"]
    assert jax.config.jax_default_matmul_precision is None, "the setting does not leak out of the call"
