"""Training test helpers: a tiny run in a subprocess (for the tests that kill, signal or lock a run),
the steps of a workdir's checkpoints, and the scalars of TensorBoard event files.

`start_run(workdir, overrides)` starts `loop.train` on 301 rendered images with
`tests.helpers.tiny_config()` and `overrides`; the process exits with `Interrupted.exit_code`
when a signal stops it, and with 2 after printing `error: ...` for the errors the CLI catches.
`SUBSET` is the code that renders those 301 images as `data`, for other scripts run in a subprocess.
"""

import json
import os
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

SUBSET = """
import numpy as np
from magajax.config import DEFAULT_PIVOT
from magajax.data import factors
from magajax.data.render import render_dsprites
from magajax.data.sources import DSprites

rng = np.random.default_rng(0)
index = np.unique(np.concatenate([[DEFAULT_PIVOT], rng.choice(factors.NUM_IMAGES, 300, replace=False)]))
classes = factors.index_to_classes(index)
data = DSprites(images=render_dsprites(index, packed=True), classes=classes.astype(np.uint8),
                values=factors.classes_to_values(classes), source="render (test subset)")
"""

SCRIPT = SUBSET + """
import json, sys
from magajax import config as cfg
from magajax.training import loop
from tests import helpers

config = cfg.override(helpers.tiny_config(), json.loads(sys.argv[2]))
try:
    loop.train(config, sys.argv[1], data=data, progress=False)
except loop.Interrupted as e:
    sys.exit(e.exit_code)
except (ValueError, OSError, FloatingPointError) as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
"""


def start_run(workdir: Path, overrides: dict, cache_dir: Path) -> subprocess.Popen:
    """Starts the tiny run in `workdir` (stdout and stderr piped, text), compiling through `cache_dir`."""
    env = dict(os.environ, JAX_COMPILATION_CACHE_DIR=str(cache_dir), JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
               JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0", PYTHONWARNINGS="ignore")
    return subprocess.Popen([sys.executable, "-c", SCRIPT, str(workdir), json.dumps(overrides)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_step(run: subprocess.Popen, workdir: Path, step: int, timeout: float = 60.0) -> None:
    """Waits until metrics.jsonl holds a record of `step` or later (the run logs every step)."""
    path = workdir / "metrics.jsonl"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if run.poll() is not None:
            raise AssertionError(f"the run ended early ({run.returncode}): {run.communicate()[1]}")
        if path.is_file() and any(json.loads(line)["step"] >= step for line in path.read_text().splitlines()
                                  if line.endswith("}")):
            return
        time.sleep(0.02)
    run.send_signal(signal.SIGKILL)
    raise AssertionError(f"no metrics for step {step} after {timeout} s")


def checkpoint_steps(workdir: Path) -> list[int]:
    """The steps of the complete checkpoints in workdir/checkpoints."""
    return sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())


def read_events(logdir):
    """(tag, step, value) of every scalar in the TFRecord event files of `logdir`."""
    from tensorboardX.proto.event_pb2 import Event

    scalars = []
    for path in sorted(logdir.glob("events.out.tfevents.*")):
        data = path.read_bytes()
        pos = 0
        while pos < len(data):
            (length,) = struct.unpack("<Q", data[pos:pos + 8])
            event = Event.FromString(data[pos + 12:pos + 12 + length])
            pos += 12 + length + 4
            scalars += [(v.tag, event.step, v.simple_value) for v in event.summary.value]
    return scalars
