"""SNFL protocol: SNN server, W_A recovery, private biases, ablation switches, end to end."""

from __future__ import annotations

import pytest
import torch

from spikefed.config import load_config
from spikefed.experiment import build_federation
from spikefed.experiments.snfl import cap_clients
from spikefed.fl import TrainContext, build_algorithm
from spikefed.fl.snfl import SNFL, infer_ann_bias, inferred_biases
from spikefed.sim import Simulation

OVERRIDES = ["data.dataset=mnist-mini", "data.partition.scheme=iid", "data.test_subset=300",
             "model.name=lenet5", "model.spiking=false", "model.norm=bn", "model.kwargs.bias=true",
             "train.lr=0.05",
             "train.eval_clients=true"]


def _fed(alg: str, params: dict | None = None, clients: int = 3, cap: int = 150, **extra):
    sets = [f"algorithm.name={alg}", f"data.num_clients={clients}"]
    sets += [f"algorithm.params.{k}={v}" for k, v in (params or {}).items()]
    sets += [f"{k}={v}" for k, v in extra.items()]
    cfg = load_config(None, OVERRIDES + sets)
    fed = build_federation(cfg)
    cap_clients(fed, cap, cfg.seed)
    return cfg, fed


def _round(fed, alg, broadcast, states, r=1):
    ctx = fed.train_context(r)
    ups = []
    for cid, data in enumerate(fed.clients):
        up, states[cid], _ = alg.client_update(cid, broadcast, states[cid], data, ctx)
        ups.append(up)
    return ups


def _bias_keys(model) -> set[str]:
    return {k for k in model.state_dict() if k.endswith(".bias")
            and not k.startswith("norm")}  # BatchNorm beta (norm*.bias) is broadcast by design


def test_broadcast_never_carries_biases_and_client_biases_survive() -> None:
    _, fed = _fed("s-fedavg", {"T": 8, "calib_size": 16})
    alg = fed.algorithm
    model = fed.initial_model()
    bias_keys = _bias_keys(model)
    assert {"conv1.bias", "conv2.bias", "fc3.bias", "fc4.bias", "classifier.bias"} <= bias_keys
    server, broadcast = alg.init_server(model)
    assert not bias_keys & set(broadcast)
    states = {i: {} for i in range(len(fed.clients))}
    uploads = _round(fed, alg, broadcast, states)
    server, broadcast = alg.aggregate(server, uploads)
    assert not bias_keys & set(broadcast)
    assert {"norm1.bias", "norm1.running_var", "conv1.weight"} <= set(broadcast)
    # a client's next model = broadcast weights + its own pre-calibration ANN biases
    ann = fed.model_fn()
    alg._load_broadcast(ann, broadcast, states[1])
    for k in bias_keys:
        assert torch.equal(ann.state_dict()[k], states[1]["bias"][k])
        assert not torch.equal(states[0]["bias"][k], states[1]["bias"][k])
    assert torch.equal(ann.state_dict()["conv1.weight"], broadcast["conv1.weight"])


def test_server_recovers_each_clients_ann_weights_exactly() -> None:
    _, fed = _fed("s-fedavg", {"T": 8, "calib_size": 16}, clients=2)
    alg = fed.algorithm
    server, broadcast = alg.init_server(fed.initial_model())
    states = {i: {} for i in range(2)}
    uploads = _round(fed, alg, broadcast, states)
    layout = server["layout"]
    for up in uploads:
        ann = states[up.client_id]["ann"]
        rec = alg.recover_ann(up.tensors, layout)
        # W_S really is folded (differs from W_A) and unfold(fold(W_A)) = W_A
        assert not torch.allclose(up.tensors["snn.conv1.weight"], ann["conv1.weight"])
        for layer in layout["layers"]:
            torch.testing.assert_close(rec[f"{layer}.weight"], ann[f"{layer}.weight"],
                                       rtol=1e-5, atol=1e-6)
    _, single = alg.aggregate(server, uploads[:1])
    torch.testing.assert_close(single["conv2.weight"], states[0]["ann"]["conv2.weight"],
                               rtol=1e-5, atol=1e-6)


