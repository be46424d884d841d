"""Readable text of an evaluation: the table of `magajax.analysis.evaluate.evaluate`'s result.

    from magajax.analysis.report import format_table
    print(format_table(evaluate("runs/maganet-element")))
"""

from __future__ import annotations

from typing import Any

LAWS = ("identity", "inverse", "composition")


def _fmt(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def terms_lines(heldout: dict[str, Any], train: dict[str, Any]) -> list[str]:
    """One row per term of the held-out and train summaries: mean ± std in nats per image."""
    lines = [f"{'nats per image':<16}{'held-out':>20}{'train subset':>20}"]
    for name in (k.removesuffix("_mean") for k in heldout if k.endswith("_mean")):
        cols = [f"{_fmt(s[f'{name}_mean'])} ± {_fmt(s[f'{name}_std'])}" for s in (heldout, train)]
        lines.append(f"{name:<16}{cols[0]:>20}{cols[1]:>20}")
    return lines


def laws_lines(laws: dict[str, Any]) -> list[str]:
    """The group-law errors: max / mean |error| of each law in logit space."""
    return [f"group laws in logit space ({laws['images']} images, random codes of scale "
            f"{laws['code_scale']:.3g}): max / mean |error|"] + \
        [f"  {law:<14}{laws[law]['max']:.2e} / {laws[law]['mean']:.2e}" for law in LAWS]


def by_factor_lines(worst_cells: list[dict[str, Any]], by_factor: dict[str, list[dict[str, Any]]]) -> list[str]:
    """The worst (factor, class) cells, then each factor's best and worst class by held-out BCE."""
    lines = ["held-out bce by factor class (worst first):"]
    lines += [f"  {c['label']:<22}{c['bce']:>9.2f}  ({c['count']:,} images)" for c in worst_cells]
    for name, cells in by_factor.items():
        if len(cells) > 1:
            lo, hi = min(cells, key=lambda c: c["bce"]), max(cells, key=lambda c: c["bce"])
            lines.append(f"  {name:<12} best {lo['label']} {lo['bce']:.2f}, worst {hi['label']} {hi['bce']:.2f}")
    return lines


def format_table(result: dict[str, Any]) -> str:
    """A readable table of an `evaluate` result: the terms, the gap, the group laws, the worst factor classes."""
    h, t = result["heldout"], result["train"]
    codes = "sampled codes" if result["sample"] else "mean codes"
    lines = [
        f"{result['kind']} {result['workdir']} at step {result['step']} (preset {result['preset']}, "
        f"trained on {result['trained_split']!r}, {codes}, data {result['data']})",
        f"held-out set of {result['split']!r}: {h['count']:,} of {result['heldout_size']:,} images; "
        f"train subset: {t['count']:,} of {t['of']:,}",
        "",
        *terms_lines(h, t),
        f"{'gap (bce)':<16}{_fmt(result['gap']):>20}",
    ]
    if result["group_laws"] is not None:
        lines += ["", *laws_lines(result["group_laws"])]
    if result["worst_cells"]:
        lines += ["", *by_factor_lines(result["worst_cells"], result["by_factor"])]
    if result.get("path"):
        lines += ["", f"wrote {result['path']}"]
    return "\n".join(lines)
