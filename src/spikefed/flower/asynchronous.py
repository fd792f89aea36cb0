"""Asynchronous FL on Flower: FedAsync and FedBuff on the wall clock, over `Grid`'s message API.

`AsyncSpikefedStrategy.start` keeps `asynchronous.concurrency` clients busy: it pushes each a
TRAIN message (`Grid.push_messages`) holding the current server model and the client's own
dispatch count (which seeds its local training, as in the in-process engine), then polls
`Grid.pull_messages` for whichever replies have come in. Each reply is checked against the
node the message went to, decoded and validated by the round layer's `UploadPipeline` against
the model version that client was sent, screened for divergence, and applied as it arrives
(FedAsync) or buffered until `buffer_size` are in (FedBuff) with the shared arithmetic of
`spikefed.rounds.asynchronous`; then an idle client (the in-process engine's seeded draw) gets
the then-current model. Replies pulled together are taken in dispatch order. A reply that has
not come `reply_timeout_s` after its message was pushed counts as an arrival, is recorded as
rejected, and its client may be sent work again. The run ends after `asynchronous.updates`
arrivals. `metrics.jsonl` gets the in-process engine's asynchronous records, with the wall
clock (`elapsed_s`, seconds since the first dispatch) in place of `virtual_time_s`: real
devices have real speeds, so the `clock:` section does not apply here (docs/async.md).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flwr.app import ArrayRecord, ConfigRecord, Message, MessageType
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Result

from spikefed.config import ClockConfig
from spikefed.experiment import Federation, round_lr
from spikefed.fl.base import Tensors, Upload, payload_bytes
from spikefed.flower.records import to_record, train_content, upload_from_reply
from spikefed.flower.strategy import SpikefedStrategy, log
from spikefed.rounds.asynchronous import AsyncStep, apply_update, flush_buffer, next_client
from spikefed.rounds.divergence import screen_losses
from spikefed.rounds.evaluation import ClientEval
from spikefed.rounds.pipeline import RoundIntake
from spikefed.rounds.validation import Rejection

#: seconds between two polls of the grid while no reply is in
POLL_S = 0.05


@dataclass(frozen=True)
class Sent:
    """One outstanding TRAIN message: to whom, with which model version, when."""

    dispatch: int  # 1, 2, ...: the order messages were pushed in
    client: int
    node: int
    version: int
    pushed_at: float  # time.monotonic()
    pushed: bool = True  # False: the grid did not accept the message


class AsyncSpikefedStrategy(SpikefedStrategy):
    """Runs a config's `asynchronous:` section (FedAsync or FedBuff) over a Flower Grid."""

    def __init__(self, federation: Federation, out_dir: str | Path | None = None,
                 node_wait_s: float = 300.0, poll_s: float = POLL_S) -> None:
        if federation.cfg.asynchronous is None:
            raise ValueError("AsyncSpikefedStrategy needs a config with an asynchronous: "
                             "section; use SpikefedStrategy for synchronous rounds")
        super().__init__(federation, out_dir, node_wait_s)
        self.acfg = federation.cfg.asynchronous
        self.poll_s = poll_s
        self.lr = round_lr(self.cfg, 1)  # constant (config validation)
        self.version = 0
        self.arrivals = 0
        self.dispatches = 0
        self.client_rounds: dict[int, int] = {}
        self.in_flight: dict[str, Sent] = {}  # message id -> what was sent
        self.models: dict[int, Tensors] = {}  # model versions in-flight clients were sent
        self.buffer: list[dict[str, Any]] = []
        self._evals: dict[int, ClientEval | None] = {}
        self._unsent: list[Sent] = []  # messages the grid did not accept
        self._pulled: list[Sent] = []  # replies pulled but not yet processed
        self._began = 0.0

    def summary(self) -> None:
        """Log what runs: algorithm, clients, mode, concurrency, budget."""
        a = self.acfg
        log.info("spikefed %s asynchronous (%s): %d clients, concurrency %d, %d updates",
                 self.fed.algorithm.name, a.mode, len(self.fed.clients), a.concurrency,
                 a.updates)
        if a.clock != ClockConfig():
            log.warning("asynchronous.clock (virtual device speeds and latencies) does not "
                        "apply on Flower: real devices set the arrival order")

    # ----- the run --------------------------------------------------------------------------
    def start(self, grid: Grid, initial_arrays: ArrayRecord | None = None,
              num_rounds: int = 0, timeout: float = 3600.0,
              train_config: ConfigRecord | None = None,
              evaluate_config: ConfigRecord | None = None,
              evaluate_fn: Any = None) -> Result:
        """Run until `asynchronous.updates` client updates have arrived (or timed out).

        Flower's `Strategy.start` signature; `timeout` bounds each reply (seconds from its
        push). `initial_arrays`, `num_rounds` and the configs are not used: the server model
        starts from the federation's, and the budget is `asynchronous.updates`.
        """
        self.summary()
        self._discover(grid)
        self._began = time.monotonic()
        step, record_start = AsyncStep(rejected=self._refusals), time.perf_counter()
        self._refusals = []
        for _ in range(min(self.acfg.concurrency, self.acfg.updates)):
            self._dispatch(grid, step)
        while self.arrivals < self.acfg.updates:
            batch = self._wait(grid, timeout)
            for i, (sent, reply) in enumerate(batch):
                self._pulled = [s for s, _ in batch[i + 1:]]  # in, not yet processed
                self._arrive(sent, reply, step, timeout)
                if self.dispatches < self.acfg.updates:
                    self._dispatch(grid, step)
                referenced = {s.version for s in [*self.in_flight.values(), *self._pulled]}
                self.models = {v: m for v, m in self.models.items() if v in referenced}
                last = self.arrivals >= self.acfg.updates
                if step.stepped or (last and step.arrived):
                    self._write(step, record_start)
                    step, record_start = AsyncStep(), time.perf_counter()
                if last:
                    break
        return Result(arrays=to_record(self.broadcast))

    def _dispatch(self, grid: Grid, step: AsyncStep) -> None:
        """Push the current model to the next idle client (drawn from seed and counter)."""
        busy = {s.client for s in [*self.in_flight.values(), *self._pulled, *self._unsent]}
        idle = [c for c in range(len(self.fed.clients)) if c not in busy]
        self.dispatches += 1
        cid = next_client(self.cfg.seed, self.dispatches, idle)
        self.client_rounds[cid] = self.client_rounds.get(cid, 0) + 1
        self.models[self.version] = self.broadcast
        node = self.nodes[cid]
        message = Message(train_content(to_record(self.broadcast), self.client_rounds[cid], cid),
                          dst_node_id=node, message_type=MessageType.TRAIN,
                          group_id=f"async-{self.dispatches}")
        ids = [i for i in grid.push_messages([message]) if i]
        sent = Sent(self.dispatches, cid, node, self.version, time.monotonic(), bool(ids))
        if ids:
            self.in_flight[ids[0]] = sent
        else:  # an arrival at once, rejected (see `_upload`)
            self._unsent.append(sent)
        step.bytes_down += payload_bytes(self.broadcast)
        step.dispatched += 1

    def _wait(self, grid: Grid, timeout: float) -> list[tuple[Sent, Message | None]]:
        """The replies in so far (in dispatch order), and the messages past `timeout` or never
        pushed (with None); polls every `poll_s` until there is at least one."""
        while True:
            came: list[tuple[Sent, Message | None]] = [(sent, None) for sent in self._unsent]
            self._unsent = []
            for reply in grid.pull_messages(list(self.in_flight)):
                sent = self.in_flight.pop(reply.metadata.reply_to_message_id, None)
                if sent is not None:
                    came.append((sent, reply))
            now = time.monotonic()
            for msg_id, sent in list(self.in_flight.items()):
                if now - sent.pushed_at > timeout:
                    del self.in_flight[msg_id]
                    came.append((sent, None))
            if came:
                return sorted(came, key=lambda pair: pair[0].dispatch)
            time.sleep(self.poll_s)

    def _arrive(self, sent: Sent, reply: Message | None, step: AsyncStep,
                timeout: float) -> None:
        """Judge one arrival and apply (or buffer) its update when valid."""
        self.arrivals += 1
        cid = sent.client
        step.arrived.append(cid)
        upload = self._upload(sent, reply, step, timeout)
        if upload is None:
            return
        dispatched = self.models[sent.version]
        intake = RoundIntake()
        if self.pipeline.receive(intake, upload, cid, dispatched, len(self.fed.clients[cid])):
            intake.uploads = screen_losses(len(self.records) + 1, intake.uploads, {},
                                           intake.rejected, self.cfg.train.divergence,
                                           self.pipeline.limit)
        step.rejected += intake.rejected
        step.clipped += intake.clipped
        if not intake.uploads:
            return
        new = apply_update(self.acfg, self.broadcast, self.buffer, intake.uploads[0],
                           dispatched, self.version - sent.version, step,
                           wire_bytes=intake.wire_bytes[cid])
        if new is not None:
            self._set_model(new)

    def _upload(self, sent: Sent, reply: Message | None, step: AsyncStep,
                timeout: float) -> Upload | None:
        """The upload a reply carries, or None with the reason in `step.rejected`."""
        cid = sent.client
        if reply is None and not sent.pushed:
            step.rejected.append(Rejection(cid, f"the grid did not accept the message to node "
                                                f"{sent.node}"))
            return None
        if reply is None:
            step.rejected.append(Rejection(cid, f"no reply within the round timeout "
                                                f"({timeout:g} s)"))
            return None
        node = reply.metadata.src_node_id
        if node != sent.node:
            step.rejected.append(Rejection(cid, f"reply from node {node} refused: client "
                                                f"{cid}'s work was sent to node {sent.node}"))
            return None
        if reply.has_error():
            step.rejected.append(Rejection(cid, f"client failed: {reply.error.reason}"))
            return None
        try:
            upload = upload_from_reply(reply.content, cid)
        except ValueError as exc:
            step.rejected.append(Rejection(cid, f"malformed reply: {exc}"))
            return None
        self._evals[cid] = ClientEval.from_metrics(upload.metrics)
        return upload

    def _set_model(self, params: Tensors) -> None:
        self.server_state = {**self.server_state, "params": params}
        self.broadcast = params
        self.version += 1

    def _write(self, step: AsyncStep, record_start: float) -> None:
        """Close the record of `step` (the last one flushes FedBuff's partial buffer),
        evaluate when due, and log it."""
        done = self.arrivals >= self.acfg.updates
        if done and self.buffer:
            self._set_model(flush_buffer(self.acfg, self.broadcast, self.buffer, step))
        round_idx = len(self.records) + 1
        record = step.record(round_idx, self.version,
                             ("elapsed_s", time.monotonic() - self._began), self.arrivals,
                             self.lr)
        if round_idx % self.cfg.train.eval_every == 0 or done:
            evals = {u.client_id: self._evals.get(u.client_id) for u in step.applied}
            record.update(self.evaluator.record(self.fed.algorithm, self.server_state,
                                                step.applied, evals))
        record["wall_s"] = time.perf_counter() - record_start
        self.records.append(record)
        if self.metrics is not None:
            self.metrics.append(record)

