"""The Flower adapter: parity with the in-process engine, asymmetric payloads, faults.

The ServerApp and ClientApp run through Flower's Message API in one process (`run_local`:
a `Grid` that calls the ClientApp directly); `test_flower_simulation.py` repeats the parity
check on Flower's Ray simulation engine and `test_flower_deploy.py` on a real deployment.
"""

from __future__ import annotations

import pytest

pytest.importorskip("flwr", reason="Flower is not installed (pip install 'spikefed[flower]')")

import torch  # noqa: E402
from flwr.app import ArrayRecord  # noqa: E402
from parity import assert_same_records  # noqa: E402  (tests/parity.py)

from spikefed.config import load_config  # noqa: E402
from spikefed.experiment import build_federation  # noqa: E402
from spikefed.fl.base import Upload  # noqa: E402
from spikefed.fl.fedavg import FedAvg  # noqa: E402
from spikefed.flower import (  # noqa: E402
    LocalGrid,
    SpikefedStrategy,
    make_client_app,
    make_server_app,
    run_local,
)
from spikefed.flower.appconfig import experiment_config, partition_of  # noqa: E402
from spikefed.flower.local import local_identity  # noqa: E402
from spikefed.flower.records import CLIENT_ID, CONFIG, STATE, load_client_state  # noqa: E402
from spikefed.report import read_metrics  # noqa: E402
from spikefed.rounds.validation import RoundFailedError  # noqa: E402
from spikefed.sim import Simulation  # noqa: E402
from spikefed.sim.checkpoint import load_checkpoint  # noqa: E402

SMALL = ["data.num_clients=8", "train.clients_per_round=3", "train.rounds=3", "model.T=2",
         "model.kwargs.hidden=[16]", "data.test_subset=200", "data.partition.scheme=iid",
         "train.eval_clients=false"]


def _federation(*extra: str, n: int = 64):
    fed = build_federation(load_config(overrides=[*SMALL, *extra]))
    for c in fed.clients:
        c.x, c.y = c.x[:n], c.y[:n]
    return fed


def _run_flower(fed, out=None):
    done: dict = {}
    server = make_server_app(federation=fed, out_dir=out, on_done=lambda s: done.update(s=s))
    grid = run_local(server, make_client_app(federation=fed), len(fed.clients))
    return done["s"], grid


def _sim_final(fed, out):
    Simulation(fed.cfg, out, federation=fed).run()
    return load_checkpoint(out / "checkpoint")


def _assert_close(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-6, atol=1e-7, msg=k)


@pytest.mark.parametrize("aggregator", [
    ["aggregator.name=mean"],
    ["aggregator.name=multi_krum", "aggregator.num_byzantine=1", "train.clients_per_round=4"]])
def test_fedavg_parity_with_in_process_engine(tmp_path, aggregator) -> None:
    """Client evaluation on: the whole round record is the same on both engines."""
    fed = _federation("train.eval_clients=true", *aggregator)
    ref = _sim_final(fed, tmp_path / "sim")
    strategy, _ = _run_flower(fed, tmp_path / "flower")
    _assert_close(strategy.server_model(), ref["server_state"]["params"])
    sim = read_metrics(tmp_path / "sim" / "metrics.jsonl")
    flw = read_metrics(tmp_path / "flower" / "metrics.jsonl")
    assert "client_acc_mean" in sim[-1] and "energy_per_sample_pj" in sim[-1]
    assert ("aggregator_rejected" in sim[0]) == ("aggregator.name=mean" not in aggregator)
    assert_same_records(sim, flw)
    assert "data-summary=\"final_server_acc\"" in (tmp_path / "flower" / "report.html").read_text()
    assert (tmp_path / "flower" / "server_model.pt").is_file()


def test_recipe_schedule_and_augmentation_match_in_process_engine(tmp_path) -> None:
    """The lr schedule and seeded augmentation act identically in both engines; both log lr."""
    recipe = ("model.name=lenet5", "model.kwargs={}", "model.spiking=false",
              "data.augment=crop_flip", "train.lr_schedule=step", "train.lr_milestones=[2]")
    fed = _federation(*recipe, n=32)
    ref = _sim_final(fed, tmp_path / "sim")
    strategy, _ = _run_flower(fed, tmp_path / "flower")
    _assert_close(strategy.server_model(), ref["server_state"]["params"])
    sim = read_metrics(tmp_path / "sim" / "metrics.jsonl")
    flw = read_metrics(tmp_path / "flower" / "metrics.jsonl")
    assert [r["lr"] for r in sim] == [r["lr"] for r in flw] == pytest.approx([0.05, 0.005,
                                                                               0.005])


