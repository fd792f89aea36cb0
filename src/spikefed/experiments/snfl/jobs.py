"""Plan of the SNFL reproduction: the experiment config of every run and the jobs (plain,
picklable dicts) of each experiment; identical runs shared between experiments run once."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from spikefed.config import ExperimentConfig, validate_config
from spikefed.experiments.snfl.cost import estimate_cost
from spikefed.experiments.snfl.scales import (
    EXPERIMENTS,
    Scale,
    default_workers,
    resolve_scale,
)


def make_config(scale: Scale, name: str, method: str, num_clients: int, beta: float | None,
                data_root: str | None = None, seed: int = 0, rounds: int | None = None,
                fraction: float = 1.0, eval_every: int | None = None,
                snfl: dict[str, Any] | None = None) -> ExperimentConfig:
    """The experiment config of one run (``beta=None``: IID, else Dirichlet(beta))."""
    params: dict[str, Any] = {}
    if method.startswith("s-"):
        params = {"T": scale.T, "calib_size": scale.calib_size, **(snfl or {})}
    rounds = rounds or scale.rounds
    raw = {
        "name": name, "seed": seed, "device": scale.device,
        "data": {"dataset": scale.dataset, "root": data_root, "num_clients": num_clients,
                 "test_subset": scale.test_subset,
                 "partition": {"scheme": "iid"} if beta is None else
                 {"scheme": scale.non_iid, "beta": beta, "min_size": 10}},
        "model": {"name": scale.model, "spiking": False, "norm": "bn",
                  "kwargs": {"bias": True}},
        "algorithm": {"name": method, "params": params},
        "train": {"rounds": rounds, "local_epochs": scale.local_epochs, "lr": scale.lr,
                  "momentum": 0.9, "weight_decay": scale.weight_decay,
                  "batch_size": scale.batch_size, "fraction": fraction,
                  "eval_every": eval_every or rounds, "eval_clients": scale.eval_clients,
                  "eval_batch_size": scale.eval_batch_size},
    }
    if scale.augment is not None:
        raw["data"]["augment"] = scale.augment
    milestones = [m for m in scale.lr_milestones if m <= rounds]
    if milestones:
        raw["train"].update(lr_schedule="step", lr_milestones=milestones, lr_factor=0.1)
    return validate_config(raw, f"snfl experiment {name}")



def _job(scale: Scale, out: Path, cfg: ExperimentConfig, row: dict[str, Any],
         kind: str = "plain", **extra: Any) -> dict[str, Any]:
    return {"cfg": cfg.model_dump(mode="json"), "out": str(out / "runs" / cfg.name),
            "max_train": scale.max_train_per_client, "row": row, "kind": kind, **extra}


def _setting(n: int, beta: float | None, non_iid: str = "dirichlet") -> str:
    if beta is None:
        return f"{n} clients, IID"
    return f"{n} clients, " + ("" if non_iid == "dirichlet" else f"{non_iid} ") + f"Dir({beta})"


def backdoor_boost(scale: Scale) -> float:
    """The boost of the model-replacement run: ``scale.backdoor_boost`` or clients/attackers."""
    boost = scale.backdoor_boost
    if boost is None:
        boost = scale.backdoor_clients / max(1, scale.backdoor_attackers)
    if boost < 1:
        raise ValueError(f"--boost={boost} (backdoor_boost) must be >= 1; pass 1 for data "
                         "poisoning only")
    return float(boost)


def plan(experiment: str, scale: Scale, out: Path, data_root: str | None) -> list[dict[str, Any]]:
    """The jobs of one experiment."""
    jobs = []
    mk = make_config
    if experiment == "table":
        settings = [(n, None) for n in scale.table_clients]
        settings += [(10, b) for b in scale.table_betas]
        for seed in scale.seeds:
            suffix = f"-s{seed}" if len(scale.seeds) > 1 else ""
            for n, beta in settings:
                tag = f"n{n}-" + ("iid" if beta is None else f"dir{beta}")
                for m in scale.methods:
                    cfg = mk(scale, f"table-{m}-{tag}{suffix}", m, n, beta, data_root, seed=seed)
                    jobs.append(_job(scale, out, cfg, {"setting": _setting(n, beta, scale.non_iid),
                                                       "method": m, "seed": seed}))
    elif experiment == "stragglers":
        for frac in scale.straggler_fractions:
            for m in ("fedavg", "s-fedavg"):
                cfg = mk(scale, f"stragglers-{m}-p{frac}", m, scale.straggler_clients, None,
                         data_root, fraction=frac)
                jobs.append(_job(scale, out, cfg, {"fraction": frac, "method": m}))
    elif experiment == "clients":
        for n in scale.client_counts:
            for m in ("fedavg", "s-fedavg"):
                cfg = mk(scale, f"clients-{m}-n{n}", m, n, None, data_root)
                jobs.append(_job(scale, out, cfg, {"clients": n, "method": m}))
    elif experiment == "T":
        for t in scale.T_values:
            cfg = mk(scale, f"T-s-fedavg-T{t}", "s-fedavg", 10, None, data_root, snfl={"T": t})
            jobs.append(_job(scale, out, cfg, {"T": t, "method": "s-fedavg"}))
    elif experiment == "bias":
        for bc in (False, True):
            for back in (False, True):
                cfg = mk(scale, f"bias-bc{int(bc)}-back{int(back)}", "s-fedavg", 10, None,
                         data_root, snfl={"calibration": "bias" if bc else "none",
                                          "bias_back": back})
                jobs.append(_job(scale, out, cfg, {"partition": "IID", "bias_calibration": bc,
                                                   "bias_back": back}, kind="bias"))
        for bc in (False, True):
            cfg = mk(scale, f"bias-dir0.5-bc{int(bc)}", "s-fedavg", 10, 0.5, data_root,
                     snfl={"calibration": "bias" if bc else "none"})
            jobs.append(_job(scale, out, cfg, {"partition": "Dir(0.5)", "bias_calibration": bc,
                                               "bias_back": False}, kind="bias"))
    elif experiment == "backdoor":
        n, k = scale.backdoor_clients, scale.backdoor_attackers
        for boost in dict.fromkeys((1.0, backdoor_boost(scale))):
            tag = "" if boost == 1.0 else f"-boost{boost:g}"
            cfg = mk(scale, f"backdoor-s-fedavg{tag}", "s-fedavg", n, None, data_root,
                     rounds=scale.backdoor_rounds)
            jobs.append(_job(scale, out, cfg, {"method": "s-fedavg", "attackers": k,
                                               "boost": boost},
                             kind="backdoor", attackers=list(range(k)), poison_fraction=0.5,
                             trigger={"size": 4, "value": 1.0, "target": 0}, boost=boost))
    else:
        raise ValueError(f"experiment={experiment!r} is unknown; choose from {list(EXPERIMENTS)}")
    return jobs



def plan_all(scale: Scale, experiments: list[str], out: Path, data_root: str | None
             ) -> tuple[list[tuple[str, dict[str, Any]]], dict[str, dict[str, Any]]]:
    """Every (experiment, job) pair and the distinct jobs among them (identical runs, e.g.
    table and clients at n=10, run once)."""
    all_jobs = [(e, j) for e in experiments for j in plan(e, scale, out, data_root)]
    unique: dict[str, dict[str, Any]] = {}
    for _, j in all_jobs:
        unique.setdefault(run_key(j), j)
    return all_jobs, unique



def describe_plan(scale: str | Scale, experiments: list[str], out: Path,
                  data_root: str | None = None, workers: int | None = None,
                  boost: float | None = None) -> dict[str, Any]:
    """What ``reproduce`` would run, without running it (and without needing the device or
    the data): the distinct jobs and the estimated cost (``cost.estimate_cost``)."""
    scale_name, scale = resolve_scale(scale, experiments, boost)
    _, unique = plan_all(scale, experiments, out, data_root)
    jobs = list(unique.values())
    workers = workers or default_workers(scale)
    return {"scale": scale_name, "device": scale.device, "jobs": jobs,
            "cost": estimate_cost(jobs, workers)}



def run_key(job: dict[str, Any]) -> str:
    """What makes a job distinct (its config less the run name, and its kind and options)."""
    cfg = {k: v for k, v in job["cfg"].items() if k != "name"}
    rest = {k: v for k, v in job.items() if k not in ("cfg", "out", "row")}
    return json.dumps([cfg, rest], sort_keys=True, default=str)

