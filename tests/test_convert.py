"""ANN -> SNN conversion: BN folding, IF rate function, thresholds, calibration, CLI."""

from __future__ import annotations

import pytest
import torch
import yaml
from torch import nn
from typer.testing import CliRunner

from spikefed.convert import (
    ConvertedIF,
    bn_pairs,
    clip_quantize,
    convert_ann_to_snn,
    find_threshold,
    fold_bn,
    fold_bn_tensors,
    predict,
    snn_thresholds,
    spiking_copy,
    unfold_bn_weight,
)
from spikefed.convert.record import ann_activations
from spikefed.data import load_dataset
from spikefed.models import build_model


def _randomise_bn(model: nn.Module) -> None:
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.5)
            m.running_var.copy_(torch.rand(n, generator=g) * 2 + 0.2)
            m.weight.data.copy_(torch.randn(n, generator=g))
            m.bias.data.copy_(torch.randn(n, generator=g) * 0.3)


def test_fold_unfold_round_trip_and_bn_equivalence() -> None:
    g = torch.Generator().manual_seed(0)
    w = torch.randn(6, 3, 3, 3, generator=g, dtype=torch.float64)
    gamma = torch.randn(6, generator=g, dtype=torch.float64).sign() * (
        torch.rand(6, generator=g, dtype=torch.float64) + 0.1)
    beta, mean = torch.randn(6, generator=g, dtype=torch.float64), torch.randn(6, generator=g,
                                                                                dtype=torch.float64)
    var = torch.rand(6, generator=g, dtype=torch.float64) + 0.05
    w_s, b_s = fold_bn_tensors(w, None, gamma, beta, mean, var, 1e-5)
    assert torch.allclose(unfold_bn_weight(w_s, gamma, var, 1e-5), w, atol=1e-6, rtol=0)
    # the folded layer computes BN(conv(x)) exactly
    x = torch.randn(2, 3, 5, 5, generator=g, dtype=torch.float64)
    ref = (nn.functional.conv2d(x, w) - mean.view(1, -1, 1, 1)) / torch.sqrt(
        var.view(1, -1, 1, 1) + 1e-5) * gamma.view(1, -1, 1, 1) + beta.view(1, -1, 1, 1)
    assert torch.allclose(nn.functional.conv2d(x, w_s, b_s), ref, atol=1e-10)
    b = torch.randn(6, generator=g, dtype=torch.float64)
    _, b_s2 = fold_bn_tensors(w, b, gamma, beta, mean, var, 1e-5)
    assert torch.allclose(b_s2 - b_s, b * gamma / torch.sqrt(var + 1e-5))


@pytest.mark.parametrize("name", ["convnet", "resnet20"])
def test_fold_bn_keeps_eval_outputs(name: str) -> None:
    shape = (1, 28, 28) if name == "convnet" else (3, 16, 16)
    ann = build_model(name, spiking=False, in_shape=shape, num_classes=10, norm="bn").eval()
    _randomise_bn(ann)
    x = torch.rand(4, *shape)
    folded = fold_bn(ann)
    with torch.no_grad():
        ref, out = ann(x), folded(x)
    assert torch.allclose(out, ref, atol=1e-4 * float(ref.abs().max()), rtol=1e-4)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in folded.modules())
    assert any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in ann.modules())
    pairs = bn_pairs(ann)
    n_bn = sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in ann.modules())
    assert len(pairs) == n_bn
    if name == "convnet":
        assert pairs == [("conv1", "norm1"), ("conv2", "norm2")]
    else:
        assert ("layer2.0.down_conv", "layer2.0.down_norm") in pairs


def test_if_neuron_rate_is_clip_quantize() -> None:
    T, theta = 16, 0.7
    a = (torch.rand(2000) * 2 - 0.4) * theta
    neuron = ConvertedIF(theta, (2000,), v0=theta / 2)
    with torch.no_grad():
        state = neuron.init_state(a[None])
        total = torch.zeros(1, 2000)
        for _ in range(T):
            s, state = neuron.step(a[None], state)
            total += s
    assert torch.allclose(total[0] / T, clip_quantize(a, theta, T), atol=1e-5)
    assert torch.allclose(neuron.rate(state, T)[0], total[0] / T, atol=1e-5)


