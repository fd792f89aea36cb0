"""End-to-end federated runs on the bundled data: learning, byte accounting, exact resume."""

from __future__ import annotations

import json

import pytest
import torch

from spikefed.config import load_config
from spikefed.fl import payload_bytes
from spikefed.report import read_metrics
from spikefed.sim import Simulation
from spikefed.sim.checkpoint import load_checkpoint

SMALL = ["data.num_clients=4", "data.test_subset=500", "train.rounds=3", "train.batch_size=32",
         "model.T=4", "model.kwargs.hidden=[64]", "data.partition.scheme=iid"]


def _cfg(*extra: str):
    return load_config(overrides=[*SMALL, *extra])


def _trim(sim: Simulation, n: int = 300) -> Simulation:
    for c in sim.fed.clients:
        c.x, c.y = c.x[:n], c.y[:n]
    return sim


def test_short_federated_snn_run_beats_chance(tmp_path) -> None:
    sim = _trim(Simulation(_cfg(), tmp_path / "run"))
    summary = sim.run()
    assert summary["final_server_acc"] > 0.6  # chance is 0.1
    for name in ("config.yaml", "metrics.jsonl", "summary.json", "curves.png", "partition.png"):
        assert (tmp_path / "run" / name).is_file(), name
    recs = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert [r["round"] for r in recs] == [1, 2, 3]
    assert recs[-1]["spikes_per_sample"] > 0 and recs[-1]["synops_per_sample"] > 0
    last = recs[-1]
    assert last["energy_per_sample_pj"] == pytest.approx(
        0.9 * last["synops_per_sample"] + 4.6 * last["macs_per_sample"])


def test_if_neurons_from_the_config_train_a_federation(tmp_path) -> None:
    """`model.neuron.type: if` builds integrate-and-fire neurons (no leak) that learn."""
    from spikefed.snn import IF

    sim = _trim(Simulation(_cfg("model.neuron.type=if", "model.neuron.threshold=0.5"),
                           tmp_path / "run"))
    neurons = [m for m in sim.fed.model_fn().modules() if isinstance(m, IF)]
    assert neurons  # the default (lif) builds LIF, which is not an IF
    assert sim.run()["final_server_acc"] > 0.5  # chance is 0.1
    with pytest.raises(ValueError, match="learn_beta"):
        _cfg("model.neuron.type=if", "model.neuron.learn_beta=true")


def test_bytes_are_counted_exactly(tmp_path) -> None:
    sim = _trim(Simulation(_cfg("train.rounds=1", "train.clients_per_round=3"), tmp_path), 64)
    sim.run()
    model_bytes = payload_bytes(sim.fed.initial_model().state_dict())
    rec = read_metrics(tmp_path / "metrics.jsonl")[0]
    assert rec["bytes_up"] == 3 * model_bytes
    assert rec["bytes_down"] == 3 * model_bytes


def test_stragglers_reduce_uploads(tmp_path) -> None:
    sim = _trim(Simulation(_cfg("train.rounds=4", "train.straggler_prob=0.5",
                                "train.eval_clients=false"), tmp_path), 32)
    sim.run()
    recs = read_metrics(tmp_path / "metrics.jsonl")
    assert sum(r["stragglers"] for r in recs) > 0
    assert all(r["uploads"] == r["participants"] - r["stragglers"] for r in recs)


@pytest.mark.parametrize("algorithm", ["fedavg", "solo"])
def test_resume_reproduces_uninterrupted_run(tmp_path, algorithm) -> None:
    cfg = _cfg("train.rounds=3", f"algorithm.name={algorithm}", "model.encoder=rate")
    full = _trim(Simulation(cfg, tmp_path / "full"), 96).run()
    _trim(Simulation(cfg, tmp_path / "split"), 96).run(stop_after=1)
    assert load_checkpoint(tmp_path / "split" / "checkpoint")["round"] == 1
    resumed = _trim(Simulation(cfg, tmp_path / "split"), 96).run(resume=True)
    for key in ("final_server_acc", "final_server_loss", "final_client_acc_mean",
                "total_bytes_up"):
        assert full[key] == resumed[key], key
    a = load_checkpoint(tmp_path / "full" / "checkpoint")
    b = load_checkpoint(tmp_path / "split" / "checkpoint")
    for k, v in a["broadcast"].items():
        assert torch.equal(v, b["broadcast"][k])
    assert len(read_metrics(tmp_path / "split" / "metrics.jsonl")) == 3
    assert json.loads((tmp_path / "split" / "summary.json").read_text())["rounds"] == 3
