"""Run the SNFL reproduction: each job through :func:`build_federation` and
:class:`Simulation` (in a process pool when asked), then every experiment's report."""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import torch

from spikefed.config import ExperimentConfig
from spikefed.experiment import Federation, build_federation
from spikefed.experiments.snfl.analysis import Recorder, backdoor_analysis, bias_inference
from spikefed.experiments.snfl.jobs import plan_all, run_key
from spikefed.experiments.snfl.report import write_results
from spikefed.experiments.snfl.scales import Scale, default_workers, resolve_scale
from spikefed.fl.base import ClientData
from spikefed.security import ModelReplacement, Trigger, poison_client
from spikefed.sim import Simulation


def cap_clients(fed: Federation, max_per_client: int | None, seed: int) -> None:
    """Keep at most ``max_per_client`` random training samples per client (in place)."""
    if max_per_client is None:
        return
    g = torch.Generator().manual_seed(seed)
    for i, c in enumerate(fed.clients):
        if len(c) > max_per_client:
            idx = torch.randperm(len(c), generator=g)[:max_per_client]
            fed.clients[i] = ClientData(c.x[idx], c.y[idx], c.transform)



def run_job(job: dict[str, Any]) -> dict[str, Any]:
    """Run one job (``kind``: plain, bias or backdoor) and return its measurements."""
    torch.set_num_threads(1)
    cfg = ExperimentConfig.model_validate(job["cfg"])
    fed = build_federation(cfg)
    cap_clients(fed, job["max_train"], cfg.seed)
    trigger = Trigger(**job["trigger"]) if job.get("trigger") else None
    attackers = list(job.get("attackers", []))
    for i in attackers:
        fed.clients[i] = poison_client(fed.clients[i], trigger, job["poison_fraction"],
                                       seed=cfg.seed + i)
    if job.get("boost", 1.0) != 1.0:
        fed.algorithm = ModelReplacement(fed.algorithm, attackers, job["boost"])
    recorder = Recorder(fed.algorithm) if job["kind"] != "plain" else None
    if recorder is not None:
        fed.algorithm = recorder
    summary = Simulation(cfg, job["out"], federation=fed).run(overwrite=True)
    row = {"server_acc": summary["final_server_acc"],
           "client_acc_mean": summary["final_client_acc_mean"],
           "client_acc_std": summary["final_client_acc_std"],
           "bytes_up": summary["total_bytes_up"], "wall_s": summary["wall_s"]}
    if job["kind"] == "bias":
        row.update(bias_inference(recorder))
    elif job["kind"] == "backdoor":
        row["per_round"] = backdoor_analysis(recorder, fed, trigger, attackers)
    return row



def run_jobs(jobs: dict[str, dict[str, Any]], workers: int, device: str,
             progress: Callable[[str, int], None] | None = None) -> dict[str, dict[str, Any]]:
    """Run ``jobs`` (key: job), ``workers`` at a time; the measurements by key."""
    if progress:
        progress("total", len(jobs))
    done: dict[str, dict[str, Any]] = {}
    if workers <= 1:
        for key, j in jobs.items():
            done[key] = run_job(j)
            if progress:
                progress("done", 1)
        return done
    # CUDA cannot be used in forked children: start fresh interpreters for GPU jobs
    context = multiprocessing.get_context("spawn" if device == "cuda" else None)
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        futures = {key: pool.submit(run_job, j) for key, j in jobs.items()}
        for key, f in futures.items():
            done[key] = f.result()
            if progress:
                progress("done", 1)
    return done


def reproduce(scale: str | Scale, experiments: list[str], out: Path, data_root: str | None = None,
              workers: int | None = None, progress: Callable[[str, int], None] | None = None,
              boost: float | None = None) -> dict[str, list[dict[str, Any]]]:
    """Run ``experiments`` at ``scale`` (name in SCALES, or a Scale); write reports to ``out``.

    ``workers``: runs in parallel processes (default: ``default_workers(scale)``).

    ``boost`` overrides the scale's model-replacement boost of the backdoor experiment.

    ``progress(event, n)`` is called with ``('total', n_jobs)`` once, then ``('done', 1)``
    after each finished run.
    """
    scale_name, scale = resolve_scale(scale, experiments, boost)
    if scale.dataset != "mnist-mini" and data_root is None and not os.environ.get("SPIKEFED_DATA"):
        raise ValueError(f"--scale {scale_name} reads {scale.dataset} from local files; pass "
                         "--data-root DIR (or set SPIKEFED_DATA)")
    if scale.device == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--scale {scale_name} runs on a CUDA GPU and none is visible here; "
                         "use --scale small on this machine (or --dry-run to see the plan)")
    all_jobs, unique = plan_all(scale, experiments, out, data_root)
    done = run_jobs(unique, workers or default_workers(scale), scale.device, progress)
    results: dict[str, list[dict[str, Any]]] = {e: [] for e in experiments}
    for e, j in all_jobs:
        results[e].append({**j["row"], **done[run_key(j)]})
    for e in experiments:
        write_results(e, results[e], out, scale_name, scale)
    return results
