"""Report of the SNFL reproduction: each experiment's ``results.csv`` and ``results.md`` (the
accuracy table in the paper's layout, beside the paper's numbers on CIFAR-10), its plot where
natural, and ``raw.json``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from spikefed.experiments.snfl.scales import METHODS, Scale
from spikefed.report.figures import line_png, save_png
from spikefed.report.tables import columns_of, markdown_table, rows_markdown, write_rows_csv

#: SNFL's reported server accuracy (%) on CIFAR-10 with 10 clients: Table 1 (IID) and Table 2
#: (Dir(0.5) quantity skew). SOLO has no server model.
PAPER_SERVER_ACC: dict[str, dict[str, float]] = {
    "IID": {"fedavg": 92.2, "s-fedavg": 95.3, "fedprox": 91.6, "s-fedprox": 95.1,
            "moon": 92.8, "s-moon": 94.6},
    "Dir(0.5)": {"fedavg": 88.67, "s-fedavg": 86.88, "fedprox": 89.97, "s-fedprox": 93.88,
                 "moon": 90.95, "s-moon": 93.38},
}


def _fmt(v: Any) -> str:
    if v is None:
        return "/"
    if isinstance(v, float):
        return f"{v:.4f}"
    return str(v)


def write_rows(rows: list[dict[str, Any]], directory: Path, title: str, note: str = "") -> None:
    """``results.csv`` and ``results.md`` (one line per row) in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    cols = columns_of(rows, skip=("per_round",))
    write_rows_csv(rows, directory / "results.csv", cols)
    table = rows_markdown(rows, cols, fmt=_fmt)
    (directory / "results.md").write_text("\n".join([f"# {title}", "", note, "", table]) + "\n")