def test_fedavg_parity_on_event_data(tmp_path) -> None:
    fed = _federation("data.dataset=nmnist-mini", "data.events.downsample=2",
                      "data.test_subset=40", "train.rounds=2", n=16)
    assert fed.clients[0].x.shape[1:] == (2, 2, 17, 17)          # [T, C, H, W] event frames
    ref = _sim_final(fed, tmp_path / "sim")
    strategy, _ = _run_flower(fed, tmp_path / "flower")
    _assert_close(strategy.server_model(), ref["server_state"]["params"])
    sim = read_metrics(tmp_path / "sim" / "metrics.jsonl")
    flw = read_metrics(tmp_path / "flower" / "metrics.jsonl")
    assert [r["server_acc"] for r in sim] == [r["server_acc"] for r in flw]


class HalfUpload(FedAvg):
    """Asymmetric test algorithm: clients upload only weights; the broadcast is the full model
    plus a server-side round counter that the model never sees."""

    name = "half-upload"

    def init_server(self, model):
        state, params = super().init_server(model)
        return state, {**params, "server.round": torch.zeros(())}

    def upload_keys(self, model):
        return {k for k in model.state_dict() if k.endswith("weight")}

    def client_update(self, client_id, broadcast, client_state, data, ctx):
        params = {k: v for k, v in broadcast.items() if k != "server.round"}
        upload, state, metrics = super().client_update(client_id, params, client_state,
                                                       data, ctx)
        state = {**state, "seen": state.get("seen", 0) + 1}
        kept = {k: v for k, v in upload.tensors.items() if k.endswith("weight")}
        return Upload(upload.client_id, kept, upload.num_samples, upload.metrics), state, metrics

    def aggregate(self, server_state, uploads):
        _, avg = super().aggregate(server_state, uploads)
        params = {**server_state["params"], **avg}
        rounds = server_state.get("rounds", 0) + 1
        return ({**server_state, "params": params, "rounds": rounds},
                {**params, "server.round": torch.tensor(float(rounds))})


def test_asymmetric_upload_broadcast_and_private_state(tmp_path) -> None:
    fed = _federation()
    fed.algorithm = HalfUpload()
    ref = _sim_final(fed, tmp_path / "sim")
    strategy, grid = _run_flower(fed)
    _assert_close(strategy.server_model(), ref["server_state"]["params"])
    assert strategy.broadcast["server.round"].item() == fed.cfg.train.rounds
    weights = sum(v.numel() * v.element_size() for k, v in ref["broadcast"].items()
                  if k.endswith("weight"))
    assert all(r["bytes_up"] == r["uploads"] * weights for r in strategy.records)
    # private state lives in each node's context and matches the in-process client states
    for ctx in grid.contexts.values():
        pid = ctx.node_config["partition-id"]
        seen = ref["client_states"][pid].get("seen")
        if seen is None:
            assert STATE not in ctx.state.config_records
        else:
            assert load_client_state(ctx)["seen"] == seen


class Faulty(FedAvg):
    """Client 1 crashes, client 2 uploads NaNs; everyone else is honest."""

    def client_update(self, client_id, broadcast, client_state, data, ctx):
        cid = client_id
        if cid == 1:
            raise RuntimeError("disk full")
        upload, state, metrics = super().client_update(client_id, broadcast, client_state,
                                                       data, ctx)
        if cid == 2:
            key = next(iter(upload.tensors))
            upload.tensors[key] = torch.full_like(upload.tensors[key], float("nan"))
        return upload, state, metrics


def test_failing_and_bad_clients_are_rejected_not_fatal(tmp_path) -> None:
    fed = _federation("data.num_clients=4", "train.clients_per_round=4", "train.rounds=1")
    fed.algorithm = Faulty()
    strategy, _ = _run_flower(fed, tmp_path)
    rec = read_metrics(tmp_path / "metrics.jsonl")[0]
    assert rec["uploads"] == 2 and rec["aggregated"]
    reasons = {r["client"]: r["reason"] for r in rec["rejected"]}
    assert set(reasons) == {1, 2}
    assert "disk full" in reasons[1]
    assert "non-finite" in reasons[2]
    assert all(torch.isfinite(v).all() for v in strategy.server_model().values()
               if v.is_floating_point())


def test_too_few_valid_uploads_fail_the_round(tmp_path) -> None:
    fed = _federation("data.num_clients=4", "train.clients_per_round=4", "train.rounds=1",
                      "train.min_clients=3")
    fed.algorithm = Faulty()
    with pytest.raises(RoundFailedError, match="client 1: client failed"):
        _run_flower(fed, tmp_path)
    assert read_metrics(tmp_path / "metrics.jsonl") == []


