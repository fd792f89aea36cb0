"""Asynchronous FL on Flower (`spikefed.flower.asynchronous`): exact agreement with the
in-process engine where the two must agree, arrival order from node delays, rejected and
missing replies, the record's keys."""

from __future__ import annotations

import pytest

pytest.importorskip("flwr", reason="Flower is not installed (pip install 'spikefed[flower]')")

import torch  # noqa: E402
from flwr.app import Message, RecordDict  # noqa: E402

from spikefed.config import load_config  # noqa: E402
from spikefed.experiment import build_federation  # noqa: E402
from spikefed.fl.fedavg import FedAvg  # noqa: E402
from spikefed.flower import (  # noqa: E402
    AsyncSpikefedStrategy,
    LocalGrid,
    make_client_app,
    make_server_app,
    run_federation,
)
from spikefed.flower.local import local_identity, run_local  # noqa: E402
from spikefed.report import read_metrics  # noqa: E402
from spikefed.rounds.asynchronous import staleness_weight  # noqa: E402
from spikefed.sim.asynchronous import AsyncSimulation  # noqa: E402
from spikefed.sim.checkpoint import load_checkpoint  # noqa: E402

TINY = ["data.num_clients=4", "data.test_subset=100", "model.T=2", "model.kwargs.hidden=[16]",
        "data.partition.scheme=iid", "train.eval_clients=false", "train.eval_every=2"]
#: the keys every asynchronous record has on Flower (docs/async.md)
KEYS = {"round", "model_version", "elapsed_s", "updates", "lr", "participants", "uploads",
        "stragglers", "aggregated", "arrived", "bytes_up", "bytes_down", "train_loss_mean",
        "staleness_mean", "staleness_max", "staleness_weight_mean", "rejected", "clipped",
        "wall_s"}
EVAL_KEYS = {"server_acc", "server_loss", "spikes_per_sample", "energy_per_sample_pj"}


@pytest.fixture(autouse=True)
def _quiet(monkeypatch) -> None:
    monkeypatch.setenv("FLWR_TELEMETRY_ENABLED", "0")
    monkeypatch.setattr("spikefed.flower.server.publish_run", lambda *a, **k: None)
    monkeypatch.setattr("spikefed.sim.engine.plot_curves", lambda *a, **k: None)
    monkeypatch.setattr("spikefed.sim.engine.publish_run", lambda *a, **k: None)


def _federation(*extra: str, n: int = 48):
    fed = build_federation(load_config(overrides=[*TINY, *extra]))
    for c in fed.clients:
        c.x, c.y = c.x[:n], c.y[:n]
    return fed


def _run_flower(fed, out, client_app=None, reply_delay=None, run_config=None):
    done: dict = {}
    server = make_server_app(federation=fed, out_dir=out, on_done=lambda s: done.update(s=s))
    run_local(server, client_app or make_client_app(federation=fed), len(fed.clients),
              run_config=run_config, reply_delay=reply_delay)
    return done["s"]


def _without(records: list[dict], *keys: str) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in keys} for r in records]


@pytest.mark.parametrize("mode", ["fedasync", "fedbuff"])
def test_one_at_a_time_flower_equals_the_in_process_engine_exactly(tmp_path, mode) -> None:
    """Concurrency 1: every update has staleness 0 on both engines and the same seeded client
    sequence, so the server models and records agree bit for bit (only time differs)."""
    fed = _federation(f"asynchronous.mode={mode}", "asynchronous.concurrency=1",
                      "asynchronous.updates=5", "asynchronous.buffer_size=2",
                      "asynchronous.staleness=constant")
    AsyncSimulation(fed.cfg, tmp_path / "sim", federation=fed).run()
    strategy = _run_flower(fed, tmp_path / "flower")
    assert isinstance(strategy, AsyncSpikefedStrategy)
    sim_model = load_checkpoint(tmp_path / "sim" / "checkpoint")["broadcast"]
    assert sim_model.keys() == strategy.broadcast.keys()
    assert all(torch.equal(sim_model[k], strategy.broadcast[k]) for k in sim_model)
    sim = read_metrics(tmp_path / "sim" / "metrics.jsonl")
    flw = read_metrics(tmp_path / "flower" / "metrics.jsonl")
    assert _without(sim, "virtual_time_s", "wall_s") == _without(flw, "elapsed_s", "wall_s")
    assert [r["model_version"] for r in flw] == ([1, 2, 3, 4, 5] if mode == "fedasync"
                                                 else [1, 2, 3])
    assert len({tuple(r["arrived"]) for r in flw}) > 1  # not one client over and over


def test_slow_node_makes_stale_updates_that_are_weighted_down(tmp_path) -> None:
    """Node of client 0 answers 3 polls late: the others' updates overtake it, so its update
    arrives stale and gets the polynomial weight of its staleness."""
    fed = _federation("asynchronous.concurrency=3", "asynchronous.updates=8",
                      "asynchronous.staleness=polynomial", "asynchronous.staleness_a=0.5")
    _run_flower(fed, tmp_path, reply_delay={1000: 3})
    records = read_metrics(tmp_path / "metrics.jsonl")
    assert all(KEYS <= r.keys() and "virtual_time_s" not in r for r in records)
    assert records[-1]["updates"] == 8 and len(records) == 8  # FedAsync: one per update
    assert [r["model_version"] for r in records] == list(range(1, 9))
    arrivals = [c for r in records for c in r["arrived"]]
    assert len(arrivals) == 8 and 0 in arrivals
    late = [r for r in records if r["arrived"] == [0]]
    assert late and all(r["staleness_max"] >= 1 for r in late)
    for r in records:  # one update a record: its weight is the schedule's at its staleness
        assert r["staleness_weight_mean"] == staleness_weight(fed.cfg.asynchronous,
                                                              r["staleness_max"])
    elapsed = [r["elapsed_s"] for r in records]
    assert elapsed == sorted(elapsed) and elapsed[0] >= 0
    assert [r["round"] for r in records if EVAL_KEYS <= r.keys()] == [2, 4, 6, 8]