def test_gated_max_pool_passes_the_max_rate() -> None:
    T, theta = 32, 0.5
    x = torch.rand(3, 4, 6, 6) * theta
    gated = ConvertedIF(theta, (4, 6, 6), v0=theta / 2, pool=(2, 2, 0))
    plain = ConvertedIF(theta, (4, 6, 6), v0=theta / 2)
    pooled = {"gated": 0.0, "plain": 0.0}
    with torch.no_grad():
        states = {"gated": gated.init_state(x), "plain": plain.init_state(x)}
        for _ in range(T):
            for key, neuron in (("gated", gated), ("plain", plain)):
                s, states[key] = neuron.step(x, states[key])
                p = nn.functional.max_pool2d(s, 2)
                if key == "gated":
                    assert set(torch.unique(p).tolist()) <= {0.0, theta}
                pooled[key] = pooled[key] + p
    best = nn.functional.max_pool2d(gated.rate(states["gated"], T), 2)
    assert torch.allclose(pooled["gated"] / T, best, atol=1e-5)
    assert float((pooled["plain"] / T - best).mean()) > 0.01  # what gating prevents


# --- a briefly trained model ------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained() -> dict:
    torch.manual_seed(0)
    train, test = load_dataset("mnist-mini", "train"), load_dataset("mnist-mini", "test")
    ann = build_model("convnet", spiking=False, in_shape=(1, 28, 28), num_classes=10, norm="bn",
                      channels=(4, 8), fc=32)
    opt = torch.optim.Adam(ann.parameters(), 3e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(150):
        idx = torch.randint(0, len(train), (64,), generator=g)
        loss = nn.functional.cross_entropy(ann(train.x[idx]), train.y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    ann.eval()
    x, y = test.x[:500], test.y[:500]
    return {"ann": ann, "calib": train.x[:128], "x": x, "y": y,
            "acc": float((predict(ann, x) == y).float().mean())}


def _acc(model: nn.Module, d: dict) -> float:
    return float((predict(model, d["x"]) == d["y"]).float().mean())


def test_snn_output_converges_to_ann(trained: dict) -> None:
    x = trained["x"][:32]
    with torch.no_grad():
        ref = trained["ann"](x)
    err = {}
    for T in (8, 128):
        snn = convert_ann_to_snn(trained["ann"], trained["calib"], T, threshold="max",
                                 calibration="none")
        with torch.no_grad():
            err[T] = float((snn.model(x) - ref).norm() / ref.norm())
    assert err[128] < 0.05
    assert err[128] < 0.3 * err[8]


def test_calibration_helps_at_small_T(trained: dict) -> None:
    x = trained["x"]
    with torch.no_grad():
        ref = trained["ann"](x)
    acc, err = {}, {}
    for c in ("none", "bias", "advanced"):
        model = convert_ann_to_snn(trained["ann"], trained["calib"], 8, calibration=c).model
        with torch.no_grad():
            z = model(x)
        acc[c] = float((z.argmax(1) == trained["y"]).float().mean())
        err[c] = float((z - ref).norm() / ref.norm())
    assert acc["advanced"] >= acc["none"] + 0.01, acc
    assert acc["bias"] > acc["none"], acc
    assert err["advanced"] < err["none"], err


def test_T64_within_two_points_of_ann(trained: dict) -> None:
    snn = convert_ann_to_snn(trained["ann"], trained["calib"], 64, calibration="light")
    assert trained["acc"] > 0.8
    assert abs(_acc(snn.model, trained) - trained["acc"]) <= 0.02


def test_thresholds_mmse_below_max_and_in_state_dict(trained: dict) -> None:
    ann, calib = trained["ann"], trained["calib"]
    acts = ann_activations(ann, calib)
    for a in acts.values():
        assert find_threshold(a, 8, "mmse") <= find_threshold(a, 8, "max") + 1e-6
    snn = convert_ann_to_snn(ann, calib, 8, calibration="advanced")
    assert list(snn.thresholds) == ["act1", "act2", "act3"]
    state = snn.model.state_dict()
    for name, theta in snn.thresholds.items():
        assert float(state[f"{name}.thresh.theta"]) == pytest.approx(theta)
        assert float(snn_thresholds(snn.model)[name]) == pytest.approx(theta)
        assert theta <= float(acts[name].max()) + 1e-6
    # calibration lives in the state_dict: a fresh template reproduces the calibrated SNN
    folded = fold_bn(ann).state_dict()
    assert any(not torch.equal(state[k], folded[k]) for k in folded if k.endswith("bias"))
    template = spiking_copy(ann, 8)
    template.load_state_dict(state)
    with torch.no_grad():
        assert torch.equal(template(trained["x"][:50]), snn.model(trained["x"][:50]))
    layers = snn.report["layers"]
    assert layers[-1]["mse_after_bias"] < layers[-1]["mse_before"]


def test_bad_inputs_are_named() -> None:
    gn = build_model("mlp", spiking=False, in_shape=(1, 8, 8), num_classes=3, norm="gn")
    with pytest.raises(ValueError, match="norm"):
        convert_ann_to_snn(gn, torch.rand(4, 1, 8, 8), 4)
    snn = build_model("mlp", spiking=True, in_shape=(1, 8, 8), num_classes=3, norm="none")
    with pytest.raises(ValueError, match="spiking"):
        convert_ann_to_snn(snn, torch.rand(4, 1, 8, 8), 4)
    ann = build_model("mlp", spiking=False, in_shape=(1, 8, 8), num_classes=3, norm="bn")
    with pytest.raises(ValueError, match="calibration"):
        convert_ann_to_snn(ann, torch.rand(4, 1, 8, 8), 4, calibration="heavy")
    with pytest.raises(ValueError, match="calib_x"):
        convert_ann_to_snn(ann, torch.rand(4, 1, 9, 9), 4)


def test_cli_converts_run_dir_and_state_dict(tmp_path) -> None:
    from spikefed.cli import app
    from spikefed.config import dump_config, load_config
    from spikefed.sim.checkpoint import save_checkpoint

    torch.manual_seed(0)
    ann = build_model("mlp", spiking=False, in_shape=(1, 28, 28), num_classes=10, norm="bn",
                      hidden=(16,))
    cfg = load_config(None, ["model.spiking=false", "model.norm=bn", "model.name=mlp",
                             "model.kwargs.hidden=[16]"])
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(dump_config(cfg))
    save_checkpoint(run / "checkpoint", {"round": 1, "server_state": {"params": ann.state_dict()},
                                         "broadcast": {}, "client_states": {},
                                         "config": cfg.model_dump(mode="json")})
    runner = CliRunner()
    out = tmp_path / "out"
    res = runner.invoke(app, ["convert", str(run), "--T", "2,4", "--calib", "none,light",
                              "--calib-samples", "16", "--test-subset", "50", "--out", str(out)])
    assert res.exit_code == 0, res.output
    lines = (out / "conversion.csv").read_text().strip().splitlines()
    assert len(lines) == 1 + 4
    assert (out / "accuracy_vs_T.png").stat().st_size > 0
    assert "| 4 |" in (out / "conversion.md").read_text()
    plain = tmp_path / "ann.pt"
    torch.save(ann.state_dict(), plain)
    res = runner.invoke(app, ["convert", str(plain), "--T", "2", "--calib", "bias",
                              "--test-subset", "20", "--out", str(tmp_path / "o2")])
    assert res.exit_code == 2 and "--model" in res.output
    res = runner.invoke(app, ["convert", str(plain), "--T", "2", "--calib", "bias",
                              "--model", "mlp", "--dataset", "mnist-mini", "--test-subset", "20",
                              "--out", str(tmp_path / "o2")])
    assert res.exit_code != 0  # hidden=(16,) is not the default width: a clear mismatch error
    assert "do not fit" in res.output
    snn_cfg = yaml.safe_load((run / "config.yaml").read_text())
    snn_cfg["model"]["spiking"] = True
    (run / "config.yaml").write_text(yaml.safe_dump(snn_cfg))
    res = runner.invoke(app, ["convert", str(run), "--T", "2", "--out", str(tmp_path / "o3")])
    assert res.exit_code == 2 and "spiking" in res.output
