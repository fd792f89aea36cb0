"""The in-process engine: a round loop over clients in one Python process."""

from __future__ import annotations

import itertools
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from spikefed.config import ExperimentConfig, dump_config
from spikefed.energy import add_client_energy, energy_summary, round_energy
from spikefed.experiment import Federation, build_federation
from spikefed.fl.base import Tensors, Upload, payload_bytes
from spikefed.report.metrics import MetricsLog
from spikefed.report.plots import plot_curves
from spikefed.report.sinks import publish_run, require_sinks
from spikefed.sim.checkpoint import (
    StateWriteError,
    atomic_write_bytes,
    load_checkpoint,
    save_checkpoint,
)
from spikefed.sim.divergence import loss_limit, screen_losses
from spikefed.sim.evaluate import evaluate
from spikefed.sim.on_chip import hardware_record
from spikefed.sim.resume import check_checkpoint, check_metrics_complete
from spikefed.sim.rundir import RunDirLock, check_fresh_start, clean_temporaries
from spikefed.sim.validation import Clip, Rejection, UploadValidator, require_quorum
from spikefed.sim.vectorized import client_updates

log = logging.getLogger("spikefed.sim")

ProgressFn = Callable[[str, dict[str, Any]], None]


def sample_clients(num_clients: int, cfg: ExperimentConfig, round_idx: int
                   ) -> tuple[list[int], list[int]]:
    """Participants of a round and which of them straggle (drop out); seeded by (seed, round)."""
    t = cfg.train
    rng = np.random.default_rng([cfg.seed, round_idx])
    m = t.clients_per_round or max(1, round(t.fraction * num_clients))
    m = min(m, num_clients)
    chosen = sorted(int(c) for c in rng.choice(num_clients, size=m, replace=False))
    drops = rng.random(m) < t.straggler_prob
    stragglers = [c for c, d in zip(chosen, drops, strict=True) if d]
    return chosen, stragglers


@dataclass
class RunState:
    """Everything that must survive a restart."""

    round: int
    server_state: dict[str, Any]
    broadcast: Tensors
    client_states: dict[int, dict[str, Any]] = field(default_factory=dict)


