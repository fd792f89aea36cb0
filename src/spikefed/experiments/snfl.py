"""Reproduce the SNFL paper's experiments (Tables 1-3, Fig. 3, Appendix A) at two scales.

Every run goes through :func:`build_federation` and :class:`Simulation`. A run is a *job*
(plain dict, picklable) so independent runs can go to a process pool. Each experiment writes
``<out>/<experiment>/results.csv`` and ``results.md`` (plus a plot where natural) and keeps the
run directories under ``<out>/runs/``.
"""

from __future__ import annotations

import csv
import json
import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from spikefed.config import ExperimentConfig, validate_config
from spikefed.experiment import Federation, build_federation
from spikefed.fl.aggregation import weighted_average
from spikefed.fl.base import Algorithm, ClientData, Tensors, Upload
from spikefed.fl.robust import coordinate_median, flatten_uploads, krum, krum_scores, trimmed_mean
from spikefed.fl.snfl import SNFL, SNN, inferred_biases
from spikefed.security import (
    ModelReplacement,
    Trigger,
    anomaly_scores,
    attack_success_rate,
    flag_outliers,
    poison_client,
    roc_auc,
    separation_ratio,
    threshold_vectors,
)
from spikefed.sim import Simulation
from spikefed.sim.evaluate import evaluate

EXPERIMENTS = ("table", "stragglers", "clients", "T", "bias", "backdoor")
METHODS = ("fedavg", "s-fedavg", "fedprox", "s-fedprox", "moon", "s-moon", "solo")


@dataclass(frozen=True)
class Scale:
    """Everything that differs between the CPU smoke scale and the paper's setting."""

    dataset: str
    model: str
    T: int
    rounds: int
    local_epochs: int
    lr: float
    batch_size: int
    weight_decay: float
    calib_size: int
    max_train_per_client: int | None
    test_subset: int | None
    device: str
    table_clients: tuple[int, ...]
    table_betas: tuple[float, ...]
    straggler_clients: int
    straggler_fractions: tuple[float, ...]
    client_counts: tuple[int, ...]
    T_values: tuple[int, ...]
    backdoor_clients: int = 10
    backdoor_attackers: int = 2
    backdoor_rounds: int = 4
    #: Scaled model replacement boost of the second backdoor run (the first is data poisoning
    #: only); None: clients / attackers (Bagdasaryan et al.'s n/eta with eta = 1, shared by the
    #: attackers); 1: no boosted run.
    backdoor_boost: float | None = None
    #: seeds of the accuracy table (mean ± std over them when there are several)
    seeds: tuple[int, ...] = (0,)
    #: data.augment of every run (None: the config default, `auto`)
    augment: str | None = None
    #: rounds at which the learning rate is multiplied by 0.1 (empty: constant rate)
    lr_milestones: tuple[int, ...] = ()
    #: partition of the non-IID table rows: label skew `dirichlet` or the paper's `quantity`
    #: skew (client i gets a Dir(beta) share q_i of the data, SNFL Sec. 5.2)
    non_iid: str = "dirichlet"
    #: evaluate every client's ANN on the test set (the paper's client-accuracy rows)
    eval_clients: bool = True
    eval_batch_size: int = 500
    extra: dict[str, Any] = field(default_factory=dict)


