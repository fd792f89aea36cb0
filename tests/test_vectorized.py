"""Vectorised clients (`spikefed.sim.vectorized`) equal the serial `client_update` loop."""

from __future__ import annotations

import pytest
import torch

from spikefed.config import load_config
from spikefed.fl.base import ClientData, TrainContext
from spikefed.fl.fedavg import FedAvg
from spikefed.fl.fedprox import FedProx
from spikefed.fl.registry import build_algorithm
from spikefed.models import build_model
from spikefed.sim import Simulation, vectorized
from spikefed.sim.checkpoint import load_checkpoint
from spikefed.sim.vectorized import client_updates, should_vectorize, train_vectorized

SIZES = [23, 40, 7, 16]  # unequal; with batch 8 three of them end on a partial batch


def _model_fn(encoder: str = "direct", norm: str = "none"):
    return lambda: build_model("mlp", spiking=True, in_shape=(1, 8, 8), num_classes=5, T=4,
                               norm=norm, encoder=encoder, hidden=(32,),
                               neuron={"learn_beta": True})


def _clients(transform=None) -> list[ClientData]:
    g = torch.Generator().manual_seed(0)
    return [ClientData(torch.rand(n, 1, 8, 8, generator=g) * 1.5,
                       torch.randint(0, 5, (n,), generator=g), transform) for n in SIZES]


def _ctx(model_fn, **kw) -> TrainContext:
    base = dict(model_fn=model_fn, local_epochs=2, batch_size=8, lr=0.1, momentum=0.9,
                weight_decay=1e-3, seed=3, round=2)
    return TrainContext(**{**base, **kw})


def _broadcast(model_fn):
    torch.manual_seed(1)
    return {k: v.clone() for k, v in model_fn().state_dict().items()}


