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

from flwr.app import ArrayRecord, ConfigRecord, Message, MessageType, MetricRecord, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from spikefed.experiment import Federation, round_lr
from spikefed.fl.base import Tensors, payload_bytes
from spikefed.flower.records import (
    CONFIG,
    PARTITION_ID,
    to_record,
    train_content,
    upload_from_reply,
)
from spikefed.flower.registry import NodeRegistry
from spikefed.flower.support import require_flower_support
from spikefed.report.metrics import MetricsLog
from spikefed.rounds.evaluation import ClientEval, RoundEvaluator
from spikefed.rounds.pipeline import RoundIntake, UploadPipeline
from spikefed.rounds.record import add_round_energy, round_record
from spikefed.rounds.sampling import sample_clients
from spikefed.rounds.validation import Rejection

log = logging.getLogger("spikefed.flower")


class SpikefedStrategy(Strategy):
    """Runs `federation.algorithm` over a Flower Grid; one SuperNode per spikefed client."""

    def __init__(self, federation: Federation, out_dir: str | Path | None = None,
                 node_wait_s: float = 300.0) -> None:
        self.fed = federation
        self.cfg = require_flower_support(federation.cfg)
        model = federation.initial_model()
        self.server_state, self.broadcast = federation.algorithm.init_server(model)
        self.pipeline = UploadPipeline.for_config(self.cfg, federation.algorithm, model,
                                                  len(federation.classes))
        self.evaluator = RoundEvaluator(federation)
        self._downlinks: dict[int, Tensors] = {}  # what each client was sent this round
        self.metrics = MetricsLog(Path(out_dir) / "metrics.jsonl") if out_dir else None
        self.node_wait_s = node_wait_s
        self.registry = NodeRegistry(len(federation.clients))
        self._refused: set[int] = set()  # node ids that failed or were refused; never asked again
        self._refusals: list[Rejection] = []  # registry refusals not yet in a round's record
        self.records: list[dict[str, Any]] = []
        self._sent: list[int] = []  # clients messaged this round
        self._down_bytes: dict[int, int] = {}  # bytes each client was sent this round
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
        self._downlinks = downlinks
        self._down_bytes = ({cid: payload_bytes(d) for cid, d in downlinks.items()}
                            if communicates else {})
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
        """Validate replies, aggregate the valid ones, evaluate and log the round.

        With `train.eval_clients`, each client evaluated its own local model after training
        (it alone holds its private state) and sent the numbers in its reply.
        """
        alg = self.fed.algorithm
        intake = RoundIntake(rejected=self._refusals)
        self._refusals = []
        client_evals: dict[int, ClientEval | None] = {}
        answered: set[int] = set()
        for msg in replies:
            node = msg.metadata.src_node_id
            cid = self.registry.partition(node)
            if cid is None or cid not in self._sent or cid in answered:
                why = ("is bound to no partition" if cid is None else
                       f"holds client {cid}, which " + ("already replied" if cid in answered
                                                        else "was not sent work this round"))
                intake.rejected.append(Rejection(-1 if cid is None else cid,
                                                 f"reply from node {node} refused: the node "
                                                 f"{why}"))
                continue
            answered.add(cid)
            if msg.has_error():
                intake.rejected.append(Rejection(cid, f"client failed: {msg.error.reason}"))
                continue
            try:
                upload = upload_from_reply(msg.content, cid)
            except ValueError as exc:
                intake.rejected.append(Rejection(cid, f"malformed reply: {exc}"))
                continue
            client_evals[cid] = ClientEval.from_metrics(upload.metrics)
            self.pipeline.receive(intake, upload, cid, self.broadcast,
                                  len(self.fed.clients[cid]), self._downlinks[cid])
        intake.rejected += [Rejection(cid, "no reply before the round timeout")
                            for cid in self._sent if cid not in answered]
        intake.uploads.sort(key=lambda u: u.client_id)  # aggregation order = in-process order
        self.pipeline.close(server_round, intake)
        self.server_state, self.broadcast, aggregated = self.pipeline.aggregate(
            server_round, alg, self.server_state, self.broadcast, intake)
        chosen, stragglers = self._chosen
        record = round_record(server_round, round_lr(self.cfg, server_round), chosen, stragglers,
                              intake, sum(self._down_bytes.values()), aggregated, alg,
                              self.server_state, self.pipeline)
        if self.evaluator.due(server_round):
            record.update(self.evaluator.record(alg, self.server_state, intake.uploads,
                                                client_evals))
        add_round_energy(record, intake, self._down_bytes, self.cfg.energy)
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

