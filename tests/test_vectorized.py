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


def _compare(a, b, what: str) -> None:
    """Tensors (possibly nested in dicts) equal within float tolerance."""
    if isinstance(a, dict):
        assert a.keys() == b.keys(), what
        for k in a:
            _compare(a[k], b[k], f"{what}.{k}")
    elif isinstance(a, torch.Tensor) and not torch.is_floating_point(a):
        assert torch.equal(a, b), what
    elif isinstance(a, torch.Tensor):
        # relative to the tensor's norm: batched and serial float rounding differ, and one
        # membrane potential landing on the other side of the threshold flips a spike
        err, scale = float((a - b).norm()), float(b.norm())
        assert err <= 1e-3 * scale + 1e-6, f"{what}: |a - b| = {err:.2e}, |b| = {scale:.2e}"
    else:
        assert a == b, what


def _assert_matches_serial(alg, clients, ctx, states=None, broadcast=None) -> None:
    broadcast = broadcast if broadcast is not None else _broadcast(ctx.model_fn)
    ids = list(range(len(clients)))
    states = states or [{} for _ in ids]
    results = train_vectorized(alg, broadcast, clients, ids, ctx, client_states=states)
    for cid, data, state, (up, new_state) in zip(ids, clients, states, results, strict=True):
        ref, ref_state, metrics = alg.client_update(cid, broadcast, state, data, ctx)
        assert up.client_id == cid and up.num_samples == len(data)
        assert list(up.tensors) == list(ref.tensors)
        for k in ref.tensors:
            if k in broadcast and torch.is_floating_point(broadcast[k]):
                assert not torch.equal(ref.tensors[k], broadcast[k]), k  # it did train
        _compare(up.tensors, ref.tensors, f"client {cid} upload")
        _compare(new_state, ref_state, f"client {cid} state")
        steps = ctx.local_epochs * -(-len(data) // ctx.batch_size)
        assert up.metrics["steps"] == metrics["steps"] == steps
        assert up.metrics["train_acc"] == pytest.approx(metrics["train_acc"])
        assert up.metrics["train_loss"] == pytest.approx(metrics["train_loss"], rel=1e-5)


@pytest.mark.parametrize("alg", [FedAvg(), FedProx(mu=0.5)], ids=["fedavg", "fedprox"])
def test_vectorised_equals_serial_with_unequal_clients(alg) -> None:
    _assert_matches_serial(alg, _clients(), _ctx(_model_fn()))


def _after_one_serial_round(alg, ctx):
    """Broadcast and client states after a serial round, so private state is non-trivial."""
    model = ctx.model_fn()
    model.load_state_dict(_broadcast(ctx.model_fn))
    server, broadcast = alg.init_server(model)
    clients = _clients()
    states, uploads = [], []
    for cid, data in enumerate(clients):
        up, st, _ = alg.client_update(cid, broadcast, {}, data, ctx)
        states.append(st)
        uploads.append(up)
    _, broadcast = alg.aggregate(server, uploads)
    return broadcast, states


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.parametrize("norm", ["none", "bn"])
@pytest.mark.parametrize("name", ["fedavg", "fedprox", "scaffold", "moon"])
def test_every_vectorizable_algorithm_equals_serial(name, norm, optimizer) -> None:
    """Uploads and new client states (SCAFFOLD controls, MOON previous model and head,
    BatchNorm running statistics) equal the serial ones, with SGD+momentum and Adam."""
    params = {"fedprox": {"mu": 0.5}, "moon": {"mu": 1.0, "proj_dim": 8}}.get(name, {})
    alg = build_algorithm(name, params)
    lr = 0.01 if optimizer == "adam" else 0.1
    ctx = _ctx(_model_fn(norm=norm), optimizer=optimizer, lr=lr, local_epochs=1)
    broadcast, states = _after_one_serial_round(alg, ctx)
    ctx.round = 3
    _assert_matches_serial(alg, _clients(), ctx, states=states, broadcast=broadcast)


def test_vectorised_equals_serial_with_client_transforms_and_no_momentum() -> None:
    ctx = _ctx(_model_fn(norm="gn"), momentum=0.0, weight_decay=0.0, local_epochs=1)
    _assert_matches_serial(FedAvg(), _clients(transform=lambda x: x.flip(-1) * 0.8), ctx)


def test_engine_groups_clients_on_cpu_without_changing_results(monkeypatch) -> None:
    monkeypatch.setattr(vectorized, "CPU_GROUP", 3)  # 4 clients: groups of 3 and 1
    ctx = _ctx(_model_fn())
    broadcast = _broadcast(ctx.model_fn)
    clients = _clients()
    states = {i: {"kept": i} for i in range(4)}
    out = list(client_updates(FedAvg(), broadcast, states, clients, [3, 1, 0, 2], ctx, "on"))
    assert [cid for cid, _, _ in out] == [3, 1, 0, 2]
    for cid, up, state in out:
        assert state is states[cid] and up.client_id == cid
        ref, _, _ = FedAvg().client_update(cid, broadcast, states[cid], clients[cid], ctx)
        for k in ref.tensors:
            torch.testing.assert_close(up.tensors[k], ref.tensors[k], atol=1e-5, rtol=1e-5)


def test_rate_encoder_runs_and_is_reproducible() -> None:
    """Rate coding draws from one global stream under vmap: not the serial numbers, but
    finite, trained and the same on a repeat."""
    ctx = _ctx(_model_fn(encoder="rate"), local_epochs=1)
    broadcast = _broadcast(ctx.model_fn)
    a = [u for u, _ in train_vectorized(FedAvg(), broadcast, _clients(), [0, 1, 2, 3], ctx)]
    b = [u for u, _ in train_vectorized(FedAvg(), broadcast, _clients(), [0, 1, 2, 3], ctx)]
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
    assert should_vectorize("auto", FedAvg(), _model_fn(norm="bn")(), small, 8)
    assert should_vectorize("auto", build_algorithm("moon"), fn(), small, 8)
    assert should_vectorize("on", FedAvg(), fn(), _ctx(fn, optimizer="adam"), 8)
    assert not should_vectorize("off", FedAvg(), fn(), small, 8)
    for serial_only in ("solo", "s-fedavg"):
        assert not should_vectorize("auto", build_algorithm(serial_only), fn(), small, 8)
        with pytest.raises(ValueError, match=f"'{serial_only}'"):
            should_vectorize("on", build_algorithm(serial_only), fn(), small, 8)

    class Custom(FedAvg):  # changes local training without restating its objective
        name = "custom"

    with pytest.raises(ValueError, match="'custom'.*local_objective"):
        should_vectorize("on", Custom(), fn(), small, 8)


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


def test_simulation_vectorize_on_matches_off_for_scaffold_with_batchnorm(tmp_path) -> None:
    extra = ("algorithm.name=scaffold", "model.norm=bn", "train.optimizer=adam", "train.lr=0.01")
    off = _sim(tmp_path / "off", "train.vectorize=off", *extra).run()
    on = _sim(tmp_path / "on", "train.vectorize=on", *extra).run()
    assert on["final_server_acc"] == off["final_server_acc"]
    a = load_checkpoint(tmp_path / "off" / "checkpoint")
    b = load_checkpoint(tmp_path / "on" / "checkpoint")
    _compare(a["broadcast"], b["broadcast"], "broadcast")
    _compare(a["client_states"], b["client_states"], "client states")
