"""DLG's LeNet setting and the SNFL protocol-level attack: models, exactness, loss decrease."""

from __future__ import annotations

import csv

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from typer.testing import CliRunner

from spikefed.cli import app
from spikefed.experiments.privacy_dlg import DLGCifarSetting, build_arms, run_dlg_cifar
from spikefed.experiments.privacy_protocol import (
    ARMS,
    ProtocolSetting,
    arm_problem,
    protocol_setting,
    run_protocol_attack,
    snfl_exposure,
)
from spikefed.fl.base import ClientData, TrainContext
from spikefed.fl.snfl import s_fedavg
from spikefed.models import available_models, build_model
from spikefed.privacy.attacks import (
    Problem,
    cosine_distance,
    dlg,
    inverting_gradients,
    l2_distance,
)
from spikefed.privacy.domains import InputDomain
from spikefed.privacy.protocol import bias_keys, estimate_start_biases, recover_client_weights
from spikefed.privacy.threat import ThreatModel, observe


def _images(n: int, shape=(3, 16, 16), seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, *shape, generator=g), torch.randint(0, 10, (n,), generator=g)


# the model ----------------------------------------------------------------------------------
def test_lenet_dlg_is_dlgs_network() -> None:
    assert "lenet-dlg" in available_models()
    m = build_model("lenet-dlg", spiking=False, in_shape=(3, 32, 32), num_classes=10,
                    norm="none", activation="sigmoid")
    convs = [mod for mod in m.modules() if isinstance(mod, nn.Conv2d)]
    assert [c.stride[0] for c in convs] == [2, 2, 1]
    assert all(c.out_channels == 12 and c.kernel_size == (5, 5) for c in convs)
    assert m.classifier.in_features == 768  # 12 x 8 x 8, no pooling
    assert sum(isinstance(mod, nn.Sigmoid) for mod in m.modules()) == 3
    assert not any(isinstance(mod, (nn.MaxPool2d, nn.ReLU)) for mod in m.modules())
    params = torch.cat([p.flatten() for p in m.parameters()])
    assert params.abs().max() <= 0.5 and params.std() > 0.2  # U(-0.5, 0.5), DLG's init
    with pytest.raises(ValueError, match="activation='tanh'"):
        build_model("lenet-dlg", spiking=False, in_shape=(3, 32, 32), num_classes=10,
                    activation="tanh")


def test_lenet_dlg_traces_for_conversion() -> None:
    from spikefed.convert.trace import trace_structure

    relu = build_model("lenet-dlg", spiking=False, in_shape=(3, 32, 32), num_classes=10,
                       norm="bn", bias=True)
    s = trace_structure(relu)
    assert s.acts == ["act1", "act2", "act3"]
    assert [s.feeds[a] for a in s.acts] == [["conv1"], ["conv2"], ["conv3"]]
    assert s.bn_pairs == [("conv1", "norm1"), ("conv2", "norm2"), ("conv3", "norm3")]
    assert s.readout == ["classifier"] and s.shapes["act3"][-2:] == (8, 8)


def test_cifar_victims_one_per_class(shared_data) -> None:
    from spikefed.experiments.privacy_dlg import load_cifar_victims
    from spikefed.experiments.privacy_protocol import load_protocol_victims

    x, y, calib, ids = load_cifar_victims(shared_data, 3)
    assert x.shape == (3, 3, 32, 32) and y.tolist() == [0, 1, 2] and ids == [0, 1000, 2000]
    assert calib.shape == (64, 3, 32, 32) and 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    px, py, *_ = load_protocol_victims("protocol-cifar", 2, shared_data)
    assert torch.equal(px, x[:2]) and py.tolist() == [0, 1]
    with pytest.raises(ValueError, match="1..10"):
        load_cifar_victims(shared_data, 11)


def test_arms_share_weights_and_snfl_arm_converts() -> None:
    x, _ = _images(8)
    arms = build_arms(("ann-sigmoid", "ann-relu", "snfl"), 0, x, T=4)
    sd_s, sd_r = arms["ann-sigmoid"].state_dict(), arms["ann-relu"].state_dict()
    assert all(torch.equal(sd_s[k], sd_r[k]) for k in sd_r)
    out_relu, out_snn = arms["ann-relu"](x), arms["snfl"](x)
    assert out_snn.shape == out_relu.shape == (8, 10)
    assert not torch.equal(out_snn, out_relu)  # a spiking approximation, not the ANN itself
    assert any("thresh" in k for k in arms["snfl"].state_dict())


# DLG setting --------------------------------------------------------------------------------
def _initial_distance(problem: Problem, seed: int) -> float:
    """The DLG loss at its seeded starting dummies (same draws as ``dlg``)."""
    gen = torch.Generator().manual_seed(seed)
    z = problem.domain.init(problem.batch, gen)
    y = torch.randn((problem.batch, problem.num_classes), generator=gen)
    return float(l2_distance(problem.simulate(z, F.softmax(y, -1)), problem.target).detach())


