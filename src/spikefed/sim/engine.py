"""The in-process engine: a round loop over clients in one Python process."""

from __future__ import annotations

import itertools
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from spikefed.config import ExperimentConfig, dump_config
from spikefed.drift.metrics import drift_record, plot_task_heatmap
from spikefed.experiment import Federation, build_federation
from spikefed.fl.base import Tensors, Upload, payload_bytes
from spikefed.report.metrics import MetricsLog
from spikefed.report.plots import plot_curves
from spikefed.report.sinks import publish_run, require_sinks
from spikefed.rounds.evaluation import ClientEval, RoundEvaluator
from spikefed.rounds.files import atomic_write_bytes
from spikefed.rounds.pipeline import RoundIntake, UploadPipeline
from spikefed.rounds.record import add_round_energy, round_record
from spikefed.rounds.sampling import sample_clients
from spikefed.rounds.summary import summarize
from spikefed.rounds.uplink import Uplink
from spikefed.rounds.validation import Rejection
from spikefed.sim.checkpoint import StateWriteError, load_checkpoint, save_checkpoint
from spikefed.sim.resume import check_checkpoint, check_metrics_complete
from spikefed.sim.rundir import RunDirLock, check_fresh_start, clean_temporaries
from spikefed.sim.vectorized import client_updates

log = logging.getLogger("spikefed.sim")

ProgressFn = Callable[[str, dict[str, Any]], None]


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
        self.pipeline = UploadPipeline.for_config(cfg, self.fed.algorithm, reference,
                                                  len(self.fed.classes))
        self.evaluator = RoundEvaluator(self.fed)
        self.uplink = self.pipeline.uplink  # train.codec (spikefed.rounds.uplink)
        self._local: dict[int, Upload] = {}  # this round's uploads before encoding

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
    def done(self, state: RunState) -> bool:
        """Whether the run is complete (every round of `train.rounds` recorded)."""
        return state.round >= self.cfg.train.rounds

    def advance(self, state: RunState, progress: ProgressFn | None = None) -> dict[str, Any]:
        """One step of the run (a round here; a server update in the asynchronous engine)."""
        return self.run_round(state, progress)

    def run_round(self, state: RunState, progress: ProgressFn | None = None) -> dict[str, Any]:
        """Advance `state` by one round in place and return the round's metrics record."""
        r = state.round + 1
        start = time.perf_counter()
        alg = self.fed.algorithm
        chosen, stragglers = sample_clients(len(self.fed.clients), self.cfg, r)
        ctx = self.fed.train_context(r)
        active = [cid for cid in chosen if cid not in stragglers]
        downlinks = {cid: alg.downlink(state.server_state, state.broadcast, cid)
                     for cid in chosen}
        intake, new_states = self._train_clients(state, active, ctx, progress, downlinks)
        self.pipeline.close(r, intake, new_states)
        state.client_states.update(new_states)
        down_bytes = ({cid: payload_bytes(d) for cid, d in downlinks.items()}
                      if alg.communicates else {})
        bytes_down = sum(down_bytes.values())
        state.server_state, state.broadcast, aggregated = self.pipeline.aggregate(
            r, alg, state.server_state, state.broadcast, intake)
        state.round = r
        record = round_record(r, ctx.lr, chosen, stragglers, intake, bytes_down, aggregated, alg,
                              state.server_state, self.pipeline)
        if self.evaluator.due(r):
            record.update(self._eval_record(state, intake.uploads, progress))
        add_round_energy(record, intake, down_bytes, self.cfg.energy)
        record["wall_s"] = time.perf_counter() - start
        return record

    def _train_clients(self, state: RunState, active: list[int], ctx: Any,
                       progress: ProgressFn | None, downlinks: dict[int, Tensors] | None = None
                       ) -> tuple[RoundIntake, dict[int, dict[str, Any]]]:
        """Run the clients' updates; isolate clients that raise and reject invalid uploads.

        Returns the round's intake (valid uploads, rejections, clipped updates) and the new
        states of the clients whose uploads were accepted. Each upload goes through the
        upload pipeline (`UploadPipeline.receive`, which never raises). A client that raises
        is reported and skipped; a batched (vectorised) failure is retried one client at a
        time so the blame lands on the right client.
        """
        intake = RoundIntake()
        new_states: dict[int, dict[str, Any]] = {}
        pending, mode = list(active), self.cfg.train.vectorize
        clients = self.fed.clients_for_round(ctx.round)  # drift: this round's tasks
        states = state.client_states
        if self.uplink.active:  # the codec's residual is not the algorithm's business
            states = {cid: Uplink.split_state(s)[0] for cid, s in states.items()}
        self._local = {}
        while pending:
            updates = client_updates(self.fed.algorithm, state.broadcast, states,
                                     clients, pending, ctx, mode, downlinks)
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
                        intake.rejected.append(Rejection(pending[done], "client_update raised "
                                                         f"{type(exc).__name__}: {exc}"))
                        pending = pending[done + 1:]
                    break
                sent = downlinks[cid] if downlinks is not None else state.broadcast
                if self.uplink.active:
                    self._local[cid] = upload
                    upload, new_state = self.uplink.send(upload, sent, state.client_states[cid],
                                                         new_state, ctx.round)
                if self.pipeline.receive(intake, upload, cid, state.broadcast,
                                         len(clients[cid]), sent):
                    new_states[cid] = new_state
                if progress:
                    progress("client", {"round": ctx.round, "client": cid})
        return intake, new_states

    def _eval_record(self, state: RunState, uploads: list[Upload],
                     progress: ProgressFn | None = None) -> dict[str, Any]:
        def on_batch(done: int, total: int) -> None:
            if progress:
                progress("eval", {"round": state.round, "done": done, "total": total})

        client_evals: dict[int, ClientEval | None] = {}
        if self.cfg.train.eval_clients:  # this engine holds every client's state
            client_evals = {u.client_id: self.evaluator.client(  # the local model, not decoded
                self.fed.algorithm, self._local.get(u.client_id, u),
                state.client_states[u.client_id]) for u in uploads}
        rec = self.evaluator.record(self.fed.algorithm, state.server_state, uploads,
                                    client_evals, on_batch)
        if self.fed.drift is not None:  # per-task accuracy, forgetting (spikefed.drift)
            rec.update(drift_record(self.fed.drift, self.fed.algorithm.server_model(
                state.server_state, self.fed.model_fn), state.round, self.metrics.records(),
                self.cfg.train.eval_batch_size, self.fed.device))
        return rec

    # ----- whole run ----------------------------------------------------------------------
    def run(self, resume: bool = False, progress: ProgressFn | None = None,
            stop_after: int | None = None, overwrite: bool = False) -> dict[str, Any]:
        """Run (or resume) until `done` (`train.rounds`; the asynchronous engine: its update
        budget); `stop_after` ends early after that many records (rounds, server updates).

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
            while not self.done(state):
                record = self.advance(state, progress)
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
        if self.fed.drift is not None:
            plot_task_heatmap(records, self.fed.drift.num_tasks, self.out / "drift.png",
                              title=self.cfg.name)
        publish_run(self.out, self.cfg)
        return summary
