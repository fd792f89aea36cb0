"""Files of an accuracy-vs-T sweep: CSV, a markdown table and a plot."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

COLUMNS = ("T", "calibration", "threshold", "accuracy", "ann_accuracy", "agreement",
           "convert_s", "eval_s", "seconds")


def write_csv(rows: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """One line per (T, calibration)."""
    path = Path(path)
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(COLUMNS), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return path


def _grid(rows: Sequence[dict[str, Any]]) -> tuple[list[int], list[str], dict[tuple, float]]:
    Ts = sorted({r["T"] for r in rows})
    calibs = list(dict.fromkeys(r["calibration"] for r in rows))
    return Ts, calibs, {(r["T"], r["calibration"]): r["accuracy"] for r in rows}


def markdown_table(rows: Sequence[dict[str, Any]]) -> str:
    """Test accuracy (%) with T down and calibration across; the ANN's accuracy in the header."""
    Ts, calibs, acc = _grid(rows)
    ann = rows[0]["ann_accuracy"] if rows else float("nan")
    method = rows[0]["threshold"] if rows else "-"
    lines = [f"ANN accuracy: {100 * ann:.2f}%  (threshold: {method})",
             "", "| T | " + " | ".join(calibs) + " |", "|---:|" + "---:|" * len(calibs)]
    for T in Ts:
        cells = [f"{100 * acc[(T, c)]:.2f}" if (T, c) in acc else "-" for c in calibs]
        lines.append(f"| {T} | " + " | ".join(cells) + " |")
    seconds = {(r["T"], r["calibration"]): r.get("seconds") for r in rows}
    if any(v is not None for v in seconds.values()):
        lines += ["", "Seconds per cell (conversion + test-set evaluation):", "",
                  "| T | " + " | ".join(calibs) + " |", "|---:|" + "---:|" * len(calibs)]
        for T in Ts:
            cells = [f"{seconds[(T, c)]:.1f}" if seconds.get((T, c)) is not None else "-"
                     for c in calibs]
            lines.append(f"| {T} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_accuracy_vs_T(rows: Sequence[dict[str, Any]], path: str | Path, title: str = "") -> Path:
    """Accuracy against T (log scale) per calibration, with the ANN as a dashed line."""
    Ts, calibs, acc = _grid(rows)
    fig, ax = plt.subplots(figsize=(6, 4))
    for c in calibs:
        xs = [T for T in Ts if (T, c) in acc]
        ax.plot(xs, [acc[(T, c)] for T in xs], marker="o", ms=4, label=c)
    if rows:
        ax.axhline(rows[0]["ann_accuracy"], color="k", ls="--", lw=1, label="ANN")
    ax.set_xscale("log", base=2)
    ax.set(xlabel="simulation length T", ylabel="test accuracy", title=title)
    ax.grid(alpha=0.3)
    ax.legend(title="calibration")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