def test_fedbuff_on_flower_steps_every_k_updates(tmp_path) -> None:
    fed = _federation("asynchronous.mode=fedbuff", "asynchronous.concurrency=3",
                      "asynchronous.buffer_size=2", "asynchronous.updates=7")
    strategy = _run_flower(fed, tmp_path, reply_delay={1001: 2})
    records = read_metrics(tmp_path / "metrics.jsonl")
    # 7 updates in buffers of 2: three full steps and the last, partial buffer
    assert [(r["model_version"], r["uploads"]) for r in records] == [(1, 2), (2, 2), (3, 2),
                                                                     (4, 1)]
    assert records[-1]["updates"] == 7 and EVAL_KEYS <= records[-1].keys()
    assert strategy.buffer == [] and strategy.in_flight == {}
    assert (tmp_path / "summary.json").exists() and (tmp_path / "server_model.pt").exists()


class Faulty(FedAvg):
    """Client 1 raises; client 2 uploads NaNs."""

    def client_update(self, cid, broadcast, client_state, data, ctx):
        if cid == 1:
            raise OSError("disk full")
        upload, state, metrics = super().client_update(cid, broadcast, client_state, data, ctx)
        if cid == 2:
            key = next(iter(upload.tensors))
            upload.tensors[key] = torch.full_like(upload.tensors[key], float("nan"))
        return upload, state, metrics


def test_failing_invalid_and_malformed_replies_are_rejected_not_fatal(tmp_path) -> None:
    fed = _federation("asynchronous.concurrency=2", "asynchronous.updates=12",
                      "train.eval_every=100")
    fed.algorithm = Faulty()
    good = make_client_app(federation=fed)

    def client_app(msg: Message, context):  # node of client 3 replies without an upload
        if context.node_config["partition-id"] == 3 and msg.metadata.message_type == "train":
            return Message(RecordDict({}), reply_to=msg)
        return good(msg, context)

    strategy = _run_flower(fed, tmp_path, client_app=client_app)
    records = read_metrics(tmp_path / "metrics.jsonl")
    assert records[-1]["updates"] == 12
    reasons: dict[int, set[str]] = {}
    for r in records:
        for bad in r["rejected"]:
            reasons.setdefault(bad["client"], set()).add(bad["reason"])
    arrived = [c for r in records for c in r["arrived"]]
    assert {1, 2, 3} <= set(arrived)  # 12 draws from 4 clients reach every one of them
    assert set(reasons) == {1, 2, 3}
    assert all(x.startswith("client failed") and "disk full" in x for x in reasons[1])
    assert all("non-finite" in x for x in reasons[2])
    assert all(x.startswith("malformed reply") for x in reasons[3])
    rejected = sum(len(r["rejected"]) for r in records)
    assert rejected == sum(c in (1, 2, 3) for c in arrived)  # every bad arrival, once
    applied = sum(r["uploads"] for r in records)
    assert applied == sum(r["arrived"].count(0) for r in records) == strategy.version
    assert all(torch.isfinite(v).all() for v in strategy.broadcast.values())


def test_a_reply_that_never_comes_is_bounded_by_the_round_timeout(tmp_path) -> None:
    fed = _federation("asynchronous.concurrency=2", "asynchronous.updates=6",
                      "train.eval_every=100")
    _run_flower(fed, tmp_path, reply_delay={1002: 10**9}, run_config={"round-timeout": 0.2})
    records = read_metrics(tmp_path / "metrics.jsonl")
    assert records[-1]["updates"] == 6
    lost = [bad for r in records for bad in r["rejected"]]
    assert lost and all(bad["client"] == 2 and "no reply within the round timeout (0.2 s)"
                        in bad["reason"] for bad in lost)
    assert sum(r["uploads"] for r in records) == 6 - len(lost)


class DroppingGrid(LocalGrid):
    """A grid that does not accept TRAIN messages to client 1's node (empty message id)."""

    def push_messages(self, messages):
        messages = list(messages)
        if len(messages) == 1 and messages[0].metadata.dst_node_id == 1001 \
                and messages[0].metadata.message_type == "train":
            return [""]
        return super().push_messages(messages)


def test_a_message_the_grid_refuses_is_an_immediate_rejection(tmp_path) -> None:
    fed = _federation("asynchronous.concurrency=2", "asynchronous.updates=8",
                      "train.eval_every=100")
    grid = DroppingGrid(make_client_app(federation=fed), len(fed.clients))
    with local_identity(grid.run.run_id):
        strategy = run_federation(grid, fed, tmp_path)
    records = read_metrics(tmp_path / "metrics.jsonl")
    arrived = [c for r in records for c in r["arrived"]]
    reasons = [bad["reason"] for r in records for bad in r["rejected"]]
    assert records[-1]["updates"] == 8 and 1 in arrived
    assert reasons == ["the grid did not accept the message to node 1001"] * arrived.count(1)
    assert strategy.version == 8 - arrived.count(1) and strategy.in_flight == {}