SCALES: dict[str, Scale] = {
    # LeNet-5 with BN on the bundled MNIST subset; under 2 min on 16 cores with --workers 10.
    "small": Scale(dataset="mnist-mini", model="lenet5", T=16, rounds=3, local_epochs=1,
                   lr=0.05, batch_size=32, weight_decay=0.0, calib_size=32,
                   max_train_per_client=300, test_subset=500, device="cpu",
                   table_clients=(5, 10), table_betas=(0.5, 1.0), straggler_clients=10,
                   straggler_fractions=(0.2, 0.5, 1.0), client_counts=(5, 10, 20),
                   T_values=(8, 16, 32), backdoor_rounds=4),
    # The paper: ResNet-20, CIFAR-10 (local files), T = 256, 100 rounds x 5 local epochs.
    "full": Scale(dataset="cifar10", model="resnet20", T=256, rounds=100, local_epochs=5,
                  lr=0.1, batch_size=64, weight_decay=1e-5, calib_size=128,
                  max_train_per_client=None, test_subset=None, device="auto",
                  table_clients=(5, 10, 15), table_betas=(0.5, 1.0, 2.0), straggler_clients=60,
                  straggler_fractions=(0.1, 0.2, 0.5, 0.7, 1.0), client_counts=(5, 10, 15, 60),
                  T_values=(64, 128, 192, 256, 320), backdoor_rounds=20),
    # Table 1's CIFAR-10 rows cut to fit one H100/H200 in about 10 minutes (an estimate, see
    # `estimate_cost`): 10 clients, IID and the paper's quantity skew Dir(0.5); 5 rounds x 1
    # local epoch (paper: 100 x 5) with x0.1 at round 4 (paper: at 61 and 96 of 100); server
    # SNN T = 32 (paper: 256); 64 calibration images per client; crop+flip augmentation;
    # batch 128 (paper: not stated); two seeds; table jobs 4 at a time (`GPU_WORKERS`).
    "gpu": Scale(dataset="cifar10", model="resnet20", T=32, rounds=5, local_epochs=1,
                 lr=0.1, batch_size=128, weight_decay=1e-5, calib_size=64,
                 max_train_per_client=None, test_subset=None, device="cuda",
                 table_clients=(10,), table_betas=(0.5,), straggler_clients=10,
                 straggler_fractions=(0.2, 0.5, 1.0), client_counts=(10,), T_values=(32,),
                 backdoor_rounds=5, seeds=(0, 1), augment="crop_flip", lr_milestones=(4,),
                 non_iid="quantity", eval_clients=True, eval_batch_size=1000),
}

#: jobs run concurrently on the one GPU by default at the `gpu` scale (ResNet-20 at batch 128
#: is launch-bound, so a few processes share the GPU better than one)
GPU_WORKERS = 4

#: SNFL's reported server accuracy (%) on CIFAR-10 with 10 clients: Table 1 (IID) and Table 2
#: (Dir(0.5) quantity skew). SOLO has no server model.
PAPER_SERVER_ACC: dict[str, dict[str, float]] = {
    "IID": {"fedavg": 92.2, "s-fedavg": 95.3, "fedprox": 91.6, "s-fedprox": 95.1,
            "moon": 92.8, "s-moon": 94.6},
    "Dir(0.5)": {"fedavg": 88.67, "s-fedavg": 86.88, "fedprox": 89.97, "s-fedprox": 93.88,
                 "moon": 90.95, "s-moon": 93.38},
}


def _mean_std(values: list[float]) -> tuple[float, float]:
    return float(np.mean(values)), float(np.std(values))


# ----- configs -------------------------------------------------------------------------------
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


def cap_clients(fed: Federation, max_per_client: int | None, seed: int) -> None:
    """Keep at most ``max_per_client`` random training samples per client (in place)."""
    if max_per_client is None:
        return
    g = torch.Generator().manual_seed(seed)
    for i, c in enumerate(fed.clients):
        if len(c) > max_per_client:
            idx = torch.randperm(len(c), generator=g)[:max_per_client]
            fed.clients[i] = ClientData(c.x[idx], c.y[idx], c.transform)


class Recorder(Algorithm):
    """Wraps an algorithm and keeps what an honest-but-curious server sees each round
    (uploads, the new server state) plus, for measurement only, the clients' true biases."""

    def __init__(self, inner: Algorithm) -> None:
        self.inner = inner
        self.name = inner.name
        self.communicates = inner.communicates
        self.rounds: list[dict[str, Any]] = []
        self._true_bias: dict[int, Tensors] = {}

    def init_server(self, model):
        return self.inner.init_server(model)

    def client_update(self, client_id, broadcast, client_state, data, ctx):
        upload, state, metrics = self.inner.client_update(client_id, broadcast, client_state,
                                                          data, ctx)
        self._true_bias[client_id] = state.get("bias", {})
        return upload, state, metrics

    def aggregate(self, server_state, uploads):
        server_state, broadcast = self.inner.aggregate(server_state, uploads)
        self.rounds.append({"uploads": list(uploads), "server_state": server_state,
                            "true_bias": dict(self._true_bias)})
        return server_state, broadcast

    def server_model_state(self, server_state):
        return self.inner.server_model_state(server_state)

    def server_model(self, server_state, model_fn):
        return self.inner.server_model(server_state, model_fn)

    def client_model_state(self, upload, client_state):
        return self.inner.client_model_state(upload, client_state)

    def upload_keys(self, model):
        return self.inner.upload_keys(model)


# ----- jobs ----------------------------------------------------------------------------------
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


