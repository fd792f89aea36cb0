"""Parity on Flower's own simulation engine (Ray): same seeded FedAvg, same server model, and
the same per-round records (client evaluation on) as the in-process engine."""

from __future__ import annotations

import pytest

pytest.importorskip("flwr", reason="Flower is not installed (pip install 'spikefed[flower]')")
pytest.importorskip("ray", reason="Flower's simulation engine needs ray (flwr[simulation])")

import torch  # noqa: E402
from flwr.simulation import run_simulation  # noqa: E402
from parity import assert_same_records  # noqa: E402  (tests/parity.py)

from spikefed.config import load_config  # noqa: E402
from spikefed.experiment import build_federation  # noqa: E402
from spikefed.flower import make_client_app, make_server_app  # noqa: E402
from spikefed.report.metrics import read_metrics  # noqa: E402
from spikefed.sim import Simulation  # noqa: E402
from spikefed.sim.checkpoint import load_checkpoint  # noqa: E402


def _run_on_ray(fed, out):
    """Run `fed` on Flower's Ray simulation engine with 4 SuperNodes; the finished strategy."""
    done: dict = {}
    server = make_server_app(federation=fed, out_dir=out, on_done=lambda s: done.update(s=s))
    run_simulation(server, make_client_app(federation=fed), num_supernodes=4,
                   backend_config={"client_resources": {"num_cpus": 1, "num_gpus": 0.0},
                                   "init_args": {"num_cpus": 2}})
    return done["s"]


@pytest.mark.slow
def test_fedavg_parity_on_ray_simulation_engine(tmp_path) -> None:
    cfg = load_config(overrides=[
        "data.num_clients=4", "train.clients_per_round=2", "train.rounds=2", "model.T=2",
        "model.kwargs.hidden=[16]", "data.test_subset=200", "data.partition.scheme=iid",
        "train.eval_clients=true"])
    fed = build_federation(cfg)
    for c in fed.clients:
        c.x, c.y = c.x[:64], c.y[:64]
    Simulation(cfg, tmp_path / "sim", federation=fed).run()
    ref = load_checkpoint(tmp_path / "sim" / "checkpoint")["server_state"]["params"]
    strategy = _run_on_ray(fed, tmp_path / "ray")
    got = strategy.server_model()
    assert got.keys() == ref.keys()
    for k in ref:
        torch.testing.assert_close(got[k], ref[k], rtol=1e-6, atol=1e-7, msg=k)
    assert [r["uploads"] for r in strategy.records] == [2, 2]
    sim = read_metrics(tmp_path / "sim" / "metrics.jsonl")
    assert "client_acc_mean" in sim[-1] and "clients" in sim[-1]
    assert_same_records(sim, read_metrics(tmp_path / "ray" / "metrics.jsonl"))


@pytest.mark.slow
def test_async_fedasync_on_ray_simulation_engine(tmp_path) -> None:
    """Asynchronous FL over Flower's in-memory grid (real push/pull, real arrival order):
    two clients busy at once, every update applied, staleness counted in server versions."""
    cfg = load_config(overrides=[
        "data.num_clients=4", "model.T=2", "model.kwargs.hidden=[16]", "data.test_subset=200",
        "data.partition.scheme=iid", "train.eval_clients=false", "train.eval_every=3",
        "asynchronous.mode=fedasync", "asynchronous.concurrency=2", "asynchronous.updates=6"])
    fed = build_federation(cfg)
    for c in fed.clients:
        c.x, c.y = c.x[:64], c.y[:64]
    strategy = _run_on_ray(fed, tmp_path / "ray")
    records = read_metrics(tmp_path / "ray" / "metrics.jsonl")
    assert [r["model_version"] for r in records] == [1, 2, 3, 4, 5, 6]
    assert records[-1]["updates"] == 6 and all(r["rejected"] == [] for r in records)
    # the second of the first two arrivals was sent version 0 but finds version 1 at least
    assert max(r["staleness_max"] for r in records) >= 1
    assert "server_acc" in records[2] and "server_acc" in records[-1]
    assert strategy.version == 6 and strategy.in_flight == {}
