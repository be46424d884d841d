"""Reproduce the blog's table, the blog's way: to-Element, to-Range and to-Diff on one test set, over seeds.

  python -m experiments.reproduce --budget=quick              # CPU, rendered dSprites, under 30 min on 2 cores
  python -m experiments.reproduce --budget=full --data=tfds   # GPU/TPU, real dSprites, 100 epochs per run

The blog trains each model on element-blog and on range-blog, whose held-out images contain the
element-blog ones ("the test set of to-element is a subset of that for to-range, thus we can
compare the performance of different settings on the same test set"). On those images (all 2,366
of element-blog's held-out set, or a fixed-seed subset), per training seed:

  to-Element = the element-blog run's BCE,  to-Range = the range-blog run's BCE,
  to-Diff    = Σ_pixels BCE(prediction = the range-blog run's decode, target = the element-blog run's decode),

in nats per image (summed over the pixels), from one pass over the images (`magajax.analysis.evaluate.to_diff`).
The element-blog run is the target because its setting is the easier one, the better reconstruction
of the two: to-Diff is how far the range setting's decode moves from it. The KL form (to-Diff minus
the target decode's entropy, zero when the decodes agree) is kept beside it. Codes are sampled with
a fixed key, as the blog's encoder always samples (both runs of a seed get the same noise); the
posterior-mean figures are reported too.

Each cell is trained with several seeds (`train.seed`) and reported as mean ± t_{0.975, n−1}·s/√n
over them (`interval`), as the blog's notebooks do. Montero et al.'s splits `element` and `range`
(disjoint held-out sets, ellipses against squares) stay as extra columns, each run scored on its
own split's held-out images (`magajax.analysis.evaluate.evaluate`).

Workdirs are OUT/<kind>-<split>-seed<k>; OUT/results.md holds the table beside the blog's and
OUT/results.json everything it was made from. Rerunning skips finished runs and scores and resumes
unfinished runs from their checkpoints.

Budgets (`quick`, `full`): both train the blog's VAE (`model.vae=blog`, β = 2) and MAGANet with the
blog's hyper-parameters where the budget allows; the functions' docstrings give steps and subsets.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from magajax import config as cfg

BLOG = {"vae": {"to-Element": 16.85, "to-Range": 55.42}, "maganet": {"to-Element": 18.54, "to-Range": 38.62}}
BLOG_LABEL = "blog (100 epochs, real dSprites, GPU)"
NAMES = {"vae": "VAE", "maganet": "MAGANet"}
CODES = ("sampled", "mean")  # how the scored images are coded: a fixed-key sample, the posterior mean
LEVEL = 0.95  # of the intervals over seeds
QUICK_STEPS = {"maganet": 100, "vae": 40}  # training steps per run of the quick budget
QUICK_SUBSET = 512  # held-out images scored per column in the quick budget


@dataclasses.dataclass(frozen=True)
class Budget:
    """How much to train and evaluate.

    Attributes:
      name: the budget's name, shown in the table.
      configs: model kind → base Config (its split, seed and steps are replaced per run).
      steps: training steps per run; None to derive them from `epochs`, or without epochs to keep
        each kind's `train.steps`.
      epochs: passes over each split's training set: steps = ⌈epochs · train size / batch⌉.
      seeds: training seeds of each cell of the blog's columns.
      blog_pair: (to-Element split, to-Range split); the first's held-out set lies in the second's.
      montero: (column, split) of the extra columns on Montero et al.'s splits.
      montero_seeds: training seeds of each Montero et al. cell.
      heldout_subset: held-out images scored per column (fixed seed); None for all.
      train_subset: training images scored per Montero et al. run, for the generalisation gap.
      eval_batch: images per evaluation step.
    """

    name: str
    configs: dict[str, cfg.Config]
    steps: int | None = None
    epochs: float | None = None
    seeds: tuple[int, ...] = (0, 1, 2)
    blog_pair: tuple[str, str] = ("element-blog", "range-blog")
    montero: tuple[tuple[str, str], ...] = (("element (Montero et al.)", "element"),
                                            ("range (Montero et al.)", "range"))
    montero_seeds: tuple[int, ...] = (0, 1, 2)
    heldout_subset: int | None = None
    train_subset: int = 2048
    eval_batch: int = 256

    def runs(self) -> list[tuple[str, int]]:
        """Every (split, seed) trained, each once, the blog's pair first."""
        pairs = [(s, k) for k in self.seeds for s in self.blog_pair]
        pairs += [(s, k) for _, s in self.montero for k in self.montero_seeds]
        return list(dict.fromkeys(pairs))

    def config(self, kind: str, split: str, train_size: int, seed: int = 0) -> cfg.Config:
        """The run's Config: the kind's base config on `split` with this seed and this budget's steps."""
        base = self.configs[kind]
        steps = self.steps or base.train.steps
        if self.steps is None and self.epochs is not None:
            steps = math.ceil(self.epochs * train_size / base.train.batch_size)
        return cfg.override(base, {"data.split": split, "train.steps": steps, "train.seed": seed})


