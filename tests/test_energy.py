"""Energy model: E = spikes * E_spike + SynOps * E_syn + MACs * E_mac, from counted events."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from spikefed.config import ConfigError, load_config
from spikefed.energy import EnergyModel
from spikefed.snn.counters import ActivityCounter
from spikefed.snn.neurons import LIF


def test_energy_formula_and_validation() -> None:
    model = EnergyModel(e_spike_pj=2.0, e_synop_pj=0.5, e_mac_pj=3.0)
    assert model.energy_pj(spikes=10, synops=100, macs=7) == 10 * 2.0 + 100 * 0.5 + 7 * 3.0
    with pytest.raises(ConfigError, match="energy.e_synop_pj"):
        load_config(overrides=["energy.e_synop_pj=-1"])


def test_snn_spends_on_events_and_ann_on_macs() -> None:
    torch.manual_seed(0)
    fc1, fc2 = nn.Linear(20, 30), nn.Linear(30, 5)
    snn = nn.Sequential(fc1, LIF(beta=0.5), fc2)
    x = torch.rand(4, 3, 20) * 2  # [T, B, features]
    with ActivityCounter(snn) as counts:
        snn(x)
    energy = EnergyModel().energy_pj(counts.spikes, counts.synops, counts.macs)
    assert counts.spikes > 0
    assert counts.synops == counts.spikes * 5  # every spike of the hidden layer drives 5 synapses
    assert counts.macs == 4 * 3 * 20 * 30  # the dense first layer
    assert energy == pytest.approx(0.9 * counts.synops + 4.6 * counts.macs)
    ann = nn.Sequential(fc1, nn.ReLU(), fc2)
    with ActivityCounter(ann) as ann_counts:
        ann(x.flatten(0, 1))
    assert ann_counts.synops == 0 and ann_counts.macs == 12 * (20 * 30 + 30 * 5)
    ann_energy = EnergyModel().energy_pj(ann_counts.spikes, ann_counts.synops, ann_counts.macs)
    assert energy < ann_energy
