"""Plots people would rather see than tables."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt

from spikefed.report.figures import save_png


def _series(records: Sequence[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    pts = [(r["round"], r[key]) for r in records if r.get(key) is not None]
    return [p[0] for p in pts], [p[1] for p in pts]


def plot_curves(records: Sequence[dict[str, Any]], path: str | Path, title: str = "") -> Path:
    """Accuracy and loss of the server model (and client mean +- std) against the round."""
    fig, (ax_acc, ax_loss) = plt.subplots(1, 2, figsize=(10, 4))
    for key, label in (("server_acc", "server"), ("client_acc_mean", "clients (mean)")):
        xs, ys = _series(records, key)
        if xs:
            ax_acc.plot(xs, ys, marker="o", ms=3, label=label)
    xs, mean = _series(records, "client_acc_mean")
    _, std = _series(records, "client_acc_std")
    if xs and len(std) == len(mean):
        ax_acc.fill_between(xs, [m - s for m, s in zip(mean, std, strict=True)],
                            [m + s for m, s in zip(mean, std, strict=True)], alpha=0.2, color="C1")
    for key, label in (("server_loss", "server"), ("client_loss_mean", "clients (mean)")):
        xs, ys = _series(records, key)
        if xs:
            ax_loss.plot(xs, ys, marker="o", ms=3, label=label)
    ax_acc.set(xlabel="round", ylabel="test accuracy", ylim=(0, 1))
    ax_loss.set(xlabel="round", ylabel="test loss")
    for ax in (ax_acc, ax_loss):
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
    if title:
        fig.suptitle(title)
    return save_png(fig, path)
