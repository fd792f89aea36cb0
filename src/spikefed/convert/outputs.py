"""Files of an accuracy-vs-T sweep: CSV, a markdown table and a plot (written with the shared
table and figure helpers of `spikefed.report`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt

from spikefed.report.figures import save_png
from spikefed.report.tables import markdown_table, write_rows_csv

COLUMNS = ("T", "calibration", "threshold", "accuracy", "ann_accuracy", "agreement",
           "convert_s", "eval_s", "seconds")


def write_csv(rows: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """One line per (T, calibration)."""
    return write_rows_csv(rows, path, COLUMNS)


def _grid(rows: Sequence[dict[str, Any]]) -> tuple[list[int], list[str], dict[tuple, float]]:
    Ts = sorted({r["T"] for r in rows})
    calibs = list(dict.fromkeys(r["calibration"] for r in rows))
    return Ts, calibs, {(r["T"], r["calibration"]): r["accuracy"] for r in rows}


def _t_by_calibration(Ts: list[int], calibs: list[str], cell) -> str:
    """T down, calibration across; ``cell(T, calibration)`` gives each cell."""
    return markdown_table(["T", *calibs], ([T, *(cell(T, c) for c in calibs)] for T in Ts),
                          "r" * (1 + len(calibs)))


def sweep_markdown(rows: Sequence[dict[str, Any]]) -> str:
    """Test accuracy (%) with T down and calibration across; the ANN's accuracy in the header."""
    Ts, calibs, acc = _grid(rows)
    ann = rows[0]["ann_accuracy"] if rows else float("nan")
    method = rows[0]["threshold"] if rows else "-"
    lines = [f"ANN accuracy: {100 * ann:.2f}%  (threshold: {method})", "",
             _t_by_calibration(Ts, calibs, lambda T, c: f"{100 * acc[(T, c)]:.2f}"
                               if (T, c) in acc else "-")]
    seconds = {(r["T"], r["calibration"]): r.get("seconds") for r in rows}
    if any(v is not None for v in seconds.values()):
        lines += ["", "Seconds per cell (conversion + test-set evaluation):", "",
                  _t_by_calibration(Ts, calibs, lambda T, c: f"{seconds[(T, c)]:.1f}"
                                    if seconds.get((T, c)) is not None else "-")]
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
    return save_png(fig, path)
