"""Small snnTorch and SpikingJelly networks for the bring-your-own-model tests
(importable as ``byo_models:...`` because tests/ is on sys.path under pytest)."""

from __future__ import annotations

from torch import nn


def snntorch_mlp(in_shape, num_classes, hidden: int = 64) -> nn.Module:
    """Flatten -> Linear -> Leaky -> Linear -> Leaky(output): one time step per call."""
    import snntorch as snn
    from snntorch import surrogate

    size = 1
    for d in in_shape:
        size *= d
    grad = surrogate.atan(alpha=2.0)
    return nn.Sequential(nn.Flatten(), nn.Linear(size, hidden),
                         snn.Leaky(beta=0.9, init_hidden=True, spike_grad=grad),
                         nn.Linear(hidden, num_classes),
                         snn.Leaky(beta=0.9, init_hidden=True, spike_grad=grad, output=True,
                                   reset_mechanism="none"))


def spikingjelly_mlp(in_shape, num_classes, hidden: int = 64) -> nn.Module:
    """A multi-step SpikingJelly network: [T, B, ...] in, [T, B, K] out."""
    from spikingjelly.activation_based import functional, layer, neuron, surrogate

    size = 1
    for d in in_shape:
        size *= d
    net = nn.Sequential(layer.Flatten(), layer.Linear(size, hidden),
                        neuron.LIFNode(tau=2.0, surrogate_function=surrogate.ATan(),
                                       detach_reset=True),
                        layer.Linear(hidden, num_classes))
    functional.set_step_mode(net, "m")
    return net


def plain_ann(in_shape, num_classes) -> nn.Module:
    """A torch-only classifier (no spiking neurons)."""
    size = 1
    for d in in_shape:
        size *= d
    return nn.Sequential(nn.Flatten(), nn.Linear(size, 32), nn.ReLU(), nn.Linear(32, num_classes))


not_a_module = 3