def test_bias_inference_is_exact_without_calibration_and_blurred_with_it() -> None:
    g = torch.Generator().manual_seed(0)
    b_a, mu, var = (torch.randn(4, generator=g) for _ in range(3))
    var = var.abs() + 0.1
    gamma, beta = torch.rand(4, generator=g) + 0.5, torch.randn(4, generator=g)
    b_s = beta + (b_a - mu) * gamma / torch.sqrt(var + 1e-5)
    torch.testing.assert_close(infer_ann_bias(b_s, gamma, beta, mu, var), b_a)
    for calibration, exact in (("none", True), ("bias", False)):
        _, fed = _fed("s-fedavg", {"T": 8, "calib_size": 16, "calibration": calibration},
                      clients=1)
        alg = fed.algorithm
        server, broadcast = alg.init_server(fed.initial_model())
        states = {0: {}}
        (up,) = _round(fed, alg, broadcast, states)
        inferred = inferred_biases(up.tensors, server["layout"])
        gap = max(float((inferred[k] - states[0]["bias"][k]).abs().max()) for k in inferred)
        assert (gap < 1e-5) == exact, (calibration, gap)


def test_bias_back_switch_sends_the_inferred_biases() -> None:
    _, fed = _fed("s-fedavg", {"T": 8, "calib_size": 16, "bias_back": True}, clients=2)
    alg = fed.algorithm
    server, broadcast = alg.init_server(fed.initial_model())
    states = {i: {} for i in range(2)}
    uploads = _round(fed, alg, broadcast, states)
    _, broadcast = alg.aggregate(server, uploads)
    expected = [inferred_biases(u.tensors, server["layout"]) for u in uploads]
    w = [u.num_samples / sum(v.num_samples for v in uploads) for u in uploads]
    for k in ("fc3.bias", "classifier.bias"):
        torch.testing.assert_close(broadcast[k], w[0] * expected[0][k] + w[1] * expected[1][k])
    ann = fed.model_fn()
    alg._load_broadcast(ann, broadcast, states[0])
    assert torch.equal(ann.state_dict()["classifier.bias"], broadcast["classifier.bias"])


@pytest.mark.parametrize("name,params", [("s-fedprox", {"mu": 0.1}),
                                         ("s-moon", {"mu": 1.0, "proj_dim": 8})])
def test_snfl_wraps_fedprox_and_moon(name: str, params: dict) -> None:
    _, fed = _fed(name, {"T": 4, "calib_size": 8, **params}, clients=1, cap=64)
    alg = fed.algorithm
    assert isinstance(alg, SNFL) and alg.name == name
    model = fed.initial_model()
    _, broadcast = alg.init_server(model)
    states = {0: {}}
    (up,) = _round(fed, alg, broadcast, states)
    assert set(up.tensors) == alg.upload_keys(model)
    assert not any(k.startswith("moon_head") for k in up.tensors)


def test_snfl_params_are_validated() -> None:
    with pytest.raises(ValueError, match="unknown key"):
        build_algorithm("s-fedavg", {"lr": 1})
    with pytest.raises(ValueError, match="calibration"):
        build_algorithm("s-fedavg", {"calibration": "magic"})


def test_s_fedavg_end_to_end_server_is_an_accurate_snn(tmp_path) -> None:
    cfg, fed = _fed("s-fedavg", {"T": 16, "calib_size": 32}, clients=3, cap=400,
                    **{"train.rounds": 2})
    summary = Simulation(cfg, tmp_path, federation=fed).run()
    assert summary["final_server_acc"] > 0.5  # 10 classes: chance is 0.1
    assert summary["final_client_acc_mean"] > 0.5
    assert summary["spikes_per_sample"] > 0  # evaluated as a spiking network
    server_model = fed.algorithm.server_model(
        torch.load(tmp_path / "checkpoint" / "state.pt", weights_only=False)["server_state"],
        fed.model_fn)
    assert server_model.spiking and server_model.T == 16
    assert isinstance(fed.train_context(1), TrainContext)
