"""FL core: aggregation arithmetic, FedProx/FedAvg equivalence, byte accounting, sampling."""

from __future__ import annotations

import torch
from torch import nn

from spikefed.config import load_config
from spikefed.fl import ClientData, TrainContext, Upload, build_algorithm, payload_bytes
from spikefed.fl.aggregation import weighted_average
from spikefed.rounds.sampling import sample_clients


def _tiny_model() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(4, 3))


def _ctx(**kw) -> TrainContext:
    return TrainContext(model_fn=_tiny_model, batch_size=8, lr=0.1, **kw)


def _data(seed: int = 0) -> ClientData:
    g = torch.Generator().manual_seed(seed)
    return ClientData(torch.randn(32, 4, generator=g), torch.randint(0, 3, (32,), generator=g))


def test_fedavg_of_identical_models_is_identity() -> None:
    state = {k: v.clone() for k, v in _tiny_model().state_dict().items()}
    uploads = [Upload(i, {k: v.clone() for k, v in state.items()}, n)
               for i, n in enumerate([3, 7, 11])]
    out = weighted_average(uploads)
    for k in state:
        torch.testing.assert_close(out[k], state[k], rtol=0, atol=1e-7)


def test_fedavg_weights_by_sample_count_exactly() -> None:
    a = Upload(0, {"w": torch.zeros(5)}, num_samples=1)
    b = Upload(1, {"w": torch.ones(5)}, num_samples=3)
    assert torch.equal(weighted_average([a, b])["w"], torch.full((5,), 0.75))
    _, broadcast = build_algorithm("fedavg").aggregate({}, [a, b])
    assert torch.equal(broadcast["w"], torch.full((5,), 0.75))


def test_fedprox_mu_zero_equals_fedavg() -> None:
    torch.manual_seed(0)
    init = _tiny_model().state_dict()
    avg, _, _ = build_algorithm("fedavg").client_update(1, init, {}, _data(), _ctx())
    prox, _, _ = build_algorithm("fedprox", {"mu": 0.0}).client_update(
        1, init, {}, _data(), _ctx())
    for k in avg.tensors:
        assert torch.equal(avg.tensors[k], prox.tensors[k])


def test_fedprox_stays_closer_to_the_broadcast() -> None:
    init = _tiny_model().state_dict()

    def drift(alg) -> float:
        up, _, _ = alg.client_update(0, init, {}, _data(), _ctx(local_epochs=5))
        return sum(float(((up.tensors[k] - init[k]) ** 2).sum()) for k in init)

    assert drift(build_algorithm("fedprox", {"mu": 5.0})) < 0.8 * drift(build_algorithm("fedavg"))


def test_solo_keeps_model_private_and_uploads_nothing() -> None:
    alg = build_algorithm("solo")
    server, broadcast = alg.init_server(_tiny_model())
    up, state, _ = alg.client_update(0, broadcast, {}, _data(), _ctx())
    assert up.tensors == {} and up.nbytes == 0
    assert set(state["params"]) == set(_tiny_model().state_dict())
    assert alg.server_model_state(server) is None


def test_payload_bytes_are_exact() -> None:
    payload = {"a": torch.zeros(3, 4), "b": torch.zeros(10, dtype=torch.float16),
               "c": torch.zeros(2, dtype=torch.int64)}
    assert payload_bytes(payload) == 3 * 4 * 4 + 10 * 2 + 2 * 8


def test_client_sampling_is_seeded_and_sized() -> None:
    cfg = load_config(overrides=["train.fraction=0.3", "train.straggler_prob=0.5"])
    a = sample_clients(20, cfg, 3)
    assert a == sample_clients(20, cfg, 3)
    assert len(a[0]) == 6 and set(a[1]) <= set(a[0])
    rounds = [sample_clients(20, cfg, r) for r in range(1, 50)]
    assert len({tuple(c) for c, _ in rounds}) > 10
    dropped = sum(len(s) for _, s in rounds) / sum(len(c) for c, _ in rounds)
    assert 0.35 < dropped < 0.65