def _assert_matches_serial(alg, clients, ctx) -> None:
    broadcast = _broadcast(ctx.model_fn)
    ids = list(range(len(clients)))
    uploads = train_vectorized(alg, broadcast, clients, ids, ctx)
    for cid, data, up in zip(ids, clients, uploads, strict=True):
        ref, _, metrics = alg.client_update(broadcast, {"client_id": cid}, data, ctx)
        assert up.client_id == cid and up.num_samples == len(data)
        assert list(up.tensors) == list(ref.tensors)
        for k in ref.tensors:
            assert not torch.equal(ref.tensors[k], broadcast[k]), k  # it did train
            torch.testing.assert_close(up.tensors[k], ref.tensors[k], atol=1e-5, rtol=1e-5)
        steps = ctx.local_epochs * -(-len(data) // ctx.batch_size)
        assert up.metrics["steps"] == metrics["steps"] == steps
        assert up.metrics["train_acc"] == pytest.approx(metrics["train_acc"])
        assert up.metrics["train_loss"] == pytest.approx(metrics["train_loss"], rel=1e-5)


@pytest.mark.parametrize("alg", [FedAvg(), FedProx(mu=0.5)], ids=["fedavg", "fedprox"])
def test_vectorised_equals_serial_with_unequal_clients(alg) -> None:
    _assert_matches_serial(alg, _clients(), _ctx(_model_fn()))


def test_vectorised_equals_serial_with_client_transforms_and_no_momentum() -> None:
    ctx = _ctx(_model_fn(norm="gn"), momentum=0.0, weight_decay=0.0, local_epochs=1)
    _assert_matches_serial(FedAvg(), _clients(transform=lambda x: x.flip(-1) * 0.8), ctx)


def test_engine_groups_clients_on_cpu_without_changing_results(monkeypatch) -> None:
    monkeypatch.setattr(vectorized, "CPU_GROUP", 3)  # 4 clients: groups of 3 and 1
    ctx = _ctx(_model_fn())
    broadcast = _broadcast(ctx.model_fn)
    clients = _clients()
    states = {i: {"client_id": i, "kept": i} for i in range(4)}
    out = list(client_updates(FedAvg(), broadcast, states, clients, [3, 1, 0, 2], ctx, "on"))
    assert [cid for cid, _, _ in out] == [3, 1, 0, 2]
    for cid, up, state in out:
        assert state is states[cid] and up.client_id == cid
        ref, _, _ = FedAvg().client_update(broadcast, states[cid], clients[cid], ctx)
        for k in ref.tensors:
            torch.testing.assert_close(up.tensors[k], ref.tensors[k], atol=1e-5, rtol=1e-5)


def test_rate_encoder_runs_and_is_reproducible() -> None:
    """Rate coding draws from one global stream under vmap: not the serial numbers, but
    finite, trained and the same on a repeat."""
    ctx = _ctx(_model_fn(encoder="rate"), local_epochs=1)
    broadcast = _broadcast(ctx.model_fn)
    a = train_vectorized(FedAvg(), broadcast, _clients(), [0, 1, 2, 3], ctx)
    b = train_vectorized(FedAvg(), broadcast, _clients(), [0, 1, 2, 3], ctx)
    for ua, ub in zip(a, b, strict=True):
        for k, v in ua.tensors.items():
            assert torch.isfinite(v).all() and torch.equal(v, ub.tensors[k])
        assert not torch.equal(ua.tensors["fc1.weight"], broadcast["fc1.weight"])


def test_auto_heuristic_and_blockers() -> None:
    fn = _model_fn()
    small = _ctx(fn, batch_size=16)
    assert should_vectorize("auto", FedAvg(), fn(), small, 8)
    assert not should_vectorize("auto", FedAvg(), fn(), small, 2)  # too few clients
    assert not should_vectorize("auto", FedAvg(), fn(), _ctx(fn, batch_size=512), 8)
    assert not should_vectorize("auto", FedAvg(), _model_fn(norm="bn")(), small, 8)
    assert not should_vectorize("auto", build_algorithm("moon"), fn(), small, 8)
    assert not should_vectorize("off", FedAvg(), fn(), small, 8)
    with pytest.raises(ValueError, match="optimizer='adam'"):
        should_vectorize("on", FedAvg(), fn(), _ctx(fn, optimizer="adam"), 8)
    with pytest.raises(ValueError, match="'moon'"):
        should_vectorize("on", build_algorithm("moon"), fn(), small, 8)


SMALL = ["data.num_clients=5", "data.test_subset=300", "train.rounds=2", "train.batch_size=16",
         "model.T=4", "model.kwargs.hidden=[32]", "data.partition.scheme=iid",
         "train.eval_clients=false", "algorithm.name=fedprox"]


def _sim(tmp_path, *extra: str) -> Simulation:
    sim = Simulation(load_config(overrides=[*SMALL, *extra]), tmp_path)
    for i, c in enumerate(sim.fed.clients):  # unequal sizes, partial last batches
        c.x, c.y = c.x[:30 + 13 * i], c.y[:30 + 13 * i]
    return sim


def test_simulation_vectorize_on_matches_off(tmp_path) -> None:
    off = _sim(tmp_path / "off", "train.vectorize=off").run()
    on = _sim(tmp_path / "on", "train.vectorize=on").run()
    assert on["final_server_acc"] == off["final_server_acc"]
    assert on["total_bytes_up"] == off["total_bytes_up"]
    a = load_checkpoint(tmp_path / "off" / "checkpoint")["broadcast"]
    b = load_checkpoint(tmp_path / "on" / "checkpoint")["broadcast"]
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-5, rtol=1e-5)


def test_simulation_vectorize_on_with_batchnorm_is_a_clear_error(tmp_path) -> None:
    sim = _sim(tmp_path, "train.vectorize=on", "model.norm=bn")
    with pytest.raises(ValueError, match=r"train.vectorize='on' is impossible.*model.norm=none"):
        sim.run()
    auto = _sim(tmp_path / "auto", "train.vectorize=auto", "model.norm=bn", "train.rounds=1")
    assert auto.run()["rounds"] == 1  # auto falls back to the serial loop
