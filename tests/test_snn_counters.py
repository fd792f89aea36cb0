"""ActivityCounter: spikes, SynOps and MACs against hand and brute-force counts."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from spikefed.models import build_model
from spikefed.snn import IF, ActivityCounter


class TinySNN(nn.Module):
    """x -> fc1 (2->3) -> IF -> fc2 (3->2), run multi-step."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(2, 3, bias=False)
        self.act = IF(threshold=1.0)
        self.fc2 = nn.Linear(3, 2, bias=False)
        with torch.no_grad():
            self.fc1.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 0.5], [0.3, 0.3]]))
            self.fc2.weight.fill_(1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


def test_linear_counts_equal_hand_computed() -> None:
    model = TinySNN()
    x = torch.ones(4, 1, 2)  # T=4 input spikes on both inputs every step
    with ActivityCounter(model) as c:
        model(x)
    # fc1 currents per step: 1.0, 0.5, 0.6 -> IF spikes: neuron0 4, neuron1 2,
    # neuron2 2 (v: 0.6, 1.2 -> 0.2, 0.8, 1.4)
    assert c.per_layer["act"]["spikes"] == 8
    assert c.spikes == 8
    assert c.per_layer["fc1"]["synops"] == 8 * 3  # 8 input spikes x fan-out 3
    assert c.per_layer["fc2"]["synops"] == 8 * 2  # 8 hidden spikes x fan-out 2
    assert c.synops == 40 and c.macs == 0
    assert c.firing_rate == pytest.approx(8 / 12)
    model(x)  # hooks are removed on exit
    assert c.spikes == 8


def test_dense_input_counts_macs() -> None:
    model = TinySNN()
    with ActivityCounter(model) as c:
        model(torch.full((4, 5, 2), 0.7))
    assert c.per_layer["fc1"]["macs"] == 4 * 5 * 2 * 3
    assert "synops" not in c.per_layer["fc1"]


def _brute_force_conv_synops(conv: nn.Conv2d, x: torch.Tensor) -> int:
    """Count, for every input spike, the (output channel, position) pairs it reaches."""
    total = 0
    w = torch.ones(conv.out_channels, conv.in_channels // conv.groups, *conv.kernel_size)
    for idx in torch.nonzero(x):
        probe = torch.zeros_like(x[:1])
        probe[(0, *idx[1:].tolist())] = 1.0
        out = F.conv2d(probe, w, None, conv.stride, conv.padding, conv.dilation, conv.groups)
        total += int(torch.count_nonzero(out))
    return total


@pytest.mark.parametrize(
    "kwargs",
    [
        {"kernel_size": 3, "padding": 1},
        {"kernel_size": 3, "stride": 2, "padding": 1},
        {"kernel_size": (3, 2), "stride": (2, 1), "padding": 0, "dilation": 2},
        {"kernel_size": 3, "padding": 1, "groups": 2},
    ],
)
def test_conv_synops_equal_brute_force(kwargs: dict) -> None:
    conv = nn.Conv2d(4, 6, **kwargs)
    x = (torch.rand(2, 4, 7, 6) < 0.3).float()
    with ActivityCounter(conv) as c:
        out = conv(x)
    assert c.synops == _brute_force_conv_synops(conv, x) > 0
    with ActivityCounter(conv) as c:
        conv(torch.rand(2, 4, 7, 6))
    assert c.macs == out.numel() * (4 // conv.groups) * conv.kernel_size[0] * conv.kernel_size[1]


@pytest.mark.parametrize("order", ["step", "layer"])
def test_counts_same_in_step_and_layer_order(order: str) -> None:
    torch.manual_seed(0)
    ref = build_model("convnet", spiking=True, in_shape=(1, 12, 12), num_classes=3, T=3,
                      neuron={"threshold": 0.3})
    model = build_model("convnet", spiking=True, in_shape=(1, 12, 12), num_classes=3, T=3,
                        neuron={"threshold": 0.3}, order=order, stem_once=True)
    model.load_state_dict(ref.state_dict())
    model.eval()
    ref.eval()
    x = torch.rand(2, 1, 12, 12)
    with ActivityCounter(ref) as c_ref, torch.no_grad():
        ref(x)
    with ActivityCounter(model) as c, torch.no_grad():
        model(x)
    assert c.spikes == c_ref.spikes > 0
    assert c.synops == c_ref.synops > 0
    # the first conv sees the same analog input at T=3 steps: its current is charged once,
    # whether it is computed T times (ref) or once (stem_once)
    assert c_ref.macs == 2 * 12 * 12 * 32 * 9
    assert c.macs == c_ref.macs
    with ActivityCounter(model) as c_seq, torch.no_grad():
        model(x.unsqueeze(0).expand(3, *x.shape))  # the same input given as a [T, B] sequence
    assert c_seq.macs == c_ref.macs
    assert c_seq.spikes == c.spikes and c_seq.synops == c.synops
    with ActivityCounter(model) as c_var, torch.no_grad():
        model(torch.stack([x, x * 0.5, x * 0.25]))  # a different analog input at every step
    assert c_var.macs == 3 * c_ref.macs
