"""Conversion options: per-channel thresholds, batched evaluation with progress, seconds per
cell in the sweep table."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from spikefed.convert import (
    ConvertedIF,
    accuracy_vs_T,
    clip_quantize,
    convert_ann_to_snn,
    find_channel_thresholds,
    find_threshold,
    predict,
    spiking_copy,
)
from spikefed.convert.outputs import sweep_markdown
from spikefed.convert.record import ann_activations
from spikefed.data import load_dataset
from spikefed.models import build_model
from spikefed.rounds.evaluate import evaluate


@pytest.fixture(scope="module")
def trained() -> dict:
    """A small BN ConvNet trained for 120 Adam steps on mnist-mini."""
    torch.manual_seed(0)
    train, test = load_dataset("mnist-mini", "train"), load_dataset("mnist-mini", "test")
    ann = build_model("convnet", spiking=False, in_shape=(1, 28, 28), num_classes=10, norm="bn",
                      channels=(4, 8), fc=32)
    opt = torch.optim.Adam(ann.parameters(), 3e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(120):
        idx = torch.randint(0, len(train), (64,), generator=g)
        loss = nn.functional.cross_entropy(ann(train.x[idx]), train.y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return {"ann": ann.eval(), "calib": train.x[:128], "x": test.x[:300], "y": test.y[:300]}


def test_channel_thresholds_are_the_layer_search_per_channel() -> None:
    g = torch.Generator().manual_seed(0)
    a = torch.relu(torch.randn(16, 3, 4, 4, generator=g)) * torch.tensor([1.0, 5.0, 0.0]).view(
        1, 3, 1, 1)
    theta = find_channel_thresholds(a, 8, "mmse")
    assert theta.shape == (3,)
    for c in range(2):
        assert float(theta[c]) == pytest.approx(find_threshold(a[:, c], 8, "mmse"))
    assert float(theta[2]) == 1.0  # a dead channel
    with pytest.raises(ValueError, match="per-channel"):
        find_channel_thresholds(torch.rand(5), 8)


def test_channel_max_thresholds_quantise_the_activations_more_finely(trained: dict) -> None:
    acts = ann_activations(trained["ann"], trained["calib"])
    for a in acts.values():
        layer = find_threshold(a, 4, "max")
        per = find_channel_thresholds(a, 4, "max")
        view = per.view(1, -1, *([1] * (a.dim() - 2)))
        err_layer = float(((a - clip_quantize(a, layer, 4)) ** 2).sum())
        err_channel = float(((a - clip_quantize(a, view, 4)) ** 2).sum())
        assert err_channel < err_layer


def test_per_channel_conversion_state_dict_and_accuracy(trained: dict) -> None:
    ann = trained["ann"]
    snn = convert_ann_to_snn(ann, trained["calib"], 32, calibration="light", per_channel=True)
    state = snn.model.state_dict()
    assert state["act1.thresh.theta"].shape == (4, 1, 1)  # conv: [C, 1, 1]
    assert state["act3.thresh.theta"].shape == (32,)  # fully connected: [F]
    assert snn.report["per_channel"] is True
    assert len(snn.report["layers"][0]["threshold"]) == 4
    template = spiking_copy(ann, 32, snn.thresholds)
    template.load_state_dict(state)
    x = trained["x"][:40]
    with torch.no_grad():
        assert torch.equal(template(x), snn.model(x))
    ann_pred = predict(ann, trained["x"][:150])
    agreement = float((predict(snn.model, trained["x"][:150]) == ann_pred).float().mean())
    assert agreement > 0.9
    # initial membrane theta/2 per channel before potential calibration
    fresh = spiking_copy(ann, 8, snn.thresholds)
    v0, theta = fresh.act1.v0, fresh.act1.output_scale.detach()
    assert torch.allclose(v0, (theta / 2).expand_as(v0))


def test_converted_if_rejects_a_threshold_of_the_wrong_width() -> None:
    with pytest.raises(ValueError, match="channels"):
        ConvertedIF(torch.ones(3), (4, 2, 2))
    scalar = ConvertedIF(0.5, (4, 2, 2), 0.25)
    assert scalar.output_scale.dim() == 0 and float(scalar.v0[0, 0, 0]) == 0.25
    assert "per-channel" in repr(ConvertedIF(torch.ones(4), (4, 2, 2)))


def test_batched_evaluation_reports_progress_and_seconds(trained: dict) -> None:
    snn = convert_ann_to_snn(trained["ann"], trained["calib"], 4, calibration="none")
    calls: list[tuple[int, int]] = []
    whole = predict(snn.model, trained["x"], batch_size=300)
    batched = predict(snn.model, trained["x"], batch_size=70,
                      progress=lambda done, total: calls.append((done, total)))
    assert torch.equal(whole, batched)
    assert calls == [(70, 300), (140, 300), (210, 300), (280, 300), (300, 300)]
    seen: list[int] = []
    res = evaluate(snn.model, trained["x"], trained["y"], batch_size=128,
                   progress=lambda done, total: seen.append(done))
    assert seen == [128, 256, 300] and 0 < res.accuracy <= 1
    rows = accuracy_vs_T(trained["ann"], trained["calib"], trained["x"][:50], trained["y"][:50],
                         [2, 4], ["none"], batch_size=25)
    for r in rows:
        assert r["seconds"] == pytest.approx(r["convert_s"] + r["eval_s"]) and r["seconds"] > 0
    table = sweep_markdown(rows)
    assert "Seconds per cell" in table and table.count("| 2 |") == 2
