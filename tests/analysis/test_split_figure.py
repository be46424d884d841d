"""The split figure: a Figure with the samples and the pivot, drawn without pyplot."""

import subprocess
import sys
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from PIL import Image

from magajax.analysis.split_figure import describe, split_figure
from magajax.config import DEFAULT_PIVOT
from magajax.data import factors
from magajax.data.splits import make_split

ROOT = Path(__file__).resolve().parents[2]


def test_samples_and_pivot(small_dsprites, tmp_path):
    split = make_split("element", small_dsprites.classes)
    fig = split_figure(small_dsprites, split, samples=4, seed=1)
    assert isinstance(fig, Figure)
    axes = np.array(fig.axes).reshape(2, 5)
    shown = [[len(ax.images) for ax in row] for row in axes]
    assert shown == [[1, 1, 1, 1, 1], [1, 1, 1, 1, 0]]  # four train images + the pivot; four held out
    held_out = {" ".join(str(k) for k in small_dsprites.classes[row]) for row in split.test}
    assert all(ax.get_title() in held_out for ax in axes[1, :4])
    assert axes[0, 4].get_title() == f"pivot {DEFAULT_PIVOT}"
    assert np.array_equal(axes[0, 4].images[0].get_array(), small_dsprites.unpacked([split.pivot_row])[0])
    assert axes[1, 0].get_ylabel() == f"held out\n({len(split.test):,})"
    fig.savefig(tmp_path / "split.png", dpi=60)
    with Image.open(tmp_path / "split.png") as im:
        assert im.format == "PNG" and im.size[0] > im.size[1] > 100


def test_split_with_nothing_held_out(small_dsprites):
    fig = split_figure(small_dsprites, make_split("none", small_dsprites.classes), samples=3)
    assert [len(ax.images) for ax in fig.axes[4:]] == [0, 0, 0, 0]


def test_describe_names_the_shape():
    classes = factors.index_to_classes(np.array([DEFAULT_PIVOT]))[0]
    text = describe(classes, factors.classes_to_values(classes[None])[0])
    assert text.startswith("shape=heart (3) scale=2 (0.7) orientation=20 ") and " x=5 " in text


def test_import_leaves_pyplot_alone():
    code = "import sys, magajax.analysis.split_figure; print('matplotlib.pyplot' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "False", out.stderr
