"""Figures of the privacy benchmark (matplotlib, Agg backend)."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib.pyplot as plt
import torch

from spikefed.report.figures import save_png


def _as_image(t: torch.Tensor) -> torch.Tensor:
    """A 2-D (gray) or HxWx3 array for imshow from [C,H,W], [H,W] or temporal data."""
    t = t.detach().float().clamp(0, 1).cpu()
    if t.dim() == 4:  # events [T, P, H, W]: time-summed ON minus OFF
        return t.sum(0)[0] - t.sum(0)[-1] if t.shape[1] == 2 else t.mean(0)[0]
    if t.dim() == 3:
        return t[0] if t.shape[0] == 1 else t.permute(1, 2, 0)
    return t


def plot_reconstructions(
    examples: dict[tuple[str, str, str], dict[str, torch.Tensor]],
    attacks: list[str],
    path: Path,
    bins: int = 6,
) -> None:
    """Rows = (domain, defense, model), columns = ground truth + each attack.

    Event data ([T, P, H, W]) gets a strip of ``bins`` time bins per column block.
    """
    keys = list(examples)
    temporal = any(v["truth"].dim() == 4 for v in examples.values())
    cols = 1 + len(attacks)
    sub = bins if temporal else 1
    fig, axes = plt.subplots(
        len(keys), cols * sub, figsize=(1.6 * cols * sub, 1.8 * len(keys)), squeeze=False
    )
    for r, key in enumerate(keys):
        for c, name in enumerate(["truth", *attacks]):
            img = examples[key].get(name)
            for s in range(sub):
                ax = axes[r][c * sub + s]
                ax.axis("off")
                if img is None:
                    continue
                if img.dim() == 4:
                    t = min(img.shape[0] - 1, s * img.shape[0] // sub)
                    ax.imshow(_as_image(img[t : t + 1]).numpy(), cmap="gray")
                    ax.set_title(f"{name} t={t}" if r == 0 else "", fontsize=6)
                else:
                    ax.imshow(_as_image(img).numpy(), cmap="gray", vmin=0, vmax=1)
                    if r == 0:
                        ax.set_title(name, fontsize=8)
        axes[r][0].text(
            -0.1,
            0.5,
            "\n".join(key),
            transform=axes[r][0].transAxes,
            ha="right",
            va="center",
            fontsize=7,
        )
    save_png(fig, path, dpi=110)


def plot_curves(
    curves: dict[tuple[str, str, str, str], list[list[tuple[float, float]]]], path: Path
) -> None:
    """Mean PSNR (capped at 100 dB) against iteration, one panel per attack, one line per model."""
    attacks = sorted({k[2] for k in curves})
    fig, axes = plt.subplots(
        1, max(1, len(attacks)), figsize=(4.2 * max(1, len(attacks)), 3.2), squeeze=False
    )
    for ax, att in zip(axes[0], attacks, strict=False):
        for (dom, dfn, a, model), runs in curves.items():
            if a != att or not runs or not runs[0]:
                continue
            n = min(len(r) for r in runs)
            its = [runs[0][j][0] for j in range(n)]
            mean = [
                sum(min(r[j][1], 100.0) for r in runs if not math.isnan(r[j][1])) / len(runs)
                for j in range(n)
            ]
            ax.plot(its, mean, label=f"{model} {dom} {dfn}")
        ax.axhline(20, color="gray", ls="--", lw=0.8)
        ax.set_title(att)
        ax.set_xlabel("iteration (optimiser steps)")
        ax.set_ylabel("PSNR [dB]")
        ax.legend(fontsize=6)
    save_png(fig, path, dpi=110)