def quick() -> Budget:
    """A CPU check of the whole pipeline, under 30 min end to end on a 2-core machine (24 runs):
    the 'quick' MAGANet (Glow 3 levels × 1 step, hidden 32, the blog's latent term) and the blog's
    VAE (β 2) at batch 32, QUICK_STEPS steps per run (the blog's VAE ~1 s per step, ~55 s per run,
    MAGANet ~40 s per run, measured on a shared machine), 3 seeds of every cell, QUICK_SUBSET
    held-out images scored per column. Its numbers are far from trained."""
    steps = QUICK_STEPS["maganet"]
    maganet = cfg.override(cfg.preset("quick"), {"train.steps": steps, "log_every": 10, "checkpoint_every": steps,
                                                 "train.latent": "sampled"})
    steps = QUICK_STEPS["vae"]
    vae = cfg.override(maganet, {"kind": "vae", "model.vae": "blog", "beta_kl": 2.0, "train.steps": steps,
                                 "checkpoint_every": steps})
    return Budget("quick", {"vae": vae, "maganet": maganet}, heldout_subset=QUICK_SUBSET,
                  train_subset=128)


def full() -> Budget:
    """The blog preset (faithful Glow, β_KL 2, β_lat 300, the blog's latent term, Adam 5e-4, batch 64;
    the blog's VAE with β 2), 100 epochs of each split, 3 seeds per cell, every held-out image: a
    GPU/TPU budget."""
    maganet = cfg.override(cfg.preset("blog"), {"checkpoint_every": 10_000, "log_every": 100})
    vae = cfg.override(maganet, {"kind": "vae", "model.vae": "blog", "beta_kl": 2.0})
    return Budget("full", {"vae": vae, "maganet": maganet}, epochs=100.0)


BUDGETS = {"quick": quick, "full": full}


def interval(values: Sequence[float], level: float = LEVEL) -> dict[str, Any]:
    """Mean and the half-width of its Student-t interval: t_{(1+level)/2, n−1} · s / √n, s the sample std.

    Returns {'mean', 'half', 'n'}; 'half' is None for fewer than 2 values, 'mean' None for none.
    """
    from scipy import stats

    x = np.asarray(values, np.float64)
    n = len(x)
    if n < 2:
        return {"mean": float(x[0]) if n else None, "half": None, "n": n}
    half = stats.t.ppf((1 + level) / 2, n - 1) * x.std(ddof=1) / math.sqrt(n)
    return {"mean": float(x.mean()), "half": float(half), "n": n}


def _slug(text: str) -> str:
    return re.sub(r"[^\w.-]+", "_", text).strip("_")


def run_name(kind: str, split: str, seed: int) -> str:
    """The run's workdir name under OUT: <kind>-<split>-seed<k>."""
    return f"{kind}-{_slug(split)}-seed{seed}"


