"""A round's evaluation record: the server model, each client's local model, on-chip accuracy.

Both engines build the record here, so `metrics.jsonl` has the same keys on both. A client's
local model (`Algorithm.client_model_state(upload, client_state)`) may need the client's
private state (SCAFFOLD's local model, SNFL's ANN), which only the client holds. So the
client's evaluation is its own step, `RoundEvaluator.client`: the in-process engine runs it
on the server (it holds every client state), Flower runs it on the client node after training
and returns the numbers in the reply (`ClientEval.as_metrics` / `from_metrics`). The server
turns the per-client results into the record with `RoundEvaluator.record`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from spikefed.experiment import Federation
from spikefed.fl.base import Algorithm, Upload
from spikefed.rounds.evaluate import evaluate
from spikefed.rounds.on_chip import client_chip_accuracy, hardware_server_record

#: prefix of the client-evaluation entries in a reply's metrics (Flower)
EVAL_PREFIX = "eval-"


@dataclass(frozen=True)
class ClientEval:
    """One client's local model on the test set (and on its own chip, with `hardware:`)."""

    acc: float
    loss: float
    hw_acc: float | None = None

    def as_metrics(self) -> dict[str, float]:
        """Flat numbers to send in a reply (keys start with `EVAL_PREFIX`)."""
        out = {f"{EVAL_PREFIX}acc": self.acc, f"{EVAL_PREFIX}loss": self.loss}
        if self.hw_acc is not None:
            out[f"{EVAL_PREFIX}hw-acc"] = self.hw_acc
        return out

    @staticmethod
    def from_metrics(metrics: dict[str, float]) -> ClientEval | None:
        """Take a client's evaluation out of `metrics` (in place); None if it sent none."""
        found = {k: metrics.pop(k) for k in list(metrics) if k.startswith(EVAL_PREFIX)}
        if f"{EVAL_PREFIX}acc" not in found or f"{EVAL_PREFIX}loss" not in found:
            return None
        return ClientEval(float(found[f"{EVAL_PREFIX}acc"]), float(found[f"{EVAL_PREFIX}loss"]),
                          found.get(f"{EVAL_PREFIX}hw-acc"))


class RoundEvaluator:
    """Evaluates a federation's models on its test set, the same way on every engine."""

    def __init__(self, federation: Federation) -> None:
        self.fed = federation
        self.cfg = federation.cfg

    def due(self, round_idx: int) -> bool:
        """Whether round `round_idx` is evaluated (every `train.eval_every`, and the last)."""
        t = self.cfg.train
        return round_idx % t.eval_every == 0 or round_idx == t.rounds

    def clients_due(self, round_idx: int) -> bool:
        """Whether clients' local models are evaluated in round `round_idx`."""
        return self.cfg.train.eval_clients and self.due(round_idx)

    def client(self, algorithm: Algorithm, upload: Upload, client_state: dict[str, Any]
               ) -> ClientEval | None:
        """Client `upload.client_id`'s local model on the test set (None: it has none)."""
        tensors = algorithm.client_model_state(upload, client_state)
        if tensors is None:
            return None
        fed, t = self.fed, self.cfg.train
        # Flower evaluates on the client right after training, the in-process engine after
        # the round: building models here must not move the global RNG in either place
        with torch.random.fork_rng(devices=[]):
            model = fed.model_fn()
        model.load_state_dict(tensors)
        res = evaluate(model, fed.test_x, fed.test_y, t.eval_batch_size, fed.device)
        hw_acc = None
        if self.cfg.hardware is not None:
            hw_acc = client_chip_accuracy(self.cfg.hardware, upload.client_id, model,
                                          fed.test_x, fed.test_y, t.eval_batch_size, fed.device)
        return ClientEval(res.accuracy, res.loss, hw_acc)

    def record(self, algorithm: Algorithm, server_state: dict[str, Any], uploads: list[Upload],
               client_evals: Mapping[int, ClientEval | None],
               progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
        """The evaluation part of a round record: server accuracy/loss/activity/energy,
        client accuracies (`train.eval_clients`) and on-chip accuracies (`hardware:`)."""
        fed, cfg = self.fed, self.cfg
        rec: dict[str, Any] = {}
        server = algorithm.server_model(server_state, fed.model_fn)
        if server is not None:
            res = evaluate(server, fed.test_x, fed.test_y, cfg.train.eval_batch_size, fed.device,
                           count_activity=True, progress=progress)
            rec.update(server_acc=res.accuracy, server_loss=res.loss,
                       spikes_per_sample=res.spikes_per_sample,
                       synops_per_sample=res.synops_per_sample,
                       macs_per_sample=res.macs_per_sample,
                       energy_per_sample_pj=cfg.energy.energy_pj(
                           res.spikes_per_sample, res.synops_per_sample, res.macs_per_sample))
        evaluated = [(u, client_evals.get(u.client_id)) for u in uploads]
        evaluated = [(u, e) for u, e in evaluated if e is not None]
        if cfg.train.eval_clients and evaluated:
            accs = [e.acc for _, e in evaluated]
            rec.update(client_acc_mean=float(np.mean(accs)), client_acc_std=float(np.std(accs)),
                       client_loss_mean=float(np.mean([e.loss for _, e in evaluated])))
            rec["clients"] = [{"client": u.client_id, "num_samples": u.num_samples,
                               "acc": e.acc, "loss": e.loss,
                               "train_loss": u.metrics.get("train_loss")} for u, e in evaluated]
        if cfg.hardware is not None:  # simulated chips (spikefed.rounds.on_chip)
            rec.update(hardware_server_record(
                cfg.hardware, algorithm.server_model(server_state, fed.model_fn), fed.test_x,
                fed.test_y, cfg.train.eval_batch_size, fed.device))
            chip_accs = [e.hw_acc for _, e in evaluated if e.hw_acc is not None]
            if cfg.train.eval_clients and chip_accs:
                rec["hw_client_acc_mean"] = float(np.mean(chip_accs))
        return rec
