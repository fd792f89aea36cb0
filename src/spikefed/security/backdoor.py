"""Pixel-pattern backdoor (Bagdasaryan et al. 2020 style data poisoning).

An attacking client stamps a small square trigger onto a fraction of its training images and
relabels them to ``target``; the rest of its data stays clean so the main task is unharmed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from spikefed.fl.base import ClientData


@dataclass(frozen=True)
class Trigger:
    """A ``size x size`` square of value ``value`` at the bottom-right corner, ``margin`` in."""

    size: int = 4
    value: float = 1.0
    target: int = 0
    margin: int = 1

    def __post_init__(self) -> None:
        if self.size < 1 or self.margin < 0:
            raise ValueError(f"Trigger size={self.size} must be >= 1 and margin={self.margin} "
                             ">= 0")


def add_trigger(x: torch.Tensor, trigger: Trigger) -> torch.Tensor:
    """A copy of images ``x[N, C, H, W]`` with the trigger stamped on every channel."""
    if x.dim() != 4:
        raise ValueError(f"add_trigger expects images [N, C, H, W], got shape {tuple(x.shape)}")
    h, w = x.shape[-2:]
    end_h, end_w = h - trigger.margin, w - trigger.margin
    if end_h - trigger.size < 0 or end_w - trigger.size < 0:
        raise ValueError(f"Trigger size={trigger.size} with margin={trigger.margin} does not fit "
                         f"images of {h}x{w}")
    out = x.clone()
    out[..., end_h - trigger.size:end_h, end_w - trigger.size:end_w] = trigger.value
    return out


def poison_client(data: ClientData, trigger: Trigger, fraction: float, seed: int = 0
                  ) -> ClientData:
    """Stamp the trigger on ``fraction`` of the client's samples and relabel them to target."""
    if not 0 < fraction <= 1:
        raise ValueError(f"poison fraction={fraction} must lie in (0, 1]")
    g = torch.Generator().manual_seed(seed)
    n = len(data)
    idx = torch.randperm(n, generator=g)[: max(1, round(fraction * n))]
    x, y = data.x.clone(), data.y.clone()
    x[idx] = add_trigger(x[idx], trigger)
    y[idx] = trigger.target
    return ClientData(x, y, data.transform)


@torch.no_grad()
def attack_success_rate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, trigger: Trigger,
                        batch_size: int = 500) -> float:
    """Share of triggered test images (true label != target) classified as the target."""
    keep = y != trigger.target
    x = x[keep]
    if len(x) == 0:
        raise ValueError(f"no test samples with a label other than target={trigger.target}")
    model.eval()
    hits = 0
    for start in range(0, len(x), batch_size):
        logits = model(add_trigger(x[start:start + batch_size], trigger))
        hits += int((logits.argmax(1) == trigger.target).sum())
    return hits / len(x)