def bias_inference(recorder: Recorder) -> dict[str, float]:
    """L2 distance between the ANN biases the server infers (``mu + (b_S - beta) sigma/gamma``)
    and the clients' true biases, last round; plus the population-mean estimator."""
    last = recorder.rounds[-1]
    layout = last["server_state"]["layout"]
    inferred = {u.client_id: inferred_biases(u.tensors, layout) for u in last["uploads"]}
    mean_est = {k: torch.stack([b[k] for b in inferred.values()]).mean(0)
                for k in next(iter(inferred.values()))}

    def vec(b: Tensors) -> torch.Tensor:
        return torch.cat([b[k].reshape(-1) for k in sorted(b)])

    dist, rel, dist_mean = [], [], []
    for cid, est in inferred.items():
        true = vec(last["true_bias"][cid])
        dist.append(float((vec(est) - true).norm()))
        rel.append(dist[-1] / max(float(true.norm()), 1e-12))
        dist_mean.append(float((vec(mean_est) - true).norm()))
    return {"l2_unfold": float(np.mean(dist)), "l2_unfold_std": float(np.std(dist)),
            "rel_l2_unfold": float(np.mean(rel)), "l2_mean_estimator": float(np.mean(dist_mean))}


def _snn_from(alg: SNFL, snn_tensors: Tensors, fed: Federation) -> torch.nn.Module:
    return alg.server_model({"snn": snn_tensors}, fed.model_fn)


def backdoor_analysis(recorder: Recorder, fed: Federation, trigger: Trigger,
                      attackers: list[int]) -> list[dict[str, Any]]:
    """Per round: clean accuracy and attack success of the server SNN; threshold-based
    detection (ROC-AUC, separation ratio, flags) and Krum's score as a detector; clean
    accuracy / ASR when the same uploads are aggregated by Krum, median, trimmed mean or
    the threshold filter."""
    alg = recorder.inner
    if isinstance(alg, ModelReplacement):
        alg = alg.inner
    assert isinstance(alg, SNFL)
    x, y = fed.test_x, fed.test_y
    rows = []
    for r, rec in enumerate(recorder.rounds, start=1):
        uploads: list[Upload] = rec["uploads"]
        labels = [u.client_id in attackers for u in uploads]
        keys = sorted(k for k in uploads[0].tensors if k.endswith("thresh.theta"))
        scores = anomaly_scores(threshold_vectors([u.tensors for u in uploads], keys))
        flags = flag_outliers(scores)
        snn_keys = [k for k in uploads[0].tensors if k.startswith(SNN)]
        n_byz = max(1, len(attackers))
        k_scores = krum_scores(flatten_uploads(uploads, snn_keys), n_byz)
        row: dict[str, Any] = {"round": r}
        if any(labels) and not all(labels):
            row.update(auc_threshold=roc_auc(scores, labels),
                       separation=separation_ratio(scores, labels),
                       auc_krum=roc_auc(k_scores, labels),
                       flagged_attackers=int(sum(f and lab for f, lab in zip(flags.tolist(),
                                                                            labels, strict=True))),
                       flagged_clean=int(sum(f and not lab for f, lab in zip(flags.tolist(),
                                                                             labels, strict=True))),
                       score_clean_max=float(scores[~torch.tensor(labels)].max()),
                       score_poisoned_min=float(scores[torch.tensor(labels)].min()))
        kept = [u for u, f in zip(uploads, flags.tolist(), strict=True) if not f] or uploads
        aggregated: dict[str, Tensors] = {
            "mean": rec["server_state"]["snn"],
            "krum": _strip(krum(uploads, n_byz, 1, snn_keys)),
            "median": _strip(coordinate_median(uploads, snn_keys)),
            "trimmed": _strip(trimmed_mean(uploads, n_byz, snn_keys)),
            "threshold_filter": _strip(weighted_average(kept, snn_keys)),
        }
        for agg_name, tensors in aggregated.items():
            model = _snn_from(alg, tensors, fed)
            row[f"acc_{agg_name}"] = evaluate(model, x, y, 500).accuracy
            row[f"asr_{agg_name}"] = attack_success_rate(model, x, y, trigger)
        rows.append(row)
    return rows


def _strip(tensors: Tensors) -> Tensors:
    return {k[len(SNN):]: v for k, v in tensors.items()}


# ----- experiment plans ----------------------------------------------------------------------
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
                for m in METHODS:
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


# ----- reporting -----------------------------------------------------------------------------
def _fmt(v: Any) -> str:
    if v is None:
        return "/"
    if isinstance(v, float):
        return f"{v:.4f}"
    return str(v)


