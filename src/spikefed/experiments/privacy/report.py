"""Report of the privacy benchmark: ``results.csv`` (one row per attack run), ``summary.md``
(one row per domain, defense and attack), ``reconstructions.png`` and ``psnr_curves.png``."""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Any

import torch

from spikefed.experiments.privacy.config import AttackConfig
from spikefed.privacy.plots import plot_curves, plot_reconstructions
from spikefed.report.tables import markdown_table, write_rows_csv

CSV_FIELDS = [
    "attack",
    "model",
    "domain",
    "defense",
    "seed",
    "sample",
    "batch_size",
    "batch_found",
    "label_acc",
    "mse",
    "psnr",
    "ssim",
    "residual",
    "steps",
    "grad_evals",
    "iters_to_leak",
    "evals_to_leak",
    "spike_f1",
    "temporal_consistency",
    "per_bin_psnr",
    "epsilon",
    "seconds",
]


def _ms(values: list[float]) -> str:
    vals = [min(v, 100.0) for v in values if v is not None and not math.isnan(v)]
    if not vals:
        return "–"
    sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
    return f"{statistics.fmean(vals):.2f} ± {sd:.2f}"


SUMMARY_METRICS = (
    ("psnr", "PSNR dB"),
    ("ssim", "SSIM"),
    ("label_acc", "label acc"),
    ("iters_to_leak", "iters to leak"),
    ("leaked", "leaked"),
)


def _cell(metric: str, rs: list[dict[str, Any]]) -> str:
    """One summary cell: mean ± std, median iterations to leak, or leaked count."""
    if not rs:
        return "–"
    if metric == "leaked":
        return f"{sum(r['iters_to_leak'] is not None for r in rs)}/{len(rs)}"
    if metric == "iters_to_leak":
        its = [r["iters_to_leak"] for r in rs if r["iters_to_leak"] is not None]
        return f"{statistics.median(its):g}" if its else "never"
    return _ms([r[metric] for r in rs])


def summary_markdown(
    rows: list[dict[str, Any]], cfg: AttackConfig, device: str | None = None
) -> str:
    """One row per (domain, defense, attack); each metric has one column per model."""
    models = list(dict.fromkeys(r["model"] for r in rows))
    lines = [
        f"# Gradient inversion: {cfg.name}",
        "",
        f"Threat: {cfg.threat.kind} (local steps {cfg.threat.local_steps}, lr "
        f"{cfg.threat.lr}), batch {cfg.threat.batch_size}; model {cfg.model.name} "
        f"{cfg.model.options} (ANN activation {cfg.model.ann_activation}, SNN T={cfg.model.T}, "
        f"neuron {cfg.model.neuron}); seeds {cfg.seeds}; {cfg.data.samples} batches per seed"
        + (f"; device {device}." if device else "."),
        "Cells: mean ± std over seeds and batches; PSNR capped at 100 dB when averaging "
        "(exact recovery gives infinity); iters to leak = median optimiser step of the first "
        "recorded PSNR ≥ 20 dB or SSIM ≥ 0.5 over the runs that leaked; leaked = runs that did.",
        "",
    ]
    groups: dict[tuple[str, str, str], dict[str, list[dict[str, Any]]]] = {}
    for r in rows:
        key = (r["domain"], r["defense"], r["attack"])
        groups.setdefault(key, {}).setdefault(r["model"], []).append(r)
    side_by_side = any(len(by_model) > 1 for by_model in groups.values())
    if side_by_side:
        head = [f"{label} ({m})" for _, label in SUMMARY_METRICS for m in models]
        lines.append(markdown_table(
            ["domain", "defense", "attack", *head],
            ([dom, dfn, att, *(_cell(k, by_model.get(m, [])) for k, _ in SUMMARY_METRICS
                               for m in models)]
             for (dom, dfn, att), by_model in groups.items())))
    else:
        lines.append(markdown_table(
            ["domain", "defense", "attack", "model", *(label for _, label in SUMMARY_METRICS)],
            ([dom, dfn, att, m, *(_cell(k, rs) for k, _ in SUMMARY_METRICS)]
             for (dom, dfn, att), by_model in groups.items() for m, rs in by_model.items())))
    if any(r.get("spike_f1") is not None for r in rows):
        temporal = []
        for (dom, _dfn, att), by_model in groups.items():
            for m, rs in by_model.items():
                rs = [r for r in rs if r.get("spike_f1") is not None]
                if rs:
                    bins = [[float(v) for v in r["per_bin_psnr"].split(";")] for r in rs]
                    per_bin = ";".join(
                        f"{statistics.fmean(c):.1f}" for c in zip(*bins, strict=True)
                    )
                    temporal.append([dom, att, m, _ms([r["spike_f1"] for r in rs]),
                                     _ms([r["temporal_consistency"] for r in rs]), per_bin])
        lines += ["", "## Temporal data", "", markdown_table(
            ["domain", "attack", "model", "spike F1", "temporal consistency",
             "PSNR per time bin (mean over samples)"], temporal)]
    eps = {r["defense"]: r["epsilon"] for r in rows if r.get("epsilon") is not None}
    if eps:
        lines += [
            "",
            "DP-SGD ε at δ = 1e-5 (one client update, sampling rate 1): "
            + ", ".join(f"{k}: ε = {v:.3g}" for k, v in eps.items()),
        ]
    return "\n".join(lines) + "\n"



def write_outputs(rows: list[dict[str, Any]],
                  examples: dict[tuple[str, str, str], dict[str, torch.Tensor]],
                  curves: dict[tuple[str, str, str, str], list[list[tuple[float, float]]]],
                  cfg: AttackConfig, device: str, out: Path) -> None:
    """``results.csv``, ``summary.md``, ``reconstructions.png`` (``examples``: per (domain,
    defense, model) the truth and each attack's first reconstruction) and ``psnr_curves.png``
    (``curves``: per (domain, defense, attack, model) each run's (iteration, PSNR) history)."""
    write_rows_csv(rows, out / "results.csv", CSV_FIELDS)
    (out / "summary.md").write_text(summary_markdown(rows, cfg, device))
    plot_reconstructions(examples, cfg.attacks, out / "reconstructions.png")
    plot_curves(curves, out / "psnr_curves.png")
