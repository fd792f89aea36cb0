"""MOON and SCAFFOLD against FedAvg and their defining formulas; robust aggregators."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from spikefed.fl import ClientData, TrainContext, Upload, build_algorithm, payload_bytes
from spikefed.fl.moon import model_contrastive_loss, penultimate
from spikefed.fl.robust import coordinate_median, krum, krum_scores, trimmed_mean


def _model() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3))


def _ctx(**kw) -> TrainContext:
    base = {"model_fn": _model, "batch_size": 8, "lr": 0.1}
    return TrainContext(**{**base, **kw})


def _data(seed: int = 0, n: int = 32) -> ClientData:
    g = torch.Generator().manual_seed(seed)
    return ClientData(torch.randn(n, 4, generator=g), torch.randint(0, 3, (n,), generator=g))


def _init() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return {k: v.clone() for k, v in _model().state_dict().items()}


# ---------------------------------------------------------------- MOON
def test_moon_mu_zero_equals_fedavg_and_mu_positive_differs() -> None:
    init = _init()
    avg, _, _ = build_algorithm("fedavg").client_update(1, init, {}, _data(), _ctx())
    zero, _, _ = build_algorithm("moon", {"mu": 0.0}).client_update(
        1, init, {}, _data(), _ctx())
    for k in avg.tensors:
        assert torch.equal(avg.tensors[k], zero.tensors[k])
    # a client with a previous model different from the global one feels the contrastive pull
    prev = {k: v + 0.5 * torch.randn_like(v) for k, v in init.items()}
    state = {"moon_prev": prev}
    pos, new_state, _ = build_algorithm("moon", {"mu": 5.0}).client_update(
        1, init, state, _data(), _ctx())
    assert any(not torch.equal(avg.tensors[k], pos.tensors[k]) for k in avg.tensors)
    assert set(pos.tensors) == set(init)  # the projection head never leaves the client
    assert "moon_head" in new_state and "moon_prev" in new_state


def test_model_contrastive_loss_matches_its_formula() -> None:
    g = torch.Generator().manual_seed(3)
    z, zg, zp = (torch.randn(5, 7, generator=g) for _ in range(3))
    tau = 0.3
    expected = 0.0
    for i in range(5):
        pos = math.exp(F.cosine_similarity(z[i], zg[i], dim=0).item() / tau)
        neg = math.exp(F.cosine_similarity(z[i], zp[i], dim=0).item() / tau)
        expected += -math.log(pos / (pos + neg)) / 5
    assert model_contrastive_loss(z, zg, zp, tau).item() == pytest.approx(expected, rel=1e-5)
    # aligned with the global representation -> smaller loss than aligned with the previous one
    assert model_contrastive_loss(zg, zg, zp, tau) < model_contrastive_loss(zp, zg, zp, tau)


def test_penultimate_is_the_readout_input() -> None:
    m = _model()
    x = torch.randn(3, 4)
    expected = torch.relu(m[1](m[0](x)))
    torch.testing.assert_close(penultimate(m, x), expected)


# ---------------------------------------------------------------- SCAFFOLD
def test_scaffold_first_round_equals_fedavg() -> None:
    init = _init()
    fedavg, scaffold = build_algorithm("fedavg"), build_algorithm("scaffold")
    _, bcast = scaffold.init_server(_model_with(init))
    datas = [_data(1), _data(2, n=48)]
    avg_ups = [fedavg.client_update(i, init, {}, d, _ctx())[0]
               for i, d in enumerate(datas)]
    sc_ups = [scaffold.client_update(i, bcast, {}, d, _ctx())[0]
              for i, d in enumerate(datas)]
    for a, s in zip(avg_ups, sc_ups, strict=True):
        for k in init:
            torch.testing.assert_close(init[k] + s.tensors["delta." + k], a.tensors[k],
                                       rtol=0, atol=1e-6)
    _, avg_b = fedavg.aggregate({}, avg_ups)
    server, _ = scaffold.init_server(_model_with(init))
    _, sc_b = scaffold.aggregate(server, sc_ups)
    for k in init:
        torch.testing.assert_close(sc_b[k], avg_b[k], rtol=0, atol=1e-6)


def _model_with(state: dict[str, torch.Tensor]) -> nn.Module:
    m = _model()
    m.load_state_dict(state)
    return m


def test_scaffold_control_is_the_full_batch_gradient_and_corrects_the_next_step() -> None:
    init, data = _init(), _data(4)
    ctx = _ctx(batch_size=len(data), momentum=0.0)  # K = 1 full-batch SGD step
    alg = build_algorithm("scaffold", {"num_clients": 2})
    server, bcast = alg.init_server(_model_with(init))
    up, state, metrics = alg.client_update(0, bcast, {}, data, ctx)
    assert metrics["steps"] == 1
    model = _model_with(init)
    F.cross_entropy(model(data.x), data.y).backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    for n, g in grads.items():  # c_i+ = c_i - c + (x - y)/(K lr) = grad(x) when c = c_i = 0
        torch.testing.assert_close(state["control"][n], g, rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(up.tensors["dcontrol." + n], g, rtol=1e-4, atol=1e-6)
    server, bcast = alg.aggregate(server, [up])
    for n, g in grads.items():  # c += |S|/N * mean(dc) with |S| = 1, N = 2
        torch.testing.assert_close(server["control"][n], 0.5 * g, rtol=1e-4, atol=1e-6)
    # next round: y = x - lr * (grad(x) - c_i + c)
    x = {k: v for k, v in bcast.items() if not k.startswith("control.")}
    up2, _, _ = alg.client_update(0, bcast, state, data, ctx)
    model = _model_with(x)
    F.cross_entropy(model(data.x), data.y).backward()
    for n, p in model.named_parameters():
        step = p.grad - state["control"][n] + server["control"][n]
        torch.testing.assert_close(up2.tensors["delta." + n], -ctx.lr * step, rtol=1e-4,
                                   atol=1e-6)


def test_scaffold_bytes_are_exact() -> None:
    init = _init()
    alg = build_algorithm("scaffold")
    _, bcast = alg.init_server(_model_with(init))
    up, _, _ = alg.client_update(0, bcast, {}, _data(), _ctx())
    n_params = sum(v.numel() for v in init.values())
    assert payload_bytes(bcast) == 2 * 4 * n_params  # model + server control, float32
    assert up.nbytes == 2 * 4 * n_params  # model delta + control delta
    assert set(up.tensors) == alg.upload_keys(_model())


# ---------------------------------------------------------------- robust aggregators
def _uploads(rows: list[list[float]]) -> list[Upload]:
    return [Upload(i, {"w": torch.tensor(r)}, 1) for i, r in enumerate(rows)]


def test_krum_picks_the_most_central_clean_upload() -> None:
    clean = [[1.0, 1.0], [1.1, 0.9], [0.9, 1.1], [1.05, 1.0], [0.95, 0.98]]
    ups = _uploads(clean + [[50.0, -50.0]])
    scores = krum_scores(torch.tensor(clean + [[50.0, -50.0]], dtype=torch.float64), 1)
    assert int(scores.argmax()) == 5
    chosen = krum(ups, num_byzantine=1)["w"]
    assert any(torch.equal(chosen, torch.tensor(r)) for r in clean)
    multi = krum(ups, num_byzantine=1, multi=5)["w"]
    torch.testing.assert_close(multi, torch.tensor(clean).mean(0))
    with pytest.raises(ValueError, match="num_byzantine"):
        krum(ups[:3], num_byzantine=1)


def test_median_and_trimmed_mean_ignore_an_outlier() -> None:
    ups = _uploads([[1.0, 2.0], [2.0, 3.0], [3.0, 4.0], [1000.0, -1000.0]])
    torch.testing.assert_close(coordinate_median(ups)["w"], torch.tensor([2.5, 2.5]))
    odd = _uploads([[1.0], [5.0], [1e6]])
    assert coordinate_median(odd)["w"].item() == 5.0
    torch.testing.assert_close(trimmed_mean(ups, 1)["w"], torch.tensor([2.5, 2.5]))
    with pytest.raises(ValueError, match="trim"):
        trimmed_mean(ups, 2)