def test_dlg_lowers_the_matching_loss_on_the_dlg_lenet() -> None:
    x, y = _images(1)
    torch.manual_seed(0)
    m = build_model("lenet-dlg", spiking=False, in_shape=(3, 16, 16), num_classes=10,
                    norm="none", activation="sigmoid")
    threat = ThreatModel()
    problem = Problem(m, observe(m, x, y, threat), threat, InputDomain("image", (3, 16, 16)),
                      10, 1)
    res = dlg(problem, iterations=4, inner_iter=5, seed=3)
    assert res.loss < 0.5 * _initial_distance(problem, 3)


def test_stalled_dlg_stops_early_with_the_same_result() -> None:
    x, y = _images(1)
    torch.manual_seed(0)
    m = build_model("lenet-dlg", spiking=False, in_shape=(3, 16, 16), num_classes=10,
                    norm="none", activation="relu")
    threat = ThreatModel()
    target = observe(m, x, y, threat)
    with torch.no_grad():  # the attacker's copy is silent on every input: no descent exists
        m.conv1.bias.fill_(-100.0)
    problem = Problem(m, target, threat, InputDomain("image", (3, 16, 16)), 10, 1)
    full = dlg(problem, iterations=12, inner_iter=5, labels=y, seed=0)
    short = dlg(problem, iterations=12, inner_iter=5, labels=y, seed=0, stop_when_stalled=True)
    assert short.steps < full.steps == 12
    assert torch.equal(short.reconstruction, full.reconstruction) and short.loss == full.loss


def test_run_dlg_cifar_writes_table_and_strips(tmp_path) -> None:
    x, y = _images(1)
    calib, _ = _images(8, seed=1)
    setting = DLGCifarSetting(iterations=2, T=2, seeds=(0,), snapshots=(1, 2))
    rows = run_dlg_cifar(x, y, calib, setting, tmp_path)
    assert [r["arm"] for r in rows] == ["ann-sigmoid", "ann-relu", "snfl"]
    assert all(r["steps"] <= 2 and r["grad_evals"] >= 1 for r in rows)
    assert (tmp_path / "strips.png").stat().st_size > 0
    text = (tmp_path / "summary.md").read_text()
    assert "none after 280 iterations" in text and "| snfl |" in text
    with pytest.raises(ValueError, match="arms"):
        DLGCifarSetting(arms=("ann-tanh",))


# the protocol-level attack -----------------------------------------------------------------
def _two_rounds(model: str, norm: str, shape=(3, 8, 8)):
    """Two S-FedAvg rounds of one client: its uploads, its trained ANNs and the layout."""
    x, y = _images(4, shape)

    def make() -> nn.Module:
        return build_model(model, spiking=False, in_shape=shape, num_classes=10, norm=norm,
                           bias=True, **({"hidden": [16]} if model == "mlp" else {}))

    algo = s_fedavg(T=4, calibration="bias", calib_size=4)
    torch.manual_seed(0)
    state, bcast = algo.init_server(make())
    client, uploads, trained = {}, [], []
    for r in range(2):
        ctx = TrainContext(model_fn=make, batch_size=2, lr=0.1, seed=0, round=r)
        up, client, _ = algo.client_update(0, bcast, client, ClientData(x, y), ctx)
        uploads.append(up.tensors)
        trained.append(client["ann"])
        state, bcast = algo.aggregate(state, [up])
    return algo, state["layout"], uploads, trained


@pytest.mark.parametrize("model,norm", [("lenet-dlg", "bn"), ("mlp", "none")])
def test_server_recovers_the_exact_ann_weights_from_two_uploads(model: str, norm: str) -> None:
    algo, layout, uploads, trained = _two_rounds(model, norm)
    for upload, truth in zip(uploads, trained, strict=True):
        rec = recover_client_weights(algo, layout, upload)
        assert any(k.endswith("weight") and v.dim() > 1 for k, v in rec.items())
        for k, v in rec.items():
            torch.testing.assert_close(v, truth[k], rtol=1e-5, atol=1e-6)
    # two consecutive uploads: the previous one estimates the biases the round started from
    est = estimate_start_biases("inferred", layout, uploads[0])
    assert set(est) == {f"{n}.bias" for n in layout["bias_layers"]}
    with pytest.raises(ValueError, match="previous upload"):
        estimate_start_biases("inferred", layout, None)


def _tiny_exposure(model: str = "mlp", norm: str = "none", steps: int = 2):
    x, y = _images(1, (1, 8, 8))
    px, py = _images(4, (1, 8, 8), seed=1)
    setting = ProtocolSetting(model=model, options={"hidden": [16]} if model == "mlp" else {},
                              norm=norm, T=4, lr=0.1)
    return snfl_exposure(x, y, px, py, setting, steps, 0), x, y


