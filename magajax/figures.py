"""Figures of a run (matplotlib, Agg): loss curves from metrics.jsonl."""

from __future__ import annotations

import os
from typing import Any, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

CURVES = ("loss", "recon", "kl", "latent", "grad_norm")


def loss_curves(records: Sequence[dict[str, Any]], path: str | os.PathLike, title: str = "") -> None:
    """One panel per logged term against the step (log-scaled where positive), saved as a PNG."""
    names = [n for n in CURVES if any(n in r for r in records)]
    fig, axes = plt.subplots(1, max(1, len(names)), figsize=(3.2 * max(1, len(names)), 2.8), squeeze=False)
    for ax, name in zip(axes[0], names):
        points = [(r["step"], r[name]) for r in records if name in r]
        steps, values = zip(*points)
        ax.plot(steps, values, lw=1)
        if min(values) > 0:
            ax.set_yscale("log")
        ax.set_title(name + (" (nats/image)" if name == "recon" else ""), fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
