"""Encoders turning a static input ``[B, ...]`` into a spike/current train ``[T, B, ...]``.

- ``direct``: the analog value repeated at every step (the first layer acts as encoder).
- ``rate``: Bernoulli(x) spikes per step, with a straight-through gradient (d out / d x = 1).
  Inputs are clamped to [0, 1].
- ``latency``: one spike at step ``round((1 - x) * (T - 1))`` (brighter fires earlier), none
  where ``x < threshold``. Not differentiable (zero gradient).

``rate`` draws random numbers: under ``torch.func.vmap`` use ``randomness="different"``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

ENCODINGS = ("direct", "rate", "latency")


def _check_T(T: int) -> None:
    if int(T) < 1:
        raise ValueError(f"T={T!r} must be a positive number of time steps")


def direct_encode(x: Tensor, T: int) -> Tensor:
    """Repeat ``x`` over ``T`` steps (a view, no copy)."""
    _check_T(T)
    return x.unsqueeze(0).expand((T,) + x.shape)  # not *x.shape: torch.fx can trace this


def rate_encode(x: Tensor, T: int, generator: torch.Generator | None = None) -> Tensor:
    """Bernoulli spikes with probability ``clamp(x, 0, 1)`` at every step; straight-through grad."""
    _check_T(T)
    p = x.clamp(0.0, 1.0).unsqueeze(0).expand((T,) + x.shape)
    s = torch.bernoulli(p.detach(), generator=generator)
    return p + (s - p).detach()


def latency_encode(x: Tensor, T: int, threshold: float = 0.01) -> Tensor:
    """One spike per element at step ``round((1 - x) * (T - 1))``; none where ``x < threshold``."""
    _check_T(T)
    xc = x.detach().clamp(0.0, 1.0)
    when = torch.round((1.0 - xc) * (T - 1)).long()
    steps = torch.arange(T, device=x.device)
    fire = (when.unsqueeze(-1) == steps).movedim(-1, 0) & (x.detach() >= threshold).unsqueeze(0)
    return fire.to(x.dtype)


def encode(
    x: Tensor, T: int, method: str = "direct", generator: torch.Generator | None = None
) -> Tensor:
    """Encode a static batch ``x[B, ...]`` as ``[T, B, ...]`` with ``method``."""
    if method == "direct":
        return direct_encode(x, T)
    if method == "rate":
        return rate_encode(x, T, generator)
    if method == "latency":
        return latency_encode(x, T)
    raise ValueError(f"encoder method={method!r} is unknown; choose one of {list(ENCODINGS)}")


class DirectEncoder(nn.Module):
    """Module form of :func:`direct_encode`."""

    def __init__(self, T: int) -> None:
        super().__init__()
        _check_T(T)
        self.T = int(T)

    def forward(self, x: Tensor) -> Tensor:
        return direct_encode(x, self.T)


class RateEncoder(nn.Module):
    """Module form of :func:`rate_encode` (optional fixed ``torch.Generator``)."""

    def __init__(self, T: int, generator: torch.Generator | None = None) -> None:
        super().__init__()
        _check_T(T)
        self.T = int(T)
        self.generator = generator

    def forward(self, x: Tensor) -> Tensor:
        return rate_encode(x, self.T, self.generator)


class LatencyEncoder(nn.Module):
    """Module form of :func:`latency_encode`."""

    def __init__(self, T: int, threshold: float = 0.01) -> None:
        super().__init__()
        _check_T(T)
        self.T = int(T)
        self.threshold = float(threshold)

    def forward(self, x: Tensor) -> Tensor:
        return latency_encode(x, self.T, self.threshold)


ENCODERS: dict[str, type[nn.Module]] = {
    "direct": DirectEncoder,
    "rate": RateEncoder,
    "latency": LatencyEncoder,
}
