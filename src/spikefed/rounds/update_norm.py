"""The size of a client's update: the L2 norm of (upload - broadcast), and clipping it.

Only floating-point tensors count. An uploaded tensor with a broadcast counterpart of the same
shape counts as its difference from the broadcast; one without (SCAFFOLD's deltas, SNFL's SNN
payload) counts as itself. Sums run in float64 so 1e30-sized values do not overflow to inf.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch

from spikefed.fl.base import Tensors


def _reference(key: str, value: torch.Tensor, broadcast: Mapping[str, torch.Tensor]
               ) -> torch.Tensor | None:
    ref = broadcast.get(key)
    if isinstance(ref, torch.Tensor) and ref.shape == value.shape:
        return ref.to(value.device)
    return None


def update_norm(tensors: Mapping[str, torch.Tensor], broadcast: Mapping[str, torch.Tensor]
                ) -> float:
    """L2 norm over the float tensors of `tensors` of their change from `broadcast`."""
    total = 0.0
    for key, value in tensors.items():
        if not value.is_floating_point():
            continue
        ref = _reference(key, value, broadcast)
        delta = value.to(torch.float64) - (0.0 if ref is None else ref.to(torch.float64))
        total += float(delta.square().sum())
    return math.sqrt(total)


def clip_update(tensors: Mapping[str, torch.Tensor], broadcast: Mapping[str, torch.Tensor],
                bound: float) -> Tensors:
    """A copy of `tensors` whose update is scaled down to norm `bound` (unchanged if within)."""
    norm = update_norm(tensors, broadcast)
    if norm <= bound:
        return dict(tensors)
    scale = bound / norm
    clipped: Tensors = {}
    for key, value in tensors.items():
        if not value.is_floating_point():
            clipped[key] = value
            continue
        ref = _reference(key, value, broadcast)
        base = torch.zeros((), dtype=torch.float64) if ref is None else ref.to(torch.float64)
        delta = value.to(torch.float64) - base
        clipped[key] = (base + delta * scale).to(value.dtype)
    return clipped
