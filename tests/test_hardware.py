"""Simulated neuromorphic chips: per-device mismatch, quantised weights, on-chip evaluation."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from small_runs import run_small  # tests/small_runs.py
from torch import nn

from spikefed.config import ConfigError, load_config
from spikefed.convert.neuron import ConvertedIF
from spikefed.fl.on_chip import OnChipTraining
from spikefed.models import build_model
from spikefed.sim import Simulation
from spikefed.snn.hardware import Chip, place_on_chip, worst_fraction_mean


def _snn(neuron: dict | None = None) -> nn.Module:
    torch.manual_seed(0)
    return build_model("mlp", spiking=True, in_shape=(1, 6, 6), num_classes=4, T=6,
                       neuron=neuron or {"beta": 0.8}, norm="none", hidden=[24])


def _x() -> torch.Tensor:
    return 2 * torch.rand(16, 1, 6, 6, generator=torch.Generator().manual_seed(2))


MISMATCH = {"threshold_sigma": 0.3, "beta_sigma": 0.2}


def _on(chip: Chip, neuron: dict | None = None) -> torch.Tensor:
    model = place_on_chip(_snn(neuron), chip).eval()
    with torch.no_grad():
        return model(_x())


@pytest.mark.parametrize("neuron", [{"beta": 0.8}, {"beta": 0.8, "learn_beta": True,
                                                    "learn_threshold": True}])
def test_mismatch_is_fixed_per_device_and_reproducible_by_seed(neuron) -> None:
    ideal = _on(Chip(0), neuron)
    a = _on(Chip(3, seed=0, **MISMATCH), neuron)
    assert torch.equal(a, _on(Chip(3, seed=0, **MISMATCH), neuron))  # same chip, rebuilt
    assert not torch.equal(a, ideal)
    assert not torch.equal(a, _on(Chip(4, seed=0, **MISMATCH), neuron))  # another device
    assert not torch.equal(a, _on(Chip(3, seed=1, **MISMATCH), neuron))  # another population
    model = place_on_chip(_snn(neuron), Chip(3, seed=0, **MISMATCH)).eval()
    with torch.no_grad():
        assert torch.equal(model(_x()), model(_x()))  # a device keeps its mismatch


def test_chip_leaves_the_state_dict_alone_and_quantises_weights_on_read() -> None:
    model = _snn()
    keys, clean = set(model.state_dict()), copy.deepcopy(model.state_dict())
    place_on_chip(model, Chip(1, weight_bits=2, **MISMATCH))
    seen: list[torch.Tensor] = []
    model.fc1.register_forward_pre_hook(lambda m, _i: seen.append(m.weight.detach().clone()))
    with torch.no_grad():
        model(_x())
    assert set(model.state_dict()) == keys
    for k, v in model.state_dict().items():  # the clean weights are restored after each read
        assert torch.equal(v, clean[k]), k
    assert seen and all(len(torch.unique(w)) <= 3 for w in seen)  # 2 bits: -s, 0, +s


def test_read_noise_varies_per_read_but_not_per_chip_draw() -> None:
    model = place_on_chip(_snn(), Chip(2, read_noise=0.2)).eval()
    with torch.no_grad():
        first, second = model(_x()), model(_x())
    assert not torch.equal(first, second)
    again = place_on_chip(_snn(), Chip(2, read_noise=0.2)).eval()
    with torch.no_grad():
        assert torch.equal(again(_x()), first)


def test_models_without_spiking_neurons_are_refused() -> None:
    ann = build_model("mlp", spiking=False, in_shape=(1, 6, 6), num_classes=4, norm="none",
                      hidden=[8])
    with pytest.raises(ValueError, match="model.spiking=true"):
        place_on_chip(ann, Chip(0, threshold_sigma=0.1))
    with pytest.raises(ConfigError, match="model.spiking=true"):
        load_config(overrides=["model.spiking=false", "hardware.threshold_sigma=0.1"])
    with pytest.raises(ConfigError, match="hardware.aware"):
        load_config(overrides=["algorithm.name=s-fedavg", "model.spiking=false",
                               "hardware.aware=true"])


def test_worst_fraction_mean() -> None:
    assert worst_fraction_mean([0.9, 0.5, 0.7]) == 0.5
    assert worst_fraction_mean([float(i) for i in range(20)]) == 0.5  # lowest 2 of 20


SMALL = ["data.num_clients=3", "data.test_subset=200", "train.rounds=2", "model.T=4",
         "model.kwargs.hidden=[32]", "data.partition.scheme=iid"]


def _run(tmp_path, name: str, *extra: str) -> tuple[Simulation, list[dict]]:
    return run_small(tmp_path / name, [*SMALL, *extra], 120)


def test_zero_sigma_hardware_changes_nothing_bit_for_bit(tmp_path) -> None:
    _, plain = _run(tmp_path, "plain")
    sim, chips = _run(tmp_path, "chips", "hardware.aware=true", "hardware.eval_chips=2")
    assert isinstance(sim.fed.algorithm, OnChipTraining)
    for a, b in zip(plain, chips, strict=True):
        assert a["server_acc"] == b["server_acc"] and a["train_loss_mean"] == b["train_loss_mean"]
        assert b["hw_server_acc_chips"] == [a["server_acc"]] * 2
        assert b["hw_client_acc_mean"] == a["client_acc_mean"]


def test_mismatched_chips_are_reported_and_aware_training_differs(tmp_path) -> None:
    hw = ["hardware.threshold_sigma=0.3", "hardware.beta_sigma=0.3", "hardware.eval_chips=3"]
    _, soft = _run(tmp_path, "soft", *hw)
    _, aware = _run(tmp_path, "aware", *hw, "hardware.aware=true")
    last = soft[-1]
    summary = json.loads((tmp_path / "soft" / "summary.json").read_text())
    assert summary["hw_server_acc_worst10"] == last["hw_server_acc_worst10"]
    assert len(last["hw_server_acc_chips"]) == 3
    assert last["hw_server_acc_worst10"] == min(last["hw_server_acc_chips"])
    assert len(set(last["hw_server_acc_chips"])) > 1  # chips differ
    assert aware[-1]["train_loss_mean"] != soft[-1]["train_loss_mean"]


def test_converted_if_neurons_get_threshold_mismatch() -> None:
    def out(chip: Chip) -> torch.Tensor:
        neuron = ConvertedIF(threshold=0.7, shape=(5,))
        keys = set(neuron.state_dict())
        place_on_chip(nn.Sequential(neuron), chip)
        assert set(neuron.state_dict()) == keys
        with torch.no_grad():
            return neuron(torch.linspace(0, 1, 5).repeat(8, 3, 1))  # [T, B, 5]

    ideal, a = out(Chip(0)), out(Chip(5, threshold_sigma=0.3))
    assert not torch.equal(ideal, a) and torch.equal(a, out(Chip(5, threshold_sigma=0.3)))
