"""Figures: the PNG helpers every experiment, `spikefed convert` and `spikefed attack` write
their plots with, and the figures of a run report (each an inline SVG string, or None: no data).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
from matplotlib.ticker import MaxNLocator

from spikefed.report.svg import figure_svg, new_figure

Records = Sequence[dict[str, Any]]


def save_png(fig, path: str | Path, dpi: int = 120) -> Path:
    """Lay ``fig`` out tightly, write it to ``path`` as PNG and close it; return ``path``."""
    path = Path(path)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def line_png(lines: dict[str, tuple[Sequence[float], Sequence[float]]], path: str | Path, *,
             xlabel: str, ylabel: str, title: str = "", size: tuple[float, float] = (5, 3.5),
             dpi: int = 120) -> Path:
    """One line with markers per ``{label: (xs, ys)}`` (legend by label), written as PNG."""
    fig, ax = plt.subplots(figsize=size)
    for label, (xs, ys) in lines.items():
        ax.plot(xs, ys, marker="o", label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend()
    return save_png(fig, path, dpi)


def series(records: Records, key: str) -> tuple[list[int], list[float]]:
    """(rounds, values) of the records where ``key`` is present."""
    pts = [(r["round"], r[key]) for r in records if r.get(key) is not None]
    return [p[0] for p in pts], [float(p[1]) for p in pts]


def _finish(fig, ax, xlabel: str, ylabel: str, title: str) -> str:
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    if ax.get_legend_handles_labels()[0]:
        ax.legend()
    return figure_svg(fig)


def accuracy_figure(records: Records) -> str | None:
    """Server accuracy and client mean accuracy (± std band) per round."""
    xs_s, server = series(records, "server_acc")
    xs_c, mean = series(records, "client_acc_mean")
    if not xs_s and not xs_c:
        return None
    fig, ax = new_figure()
    if xs_s:
        ax.plot(xs_s, server, marker="o", ms=3, label="server model")
    if xs_c:
        ax.plot(xs_c, mean, marker="o", ms=3, label="client models (mean)")
        _, std = series(records, "client_acc_std")
        if len(std) == len(mean):
            ax.fill_between(xs_c, [m - s for m, s in zip(mean, std, strict=True)],
                            [m + s for m, s in zip(mean, std, strict=True)], alpha=0.2,
                            color="C1", label="clients ± std")
    ax.set_ylim(0, 1)
    return _finish(fig, ax, "round", "test accuracy", "Accuracy")


def loss_figure(records: Records) -> str | None:
    """Server test loss, client mean test loss and mean training loss per round."""
    keys = (("server_loss", "server test loss"), ("client_loss_mean", "client test loss (mean)"),
            ("train_loss_mean", "client training loss (mean)"))
    data = [(series(records, k), label) for k, label in keys]
    if not any(xs for (xs, _), _ in data):
        return None
    fig, ax = new_figure()
    for (xs, ys), label in data:
        if xs:
            ax.plot(xs, ys, marker="o", ms=3, label=label)
    return _finish(fig, ax, "round", "loss", "Loss")


def bytes_figure(records: Records) -> str | None:
    """Bytes up and down per round (bars) and cumulative total (line, right axis)."""
    if not records:
        return None
    rounds = [r["round"] for r in records]
    up = [r.get("bytes_up", 0) / 1e6 for r in records]
    down = [r.get("bytes_down", 0) / 1e6 for r in records]
    fig, ax = new_figure()
    width = 0.4
    ax.bar([x - width / 2 for x in rounds], up, width, label="up (clients → server)")
    ax.bar([x + width / 2 for x in rounds], down, width, label="down (server → clients)")
    total, cum = 0.0, []
    for u, d in zip(up, down, strict=True):
        total += u + d
        cum.append(total)
    twin = ax.twinx()
    twin.plot(rounds, cum, color="C3", marker=".", label="cumulative (right axis)")
    twin.set_ylabel("cumulative MB")
    ax.set(xlabel="round", ylabel="MB per round", title="Communication")
    _legend_below(fig, ax, twin)
    return figure_svg(fig)


def _legend_below(fig, *axes) -> None:
    handles, labels = [], []
    for ax in axes:
        h, lab = ax.get_legend_handles_labels()
        handles += h
        labels += lab
    fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=3,
               fontsize="small", frameon=False)


def energy_figure(records: Records) -> str | None:
    """Inference energy per test sample of the server model, and its spikes per sample."""
    xs, energy = series(records, "energy_per_sample_pj")
    if not xs:
        return None
    xs_sp, spikes = series(records, "spikes_per_sample")
    panels = 2 if xs_sp and any(spikes) else 1
    fig, axes = plt.subplots(1, panels, figsize=(6.4, 3.4), squeeze=False)
    ax = axes[0][0]
    ax.plot(xs, [e / 1e6 for e in energy], marker="o", ms=3, color="C2")
    ax.ticklabel_format(axis="y", useOffset=False)
    ax.set(xlabel="round", ylabel="µJ per test sample", title="Inference energy")
    if panels == 2:
        ax2 = axes[0][1]
        ax2.plot(xs_sp, spikes, marker="s", ms=3, color="C4")
        ax2.set(xlabel="round", ylabel="spikes per test sample", title="Spikes")
    for a in axes[0]:
        a.grid(alpha=0.3)
        a.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.tight_layout()
    return figure_svg(fig)


def participation_figure(records: Records) -> str | None:
    """Per round: aggregated uploads, rejected uploads and stragglers (stacked bars)."""
    if not records:
        return None
    rounds = [r["round"] for r in records]
    uploads = [r.get("uploads", 0) for r in records]
    rejected = [len(r.get("rejected") or []) for r in records]
    stragglers = [r.get("stragglers", 0) for r in records]
    fig, ax = new_figure()
    ax.bar(rounds, uploads, label="valid uploads", color="C0")
    ax.bar(rounds, rejected, bottom=uploads, label="rejected uploads", color="C3")
    ax.bar(rounds, stragglers, bottom=[u + j for u, j in zip(uploads, rejected, strict=True)],
           label="stragglers (dropped)", color="C7")
    ax.set(xlabel="round", ylabel="clients", title="Participation")
    _legend_below(fig, ax)
    return figure_svg(fig)


def wall_figure(records: Records) -> str | None:
    """Wall-clock seconds per round."""
    xs, wall = series(records, "wall_s")
    if not xs:
        return None
    fig, ax = new_figure(6.4, 2.8)
    ax.bar(xs, wall, color="C5")
    return _finish(fig, ax, "round", "seconds", "Wall time per round")


RUN_FIGURES = (
    ("accuracy", accuracy_figure), ("loss", loss_figure), ("bytes", bytes_figure),
    ("energy", energy_figure), ("participation", participation_figure), ("wall", wall_figure),
)
