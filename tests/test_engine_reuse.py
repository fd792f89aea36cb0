"""The serial engine reuses one local model per round: results stay bit for bit the same."""

from __future__ import annotations

import torch

from spikefed.fl.base import ClientData, TrainContext
from spikefed.fl.registry import build_algorithm
from spikefed.models import build_model


def _model() -> torch.nn.Module:
    return build_model("mlp", spiking=True, in_shape=(1, 6, 6), num_classes=3, T=3,
                       norm="bn", hidden=(8,))


def _clients() -> list[ClientData]:
    g = torch.Generator().manual_seed(0)
    return [ClientData(torch.rand(n, 1, 6, 6, generator=g), torch.randint(0, 3, (n,), generator=g))
            for n in (10, 7, 12)]


def test_local_model_is_built_once_and_reloaded() -> None:
    built = []

    def model_fn() -> torch.nn.Module:
        built.append(1)
        return _model()

    ctx = TrainContext(model_fn=model_fn)
    torch.manual_seed(0)
    state = _model().state_dict()
    first = ctx.local_model(state)
    with torch.no_grad():
        for p in first.parameters():
            p.add_(1.0)
    second = ctx.local_model(state)
    assert second is first and len(built) == 1
    for k, v in second.state_dict().items():
        assert torch.equal(v, state[k]), k


def test_reused_model_gives_the_same_uploads_as_fresh_models() -> None:
    torch.manual_seed(1)
    broadcast = _model().state_dict()
    for name in ("fedavg", "fedprox", "scaffold"):  # MOON builds fresh models (RNG)
        alg = build_algorithm(name, {})
        _, broadcast_alg = alg.init_server(_model()) if name == "scaffold" else (None, broadcast)
        if name == "scaffold":
            broadcast_alg = {**broadcast_alg, **broadcast}
        shared = TrainContext(model_fn=_model, batch_size=4, momentum=0.9)
        for cid, data in enumerate(_clients()):
            fresh = TrainContext(model_fn=_model, batch_size=4, momentum=0.9)
            state: dict = {}
            up_shared, st_shared, _ = alg.client_update(cid, broadcast_alg, state, data, shared)
            up_fresh, st_fresh, _ = alg.client_update(cid, broadcast_alg, state, data, fresh)
            for k in up_fresh.tensors:
                assert torch.equal(up_shared.tensors[k], up_fresh.tensors[k]), (name, cid, k)
            assert up_shared.metrics == up_fresh.metrics
            assert st_shared.keys() == st_fresh.keys()
