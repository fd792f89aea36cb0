"""A Flower `Strategy` (Message API) that drives any spikefed algorithm's `aggregate`.

The strategy owns the server state; the ArrayRecord Flower passes between rounds is the
algorithm's *broadcast*, which may differ from what clients upload (SNFL) and from the server
model (`Algorithm.server_model_state`). Clients are sampled exactly as in the in-process
engine (`sample_clients`, seeded by experiment seed and round), each sampled client gets its
own message (own ConfigRecord), and every reply is validated before aggregation.

The server trusts nothing a node reports about itself beyond its first answer: each node id is
bound to one partition on first contact (`NodeRegistry`), replies are accepted only from the
node bound to a client sent work this round, and uploads are weighted by the partition size
the server knows (a node's `num-examples` must equal it, or the upload is rejected).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, MessageType, MetricRecord, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from spikefed.experiment import Federation, round_lr
from spikefed.fl.base import Tensors, Upload, payload_bytes
from spikefed.flower.appconfig import require_flower_support
from spikefed.flower.records import (
    CONFIG,
    PARTITION_ID,
    to_record,
    train_content,
    upload_from_reply,
)
from spikefed.flower.registry import NodeRegistry
from spikefed.report.metrics import MetricsLog
from spikefed.sim.divergence import loss_limit, screen_losses
from spikefed.sim.engine import sample_clients
from spikefed.sim.evaluate import evaluate
from spikefed.sim.validation import Clip, Rejection, UploadValidator, require_quorum

log = logging.getLogger("spikefed.flower")


class SpikefedStrategy(Strategy):
    """Runs `federation.algorithm` over a Flower Grid; one SuperNode per spikefed client."""

    def __init__(self, federation: Federation, out_dir: str | Path | None = None,
                 node_wait_s: float = 300.0) -> None:
        self.fed = federation
        self.cfg = require_flower_support(federation.cfg)
        model = federation.initial_model()
        self.server_state, self.broadcast = federation.algorithm.init_server(model)
        self.validator = UploadValidator.for_config(federation.algorithm, model, self.cfg.train)
        self.metrics = MetricsLog(Path(out_dir) / "metrics.jsonl") if out_dir else None
        self.node_wait_s = node_wait_s
        self.registry = NodeRegistry(len(federation.clients))
        self._refused: set[int] = set()  # node ids that failed or were refused; never asked again
        self._refusals: list[Rejection] = []  # registry refusals not yet in a round's record
        self.records: list[dict[str, Any]] = []
        self._sent: list[int] = []  # clients messaged this round
        self._bytes_down = 0
        self._chosen: tuple[list[int], list[int]] = ([], [])
        self._start = 0.0

    # ----- Flower Strategy API ------------------------------------------------------------
    def summary(self) -> None:
        """Log what runs: algorithm, clients, rounds."""
        t = self.cfg.train
        log.info("spikefed %s: %d clients, %d rounds, min_clients=%d",
                 self.fed.algorithm.name, len(self.fed.clients), t.rounds, t.min_clients)

    def initial_arrays(self) -> ArrayRecord:
        """The first broadcast, to pass to `Strategy.start`."""
        return to_record(self.broadcast)

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                        grid: Grid) -> Iterable[Message]:
        """One message per sampled, non-straggling client, each with its own config record."""
        self._start = time.perf_counter()
        self._discover(grid)
        chosen, stragglers = sample_clients(len(self.fed.clients), self.cfg, server_round)
        self._chosen = (chosen, stragglers)
        communicates = self.fed.algorithm.communicates
        alg = self.fed.algorithm
        downlinks = {cid: alg.downlink(self.server_state, self.broadcast, cid) for cid in chosen}
        self._bytes_down = (sum(payload_bytes(d) for d in downlinks.values())
                            if communicates else 0)
        self._sent = [cid for cid in chosen if cid not in stragglers]
        messages = []
        for cid in self._sent:
            sent = arrays if downlinks[cid] is self.broadcast else to_record(downlinks[cid])
            messages.append(Message(train_content(sent, server_round, cid),
                                    dst_node_id=self.nodes[cid],
                                    message_type=MessageType.TRAIN, group_id=str(server_round)))
        return messages

    def aggregate_train(self, server_round: int, replies: Iterable[Message]
                        ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Validate replies, aggregate the valid ones, evaluate and log the round."""
        alg = self.fed.algorithm
        uploads: list[Upload] = []
        rejected: list[Rejection] = self._refusals
        self._refusals = []
        clipped: list[Clip] = []
        answered: set[int] = set()
        for msg in replies:
            node = msg.metadata.src_node_id
            cid = self.registry.partition(node)
            if cid is None or cid not in self._sent or cid in answered:
                why = ("is bound to no partition" if cid is None else
                       f"holds client {cid}, which " + ("already replied" if cid in answered
                                                        else "was not sent work this round"))
                rejected.append(Rejection(-1 if cid is None else cid,
                                          f"reply from node {node} refused: the node {why}"))
                continue
            answered.add(cid)
            if msg.has_error():
                rejected.append(Rejection(cid, f"client failed: {msg.error.reason}"))
                continue
            try:
                upload = upload_from_reply(msg.content, cid)
            except ValueError as exc:
                rejected.append(Rejection(cid, f"malformed reply: {exc}"))
                continue
            verdict = self.validator.judge(upload, cid, broadcast=self.broadcast,
                                           partition_size=len(self.fed.clients[cid]))
            if verdict.upload is not None:
                uploads.append(verdict.upload)
                clipped += [verdict.clip] if verdict.clip else []
            else:
                rejected.append(verdict.rejection)
        rejected += [Rejection(cid, "no reply before the round timeout")
                     for cid in self._sent if cid not in answered]
        uploads = screen_losses(server_round, uploads, {}, rejected, self.cfg.train.divergence,
                                loss_limit(len(self.fed.classes), self.cfg.train.divergence_factor))
        for r in rejected:
            log.warning("round %d: rejected client %d: %s", server_round, r.client, r.reason)
        for c in clipped:
            log.warning("round %d: clipped client %d's update from norm %.4g to %.4g",
                        server_round, c.client, c.norm, c.bound)
        uploads.sort(key=lambda u: u.client_id)  # aggregation order = in-process order
        require_quorum(server_round, len(uploads), self.cfg.train.min_clients, rejected)
        aggregated = len(uploads) >= self.cfg.train.min_clients
        if aggregated:
            self.server_state, self.broadcast = alg.aggregate(self.server_state, uploads)
        chosen, stragglers = self._chosen
        record: dict[str, Any] = {
            "round": server_round, "lr": round_lr(self.cfg, server_round),
            "participants": len(chosen), "uploads": len(uploads),
            "stragglers": len(stragglers), "aggregated": aggregated,
            "bytes_up": sum(u.nbytes for u in uploads),
            "bytes_down": self._bytes_down,
            "train_loss_mean": _mean([u.metrics.get("train_loss") for u in uploads]),
            "rejected": [r.as_record() for r in rejected],
            "clipped": [c.as_record() for c in clipped],
        }
        if server_round % self.cfg.train.eval_every == 0 or server_round == self.cfg.train.rounds:
            record.update(self._evaluate())
        record["wall_s"] = time.perf_counter() - self._start
        self.records.append(record)
        if self.metrics is not None:
            self.metrics.append(record)
        numeric = {k: float(v) for k, v in record.items()
                   if isinstance(v, (int, float)) and not isinstance(v, bool)}
        return to_record(self.broadcast), MetricRecord(numeric)

    def configure_evaluate(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                           grid: Grid) -> Iterable[Message]:
        """No federated evaluation: the server model is evaluated centrally each round."""
        return []

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]
                           ) -> MetricRecord | None:
        """Nothing to aggregate (see `configure_evaluate`)."""
        return None

    # ----- helpers --------------------------------------------------------------------------
    @property
    def nodes(self) -> dict[int, int]:
        """The bound nodes as {client (partition) id: Flower node id}."""
        return self.registry.nodes

    def server_model(self) -> Tensors | None:
        """The server model's state_dict now (None for algorithms without one)."""
        model = self.fed.algorithm.server_model(self.server_state, self.fed.model_fn)
        return None if model is None else {k: v.detach().clone()
                                           for k, v in model.state_dict().items()}

    def _evaluate(self) -> dict[str, Any]:
        model = self.fed.algorithm.server_model(self.server_state, self.fed.model_fn)
        if model is None:
            return {}
        res = evaluate(model, self.fed.test_x, self.fed.test_y, self.cfg.train.eval_batch_size,
                       self.fed.device, count_activity=True)
        return {"server_acc": res.accuracy, "server_loss": res.loss,
                "spikes_per_sample": res.spikes_per_sample,
                "synops_per_sample": res.synops_per_sample,
                "macs_per_sample": res.macs_per_sample}

    def _discover(self, grid: Grid) -> None:
        """Ask every node which client it holds (once), waiting for all clients to connect."""
        wanted = len(self.fed.clients)
        deadline = time.monotonic() + self.node_wait_s
        refused = self._refused
        while len(self.nodes) < wanted:
            known = refused | set(self.nodes.values())
            new = [n for n in grid.get_node_ids() if n not in known]
            queries = [Message(RecordDict({CONFIG: ConfigRecord({})}), dst_node_id=n,
                               message_type=MessageType.QUERY) for n in new]
            wait = max(deadline - time.monotonic(), 1.0)
            for reply in grid.send_and_receive(queries, timeout=wait):
                node = reply.metadata.src_node_id
                if reply.has_error():
                    refused.add(node)
                    log.warning("node %d cannot serve: %s", node, reply.error.reason)
                    continue
                claimed = _claimed_partition(reply)
                reason = self.registry.bind(node, claimed)
                if reason is not None:
                    refused.add(node)
                    log.warning("%s", reason)
                    client = claimed if isinstance(claimed, int) else -1
                    self._refusals.append(Rejection(client, f"node refused: {reason}"))
            if len(self.nodes) < wanted:
                if time.monotonic() > deadline:
                    missing = sorted(set(range(wanted)) - set(self.nodes))
                    raise TimeoutError(f"after {self.node_wait_s:.0f} s no SuperNode holds "
                                       f"client(s) {missing}; start one per partition-id")
                time.sleep(1.0)


def _claimed_partition(reply: Message) -> Any:
    """The partition id a query reply claims (whatever type the node sent; None if absent)."""
    config = reply.content.config_records.get(CONFIG)
    return None if config is None else config.get(PARTITION_ID)


def _mean(values: list[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return float(np.mean(vals)) if vals else None