def test_diverging_training_stops_the_flower_run_too(tmp_path) -> None:
    from spikefed.rounds.divergence import DivergenceError

    fed = _federation("data.num_clients=4", "train.clients_per_round=4", "train.rounds=1",
                      "train.lr=10000")
    with pytest.raises(DivergenceError, match="round 1, client"):
        _run_flower(fed, tmp_path)
    assert read_metrics(tmp_path / "metrics.jsonl") == []


def test_each_node_gets_its_own_config_record() -> None:
    fed = _federation()
    strategy = SpikefedStrategy(fed)
    grid = LocalGrid(make_client_app(federation=fed), len(fed.clients))
    with local_identity(grid.run.run_id):
        messages = list(strategy.configure_train(1, strategy.initial_arrays(), None, grid))
    configs = [m.content.config_records[CONFIG] for m in messages]
    assert len({id(c) for c in configs}) == len(configs) == fed.cfg.train.clients_per_round
    client_of = {node: cid for cid, node in strategy.nodes.items()}
    assert [c[CLIENT_ID] for c in configs] == [client_of[m.metadata.dst_node_id]
                                               for m in messages]
    assert all(isinstance(m.content.array_records["broadcast"], ArrayRecord) for m in messages)


def test_node_config_errors_name_the_fix(tmp_path) -> None:
    with pytest.raises(ValueError, match="--node-config 'partition-id=K num-partitions=4'"):
        partition_of({}, 4)
    with pytest.raises(ValueError, match=r"partition-id=7 must be an integer in \[0, 4\)"):
        partition_of({"partition-id": 7}, 4)
    with pytest.raises(ValueError, match="num-partitions=3 but the experiment has"):
        partition_of({"partition-id": 1, "num-partitions": 3}, 4)
    (tmp_path / "exp.yaml").write_text("train: {rounds: 2}\n")
    cfg = experiment_config({"config": "exp.yaml", "set": "seed=3; data.num_clients=5"},
                            tmp_path, {"data-root": "/srv/data"})
    assert (cfg.train.rounds, cfg.seed, cfg.data.num_clients) == (2, 3, 5)
    assert cfg.data.root == "/srv/data"


@pytest.mark.parametrize("algorithm", ["scaffold", "s-fedavg", "moon"])
def test_stateful_and_asymmetric_algorithms_match_in_process_engine(tmp_path, algorithm) -> None:
    """SCAFFOLD keeps control variates on the client (`context.state`); SNFL (s-fedavg)
    uploads SNN parameters and broadcasts ANN weights; MOON keeps the previous local model."""
    extra = ["model.spiking=false"] if algorithm.startswith("s-") else []
    fed = _federation(f"algorithm.name={algorithm}", "data.num_clients=4",
                      "train.clients_per_round=2", "train.eval_clients=true", *extra, n=32)
    ckpt = _sim_final(fed, tmp_path / "sim")
    ref = fed.algorithm.server_model(ckpt["server_state"], fed.model_fn).state_dict()
    strategy, grid = _run_flower(fed, tmp_path / "flower")
    _assert_close(strategy.server_model(), ref)
    assert any(STATE in ctx.state.config_records for ctx in grid.contexts.values())
    # client models need private state here (SCAFFOLD's local model, SNFL's ANN): the
    # Flower clients evaluate themselves, and the records still agree key for key
    sim = read_metrics(tmp_path / "sim" / "metrics.jsonl")
    assert "clients" in sim[-1]
    assert_same_records(sim, read_metrics(tmp_path / "flower" / "metrics.jsonl"))


def test_flsnn_partial_exchange_matches_in_process_engine(tmp_path) -> None:
    """FL-SNN (GLM model, top-k partial exchange, devices joining late) on Flower: same server
    model and the same per-client downlink bytes as the in-process engine."""
    fed = build_federation(load_config(overrides=[
        "data.dataset=nmnist-mini", "data.events.polarity=merge", "data.events.downsample=17",
        "model.name=glm", "model.T=10", "model.kwargs.n_hidden=3", "model.kwargs.memory=5",
        "algorithm.name=flsnn", "algorithm.params.tau=2", "algorithm.params.comm_rate=0.2",
        "data.num_clients=4", "train.clients_per_round=2", "train.rounds=3",
        "data.partition.scheme=iid", "data.test_subset=20", "train.eval_clients=false"]))
    for c in fed.clients:
        c.x, c.y = c.x[:12], c.y[:12]
    ckpt = _sim_final(fed, tmp_path / "sim")
    strategy, _ = _run_flower(fed, tmp_path / "flower")
    _assert_close(strategy.server_model(), ckpt["server_state"]["params"])
    sim_rec, fl_rec = (read_metrics(tmp_path / d / "metrics.jsonl") for d in ("sim", "flower"))
    assert_same_records(sim_rec, fl_rec)
    assert len({r["bytes_down"] for r in sim_rec}) > 1   # full model to newcomers, K to the rest
