"""Measurements of the SNFL server's view: what an honest-but-curious server records each
round, how well it infers the clients' ANN biases, and how well it detects a backdoor."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from spikefed.experiment import Federation
from spikefed.fl.aggregation import weighted_average
from spikefed.fl.base import Algorithm, Tensors, Upload
from spikefed.fl.robust import coordinate_median, flatten_uploads, krum, krum_scores, trimmed_mean
from spikefed.fl.snfl import SNFL, SNN, inferred_biases
from spikefed.fl.wrap import DelegatingAlgorithm
from spikefed.rounds.evaluate import evaluate
from spikefed.security import (
    ModelReplacement,
    Trigger,
    anomaly_scores,
    attack_success_rate,
    flag_outliers,
    roc_auc,
    separation_ratio,
    threshold_vectors,
)


class Recorder(DelegatingAlgorithm):
    """Wraps an algorithm and keeps what an honest-but-curious server sees each round
    (uploads, the new server state) plus, for measurement only, the clients' true biases."""

    def __init__(self, base: Algorithm) -> None:
        super().__init__(base)
        self.rounds: list[dict[str, Any]] = []
        self._true_bias: dict[int, Tensors] = {}

    def client_update(self, client_id, broadcast, client_state, data, ctx):
        upload, state, metrics = self.base.client_update(client_id, broadcast, client_state,
                                                         data, ctx)
        self._true_bias[client_id] = state.get("bias", {})
        return upload, state, metrics

    def aggregate(self, server_state, uploads):
        server_state, broadcast = self.base.aggregate(server_state, uploads)
        self.rounds.append({"uploads": list(uploads), "server_state": server_state,
                            "true_bias": dict(self._true_bias)})
        return server_state, broadcast


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
    alg = recorder.base
    if isinstance(alg, ModelReplacement):
        alg = alg.base
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