class Simulation:
    """Runs an experiment config in process and writes the run directory."""

    def __init__(self, cfg: ExperimentConfig, out_dir: str | Path,
                 federation: Federation | None = None) -> None:
        self.cfg = cfg
        self.out = Path(out_dir)
        self.fed = federation or build_federation(cfg)
        self.metrics = MetricsLog(self.out / "metrics.jsonl")
        require_sinks(cfg.report)
        with torch.random.fork_rng(devices=[]):  # building a model must not move the RNG
            reference = self.fed.model_fn()
        self.validator = UploadValidator.for_config(self.fed.algorithm, reference, cfg.train)

    # ----- set-up -------------------------------------------------------------------------
    def _fresh_state(self) -> RunState:
        model = self.fed.initial_model()
        server_state, broadcast = self.fed.algorithm.init_server(model)
        clients: dict[int, dict[str, Any]] = {i: {} for i in range(len(self.fed.clients))}
        return RunState(0, server_state, broadcast, clients)

    def _write_static_outputs(self) -> None:
        from spikefed.data import plot_partition

        self.out.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(self.out / "config.yaml", dump_config(self.cfg).encode())
        plot_partition(self.fed.train_labels, self.fed.partitions, self.out / "partition.png",
                       classes=self.fed.classes)

    def _checkpoint(self, state: RunState) -> None:
        save_checkpoint(self.out / "checkpoint", {
            "round": state.round, "server_state": state.server_state,
            "broadcast": state.broadcast, "client_states": state.client_states,
            "config": self.cfg.model_dump(mode="json"),
        })

    def _restore(self) -> RunState:
        ckpt = load_checkpoint(self.out / "checkpoint")
        check_checkpoint(ckpt, self.cfg.model_dump(mode="json"), self.out / "checkpoint")
        kept = self.metrics.truncate_after(ckpt["round"])
        check_metrics_complete(kept, ckpt["round"], self.metrics.path)
        return RunState(ckpt["round"], ckpt["server_state"], ckpt["broadcast"],
                        ckpt["client_states"])

    # ----- one round ----------------------------------------------------------------------
    def _evaluate_state(self, tensors: Tensors | None, count: bool = False,
                        model: torch.nn.Module | None = None,
                        progress: Callable[[int, int], None] | None = None):
        """Evaluate `model`, or else `model_fn()` loaded with `tensors` (None: nothing)."""
        if model is None:
            if tensors is None:
                return None
            model = self.fed.model_fn()
            model.load_state_dict(tensors)
        return evaluate(model, self.fed.test_x, self.fed.test_y, self.cfg.train.eval_batch_size,
                        self.fed.device, count_activity=count, progress=progress)

    def run_round(self, state: RunState, progress: ProgressFn | None = None) -> dict[str, Any]:
        """Advance `state` by one round in place and return the round's metrics record."""
        r = state.round + 1
        start = time.perf_counter()
        alg = self.fed.algorithm
        chosen, stragglers = sample_clients(len(self.fed.clients), self.cfg, r)
        ctx = self.fed.train_context(r)
        active = [cid for cid in chosen if cid not in stragglers]
        uploads, new_states, rejected, clipped = self._train_clients(state, active, ctx,
                                                                     progress)
        uploads = screen_losses(r, uploads, new_states, rejected, self.cfg.train.divergence,
                                loss_limit(len(self.fed.classes), self.cfg.train.divergence_factor))
        for bad in rejected:
            log.warning("round %d: rejected client %d: %s", r, bad.client, bad.reason)
        for clip in clipped:
            log.warning("round %d: clipped client %d's update from norm %.4g to %.4g", r,
                        clip.client, clip.norm, clip.bound)
        require_quorum(r, len(uploads), self.cfg.train.min_clients, rejected)
        state.client_states.update(new_states)
        bytes_down = payload_bytes(state.broadcast) * len(chosen) if alg.communicates else 0
        bytes_up = sum(u.nbytes for u in uploads)
        aggregated = len(uploads) >= self.cfg.train.min_clients
        if aggregated:
            state.server_state, state.broadcast = alg.aggregate(state.server_state, uploads)
        else:
            log.warning("round %d: %d upload(s) < train.min_clients=%d; server model unchanged",
                        r, len(uploads), self.cfg.train.min_clients)
        state.round = r
        record: dict[str, Any] = {
            "round": r, "lr": ctx.lr, "participants": len(chosen), "uploads": len(uploads),
            "stragglers": len(stragglers), "aggregated": aggregated,
            "bytes_up": bytes_up, "bytes_down": bytes_down,
            "train_loss_mean": _mean([u.metrics.get("train_loss") for u in uploads]),
            "rejected": [bad.as_record() for bad in rejected],
            "clipped": [clip.as_record() for clip in clipped],
        }
        record.update(alg.round_metrics(state.server_state))
        if r % self.cfg.train.eval_every == 0 or r == self.cfg.train.rounds:
            record.update(self._eval_record(state, uploads, progress))
        add_client_energy(record, round_energy(uploads, bytes_up, bytes_down, len(chosen),
                                               self.cfg.energy))
        record["wall_s"] = time.perf_counter() - start
        return record

    def _train_clients(self, state: RunState, active: list[int], ctx: Any,
                       progress: ProgressFn | None
                       ) -> tuple[list[Upload], dict[int, dict[str, Any]], list[Rejection],
                                  list[Clip]]:
        """Run the clients' updates; isolate clients that raise and reject invalid uploads.

        Returns (valid uploads, their clients' new states, rejections, clipped updates). Each
        upload is judged against the client's partition size and the broadcast it trained
        from (`UploadValidator.judge`, which never raises). A client that raises
        is reported and skipped; a batched (vectorised) failure is retried one client at a
        time so the blame lands on the right client.
        """
        uploads: list[Upload] = []
        new_states: dict[int, dict[str, Any]] = {}
        rejected: list[Rejection] = []
        clipped: list[Clip] = []
        pending, mode = list(active), self.cfg.train.vectorize
        while pending:
            updates = client_updates(self.fed.algorithm, state.broadcast, state.client_states,
                                     self.fed.clients, pending, ctx, mode)
            for done in itertools.count():
                try:
                    cid, upload, new_state = next(updates)
                except StopIteration:
                    pending = []
                    break
                except Exception as exc:  # a failing client must not end the federation
                    if mode != "off":  # a batched failure: retry the rest one by one
                        log.warning("round %d: vectorised client update failed (%s: %s); "
                                    "retrying clients %s one by one", ctx.round,
                                    type(exc).__name__, exc, pending[done:])
                        mode, pending = "off", pending[done:]
                    else:
                        rejected.append(Rejection(pending[done], "client_update raised "
                                                  f"{type(exc).__name__}: {exc}"))
                        pending = pending[done + 1:]
                    break
                verdict = self.validator.judge(upload, cid, broadcast=state.broadcast,
                                               partition_size=len(self.fed.clients[cid]))
                if verdict.upload is not None:
                    uploads.append(verdict.upload)
                    new_states[cid] = new_state
                    clipped += [verdict.clip] if verdict.clip else []
                else:
                    rejected.append(verdict.rejection)
                if progress:
                    progress("client", {"round": ctx.round, "client": cid})
        return uploads, new_states, rejected, clipped

    def _eval_record(self, state: RunState, uploads: list[Upload],
                     progress: ProgressFn | None = None) -> dict[str, Any]:
        rec: dict[str, Any] = {}

        def on_batch(done: int, total: int) -> None:
            if progress:
                progress("eval", {"round": state.round, "done": done, "total": total})

        server = self._evaluate_state(None, count=True, model=self.fed.algorithm.server_model(
            state.server_state, self.fed.model_fn), progress=on_batch)
        if server is not None:
            rec.update(server_acc=server.accuracy, server_loss=server.loss,
                       spikes_per_sample=server.spikes_per_sample,
                       synops_per_sample=server.synops_per_sample,
                       macs_per_sample=server.macs_per_sample,
                       energy_per_sample_pj=self.cfg.energy.energy_pj(
                           server.spikes_per_sample, server.synops_per_sample,
                           server.macs_per_sample))
        if self.cfg.train.eval_clients and uploads:
            results = [self._evaluate_state(
                self.fed.algorithm.client_model_state(u, state.client_states[u.client_id]))
                for u in uploads]
            accs = [res.accuracy for res in results if res is not None]
            losses = [res.loss for res in results if res is not None]
            if accs:
                rec.update(client_acc_mean=float(np.mean(accs)), client_acc_std=float(np.std(accs)),
                           client_loss_mean=float(np.mean(losses)))
                rec["clients"] = [
                    {"client": u.client_id, "num_samples": u.num_samples, "acc": res.accuracy,
                     "loss": res.loss, "train_loss": u.metrics.get("train_loss")}
                    for u, res in zip(uploads, results, strict=True) if res is not None]
        if self.cfg.hardware is not None:  # simulated chips (spikefed.sim.on_chip)
            rec.update(hardware_record(
                self.cfg.hardware, self.fed.algorithm, state.server_state, state.client_states,
                uploads, self.fed.model_fn, self.fed.test_x, self.fed.test_y,
                self.cfg.train.eval_batch_size, self.fed.device, self.cfg.train.eval_clients))
        return rec

    # ----- whole run ----------------------------------------------------------------------
    def run(self, resume: bool = False, progress: ProgressFn | None = None,
            stop_after: int | None = None, overwrite: bool = False) -> dict[str, Any]:
        """Run (or resume) to `train.rounds`; `stop_after` ends early after that round.

        The run directory is locked for the duration (`RunDirError` if another process holds
        it). A fresh run refuses a directory that already holds a run unless `overwrite`.
        """
        if resume and overwrite:
            raise ValueError("resume=True continues a run and overwrite=True replaces it; "
                             "choose one")
        with RunDirLock(self.out):
            clean_temporaries(self.out)
            if resume:
                state = self._restore()
                self._write_static_outputs()
            else:
                check_fresh_start(self.out, overwrite)
                self._write_static_outputs()
                state = self._fresh_state()
            while state.round < self.cfg.train.rounds:
                record = self.run_round(state, progress)
                self._persist(record, state)
                if progress:
                    progress("round", record)
                if stop_after is not None and state.round >= stop_after:
                    break
            return self.finish()

    def _persist(self, record: dict[str, Any], state: RunState) -> None:
        """Append the round's metrics, then checkpoint; a write error leaves the last good
        checkpoint in place (a metrics line without its checkpoint is dropped on resume)."""
        try:
            self.metrics.append(record)
        except OSError as exc:
            raise StateWriteError(exc.errno, f"could not append round {state.round} to "
                                  f"{self.metrics.path}: {exc.strerror or exc}; the checkpoint "
                                  f"of round {state.round - 1} is intact: free space and continue "
                                  f"with `spikefed run --resume {self.out}`") from exc
        self._checkpoint(state)

    def finish(self) -> dict[str, Any]:
        """Write summary.json, curves.png, report.html (and sinks) from the metrics so far."""
        records = self.metrics.records()
        summary = summarize(records, energy_targets=self.cfg.energy.target_acc)
        summary["run_dir"] = str(self.out)
        (self.out / "summary.json").write_text(json.dumps(summary, indent=2))
        plot_curves(records, self.out / "curves.png", title=self.cfg.name)
        publish_run(self.out, self.cfg)
        return summary


