"""Flower: the server binds nodes to partitions and weights uploads by sizes it knows."""

from __future__ import annotations

import pytest

pytest.importorskip("flwr", reason="Flower is not installed (pip install 'spikefed[flower]')")

import torch  # noqa: E402
from flwr.app import Context, Message, MetricRecord, RecordDict  # noqa: E402

from spikefed.config import load_config  # noqa: E402
from spikefed.experiment import build_federation  # noqa: E402
from spikefed.fl.fedavg import FedAvg  # noqa: E402
from spikefed.flower import make_client_app, make_server_app  # noqa: E402
from spikefed.flower.local import SERVER_NODE_ID, LocalGrid, local_identity  # noqa: E402
from spikefed.flower.records import (  # noqa: E402
    CLIENT_ID,
    META,
    NUM_PARTITIONS,
    PARTITION_ID,
)
from spikefed.flower.registry import NodeRegistry  # noqa: E402
from spikefed.report import read_metrics  # noqa: E402
from spikefed.sim import Simulation  # noqa: E402
from spikefed.sim.checkpoint import load_checkpoint  # noqa: E402

FOUR = ["data.num_clients=4", "train.clients_per_round=4", "train.rounds=2", "model.T=2",
        "model.kwargs.hidden=[16]", "data.test_subset=100", "data.partition.scheme=iid",
        "train.eval_clients=false"]


def _federation():
    fed = build_federation(load_config(overrides=FOUR))
    for c in fed.clients:
        c.x, c.y = c.x[:32], c.y[:32]
    return fed


def _serve(fed, grid: LocalGrid, out):
    done: dict = {}
    server = make_server_app(federation=fed, out_dir=out, on_done=lambda s: done.update(s=s))
    context = Context(run_id=grid.run.run_id, node_id=SERVER_NODE_ID, node_config={},
                      state=RecordDict(), run_config={"node-wait": 10.0})
    with local_identity(grid.run.run_id):
        server(grid, context)
    return done["s"], read_metrics(out / "metrics.jsonl")


def _in_process(fed, out):
    Simulation(fed.cfg, out, federation=fed).run()
    return load_checkpoint(out / "checkpoint")["server_state"]["params"]


def _assert_close(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-6, atol=1e-7, msg=k)


def test_registry_binds_once_and_refuses_claims() -> None:
    reg = NodeRegistry(3)
    assert reg.bind(11, 0) is None and reg.bind(11, 0) is None  # the same claim again: fine
    assert reg.bind(12, 1) is None
    assert "bound to partition 0 but now claims partition 2" in reg.bind(11, 2)
    assert "already bound to node 11" in reg.bind(13, 0)
    assert "outside 0..2" in reg.bind(13, 3)
    assert "not an integer" in reg.bind(13, "1")
    assert "not an integer" in reg.bind(13, True)
    assert reg.nodes == {0: 11, 1: 12} and reg.partition(11) == 0 and reg.node(2) is None
    assert 13 not in reg and len(reg) == 2


def test_a_node_claiming_a_bound_partition_is_refused_not_fatal(tmp_path) -> None:
    fed = _federation()
    grid = LocalGrid(make_client_app(federation=fed), 5)
    spoofer = max(grid.contexts)
    for ctx in grid.contexts.values():
        ctx.node_config[NUM_PARTITIONS] = 4
    grid.contexts[spoofer].node_config[PARTITION_ID] = 0  # a fifth node claims client 0's data
    strategy, records = _serve(fed, grid, tmp_path / "flower")
    assert strategy.nodes == {i: 1000 + i for i in range(4)}
    [refusal] = records[0]["rejected"]
    assert refusal["client"] == 0 and f"node {spoofer} claims partition 0" in refusal["reason"]
    assert "already bound to node 1000" in refusal["reason"]
    assert records[1]["rejected"] == [] and all(r["uploads"] == 4 for r in records)
    _assert_close(strategy.server_model(), _in_process(fed, tmp_path / "sim"))


class _Inflated(FedAvg):
    """Client 2 reports a million training samples (its partition holds 32)."""

    def client_update(self, client_id, broadcast, client_state, data, ctx):
        upload, state, metrics = super().client_update(client_id, broadcast, client_state,
                                                       data, ctx)
        if client_id == 2:
            upload.num_samples = 10**6
        return upload, state, metrics


def test_node_reported_num_examples_are_not_trusted(tmp_path) -> None:
    fed = _federation()
    fed.algorithm = _Inflated()
    strategy, records = _serve(fed, LocalGrid(make_client_app(federation=fed), 4),
                               tmp_path / "flower")
    for rec in records:
        assert rec["uploads"] == 3
        [bad] = rec["rejected"]
        assert bad["client"] == 2
        assert "num_samples=1000000 but the client's partition holds 32" in bad["reason"]
    # the in-process engine rejects the same upload: both engines end on the same model
    _assert_close(strategy.server_model(), _in_process(fed, tmp_path / "sim"))


class _Impostor(LocalGrid):
    """Node 1001 (bound to client 1) answers training messages claiming to be client 3."""

    def _deliver(self, msg: Message) -> Message:
        reply = super()._deliver(msg)
        if msg.metadata.dst_node_id == 1001 and META in reply.content.metric_records:
            meta = dict(reply.content.metric_records[META])
            reply.content[META] = MetricRecord({**meta, CLIENT_ID: 3})
        return reply


def test_a_node_claiming_another_partition_later_is_rejected(tmp_path) -> None:
    fed = _federation()
    strategy, records = _serve(fed, _Impostor(make_client_app(federation=fed), 4),
                               tmp_path / "flower")
    for rec in records:
        assert rec["uploads"] == 3 and rec["aggregated"]
        [bad] = rec["rejected"]
        assert bad["client"] == 1 and "claims client-id=3" in bad["reason"]
    assert strategy.nodes[1] == 1001


def test_replies_from_unbound_or_unasked_nodes_are_refused(tmp_path) -> None:
    from flwr.app import MessageType

    from spikefed.flower import SpikefedStrategy
    from spikefed.flower.records import reply_content

    fed = _federation()
    strategy = SpikefedStrategy(fed)
    grid = LocalGrid(make_client_app(federation=fed), 4)
    honest = FedAvg()
    ctx = fed.train_context(1)

    def reply_from(node: int, cid: int) -> Message:
        upload, _, _ = honest.client_update(cid, strategy.broadcast, {},
                                            fed.clients[cid], ctx)
        asked = Message(RecordDict(), dst_node_id=node, message_type=MessageType.TRAIN)
        return Message(reply_content(upload), reply_to=asked)

    with local_identity(grid.run.run_id):
        strategy.configure_train(1, strategy.initial_arrays(), None, grid)
        replies = [reply_from(1000, 0), reply_from(1000, 0), reply_from(4242, 1)]
        strategy._sent = [0, 2]  # client 2 was asked but never answers
        strategy.aggregate_train(1, [*replies, reply_from(1003, 3)])
    reasons = {(r["client"], r["reason"]) for r in strategy.records[0]["rejected"]}
    assert strategy.records[0]["uploads"] == 1
    assert (0, "reply from node 1000 refused: the node holds client 0, which already "
               "replied") in reasons
    assert (-1, "reply from node 4242 refused: the node is bound to no partition") in reasons
    assert (3, "reply from node 1003 refused: the node holds client 3, which was not sent "
               "work this round") in reasons
    assert (2, "no reply before the round timeout") in reasons