def _finished(workdir: Path, config: cfg.Config) -> bool:
    """Whether `workdir` holds this config's run with a checkpoint at its last step."""
    from magajax.training import workdir as wd

    ckpts = workdir / wd.CHECKPOINTS
    if not (workdir / wd.CONFIG).is_file() or not ckpts.is_dir():
        return False
    return wd.read_config(workdir) == config and (ckpts / str(config.train.steps)).is_dir()


def _run_summary(result: dict[str, Any]) -> dict[str, Any]:
    """The parts of an evaluate() result the table needs."""
    keep = ("step", "split", "heldout_size", "heldout", "train", "gap", "group_laws", "worst_cells", "path")
    return {k: result.get(k) for k in keep}


def blog_rows(budget: Budget, splits: dict[str, Any]) -> tuple[np.ndarray, str]:
    """The images the blog's columns are scored on: the to-Element split's held-out rows (a fixed-seed
    subset of `heldout_subset`), and how the two held-out sets relate."""
    first, second = budget.blog_pair
    a, b = splits[first].test, splits[second].test
    rows = np.intersect1d(a, b)
    if budget.heldout_subset is not None and len(rows) > budget.heldout_subset:
        rows = np.sort(np.random.default_rng(1).choice(rows, budget.heldout_subset, replace=False))
    inside = np.isin(a, b).all()
    return rows, f"{first} ⊂ {second}" if inside else f"the intersection of the {first} and {second} held-out sets"


