"""The start-up line: backend, devices, process, and the warning on an idle accelerator."""

import jax

from magajax import runtime


def test_describe_names_backend_devices_and_process():
    line = runtime.describe(None)
    assert line.startswith(f"backend {jax.default_backend()}: {len(jax.devices())} × ")
    assert f"process {jax.process_index()} of {jax.process_count()}" in line
    assert "WARNING" not in line
    assert runtime.describe().startswith(line)


def test_cpu_backend_with_a_visible_accelerator_warns():
    assert jax.default_backend() == "cpu"
    tpu = runtime.describe("tpu")
    assert "WARNING: this machine has a TPU but jax runs on the CPU" in tpu and '".[tpu]"' in tpu
    assert '".[cuda]"' in runtime.describe("gpu")


def test_visible_accelerator_reads_colab_tpu_variable(monkeypatch):
    for name in runtime.TPU_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(runtime.glob, "glob", lambda pattern: [])
    assert runtime.visible_accelerator() is None
    monkeypatch.setenv("COLAB_TPU_ADDR", "10.0.0.2:8470")
    assert runtime.visible_accelerator() == "tpu"
    monkeypatch.delenv("COLAB_TPU_ADDR")
    monkeypatch.setattr(runtime.glob, "glob", lambda pattern: ["/dev/nvidia0"] if "nvidia" in pattern else [])
    assert runtime.visible_accelerator() == "gpu"