def _mean(values: list[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return float(np.mean(vals)) if vals else None


def summarize(records: list[dict[str, Any]],
              energy_targets: list[float] | None = None) -> dict[str, Any]:
    """Final and best accuracies, total bytes, energy and time, from the per-round records
    (`energy_targets`: accuracies to report the energy to reach, spikefed.energy)."""
    evals = [r for r in records if r.get("server_acc") is not None
             or r.get("client_acc_mean") is not None]
    last = evals[-1] if evals else {}
    server_accs = [r["server_acc"] for r in evals if r.get("server_acc") is not None]
    return {
        "rounds": records[-1]["round"] if records else 0,
        "final_server_acc": last.get("server_acc"),
        "final_server_loss": last.get("server_loss"),
        "best_server_acc": max(server_accs) if server_accs else None,
        "final_client_acc_mean": last.get("client_acc_mean"),
        "final_client_acc_std": last.get("client_acc_std"),
        "total_bytes_up": sum(r["bytes_up"] for r in records),
        "total_bytes_down": sum(r["bytes_down"] for r in records),
        "spikes_per_sample": last.get("spikes_per_sample"),
        "synops_per_sample": last.get("synops_per_sample"),
        "energy_per_sample_pj": last.get("energy_per_sample_pj"),
        "wall_s": sum(r["wall_s"] for r in records),
        "finite": all(math.isfinite(r.get("train_loss_mean") or 0.0) and not r.get("nonfinite")
                      for r in records),
        **{k: v for k, v in (records[-1] if records else {}).items() if k.startswith("dp_")},
        **{k: v for k, v in last.items() if k.startswith("hw_")},
        **energy_summary(records, energy_targets),
    }