def reproduce(budget: Budget, out: str | Path, data: Any = None, progress: bool = True) -> dict[str, Any]:
    """Trains and scores every run of `budget` under `out`; writes results.md and results.json.

    Args:
      budget: what to train and evaluate.
      out: the folder for the runs and the results.
      data: a DSprites container or a source ('auto', 'render', 'file:PATH', ...); default the
        configs' source.
      progress: show progress bars.

    Returns:
      The record written to OUT/results.json: the budget's layout, 'rows' (the blog's test images),
      'runs' (name → kind, split, seed, steps, train_s and, for Montero et al.'s splits, 'eval' per
      code) and 'blog' (kind → seed → code → the `to_diff` scores of that seed's two runs).
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
    record.update(budget=budget.name, data=data.source, blog_pair=list(budget.blog_pair),
                  montero=[list(c) for c in budget.montero], seeds=list(budget.seeds),
                  montero_seeds=list(budget.montero_seeds))
    earlier, runs, blog = record.get("runs", {}), {}, record.setdefault("blog", {})
    record["runs"] = runs  # this budget's runs only, with what earlier calls recorded of them

    def save() -> None:
        record_path.write_text(json.dumps(record, indent=1) + "\n")
        (out / "results.md").write_text(results_markdown(record))

    pivot = next(iter(budget.configs.values())).data.pivot
    splits = {s: make_split(s, data.classes, pivot) for s, _ in budget.runs()}
    rows, relation = blog_rows(budget, splits)
    record["rows"] = {"count": len(rows), "of": len(splits[budget.blog_pair[0]].test), "relation": relation}
    montero = {s for _, s in budget.montero}
    for kind in budget.configs:
        for split, seed in budget.runs():
            name, config = run_name(kind, split, seed), budget.config(kind, split, len(splits[split].train), seed)
            workdir = out / name
            entry = runs[name] = earlier.get(name, {"kind": kind, "split": split, "seed": seed, "train_s": 0.0})
            entry.update(steps=config.train.steps, batch=config.train.batch_size)
            if _finished(workdir, config):
                print(f"{name}: trained ({config.train.steps} steps), skipping training")
            else:
                start = time.perf_counter()
                run.train(config, workdir, data=data, progress=progress)
                entry["train_s"] += time.perf_counter() - start
            if split in montero:
                evals = entry.setdefault("eval", {})
                for code in CODES:
                    if evals.get(code, {}).get("step") != config.train.steps:
                        evals[code] = _run_summary(evaluate(
                            workdir, sample=code == "sampled", data=data, batch_size=budget.eval_batch,
                            train_subset=budget.train_subset, heldout_subset=budget.heldout_subset,
                            progress=progress))
            save()
        for seed in budget.seeds:
            names = [run_name(kind, s, seed) for s in budget.blog_pair]
            steps = [runs[n]["steps"] for n in names]
            scores = blog.setdefault(kind, {}).get(str(seed))
            if scores is None or scores["steps"] != steps or scores["count"] != len(rows):
                (element, _), (ranged, _) = (load_model(out / n) for n in names)
                scores = {"steps": steps, "count": len(rows)}
                for code in CODES:
                    scores[code] = to_diff(ranged, element, data, rows, sample=code == "sampled",
                                           batch_size=budget.eval_batch, progress=progress)
                blog[kind][str(seed)] = scores
                save()
    save()
    return record


def _cell(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def _interval_cell(values: list[float]) -> str:
    """'mean ± half-width (n=N)' of the values, 'mean (n=1)' for one, '–' for none."""
    if not values:
        return "–"
    i = interval(values)
    return f"{i['mean']:.2f}" + (f" ± {i['half']:.2f}" if i["half"] is not None else "") + f" (n={i['n']})"


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"


# The blog's columns: (column, key of a `to_diff` result, with the range-blog run as model a).
BLOG_COLUMNS = (("to-Element", "bce_b_mean"), ("to-Range", "bce_a_mean"), ("to-Diff", "bce_mean"),
                ("to-Diff KL", "to_diff_mean"))


def cell_values(record: dict[str, Any], kind: str, code: str) -> dict[str, list[float]]:
    """Column → the per-seed values of one row of the table (kind, codes 'sampled' or 'mean')."""
    scores = record["blog"].get(kind, {})
    values = {column: [scores[str(k)][code][key] for k in record["seeds"]
                       if str(k) in scores and scores[str(k)][code]["count"]]
              for column, key in BLOG_COLUMNS}
    for column, split in record["montero"]:
        evals = [record["runs"].get(run_name(kind, split, k), {}).get("eval", {}).get(code)
                 for k in record["montero_seeds"]]
        values[column] = [e["heldout"]["bce_mean"] for e in evals if e and e["heldout"]["count"]]
    return values


def results_markdown(record: dict[str, Any]) -> str:
    """The blog's table (rows VAE and MAGANet; to-Element, to-Range, to-Diff) with ours beside it.

    Args:
      record: what `reproduce` writes to results.json: 'budget', 'data', 'blog_pair', 'montero',
        'seeds', 'montero_seeds', 'rows', 'runs' and 'blog'.
    """
    first, second = record["blog_pair"]
    source = record["data"].split(":")[0]
    runs = record["runs"]
    kinds = list(dict.fromkeys(r["kind"] for r in runs.values()))
    columns = [c for c, _ in BLOG_COLUMNS] + [c for c, _ in record["montero"]]
    header = ["| model | " + " | ".join(columns) + " |", "|---|" + "---|" * len(columns)]
    rows = record["rows"]
    lines = [
        "# Held-out reconstruction: the blog's table",
        "",
        "BCE in nats per image, summed over the pixels; lower is better. Ours: mean ± the half-width of the "
        f"{LEVEL:.0%} Student-t interval over n training seeds (mean ± t_(0.975, n−1)·s/√n).",
        "",
        "## Sampled codes (as the blog's encoder)",
        "",
        *header,
    ]
    for kind in ("vae", "maganet"):
        cells = [_cell(BLOG[kind].get(c)) for c in columns]
        lines.append(f"| {NAMES[kind]}, {BLOG_LABEL} | " + " | ".join(cells) + " |")

    def ours(code: str) -> list[str]:
        out = []
        for kind in kinds:
            mine = [r for r in runs.values() if r["kind"] == kind]
            steps = sorted({r["steps"] for r in mine})
            shown = f"{steps[0]:,}" if len(steps) == 1 else f"{steps[0]:,}–{steps[-1]:,}"
            label = f"{NAMES[kind]}, ours ({record['budget']} budget, {source} dSprites, {shown} steps per run)"
            values = cell_values(record, kind, code)
            out.append(f"| {label} | " + " | ".join(_interval_cell(values[c]) for c in columns) + " |")
        return out

    lines += ours("sampled")
    lines += ["", "## Posterior-mean codes", "", *header, *ours("mean")]
    lines += [
        "",
        "Columns:",
        f"- to-Element: the `{first}` runs' held-out BCE on {rows['count']:,} of its {rows['of']:,} held-out "
        "images (fixed seed).",
        f"- to-Range: the `{second}` runs' BCE on the same {rows['count']:,} images ({rows['relation']}).",
        f"- to-Diff: Σ_pixels BCE(prediction = the `{second}` run's decode, target = the `{first}` run's decode) "
        "on the same images, the two runs of one seed compared; to-Diff KL: the same minus the entropy of the "
        f"`{first}` decode, zero when the two decodes agree.",
        "- Sampled codes: one reparameterised sample per image with a fixed key, the same noise for both runs.",
    ]
    for column, split in record["montero"]:
        scored = next((r["eval"]["sampled"] for r in runs.values() if r["split"] == split and r.get("eval")), None)
        count = f"{scored['heldout']['count']:,} of its {scored['heldout_size']:,}" if scored else "its"
        lines.append(f"- {column}: Montero et al.'s split `{split}`, each run scored on {count} held-out images "
                     "(fixed seed; see Runs).")
    steps = {r["kind"]: (r["steps"], r.get("batch")) for r in runs.values() if r["split"] in (first, second)}
    trained = "; ".join(f"{NAMES[k]} {s:,} steps at batch {b}" for k, (s, b) in steps.items())
    lines += [
        "",
        "## What differs from the blog",
        "",
        "The blog's \"MAGANet\" decoder adds z to the image in pixel space and is not a group action; ours "
        "is D(z, x) = f⁻¹(f(x) + A z) with a Glow flow f, a group action of the codes. The comparison is "
        "architecture against architecture, not a replication of the blog's weights. The VAE is the blog's "
        "(convs 32, 64, 128, 256, linear heads, β = 2). "
        f"Data: {source} dSprites" + (" (the offline renderer, not the official file the blog used)"
                                      if source == "render" else "") + ". "
        f"Training: {trained} per run (the blog: 100 epochs at batch 64). The blog's rows are its published "
        "numbers, one value each.",
        "",
        "## Per seed (sampled codes)",
        "",
        "| model | seed | " + " | ".join(c for c, _ in BLOG_COLUMNS) + " |",
        "|---|---|" + "---|" * len(BLOG_COLUMNS),
    ]
    for kind in kinds:
        for seed, scores in sorted(record["blog"].get(kind, {}).items(), key=lambda kv: int(kv[0])):
            code = scores["sampled"]
            lines.append(f"| {NAMES[kind]} | {seed} | " + " | ".join(_cell(code[key]) for _, key in BLOG_COLUMNS)
                         + " |")
    lines += ["", "## Runs", "",
              "| run | split | seed | steps | training | held-out BCE (sampled) | held-out BCE (mean) | train BCE "
              "| gap | KL | group laws (max error) |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in runs.items():
        start = f"| {name} | `{r['split']}` | {r['seed']} | {r['steps']:,} | {_minutes(r.get('train_s', 0.0))} |"
        e = r.get("eval", {})
        if not e.get("sampled"):
            lines.append(start + " – | – | – | – | – | – |")
            continue
        s, m = e["sampled"], e.get("mean")
        h, laws = s["heldout"], s["group_laws"]
        law = "–" if laws is None else f"{max(laws[k]['max'] for k in ('identity', 'inverse', 'composition')):.1e}"
        mean = _cell(m["heldout"]["bce_mean"]) if m and m["heldout"]["count"] else "–"
        lines.append(start + f" {_cell(h['bce_mean']) if h['count'] else '–'} | {mean} | "
                     f"{_cell(s['train']['bce_mean'])} | {_cell(s['gap'])} | {_cell(h.get('kl_mean'))} | {law} |")
    return "\n".join(lines) + "\n"
