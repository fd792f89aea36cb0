"""Asynchronous FL on a virtual clock: FedAsync and FedBuff in the in-process engine.

`concurrency` clients train at once, each from the server model version current when it was
dispatched. Uploads arrive in virtual-time order (ties: lower client id first); each is
judged by the run's `UploadValidator` and divergence screen, then mixed into the server model
(FedAsync, Xie et al. 2019: w <- (1 - a) w + a w_client, a = alpha s(t - tau)) or buffered as
a delta until `buffer_size` are in (FedBuff, Nguyen et al. 2022: w <- w + server_lr
sum_i n_i s(t - tau_i) / sum_j n_j (w_i - w_tau_i)). After each arrival an idle client is
dispatched with the then-current model, until `asynchronous.updates` client updates are
dispatched. `metrics.jsonl` gets one record per server model update (its `round` is the record
number, `model_version` the server version) plus a last one at the end of the budget, with
`virtual_time_s`, `updates` (arrivals so far) and staleness statistics; evaluation every
`train.eval_every` records and at the end. The checkpoint holds the event queue, the model
versions in-flight clients were dispatched with, the clock and the counters; every random
choice is drawn from (seed, counter), so resuming reproduces the uninterrupted run bit for bit.
"""

from __future__ import annotations

import heapq
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spikefed.config import ExperimentConfig
from spikefed.experiment import Federation
from spikefed.fl.base import Tensors, Upload, payload_bytes
from spikefed.rounds.asynchronous import (
    AsyncStep,
    apply_update,
    flush_buffer,
    next_client,
)
from spikefed.rounds.divergence import loss_limit, screen_losses
from spikefed.rounds.validation import Rejection
from spikefed.sim.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from spikefed.sim.clock import draw_devices, update_duration
from spikefed.sim.engine import ProgressFn, RunState, Simulation
from spikefed.sim.resume import check_checkpoint, check_metrics_complete

#: One in-flight client: (arrival time, client id, dispatched model version, the client's
#: dispatch count, which seeds its local training as the round index does in sync runs).
InFlight = tuple[float, int, int, int]


@dataclass
class AsyncState(RunState):
    """RunState (`round` = records written) plus the virtual clock and the event queue."""

    version: int = 0
    now: float = 0.0
    arrivals: int = 0
    dispatches: int = 0
    in_flight: list[InFlight] = field(default_factory=list)
    models: dict[int, Tensors] = field(default_factory=dict)
    client_rounds: dict[int, int] = field(default_factory=dict)
    buffer: list[dict[str, Any]] = field(default_factory=list)

    def async_part(self) -> dict[str, Any]:
        """The fields a checkpoint stores beside the synchronous ones."""
        return {"version": self.version, "now": self.now, "arrivals": self.arrivals,
                "dispatches": self.dispatches, "in_flight": list(self.in_flight),
                "models": self.models, "client_rounds": self.client_rounds,
                "buffer": self.buffer}