def _cells(rows: list[dict[str, Any]]) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """Rows grouped by (setting, method): one row per seed."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["setting"], r["method"]), []).append(r)
    return groups


def _pct(values: list[float | None]) -> tuple[float, float, int] | None:
    """Mean and std (over seeds) in percent and how many values; None when there are none."""
    vals = [100 * v for v in values if v is not None]
    return (float(np.mean(vals)), float(np.std(vals)), len(vals)) if vals else None


def _client_cell(group: list[dict[str, Any]]) -> str:
    mean = _pct([r["client_acc_mean"] for r in group])
    spread = _pct([r["client_acc_std"] for r in group])
    return "-" if mean is None or spread is None else f"{mean[0]:.1f}±{spread[0]:.1f}"


def _server_cell(group: list[dict[str, Any]]) -> str:
    acc = _pct([r["server_acc"] for r in group])
    return "/" if acc is None else f"{acc[0]:.1f}" if acc[2] == 1 else f"{acc[0]:.1f}±{acc[1]:.1f}"


def table_markdown(rows: list[dict[str, Any]], methods: tuple[str, ...] = METHODS) -> str:
    """Paper-style Table 1/2: methods as columns, client mean +- std and server accuracy.

    Client cells: mean over seeds of the client-ANN mean ± the std across clients (as the
    paper); server cells: one seed's value, or mean ± std over seeds when there are several.
    """
    settings = list(dict.fromkeys(r["setting"] for r in rows))
    by = _cells(rows)
    header = ["setting", *methods]

    def table(cell) -> str:
        return markdown_table(header, ([s, *(cell(by.get((s, m), [])) for m in methods)]
                                       for s in settings))

    return "\n".join(["## Client accuracy (mean ± std of client ANNs)", "", table(_client_cell),
                      "", "## Server accuracy (S-*: the aggregated SNN; ± over seeds)", "",
                      table(_server_cell)]) + "\n"


def _verdict(base: tuple[float, float, int], snfl: tuple[float, float, int]) -> str:
    diff = snfl[0] - base[0]
    if min(base[2], snfl[2]) < 2:
        return "higher (one seed)" if diff > 0 else "not higher (one seed)"
    noise = base[1] + snfl[1]
    if diff > noise:
        return "yes"
    if diff < -noise:
        return "no (lower)"
    return "within seed noise"


def paper_comparison(rows: list[dict[str, Any]], clients: int = 10,
                     methods: tuple[str, ...] = METHODS) -> str:
    """Our server accuracy beside SNFL's Table 1/2 (CIFAR-10, `clients` clients), and per
    pair whether our numbers support "the S-variant beats its base" (difference beyond the
    sum of the two seed stds)."""
    by = _cells(rows)
    out = []
    for label, paper in PAPER_SERVER_ACC.items():
        setting = f"{clients} clients, {label}"
        if not any(s == setting for s, _ in by):
            continue
        seeds = sorted({r.get("seed", 0) for r in rows if r["setting"] == setting})
        ours = []
        for m in methods:
            acc = _pct([r["server_acc"] for r in by.get((setting, m), [])])
            ours.append([m, "/" if acc is None else f"{acc[0]:.1f} ± {acc[1]:.1f}",
                         paper.get(m, "/")])
        pairs = []
        for base_name in ("fedavg", "fedprox", "moon"):
            base = _pct([r["server_acc"] for r in by.get((setting, base_name), [])])
            snfl = _pct([r["server_acc"] for r in by.get((setting, "s-" + base_name), [])])
            if base is None or snfl is None:
                continue
            gap = paper["s-" + base_name] - paper[base_name]
            pairs.append([f"s-{base_name} vs {base_name}", f"{snfl[0] - base[0]:+.1f}",
                          f"{gap:+.1f}", _verdict(base, snfl)])
        out += [f"## {setting}: server accuracy (%), ours vs SNFL (seeds {seeds})", "",
                markdown_table(["method", "ours", "paper"], ours, "lrr"), "",
                markdown_table(["pair", "ours: S − base", "paper: S − base",
                                "S beats base (ours)"], pairs, "lrrl"), ""]
    return "\n".join(out)


def _plot(rows: list[dict[str, Any]], x: str, path: Path, title: str) -> None:
    lines = {}
    for m in dict.fromkeys(r["method"] for r in rows):
        pts = sorted((r[x], r["server_acc"]) for r in rows if r["method"] == m)
        lines[m] = ([p[0] for p in pts], [p[1] for p in pts])
    line_png(lines, path, xlabel=x, ylabel="server accuracy", title=title)


def _plot_backdoor(rows: list[dict[str, Any]], path: Path) -> None:
    boosts = list(dict.fromkeys(r["boost"] for r in rows))
    fig, axes = plt.subplots(1, len(boosts), figsize=(5 * len(boosts), 3.5), squeeze=False,
                             sharey=True)
    for ax, boost in zip(axes[0], boosts, strict=True):
        sel = [r for r in rows if r["boost"] == boost]
        rounds = [r["round"] for r in sel]
        for key in ("acc_mean", "asr_mean", "asr_threshold_filter", "asr_krum", "asr_median"):
            ax.plot(rounds, [r[key] for r in sel], marker="o", label=key)
        ax.set_xlabel("round")
        ax.set_title("data poisoning" if boost == 1.0 else f"model replacement, boost {boost:g}")
        ax.legend(fontsize=7)
    save_png(fig, path)


def write_results(experiment: str, rows: list[dict[str, Any]], out: Path, scale_name: str,
                  scale: Scale) -> None:
    """Write the experiment's tables (and plot); on CIFAR-10 the table sits beside the paper's."""
    d = out / experiment
    note = f"scale: {scale_name}. Accuracies are fractions of the test set."
    if experiment == "table":
        write_rows(rows, d, "SNFL Tables 1/2: accuracy", note)
        text = f"# SNFL Tables 1/2 ({scale_name} scale)\n\n" + table_markdown(rows, scale.methods)
        if scale.dataset == "cifar10":
            text += "\n" + paper_comparison(rows, methods=scale.methods)
        (d / "results.md").write_text(text)
    elif experiment in ("stragglers", "clients", "T"):
        x = {"stragglers": "fraction", "clients": "clients", "T": "T"}[experiment]
        write_rows(rows, d, f"SNFL {experiment}", note)
        _plot(rows, x, d / f"{experiment}.png", f"server accuracy vs {x}")
    elif experiment == "bias":
        write_rows(rows, d, "SNFL bias ablation (Table 3) and bias inference (Fig. 3A)",
                   note + " l2_unfold: mean over clients of ||b_inferred - b_true||_2, last "
                   "round; rel_l2_unfold divides by ||b_true||; l2_mean_estimator uses the "
                   "mean of all clients' inferred biases.")
    elif experiment == "backdoor":
        per_round = [{**r["per_round"][i], "method": r["method"], "boost": r["boost"]}
                     for r in rows for i in range(len(r["per_round"]))]
        write_rows(per_round, d, "SNFL backdoor attack and threshold-based detection (Sec. 5.4)",
                   note + " acc_*/asr_*: clean accuracy / attack success rate of the server SNN "
                   "when the round's uploads are aggregated by *; auc_threshold: ROC-AUC of the "
                   "distance of each client's threshold vector to the median centre; "
                   "auc_krum: ROC-AUC of Krum's score on the full SNN uploads; boost: "
                   "scaled model replacement factor of the attackers (1: data poisoning only).")
        _plot_backdoor(per_round, d / "backdoor.png")
    (d / "raw.json").write_text(json.dumps(rows, indent=1, default=str))