def write_rows(rows: list[dict[str, Any]], directory: Path, title: str, note: str = "") -> None:
    """``results.csv`` and ``results.md`` (one line per row) in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    cols = list(dict.fromkeys(k for r in rows for k in r if k != "per_round"))
    with open(directory / "results.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, cols)
        w.writeheader()
        for r in rows:
            w.writerow({c: r.get(c) for c in cols})
    lines = [f"# {title}", "", note, "", "| " + " | ".join(cols) + " |",
             "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(_fmt(r.get(c)) for c in cols) + " |" for r in rows]
    (directory / "results.md").write_text("\n".join(lines) + "\n")


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


def table_markdown(rows: list[dict[str, Any]]) -> str:
    """Paper-style Table 1/2: methods as columns, client mean +- std and server accuracy.

    Client cells: mean over seeds of the client-ANN mean ± the std across clients (as the
    paper); server cells: one seed's value, or mean ± std over seeds when there are several.
    """
    settings = list(dict.fromkeys(r["setting"] for r in rows))
    head = "| setting | " + " | ".join(METHODS) + " |\n|" + "---|" * (len(METHODS) + 1)
    out = ["## Client accuracy (mean ± std of client ANNs)", "", head]
    by = _cells(rows)
    for s in settings:
        cells = []
        for m in METHODS:
            group = by.get((s, m), [])
            mean = _pct([r["client_acc_mean"] for r in group])
            spread = _pct([r["client_acc_std"] for r in group])
            cells.append("-" if mean is None or spread is None else
                         f"{mean[0]:.1f}±{spread[0]:.1f}")
        out.append(f"| {s} | " + " | ".join(cells) + " |")
    out += ["", "## Server accuracy (S-*: the aggregated SNN; ± over seeds)", "", head]
    for s in settings:
        cells = []
        for m in METHODS:
            acc = _pct([r["server_acc"] for r in by.get((s, m), [])])
            cells.append("/" if acc is None else f"{acc[0]:.1f}" if acc[2] == 1 else
                         f"{acc[0]:.1f}±{acc[1]:.1f}")
        out.append(f"| {s} | " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


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


def paper_comparison(rows: list[dict[str, Any]], clients: int = 10) -> str:
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
        out += [f"## {setting}: server accuracy (%), ours vs SNFL (seeds {seeds})", "",
                "| method | ours | paper |", "|---|---:|---:|"]
        for m in METHODS:
            acc = _pct([r["server_acc"] for r in by.get((setting, m), [])])
            ours = "/" if acc is None else f"{acc[0]:.1f} ± {acc[1]:.1f}"
            out.append(f"| {m} | {ours} | {paper.get(m, '/')} |")
        out += ["", "| pair | ours: S − base | paper: S − base | S beats base (ours) |",
                "|---|---:|---:|---|"]
        for base_name in ("fedavg", "fedprox", "moon"):
            base = _pct([r["server_acc"] for r in by.get((setting, base_name), [])])
            snfl = _pct([r["server_acc"] for r in by.get((setting, "s-" + base_name), [])])
            if base is None or snfl is None:
                continue
            gap = paper["s-" + base_name] - paper[base_name]
            out.append(f"| s-{base_name} vs {base_name} | {snfl[0] - base[0]:+.1f} | "
                       f"{gap:+.1f} | {_verdict(base, snfl)} |")
        out.append("")
    return "\n".join(out)


def _plot(rows: list[dict[str, Any]], x: str, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for m in dict.fromkeys(r["method"] for r in rows):
        pts = sorted((r[x], r["server_acc"]) for r in rows if r["method"] == m)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=m)
    ax.set_xlabel(x)
    ax.set_ylabel("server accuracy")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def report(experiment: str, rows: list[dict[str, Any]], out: Path, scale_name: str,
           dataset: str | None = None) -> None:
    """Write the experiment's tables (and plot); on CIFAR-10 the table sits beside the paper's."""
    d = out / experiment
    note = f"scale: {scale_name}. Accuracies are fractions of the test set."
    if experiment == "table":
        write_rows(rows, d, "SNFL Tables 1/2: accuracy", note)
        text = f"# SNFL Tables 1/2 ({scale_name} scale)\n\n" + table_markdown(rows)
        if dataset == "cifar10":
            text += "\n" + paper_comparison(rows)
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


def _plot_backdoor(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def reproduce(scale: str | Scale, experiments: list[str], out: Path, data_root: str | None = None,
              workers: int | None = None, progress: Callable[[str, int], None] | None = None,
              boost: float | None = None) -> dict[str, list[dict[str, Any]]]:
    """Run ``experiments`` at ``scale`` (name in SCALES, or a Scale); write reports to ``out``.

    ``workers``: runs in parallel processes (default: ``default_workers(scale)``).

    ``boost`` overrides the scale's model-replacement boost of the backdoor experiment.

    ``progress(event, n)`` is called with ``('total', n_jobs)`` once, then ``('done', 1)``
    after each finished run.
    """
    scale_name, scale = _resolve_scale(scale, experiments, boost)
    if scale.dataset != "mnist-mini" and data_root is None and not os.environ.get("SPIKEFED_DATA"):
        raise ValueError(f"--scale {scale_name} reads {scale.dataset} from local files; pass "
                         "--data-root DIR (or set SPIKEFED_DATA)")
    if scale.device == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--scale {scale_name} runs on a CUDA GPU and none is visible here; "
                         "use --scale small on this machine (or --dry-run to see the plan)")
    all_jobs, unique = _plan_all(scale, experiments, out, data_root)
    workers = workers or default_workers(scale)
    if progress:
        progress("total", len(unique))
    done: dict[str, dict[str, Any]] = {}
    if workers <= 1:
        for key, j in unique.items():
            done[key] = run_job(j)
            if progress:
                progress("done", 1)
    else:
        # CUDA cannot be used in forked children: start fresh interpreters for GPU jobs
        context = multiprocessing.get_context("spawn" if scale.device == "cuda" else None)
        with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            futures = {key: pool.submit(run_job, j) for key, j in unique.items()}
            for key, f in futures.items():
                done[key] = f.result()
                if progress:
                    progress("done", 1)
    results: dict[str, list[dict[str, Any]]] = {e: [] for e in experiments}
    for e, j in all_jobs:
        results[e].append({**j["row"], **done[_run_key(j)]})
    for e in experiments:
        report(e, results[e], out, scale_name, dataset=scale.dataset)
    return results


def _resolve_scale(scale: str | Scale, experiments: list[str], boost: float | None
                   ) -> tuple[str, Scale]:
    if isinstance(scale, str):
        if scale not in SCALES:
            raise ValueError(f"--scale={scale!r} is unknown; choose one of {sorted(SCALES)}")
        scale_name, scale = scale, SCALES[scale]
    else:
        scale_name = "custom"
    if boost is not None:
        scale = replace(scale, backdoor_boost=boost)
    unknown = sorted(set(experiments) - set(EXPERIMENTS))
    if unknown:
        raise ValueError(f"--experiments {unknown} unknown; choose from {list(EXPERIMENTS)}")
    return scale_name, scale


def _plan_all(scale: Scale, experiments: list[str], out: Path, data_root: str | None
              ) -> tuple[list[tuple[str, dict[str, Any]]], dict[str, dict[str, Any]]]:
    """Every (experiment, job) pair and the distinct jobs among them (identical runs, e.g.
    table and clients at n=10, run once)."""
    all_jobs = [(e, j) for e in experiments for j in plan(e, scale, out, data_root)]
    unique: dict[str, dict[str, Any]] = {}
    for _, j in all_jobs:
        unique.setdefault(_run_key(j), j)
    return all_jobs, unique


def describe_plan(scale: str | Scale, experiments: list[str], out: Path,
                  data_root: str | None = None, workers: int | None = None,
                  boost: float | None = None) -> dict[str, Any]:
    """What ``reproduce`` would run, without running it (and without needing the device or
    the data): the distinct jobs and the estimated cost (``snfl_cost.estimate_cost``)."""
    from spikefed.experiments.snfl_cost import estimate_cost

    scale_name, scale = _resolve_scale(scale, experiments, boost)
    _, unique = _plan_all(scale, experiments, out, data_root)
    jobs = list(unique.values())
    workers = workers or default_workers(scale)
    return {"scale": scale_name, "device": scale.device, "jobs": jobs,
            "cost": estimate_cost(jobs, workers)}


def default_workers(scale: Scale) -> int:
    """Concurrent jobs by default: `GPU_WORKERS` on a GPU scale, else 2 processes."""
    return GPU_WORKERS if scale.device == "cuda" else 2


def _run_key(job: dict[str, Any]) -> str:
    cfg = {k: v for k, v in job["cfg"].items() if k != "name"}
    rest = {k: v for k, v in job.items() if k not in ("cfg", "out", "row")}
    return json.dumps([cfg, rest], sort_keys=True, default=str)


def with_scale(name: str, **changes: Any) -> Scale:
    """A copy of scale ``name`` with fields changed (tests use tiny scales)."""
    return replace(SCALES[name], **changes)
