"""One gradient-inversion attack of the privacy benchmark: run it with the config's settings
and score its reconstruction (matched to the truth) into a result row."""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from typing import Any

import torch

from spikefed.experiments.privacy.config import AttackConfig
from spikefed.privacy import metrics as M
from spikefed.privacy.attacks import AttackResult, Problem, dlg, idlg, inverting_gradients
from spikefed.privacy.domains import InputDomain
from spikefed.privacy.labels import multiset_accuracy
from spikefed.privacy.statprior import statprior_attack
from spikefed.privacy.threat import flat, observe


def score(domain: InputDomain, x_hat: torch.Tensor, x: torch.Tensor) -> dict[str, Any]:
    """Metrics of a reconstruction batch after Hungarian matching (``perm`` included)."""
    perm = M.match_batch(x_hat, x)
    xh = x_hat[perm]
    if not domain.temporal:
        return {
            "perm": perm,
            "mse": float(M.mse(xh, x).mean()),
            "psnr": float(M.psnr(xh, x).mean()),
            "ssim": float(M.ssim(xh, x).mean()),
        }
    rows: dict[str, list[float]] = {"psnr": [], "ssim": [], "f1": [], "tc": []}
    bins: list[torch.Tensor] = []
    for a, b in zip(xh, x, strict=True):
        img_a, img_b = (a.unsqueeze(1), b.unsqueeze(1)) if a.dim() == 2 else (a, b)
        if a.dim() == 2:  # raster [T, channels]: score it as one image
            rows["ssim"].append(float(M.ssim(a[None, None], b[None, None])))
            p_bins = M.psnr(img_a, img_b)
        else:
            p_bins, s_bins = M.per_bin_scores(img_a, img_b)
            rows["ssim"].append(float(s_bins.mean()))
        bins.append(p_bins)
        rows["psnr"].append(float(M.psnr(a[None], b[None])))
        rows["f1"].append(M.spike_f1(a, b))
        rows["tc"].append(M.temporal_consistency(a, b))
    per_bin = torch.stack(bins).clamp(max=100).mean(0)
    return {
        "perm": perm,
        "mse": float(M.mse(xh, x).mean()),
        "psnr": statistics.fmean(rows["psnr"]),
        "ssim": statistics.fmean(rows["ssim"]),
        "spike_f1": statistics.fmean(rows["f1"]),
        "temporal_consistency": statistics.fmean(rows["tc"]),
        "per_bin_psnr": ";".join(f"{v:.2f}" for v in per_bin.tolist()),
    }


def make_monitor(
    domain: InputDomain, x: torch.Tensor
) -> Callable[[torch.Tensor], tuple[float, float]]:
    """History monitor: matched PSNR/SSIM of the current reconstruction."""

    def monitor(x_hat: torch.Tensor) -> tuple[float, float]:
        if x_hat.shape != x.shape:
            return math.nan, math.nan
        s = score(domain, x_hat, x)
        return s["psnr"], s["ssim"]

    return monitor


def run_one(
    attack: str,
    problem: Problem,
    cfg: AttackConfig,
    x: torch.Tensor,
    seed: int,
    thresholds: dict[str, float] | None = None,
) -> AttackResult:
    """Run ``attack`` on ``problem`` with the settings of ``cfg``."""
    mon = make_monitor(problem.domain, x)
    common = {"seed": seed, "record_every": cfg.record_every, "monitor": mon}
    if attack in ("dlg", "idlg"):
        d = cfg.dlg
        fn = dlg if attack == "dlg" else idlg
        return fn(
            problem,
            iterations=d.iterations,
            lr=d.lr,
            inner_iter=d.inner_iter,
            line_search=d.line_search,
            **common,
        )
    if attack == "ig":
        g = cfg.ig
        return inverting_gradients(
            problem, iterations=g.iterations, lr=g.lr, tv=g.tv, restarts=g.restarts, **common
        )
    s = cfg.statprior
    sizes = list(range(1, 2 * problem.batch + 1)) if cfg.threat.unknown_batch_size else None
    return statprior_attack(
        problem,
        iterations=s.iterations,
        lr=s.lr,
        tv=s.tv,
        bn_weight=s.bn_weight,
        thresholds=thresholds,
        threshold_weight=s.threshold_weight,
        batch_sizes=sizes,
        probe_iterations=s.probe_iterations,
        restarts=s.restarts,
        **common,
        monitor_for=lambda b: mon if b == problem.batch else None,
    )


def result_row(
    res: AttackResult, problem: Problem, x: torch.Tensor, y: torch.Tensor
) -> dict[str, Any]:
    """Metrics of one attack result (scored against the truth, residual against the upload)."""
    if res.reconstruction.shape != x.shape:  # wrong batch-size guess: score the overlap
        n = min(len(x), len(res.reconstruction))
        sc = score(problem.domain, res.reconstruction[:n], x[:n])
    else:
        sc = score(problem.domain, res.reconstruction, x)
    z = (
        res.reconstruction
        if problem.domain.temporal is False
        else torch.logit(res.reconstruction.clamp(1e-4, 1 - 1e-4))
    )
    sim = observe(problem.model, problem.domain.model_input(z), res.labels, problem.threat)
    tgt = flat(problem.target)
    residual = float((flat(sim) - tgt).norm() / (tgt.norm() + 1e-12))
    hist = [h for h in res.history if "psnr" in h and not math.isnan(h["psnr"])]
    leak = M.iterations_to_leak(
        [int(h["iteration"]) for h in hist], [h["psnr"] for h in hist], [h["ssim"] for h in hist]
    )
    leak_evals = next((int(h["grad_evals"]) for h in hist if int(h["iteration"]) == leak), None)
    row = {k: v for k, v in sc.items() if k != "perm"}
    row.update(
        label_acc=multiset_accuracy(res.labels, y),
        residual=residual,
        steps=res.steps,
        grad_evals=res.grad_evals,
        iters_to_leak=leak,
        evals_to_leak=leak_evals,
        batch_found=len(res.reconstruction),
    )
    return row