class AsyncSimulation(Simulation):
    """Runs an experiment with an `asynchronous:` section on a virtual clock."""

    def __init__(self, cfg: ExperimentConfig, out_dir: str | Path,
                 federation: Federation | None = None) -> None:
        if cfg.asynchronous is None:
            raise ValueError("AsyncSimulation needs a config with an asynchronous: section; "
                             "use Simulation for synchronous rounds")
        super().__init__(cfg, out_dir, federation)
        self.acfg = cfg.asynchronous
        self.devices = draw_devices(self.acfg.clock, len(self.fed.clients), cfg.seed)
        self.ctx = self.fed.train_context(1)  # constant rate (config validation)
        self.loss_limit = loss_limit(len(self.fed.classes), cfg.train.divergence_factor)

    # ----- state --------------------------------------------------------------------------
    def _fresh_state(self) -> AsyncState:
        base = super()._fresh_state()
        return AsyncState(0, base.server_state, base.broadcast, base.client_states)

    def _checkpoint(self, state: RunState) -> None:
        assert isinstance(state, AsyncState)
        save_checkpoint(self.out / "checkpoint", {
            "round": state.round, "server_state": state.server_state,
            "broadcast": state.broadcast, "client_states": state.client_states,
            "config": self.cfg.model_dump(mode="json"), "async": state.async_part(),
        })

    def _restore(self) -> AsyncState:
        path = self.out / "checkpoint"
        ckpt = load_checkpoint(path)
        check_checkpoint(ckpt, self.cfg.model_dump(mode="json"), path)
        part = ckpt.get("async")
        if not isinstance(part, dict):
            raise CheckpointError(f"checkpoint {path} has no asynchronous state (written by a "
                                  "synchronous run?); restart the run with --overwrite")
        kept = self.metrics.truncate_after(ckpt["round"])
        check_metrics_complete(kept, ckpt["round"], self.metrics.path)
        return AsyncState(ckpt["round"], ckpt["server_state"], ckpt["broadcast"],
                          ckpt["client_states"], version=part["version"], now=part["now"],
                          arrivals=part["arrivals"], dispatches=part["dispatches"],
                          in_flight=[tuple(e) for e in part["in_flight"]],
                          models=part["models"], client_rounds=part["client_rounds"],
                          buffer=part["buffer"])

    def done(self, state: AsyncState) -> bool:
        """Whether every client update of the budget has arrived and been recorded."""
        return state.arrivals >= self.acfg.updates and not state.buffer

    # ----- events -------------------------------------------------------------------------
    def _dispatch(self, state: AsyncState, step: AsyncStep) -> None:
        """Send the current model to the next idle client (drawn from seed and counter)."""
        busy = {entry[1] for entry in state.in_flight}
        idle = [c for c in range(len(self.fed.clients)) if c not in busy]
        state.dispatches += 1
        cid = next_client(self.cfg.seed, state.dispatches, idle)
        state.client_rounds[cid] = state.client_rounds.get(cid, 0) + 1
        state.models[state.version] = state.broadcast
        duration = update_duration(self.acfg.clock, self.devices, cid, len(self.fed.clients[cid]),
                                   self.cfg.train.local_epochs)
        heapq.heappush(state.in_flight, (state.now + duration, cid, state.version,
                                         state.client_rounds[cid]))
        step.bytes_down += payload_bytes(state.broadcast)
        step.dispatched += 1

    def _train(self, cid: int, version_model: Tensors, client_round: int, state: AsyncState
               ) -> tuple[Upload | None, dict[str, Any] | None, Rejection | None]:
        """Client `cid`'s local update from the model it was dispatched with."""
        self.ctx.round = client_round
        try:
            upload, new_state, _ = self.fed.algorithm.client_update(
                cid, version_model, state.client_states[cid], self.fed.clients[cid], self.ctx)
        except Exception as exc:  # a failing client must not end the federation
            return None, None, Rejection(cid, f"client_update raised {type(exc).__name__}: "
                                              f"{exc}")
        return upload, new_state, None

    def _arrive(self, state: AsyncState, step: AsyncStep) -> None:
        """Process the earliest arrival: train, judge, then apply or buffer its update."""
        arrival, cid, version, client_round = heapq.heappop(state.in_flight)
        state.now = arrival
        state.arrivals += 1
        step.arrived.append(cid)
        dispatched_model = state.models[version]
        upload, new_state, failure = self._train(cid, dispatched_model, client_round, state)
        if failure is None:
            verdict = self.pipeline.validator.judge(upload, cid, broadcast=dispatched_model,
                                           partition_size=len(self.fed.clients[cid]))
            upload, failure = verdict.upload, verdict.rejection
            step.clipped += [verdict.clip] if verdict.clip else []
        if upload is not None:
            new_states = {cid: new_state}
            kept = screen_losses(state.round + 1, [upload], new_states, step.rejected,
                                 self.cfg.train.divergence, self.loss_limit)
            upload = kept[0] if kept else None
        if failure is not None:
            step.rejected.append(failure)
        if upload is not None:
            state.client_states[cid] = new_state
            self._apply(state, step, upload, dispatched_model, state.version - version)

    def _apply(self, state: AsyncState, step: AsyncStep, upload: Upload, dispatched: Tensors,
               staleness: int) -> None:
        new = apply_update(self.acfg, state.broadcast, state.buffer, upload, dispatched,
                           staleness, step)
        if new is not None:
            self._set_model(state, new)

    def _flush(self, state: AsyncState, step: AsyncStep) -> None:
        """FedBuff's server step on the buffered deltas."""
        self._set_model(state, flush_buffer(self.acfg, state.broadcast, state.buffer, step))

    def _set_model(self, state: AsyncState, params: Tensors) -> None:
        state.server_state = {**state.server_state, "params": params}
        state.broadcast = params
        state.version += 1

    def advance(self, state: AsyncState, progress: ProgressFn | None = None) -> dict[str, Any]:
        """Process arrivals until the server model changes (or the budget ends); return the
        record of what happened."""
        start = time.perf_counter()
        step = AsyncStep()
        if state.dispatches == 0:
            for _ in range(min(self.acfg.concurrency, self.acfg.updates)):
                self._dispatch(state, step)
        while not step.stepped and state.arrivals < self.acfg.updates:
            self._arrive(state, step)
            if state.dispatches < self.acfg.updates:
                self._dispatch(state, step)
            referenced = {entry[2] for entry in state.in_flight}
            state.models = {v: m for v, m in state.models.items() if v in referenced}
            if progress:
                progress("client", {"round": state.round + 1, "client": step.arrived[-1]})
        if state.arrivals >= self.acfg.updates and state.buffer:
            self._flush(state, step)  # FedBuff: the last, partial buffer
        state.round += 1
        record = self._record(state, step)
        if state.round % self.cfg.train.eval_every == 0 or self.done(state):
            record.update(self._eval_record(state, step.applied, progress))
        record["wall_s"] = time.perf_counter() - start
        return record

    def _record(self, state: AsyncState, step: AsyncStep) -> dict[str, Any]:
        return step.record(state.round, state.version, ("virtual_time_s", state.now),
                           state.arrivals, self.ctx.lr)


def simulation_for(cfg: ExperimentConfig, out_dir: str | Path,
                   federation: Federation | None = None) -> Simulation:
    """The in-process engine a config asks for: asynchronous or synchronous rounds."""
    if cfg.asynchronous is not None:
        return AsyncSimulation(cfg, out_dir, federation)
    return Simulation(cfg, out_dir, federation)
