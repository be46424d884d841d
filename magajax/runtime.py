"""Where a process runs: one line naming the backend, the devices and the process, said at start.

On Colab or a cloud VM, installing a CPU-only jax over the runtime's accelerator jax makes JAX
fall back to the CPU without an error. `describe` says so when the backend is the CPU while the
machine shows an accelerator (a TPU's /dev/accel* or /dev/vfio, an NVIDIA GPU's /dev/nvidia0,
or Colab's TPU variables), and names the install command that fixes it.
"""

from __future__ import annotations

import glob
import os

import jax

TPU_SIGNS = ("/dev/accel*", "/dev/vfio/[0-9]*")
GPU_SIGNS = ("/dev/nvidia[0-9]*",)
TPU_ENV = ("COLAB_TPU_ADDR", "TPU_NAME", "TPU_ACCELERATOR_TYPE")


def visible_accelerator() -> str | None:
    """'tpu' or 'gpu' when the machine shows one (device files or Colab's variables), else None."""
    if any(os.environ.get(name) for name in TPU_ENV) or any(glob.glob(p) for p in TPU_SIGNS):
        return "tpu"
    if any(glob.glob(p) for p in GPU_SIGNS):
        return "gpu"
    return None


def describe(accelerator: str | None = "auto") -> str:
    """'backend tpu: 8 × TPU v2 (8 local), process 0 of 1', plus a warning on an idle accelerator.

    Args:
      accelerator: 'tpu', 'gpu' or None for what the machine shows; 'auto' looks (`visible_accelerator`).
    """
    if accelerator == "auto":
        accelerator = visible_accelerator()
    devices = jax.devices()
    backend = jax.default_backend()
    kinds = sorted({d.device_kind for d in devices})
    line = (f"backend {backend}: {len(devices)} × {', '.join(kinds)} ({jax.local_device_count()} local), "
            f"process {jax.process_index()} of {jax.process_count()}")
    if backend == "cpu" and accelerator is not None:
        extra = "tpu" if accelerator == "tpu" else "cuda"
        line += (f"; WARNING: this machine has a {accelerator.upper()} but jax runs on the CPU: "
                 f'install the accelerator jax with `pip install -e ".[{extra}]"`')
    return line
