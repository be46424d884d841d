"""Reproduce the blog's table: held-out BCE of the VAE and MAGANet on the element and range splits.

  python -m experiments.reproduce --budget=quick              # CPU, rendered dSprites, ~25–30 min on 2 cores
  python -m experiments.reproduce --budget=full --data=tfds   # GPU/TPU, real dSprites, 100 epochs per run

Trains MAGANet and the VAE on element, range, element-blog and range-blog (workdirs under
--out, default runs/reproduce-<budget>), evaluates each run with magajax.evaluate and writes
OUT/results.md (the table, beside the blog's numbers) and OUT/results.json. Rerunning skips
finished runs and evaluations and resumes unfinished ones from their checkpoints.

Columns: to-Element and to-Range are the held-out BCE (nats per image, summed over 4,096 pixels)
of the runs on element and range; to-Diff compares the decodes of the element-blog and the
range-blog runs on the images both hold out (element-blog ⊂ range-blog; element and range hold
out disjoint images, ellipses against squares), see magajax.evaluate.to_diff.

Budgets:
- quick: the 'quick' preset architecture (Glow 3 levels × 1 step, hidden 32) and the VAE, 400
  steps at batch 32 per run; 2,048 held-out (fixed seed) and 1,024 training images scored per run.
  Measured on this 2-core CPU while shared: MAGANet ~0.3 s per step at batch 32, the VAE ~0.8 s
  per step at batch 64; with start-up and evaluation about 3–4 min per run, 25–30 min in all.
- full: the blog preset (faithful Glow, β_KL 2, β_lat 300, Adam 5e-4, batch 64), 100 epochs of
  each split's training set (≈ 1.1M steps on element), every held-out image scored: a GPU or TPU
  budget on real dSprites (--data=tfds or file:PATH).
The VAE is trained with β = 1 (a plain VAE) in both budgets.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import time
from pathlib import Path
from typing import Any

import numpy as np

from magajax import config as cfg

BLOG = {"vae": {"to-Element": 16.85, "to-Range": 55.42}, "maganet": {"to-Element": 18.54, "to-Range": 38.62}}
BLOG_LABEL = "blog (100 epochs, real dSprites, GPU)"
NAMES = {"vae": "VAE", "maganet": "MAGANet"}


@dataclasses.dataclass(frozen=True)
class Budget:
    """How much to train and evaluate.

    Attributes:
      name: the budget's name, shown in the table.
      configs: model kind → base Config (its split is replaced per run).
      steps: training steps per run; None to derive them from `epochs`.
      epochs: passes over each split's training set: steps = ⌈epochs · train size / batch⌉.
      columns: (column, split) of the held-out BCE columns.
      diff_pair: the two splits whose runs to-Diff compares (decodes of the first's run scored
        against the second's).
      heldout_subset: held-out images scored per run (fixed seed); None for all.
      train_subset: training images scored per run, for the generalisation gap.
      eval_batch: images per evaluation step.
    """

    name: str
    configs: dict[str, cfg.Config]
    steps: int | None = None
    epochs: float | None = None
    columns: tuple[tuple[str, str], ...] = (("to-Element", "element"), ("to-Range", "range"))
    diff_pair: tuple[str, str] = ("element-blog", "range-blog")
    heldout_subset: int | None = None
    train_subset: int = 2048
    eval_batch: int = 256

    def splits(self) -> list[str]:
        """Every split trained on, each once, in table order."""
        return list(dict.fromkeys([s for _, s in self.columns] + list(self.diff_pair)))

    def config(self, kind: str, split: str, train_size: int) -> cfg.Config:
        """The run's Config: the kind's base config on `split` with this budget's steps."""
        base = self.configs[kind]
        steps = self.steps if self.steps is not None else math.ceil(self.epochs * train_size / base.train.batch_size)
        return cfg.override(base, {"data.split": split, "train.steps": steps})


def quick() -> Budget:
    """MAGANet and VAE, 400 steps each at batch 32, on this CPU in ~25–30 min (see the module docstring)."""
    maganet = cfg.override(cfg.preset("quick"), {"train.steps": 400, "checkpoint_every": 100, "log_every": 20})
    vae = cfg.override(maganet, {"kind": "vae", "beta_kl": 1.0})
    return Budget("quick", {"vae": vae, "maganet": maganet}, steps=400, heldout_subset=2048, train_subset=1024)


def full() -> Budget:
    """The blog preset, 100 epochs of each split, every held-out image: a GPU/TPU budget."""
    maganet = cfg.override(cfg.preset("blog"), {"checkpoint_every": 10_000, "log_every": 100})
    vae = cfg.override(maganet, {"kind": "vae", "beta_kl": 1.0})
    return Budget("full", {"vae": vae, "maganet": maganet}, epochs=100.0)


BUDGETS = {"quick": quick, "full": full}


def _slug(text: str) -> str:
    return re.sub(r"[^\w.-]+", "_", text).strip("_")


def _finished(workdir: Path, config: cfg.Config) -> bool:
    """Whether `workdir` holds this config's run with a checkpoint at its last step."""
    from magajax.training import workdir as wd

    ckpts = workdir / wd.CHECKPOINTS
    if not (workdir / wd.CONFIG).is_file() or not ckpts.is_dir():
        return False
    return wd.read_config(workdir) == config and (ckpts / str(config.train.steps)).is_dir()


def _run_summary(result: dict[str, Any]) -> dict[str, Any]:
    """The parts of an evaluate() result the table needs."""
    keep = ("step", "split", "data", "heldout_size", "heldout", "train", "gap", "group_laws", "worst_cells", "path")
    return {k: result.get(k) for k in keep}


def reproduce(budget: Budget, out: str | Path, data: Any = None, progress: bool = True) -> dict[str, Any]:
    """Trains and evaluates every run of `budget` under `out`, computes to-Diff, writes results.md/json.

    Args:
      budget: what to train and evaluate.
      out: the folder for the runs and the results.
      data: a DSprites container or a source ('auto', 'render', 'file:PATH', ...); default the
        configs' source.
      progress: show progress bars.

    Returns:
      The record written to OUT/results.json.
    """
    from magajax.analysis.evaluate import evaluate, load_model, to_diff
    from magajax.data.sources import load_dsprites
    from magajax.data.splits import make_split
    from magajax.training import loop as run

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if data is None or isinstance(data, str):
        data = load_dsprites(data or next(iter(budget.configs.values())).data.source)
    record_path = out / "results.json"
    record = json.loads(record_path.read_text()) if record_path.is_file() else {}
    record.update(budget=budget.name, data=data.source, columns=[list(c) for c in budget.columns],
                  diff_pair=list(budget.diff_pair))
    runs, diffs = record.setdefault("runs", {}), record.setdefault("to_diff", {})

    def save() -> None:
        record_path.write_text(json.dumps(record, indent=1) + "\n")
        (out / "results.md").write_text(results_markdown(record))

    pivot = next(iter(budget.configs.values())).data.pivot
    splits = {s: make_split(s, data.classes, pivot) for s in budget.splits()}
    for kind in budget.configs:
        for split in budget.splits():
            name, workdir = f"{kind}-{_slug(split)}", out / f"{kind}-{_slug(split)}"
            config = budget.config(kind, split, len(splits[split].train))
            entry = runs.setdefault(name, {"kind": kind, "split": split, "train_s": 0.0})
            entry["steps"] = config.train.steps
            if _finished(workdir, config):
                print(f"{name}: trained ({config.train.steps} steps), skipping training")
            else:
                start = time.perf_counter()
                run.train(config, workdir, data=data, progress=progress)
                entry["train_s"] += time.perf_counter() - start
            evaluated = entry.get("eval")
            if evaluated is None or evaluated["step"] != config.train.steps:
                result = evaluate(workdir, data=data, batch_size=budget.eval_batch, train_subset=budget.train_subset,
                                  heldout_subset=budget.heldout_subset, progress=progress)
                entry["eval"] = _run_summary(result)
                diffs.pop(kind, None)
            save()
        if kind not in diffs:
            first, second = budget.diff_pair
            a, b = splits[first].test, splits[second].test
            rows = np.intersect1d(a, b)
            if budget.heldout_subset is not None and len(rows) > budget.heldout_subset:
                rows = np.sort(np.random.default_rng(1).choice(rows, budget.heldout_subset, replace=False))
            relation = (f"{first} ⊂ {second}" if np.isin(a, b).all()
                        else f"the intersection of the {first} and {second} held-out sets")
            model_a, _ = load_model(out / f"{kind}-{_slug(first)}")
            model_b, _ = load_model(out / f"{kind}-{_slug(second)}")
            diffs[kind] = dict(to_diff(model_a, model_b, data, rows, batch_size=budget.eval_batch, progress=progress),
                               relation=relation, both_held_out=len(np.intersect1d(a, b)))
            save()
    save()
    return record


def _cell(value: float | None, std: float | None = None) -> str:
    if value is None:
        return "–"
    return f"{value:.2f}" + (f" ± {std:.2f}" if std is not None else "")


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"


def results_markdown(record: dict[str, Any]) -> str:
    """The blog's table (rows VAE and MAGANet, columns to-Element, to-Range, to-Diff) with ours beside it.

    Args:
      record: what `reproduce` writes to results.json: 'budget', 'data', 'columns', 'diff_pair',
        'runs' (name → kind, split, steps, train_s, eval) and 'to_diff' (kind → to_diff result).
    """
    columns = [tuple(c) for c in record["columns"]]
    first, second = record["diff_pair"]
    source = record["data"].split(":")[0]
    kinds = list(dict.fromkeys(r["kind"] for r in record["runs"].values()))
    lines = [
        "# Held-out reconstruction: the blog's table",
        "",
        "BCE in nats per image, summed over the pixels, of held-out images decoded from the pivot "
        "(MAGANet) or reconstructed (VAE), mean codes; lower is better. Ours: mean ± std over the images scored.",
        "",
        "| model | " + " | ".join(c for c, _ in columns) + " | to-Diff |",
        "|---|" + "---|" * (len(columns) + 1),
    ]
    for kind in ("vae", "maganet"):
        if kind in BLOG:
            cells = [_cell(BLOG[kind].get(c)) for c, _ in columns]
            lines.append(f"| {NAMES[kind]}, {BLOG_LABEL} | " + " | ".join(cells) + " | – |")
    for kind in kinds:
        mine = [r for r in record["runs"].values() if r["kind"] == kind]
        steps = sorted({r["steps"] for r in mine})
        seconds = sum(r.get("train_s", 0.0) for r in mine)
        shown = f"{steps[0]:,}" if len(steps) == 1 else f"{steps[0]:,}–{steps[-1]:,}"
        label = f"{NAMES[kind]}, ours ({record['budget']} budget, {source} dSprites, {shown} steps per run, " \
                f"{_minutes(seconds)} training)"
        cells = []
        for _, split in columns:
            held = next((r["eval"]["heldout"] for r in mine if r["split"] == split and r.get("eval")), None)
            cells.append(_cell(held["bce_mean"], held["bce_std"]) if held and held["count"] else "–")
        diff = record["to_diff"].get(kind)
        diff_cell = (f"{_cell(diff['to_diff_mean'], diff['to_diff_std'])} (BCE {_cell(diff['bce_mean'])})"
                     if diff and diff["count"] else "–")
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {diff_cell} |")
    lines += ["", "Columns:"]
    for column, split in columns:
        run = next((r for r in record["runs"].values() if r["split"] == split and r.get("eval")), None)
        if run:
            e = run["eval"]
            lines.append(f"- {column}: the runs trained on split `{split}`, scored on {e['heldout']['count']:,} "
                         f"of its {e['heldout_size']:,} held-out images.")
    diff = next(iter(record["to_diff"].values()), None)
    if diff:
        lines.append(
            f"- to-Diff: the `{first}` run's decode against the `{second}` run's decode (as target) on "
            f"{diff['count']:,} of the {diff['both_held_out']:,} images both hold out ({diff['relation']}): "
            "Σ_pixels KL(p_second ‖ p_first), zero when the decodes agree; in brackets the cross-entropy "
            "BCE(p_first, p_second) = KL + the entropy of the target decode.")
    lines += ["", "## Runs", "",
              "| run | split | steps | training | held-out BCE | train BCE | gap | KL | latent "
              "| group laws (max error) |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in record["runs"].items():
        e = r.get("eval")
        if not e:
            lines.append(f"| {name} | `{r['split']}` | {r['steps']:,} | {_minutes(r.get('train_s', 0.0))} | "
                         "not evaluated | | | | | |")
            continue
        h, t, laws = e["heldout"], e["train"], e["group_laws"]
        law = "–" if laws is None else f"{max(laws[k]['max'] for k in ('identity', 'inverse', 'composition')):.1e}"
        lines.append(
            f"| {name} | `{r['split']}` | {r['steps']:,} | {_minutes(r.get('train_s', 0.0))} | "
            f"{_cell(h['bce_mean'], h['bce_std']) if h['count'] else '–'} | {_cell(t['bce_mean'])} | "
            f"{_cell(e['gap'])} | {_cell(h.get('kl_mean'))} | {_cell(h.get('latent_mean'))} | {law} |")
    return "\n".join(lines) + "\n"
