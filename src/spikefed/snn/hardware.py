"""Simulated neuromorphic chips: per-device mismatch (config section `hardware:`, docs/edge.md).

A chip is identified by an integer ``device_id``; everything it does differently is drawn once
from ``(seed, device_id)`` and so is the same every time a model is put on it:

- per-neuron firing threshold ``theta * (1 + threshold_sigma * z)`` (clamped at 5 % of
  ``theta``) and leak ``clamp(beta * (1 + beta_sigma * z), 0, 1)`` (leaky neurons only; an
  IF neuron has no leak), ``z ~ N(0, 1)`` per neuron;
- synaptic weights stored at ``weight_bits`` precision, symmetric, with the chip's own scale
  (the largest magnitude of the tensor it holds);
- weight read noise: every read adds ``N(0, (read_noise * max|w|)^2)`` per weight (fresh
  each forward call, so it is the only part that varies over a device's lifetime).

The mismatch is applied from outside the neuron kernels: forward hooks on each neuron's
threshold/leak step and pre/post hooks that swap a layer's weights for the chip's reading.
Nothing is added to the ``state_dict``, so a model on a chip uploads exactly the keys it
would in software. In training (hardware-aware mode) gradients are taken at the chip's
weights and applied to the clean ones (a straight-through estimator).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from spikefed.snn.neurons import LIF, SpikingNeuron

_THRESHOLD_TAG, _LEAK_TAG, _READ_TAG = 1, 2, 3


@dataclass(frozen=True)
class Chip:
    """One simulated chip's non-idealities (relative sigmas; 0 / None = ideal)."""

    device_id: int
    seed: int = 0
    threshold_sigma: float = 0.0
    beta_sigma: float = 0.0
    weight_bits: int | None = None
    read_noise: float = 0.0

    @property
    def ideal(self) -> bool:
        """True when the chip behaves exactly like software."""
        return (self.threshold_sigma == 0 and self.beta_sigma == 0 and self.weight_bits is None
                and self.read_noise == 0)

    def generator(self, tag: int, index: int) -> torch.Generator:
        """The chip's private stream for one (kind, module) pair."""
        return torch.Generator().manual_seed(
            hash((self.seed, self.device_id, tag, index)) & 0x7FFF_FFFF)


def _factors(chip: Chip, tag: int, index: int, sigma: float, shape: torch.Size,
             like: Tensor) -> Tensor:
    z = torch.randn(tuple(shape), generator=chip.generator(tag, index))
    return (1.0 + sigma * z).to(device=like.device, dtype=like.dtype)


class _FixedThreshold(nn.Module):
    """A parameter-free ``v - theta`` step, so fixed-threshold neurons can be hooked too."""

    def __init__(self, theta: float) -> None:
        super().__init__()
        self.theta = theta

    def forward(self, v: Tensor) -> Tensor:
        return v - self.theta


class _FixedDecay(nn.Module):
    """A parameter-free ``beta * v`` step, so fixed-leak neurons can be hooked too."""

    def __init__(self, beta: float) -> None:
        super().__init__()
        self.beta = beta

    def forward(self, v: Tensor) -> Tensor:
        return self.beta * v


def _threshold_hook(chip: Chip, index: int):
    cache: dict[tuple, Tensor] = {}

    def hook(module: nn.Module, inputs: tuple[Tensor, ...], out: Tensor) -> Tensor:
        v = inputs[0]
        key = (tuple(v.shape[1:]), v.device, v.dtype)
        if key not in cache:
            f = _factors(chip, _THRESHOLD_TAG, index, chip.threshold_sigma, v.shape[1:], v)
            cache[key] = f.clamp(min=0.05) - 1.0
        return out - module.theta * cache[key]  # v - theta * factor

    return hook


def _leak_hook(chip: Chip, index: int):
    cache: dict[tuple, Tensor] = {}

    def hook(module: nn.Module, inputs: tuple[Tensor, ...], _out: Tensor) -> Tensor:
        v = inputs[0]
        key = (tuple(v.shape[1:]), v.device, v.dtype)
        if key not in cache:
            cache[key] = _factors(chip, _LEAK_TAG, index, chip.beta_sigma, v.shape[1:], v)
        beta = module.beta.clamp(0.0, 1.0) if isinstance(module.beta, Tensor) else module.beta
        return (beta * cache[key]).clamp(0.0, 1.0) * v

    return hook


def _weight_reader(chip: Chip, index: int):
    levels = None if chip.weight_bits is None else 2 ** (chip.weight_bits - 1) - 1
    gen = chip.generator(_READ_TAG, index)

    def read(w: Tensor) -> Tensor:
        scale = w.abs().max().clamp(min=1e-12)
        out = w
        if levels is not None:
            step = scale / levels
            out = torch.round(w / step).clamp(-levels, levels) * step
        if chip.read_noise > 0:
            noise = torch.randn(tuple(w.shape), generator=gen).to(w.device, w.dtype)
            out = out + chip.read_noise * scale * noise
        return out

    def pre(module: nn.Module, _inputs: Any) -> None:
        module._clean_weight = module.weight.data  # type: ignore[attr-defined]
        module.weight.data = read(module.weight.data)

    def post(module: nn.Module, _inputs: Any, _out: Any) -> None:
        module.weight.data = module._clean_weight  # type: ignore[attr-defined]
        del module._clean_weight

    return pre, post


def spiking_neurons(model: nn.Module) -> list[LIF]:
    """The model's LIF/IF neurons (including converted IF neurons), in module order."""
    return [m for m in model.modules() if isinstance(m, LIF)]


def place_on_chip(model: nn.Module, chip: Chip) -> nn.Module:
    """Put ``model`` on ``chip`` in place (hooks only; the ``state_dict`` is untouched).

    Raises ``ValueError`` for a model without spiking neurons. An ideal chip leaves the
    model as it is.
    """
    neurons = spiking_neurons(model)
    if not neurons:
        others = [type(m).__name__ for m in model.modules() if isinstance(m, SpikingNeuron)]
        raise ValueError("hardware mismatch needs a model with LIF/IF spiking neurons; this "
                         f"model has none{' (only ' + ', '.join(others) + ')' if others else ''}"
                         "; set model.spiking=true or remove the hardware section")
    if chip.ideal:
        return model
    for i, n in enumerate(neurons):
        if chip.threshold_sigma > 0:
            if n.thresh is None:
                n.thresh = _FixedThreshold(n.threshold)
            n.thresh.register_forward_hook(_threshold_hook(chip, i))
        if chip.beta_sigma > 0 and (n.decay is not None or n.beta != 1.0):
            if n.decay is None:
                n.decay = _FixedDecay(n.beta)
            n.decay.register_forward_hook(_leak_hook(chip, i))
    if chip.weight_bits is not None or chip.read_noise > 0:
        layers = [m for m in model.modules() if isinstance(m, nn.Linear | nn.Conv1d | nn.Conv2d)]
        for i, layer in enumerate(layers):
            pre, post = _weight_reader(chip, i)
            layer.register_forward_pre_hook(pre)
            layer.register_forward_hook(post)
    return model


def worst_fraction_mean(values: Sequence[float], fraction: float = 0.1) -> float:
    """Mean of the lowest ``ceil(fraction * n)`` values (at least one)."""
    ordered = np.sort(np.asarray(values, dtype=float))
    k = max(1, int(np.ceil(fraction * len(ordered))))
    return float(ordered[:k].mean())
