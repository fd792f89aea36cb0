"""DP inside federated training: DP-SGD clients and DP-FedAvg server (spikefed.fl.dp)."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
from opacus.accountants import RDPAccountant
from torch import nn

from spikefed.config import ConfigError, load_config
from spikefed.experiment import build_federation
from spikefed.fl.base import ClientData, TrainContext, Upload
from spikefed.fl.dp import ClientLevelDP, SampleDP, SampleLevelDP, check_per_sample_model
from spikefed.fl.fedavg import FedAvg
from spikefed.fl.fedprox import FedProx
from spikefed.fl.local import SAMPLE_DP_OPTION
from spikefed.fl.scaffold import Scaffold
from spikefed.models import build_model
from spikefed.privacy.accountant import epsilon
from spikefed.privacy.defenses import per_sample_grads
from spikefed.report import read_metrics
from spikefed.rounds.sampling import sample_clients
from spikefed.sim import Simulation


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(12, 16), nn.Tanh(), nn.Linear(16, 4))


def _data(n: int = 40) -> ClientData:
    g = torch.Generator().manual_seed(1)
    return ClientData(3 * torch.randn(n, 12, generator=g), torch.randint(0, 4, (n,), generator=g))


def _grad_norm(model: nn.Module) -> float:
    return math.sqrt(sum(float(p.grad.pow(2).sum()) for p in model.parameters()))


def test_dp_sgd_bounds_every_per_sample_gradient() -> None:
    model, data, clip = _net(), _data(), 0.05
    params = {n: p.detach() for n, p in model.named_parameters()}
    raw = per_sample_grads(model, params, data.x, data.y)
    raw_norms = torch.sqrt(sum(g.flatten(1).pow(2).sum(1) for g in raw.values()))
    assert (raw_norms > clip).all()  # the bound is active for every sample
    private = SampleDP(0.0, clip, torch.Generator().manual_seed(0))
    for i in range(len(data)):  # a batch of one: the DP gradient is that sample's clipped one
        model.zero_grad()
        private.backward(model, data.x[i:i + 1], data.y[i:i + 1], None)
        assert _grad_norm(model) == pytest.approx(clip, rel=1e-4)


@pytest.mark.parametrize("algorithm", [FedAvg(), FedProx(mu=0.5), Scaffold()])
def test_dp_sgd_without_noise_and_clipping_equals_plain_training(algorithm) -> None:
    data = _data()
    ctx = TrainContext(model_fn=_net, batch_size=8, lr=0.1, momentum=0.9, local_epochs=2)
    broadcast = algorithm.init_server(_net())[1]
    plain, _, _ = algorithm.client_update(3, broadcast, {}, data, ctx)
    private = SampleDP(0.0, 1e9, torch.Generator().manual_seed(0))
    dp_ctx = replace(ctx, options={SAMPLE_DP_OPTION: private})
    dp, _, _ = algorithm.client_update(3, broadcast, {}, data, dp_ctx)
    for k, v in plain.tensors.items():
        torch.testing.assert_close(dp.tensors[k], v, rtol=1e-4, atol=1e-6)
    noisy = SampleDP(1.0, 1.0, torch.Generator().manual_seed(0))
    noisy_ctx = replace(ctx, options={SAMPLE_DP_OPTION: noisy})
    moved, _, _ = algorithm.client_update(3, broadcast, {}, data, noisy_ctx)
    assert not all(torch.allclose(moved.tensors[k], v, atol=1e-3) for k, v in plain.tensors.items())


def test_sample_level_epsilon_is_the_accountants_for_the_run(tmp_path) -> None:
    cfg = load_config(overrides=[
        "data.num_clients=10", "train.fraction=0.2", "train.rounds=3", "data.test_subset=100",
        "model.spiking=false", "model.kwargs.hidden=[16]", "train.eval_clients=false",
        "dp.level=sample", "dp.noise_multiplier=1.1", "dp.clip=0.5", "dp.delta=1e-4"])
    sim = Simulation(cfg, tmp_path / "run")
    for c in sim.fed.clients:  # keep the run small
        c.x, c.y = c.x[:50], c.y[:50]
    summary = sim.run()
    records = read_metrics(tmp_path / "run" / "metrics.jsonl")
    participations: dict[str, int] = {}
    for r in range(1, 4):
        for cid in sample_clients(10, cfg, r)[0]:
            participations[str(cid)] = participations.get(str(cid), 0) + 1
    last = records[-1]["dp_epsilon"]
    assert set(last) == set(participations)
    for cid, rounds in participations.items():
        steps = rounds * math.ceil(50 / 32)
        expected = epsilon(32 / 50, 1.1, steps, 1e-4)[0]
        assert last[cid] == pytest.approx(expected, rel=1e-9)
    assert summary["dp_epsilon_max"] == pytest.approx(max(last.values()))
    assert summary["dp_level"] == "sample" and summary["dp_delta"] == 1e-4


def _upload(cid: int, tensors: dict[str, torch.Tensor], n: int = 10) -> Upload:
    return Upload(cid, tensors, n)


def test_client_level_dp_clips_each_update() -> None:
    alg = ClientLevelDP(FedAvg(), noise_multiplier=0.0, clip=1.0, delta=1e-5,
                        expected_clients=2, num_clients=4, seed=0)
    state, params = alg.init_server(_net())
    far = {k: v + 3.0 for k, v in params.items()}  # norm far above the clip
    near = {k: v + 1e-3 for k, v in params.items()}  # norm below the clip
    new_state, out = alg.aggregate(state, [_upload(0, far), _upload(1, near)])
    step = math.sqrt(sum(float((out[k] - params[k]).double().pow(2).sum()) for k in params))
    near_norm = 1e-3 * math.sqrt(sum(v.numel() for v in params.values()))
    assert step == pytest.approx((1.0 + near_norm) / 2, rel=1e-4)  # clipped far + near, / m
    assert new_state["dp_clip_fraction"] == 0.5
    _, alone = alg.aggregate(state, [_upload(1, near)])
    for k in params:  # an unclipped update enters in full, divided by the expected count 2
        torch.testing.assert_close(alone[k], params[k] + 5e-4)


def test_client_level_epsilon_follows_rounds_and_sampling_rate() -> None:
    alg = ClientLevelDP(FedAvg(), noise_multiplier=1.3, clip=1.0, delta=1e-5,
                        expected_clients=3, num_clients=30, seed=0)
    state, params = alg.init_server(_net())
    for _ in range(4):
        state, params = alg.aggregate(state, [_upload(0, {k: v + 0.01 for k, v in params.items()})])
    rec = alg.round_metrics(state)
    reference = RDPAccountant()
    for _ in range(4):
        reference.step(noise_multiplier=1.3, sample_rate=0.1)
    assert rec["dp_epsilon_max"] == pytest.approx(reference.get_epsilon(1e-5), rel=1e-9)
    assert rec["dp_epsilon_max"] == pytest.approx(epsilon(0.1, 1.3, 4, 1e-5)[0], rel=1e-9)
    assert rec["dp_q"] == pytest.approx(0.1)


def test_client_level_noise_is_seeded_and_nonzero() -> None:
    def run(seed: int) -> dict[str, torch.Tensor]:
        alg = ClientLevelDP(FedAvg(), 1.0, 1.0, 1e-5, 1, 2, seed)
        state, params = alg.init_server(_net())
        return alg.aggregate(state, [_upload(0, dict(params))])[1]

    a, b, c = run(0), run(0), run(1)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


@pytest.mark.parametrize(("overrides", "needle"), [
    (["dp.level=sample", "model.norm=bn"], "model.norm=gn"),
    (["dp.level=sample", "algorithm.name=moon"], "algorithm.name='moon'"),
    (["dp.level=client", "algorithm.name=scaffold"], "algorithm.name='scaffold'"),
    (["dp.level=sample", "train.vectorize=on"], "train.vectorize=off"),
    (["dp.level=secret"], "dp.level"),
    (["dp.delta=1.5"], "dp.delta"),
    (["dp.clip=0"], "dp.clip"),
])
def test_bad_dp_config_is_a_clear_error(overrides, needle) -> None:
    with pytest.raises(ConfigError, match="dp") as err:
        load_config(overrides=overrides)
    assert needle in str(err.value)


def test_batchnorm_models_are_refused_at_build_time() -> None:
    with pytest.raises(ValueError, match="model.norm=gn"):
        check_per_sample_model(nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3)))


def test_dp_none_leaves_the_algorithm_alone_and_sample_wraps_it() -> None:
    plain = build_federation(load_config(overrides=["data.test_subset=10"]))
    assert type(plain.algorithm) is FedAvg
    wrapped = build_federation(load_config(overrides=["data.test_subset=10", "dp.level=sample"]))
    assert isinstance(wrapped.algorithm, SampleLevelDP)
    assert wrapped.algorithm.name == "fedavg"


def test_dp_sgd_gradient_through_spiking_neurons_matches_backward() -> None:
    torch.manual_seed(0)
    snn = build_model("mlp", spiking=True, in_shape=(1, 4, 4), num_classes=3, T=4,
                      norm="none", hidden=[12])
    x = 2 * torch.rand(6, 1, 4, 4, generator=torch.Generator().manual_seed(3))
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    torch.nn.functional.cross_entropy(snn(x), y).backward()
    reference = {n: p.grad.clone() for n, p in snn.named_parameters()}
    snn.zero_grad(set_to_none=True)
    SampleDP(0.0, 1e9, torch.Generator().manual_seed(0)).backward(snn, x, y, None)
    for n, p in snn.named_parameters():
        torch.testing.assert_close(p.grad, reference[n], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("level", ["sample", "client"])
def test_private_runs_resume_exactly(tmp_path, level) -> None:
    cfg = load_config(overrides=[
        "data.num_clients=4", "train.rounds=2", "data.test_subset=100", "model.spiking=false",
        "model.kwargs.hidden=[16]", f"dp.level={level}", "dp.noise_multiplier=0.8"])

    def sim(name: str) -> Simulation:
        s = Simulation(cfg, tmp_path / name)
        for c in s.fed.clients:
            c.x, c.y = c.x[:64], c.y[:64]
        return s

    full = sim("full").run()
    sim("split").run(stop_after=1)
    resumed = sim("split").run(resume=True)
    for key in ("final_server_acc", "final_server_loss", "dp_epsilon_max", "dp_epsilon"):
        assert full.get(key) == resumed.get(key), key
