"""The Colab notebook: a valid, cleared nbformat v4 file whose install cell gives the README's command,
run top to bottom on this CPU at tiny sizes (a parameters cell injected after its `parameters` cell)."""

import ast
import json
import os
import re
import sys
from pathlib import Path

import nbformat
import pytest
from jupyter_client import AsyncKernelManager
from jupyter_client.kernelspec import KernelSpecManager
from nbclient import NotebookClient

from magajax import runtime
from magajax.analysis.reproduce import BLOG, BLOG_LABEL, NAMES
from tests import helpers

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "notebooks" / "colab.ipynb"
REPO_URL = "https://github.com/OWNER/magajax"
# The install commands the README gives for Colab: TPU runtimes take the tpu extra, GPU ones none.
INSTALL_TPU = f'pip install "magajax[tpu] @ git+{REPO_URL}"'
INSTALL_GPU = f'pip install "magajax @ git+{REPO_URL}"'


def tiny_parameters() -> dict:
    """Sizes for this CPU: `tests.helpers.tiny_config`'s model and schedule, on 3,000 rendered images."""
    tiny = helpers.tiny_config()
    overrides = {f"model.{k}": getattr(tiny.model, k) for k in ("image_size", "levels", "steps", "hidden")}
    overrides |= {f"train.{k}": getattr(tiny.train, k) for k in ("log_every", "checkpoint_every")}
    return {"STEPS": tiny.train.steps, "BATCH": tiny.train.batch_size, "IMAGES": 3000, "EVAL_IMAGES": 64,
            "OVERRIDES": overrides}


def read() -> nbformat.NotebookNode:
    return nbformat.read(NOTEBOOK, as_version=4)


def code_cells(nb: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    return [c for c in nb.cells if c.cell_type == "code"]


def test_notebook_is_valid_cleared_and_parameterised():
    nb = read()
    nbformat.validate(nb)
    assert json.loads(NOTEBOOK.read_text())["nbformat"] == 4
    for cell in code_cells(nb):
        assert cell.outputs == [] and cell.execution_count is None, f"stored outputs in cell {cell.id}"
    first = code_cells(nb)[0]
    assert "parameters" in first.metadata.get("tags", [])
    assigned = {t.id for node in ast.parse(first.source).body if isinstance(node, ast.Assign) for t in node.targets}
    assert set(tiny_parameters()) <= assigned


def test_install_cell_gives_the_readme_commands_and_knows_a_tpu():
    source = "\n".join(c.source for c in code_cells(read()))
    (repo_url,) = re.findall(r'^REPO_URL = "([^"]+)"', source, re.M)
    assert repo_url == REPO_URL
    commands = [line.strip().lstrip("%").replace(" -q", "").replace("{REPO_URL}", repo_url)
                for line in source.splitlines() if line.strip().startswith("%pip install")]
    assert INSTALL_TPU in commands and INSTALL_GPU in commands
    readme = (ROOT / "README.md").read_text()
    assert f"`{INSTALL_TPU}`" in readme and f"`{INSTALL_GPU}`" in readme, "the README gives the same commands"
    # the install cell tells a TPU runtime by the signs magajax.runtime uses, without importing jax first
    for sign in (*runtime.TPU_ENV, *runtime.TPU_SIGNS):
        assert f'"{sign}"' in source, sign


def run_tiny(tmp_path: Path) -> nbformat.NotebookNode:
    """Executes the notebook in `tmp_path` with the tiny parameters, then its training cell once more (a resume)."""
    nb = read()
    cells = code_cells(nb)
    first = nb.cells.index(cells[0])
    inject = "\n".join(f"{k} = {v!r}" for k, v in tiny_parameters().items())
    nb.cells.insert(first + 1, nbformat.v4.new_code_cell(inject, metadata={"tags": ["injected-parameters"]}))
    training = next(c for c in cells if "train(config, WORKDIR" in c.source)
    nb.cells.append(nbformat.v4.new_code_cell(training.source))

    kernels = tmp_path / "kernels"
    (kernels / "magajax-test").mkdir(parents=True)
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
           "IPYTHONDIR": str(tmp_path / "ipython")}
    spec = {"argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "magajax test", "language": "python", "env": env}
    (kernels / "magajax-test" / "kernel.json").write_text(json.dumps(spec))
    specs = KernelSpecManager(kernel_dirs=[str(kernels)])
    km = AsyncKernelManager(kernel_name="magajax-test", kernel_spec_manager=specs)
    work = tmp_path / "work"
    work.mkdir()
    NotebookClient(nb, km=km, timeout=300, resources={"metadata": {"path": str(work)}}).execute()
    return nb


@pytest.mark.slow
def test_notebook_runs_top_to_bottom_at_tiny_sizes(tmp_path):
    nb = run_tiny(tmp_path)
    outputs = [o for c in code_cells(nb) for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    data = [o.data for o in outputs if "data" in o]
    markdown = "".join(d.get("text/markdown", "") for d in data)

    assert "magajax is already installed" in text
    assert "render (random subset of" in text
    assert "held-out set of 'element'" in text  # evaluate's table
    blog = BLOG["maganet"]
    assert f"| {NAMES['maganet']}, {BLOG_LABEL} | {blog['to-Element']:.2f} | {blog['to-Range']:.2f} |" in markdown
    ours = (r"\| MAGANet, this run: quick preset, 4 steps, render \(random subset of 3,001 images\) "
            r"\| [\d.]+ ± [\d.]+ \| – \|")
    assert re.search(ours, markdown)
    laws = ("D(0, x) = x (images)", "act(0, u) = u", "act(-z, act(z, u)) = u", "act(z2, act(z1, u)) = act(z1 + z2, u)")
    for law in laws:
        assert re.search(re.escape(law) + r" +max \|error\| \d", text), law
    assert "group laws hold (every error below 0.001): True" in text
    assert sum("image/png" in d for d in data) >= 5  # the split, reconstructions, identity, composition, loss
    assert any("image/gif" in d for d in data)  # the traversal animation
    assert re.search(r"resuming \S+maganet-element-quick from step 4", text)  # the training cell run again
    assert (tmp_path / "work" / "runs" / "maganet-element-quick" / "figures" / "traversal.gif").is_file()