@pytest.mark.parametrize("arm", ARMS)
def test_protocol_arms_match_the_update_and_ig_lowers_the_loss(arm: str) -> None:
    exp, x, y = _tiny_exposure()
    threat = ThreatModel("fedavg", 2, 0.1)
    problem, checks = arm_problem(arm, exp, x, y, threat)
    if arm != "fedavg":
        assert checks["weight_update_error"] < 1e-5  # the upload reveals the weight update
        assert not set(bias_keys(exp.layout)) & set(problem.target)  # private biases
        assert set(bias_keys(exp.layout)) == {"fc1.bias", "classifier.bias"}
    res = inverting_gradients(problem, iterations=15, lr=0.1, tv=0.0, labels=y, seed=0)
    assert res.loss < 0.9 * _ig_start_distance(problem, y)
    if arm == "snfl-joint":
        learnt = problem.variables()
        assert learnt and all(v.requires_grad for v in learnt)


def _ig_start_distance(problem: Problem, y: torch.Tensor, seed: int = 0) -> float:
    """The IG loss (tv=0) at its seeded start, boxed to [0, 1], biases at their estimate."""
    z0 = problem.domain.init(problem.batch, torch.Generator().manual_seed(seed * 1000))
    z0 = z0.clamp(0.0, 1.0)
    problem.reset_variables()
    return float(cosine_distance(problem.simulate(z0, y), problem.target).detach())


def test_joint_attack_moves_the_bias_estimate() -> None:
    exp, x, y = _tiny_exposure()
    problem, _ = arm_problem("snfl-joint", exp, x, y, ThreatModel("fedavg", 2, 0.1))
    start = {k: v.clone() for k, v in zip(problem.learn_biases, problem.variables(), strict=True)}
    gen = torch.Generator().manual_seed(0)
    z = torch.rand(1, 1, 8, 8, generator=gen).requires_grad_(True)
    opt = torch.optim.Adam([z, *problem.variables()], lr=0.01)
    loss = l2_distance(problem.simulate(z, y), problem.target)
    loss.backward()
    opt.step()
    moved = [not torch.equal(v, start[k])
             for k, v in zip(problem.learn_biases, problem.variables(), strict=True)]
    assert any(moved)


def test_resnet20_ann1_snn_ann2_path_runs_tiny() -> None:
    """The paper's ResNet-20 path (BN folded, biases private), on a 3x8x8 input."""
    x, y = _images(1)
    x = x[:, :, :8, :8]
    px, py = _images(4, (3, 8, 8), seed=1)
    setting = ProtocolSetting(model="resnet20", norm="bn", T=2, lr=0.1)
    exp = snfl_exposure(x, y, px, py, setting, 1, 0)
    problem, checks = arm_problem("snfl-inferred", exp, x, y, ThreatModel("fedavg", 1, 0.1))
    assert checks["weight_update_error"] < 1e-4
    assert "norm1.weight" in problem.target and "conv1.bias" not in problem.target
    res = inverting_gradients(problem, iterations=10, lr=0.1, tv=0.0, labels=y, seed=0)
    assert res.loss < _ig_start_distance(problem, y)


def test_run_protocol_attack_writes_rows(tmp_path) -> None:
    x, y = _images(1, (1, 8, 8))
    px, py = _images(4, (1, 8, 8), seed=1)
    setting = ProtocolSetting(options={"hidden": [16]}, local_steps=(1,), T=2,
                              ig_iterations=3, dlg_iterations=2)
    rows = run_protocol_attack(x, y, px, py, setting, tmp_path)
    assert len(rows) == len(ARMS) * 2
    with (tmp_path / "results.csv").open() as f:
        assert {r["arm"] for r in csv.DictReader(f)} == set(ARMS)
    assert "snfl-joint" in (tmp_path / "summary.md").read_text()
    with pytest.raises(ValueError, match="attacks"):
        ProtocolSetting(attacks=("nope",))
    assert protocol_setting("protocol-cifar", (0,), 7).ig_iterations == 7
    assert protocol_setting("protocol-cifar-mlp", (0,)).local_steps == (1, 5)
    with pytest.raises(ValueError, match="protocol-cifar-mlp"):
        protocol_setting("protocol-x", (0,))


def test_cli_rejects_bad_settings(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("SPIKEFED_DATA", raising=False)
    r = CliRunner().invoke(app, ["reproduce", "snfl-attack", "--setting", "nope"])
    assert r.exit_code == 2 and "--setting='nope'" in r.output
    r = CliRunner().invoke(app, ["reproduce", "snfl-attack", "--setting", "dlg-cifar",
                                 "--out", str(tmp_path)])
    assert r.exit_code == 2 and "--data-root" in r.output
    r = CliRunner().invoke(app, ["reproduce", "snfl-attack", "--setting", "protocol-mnist",
                                 "--seeds", "a,b"])
    assert r.exit_code == 2 and "--seeds" in r.output
    r = CliRunner().invoke(app, ["reproduce", "snfl-attack", "--setting", "protocol-mnist",
                                 "--device", "cuda"])
    assert r.exit_code == 2 and "--device='cuda'" in r.output
