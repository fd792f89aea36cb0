"""Per-layer firing thresholds: max, percentile, or MMSE grid search (Li et al. 2021).

The rate of an IF neuron (reset by subtraction) with a constant input ``a`` over ``T`` steps
is the clip-and-quantise function ``(theta/T) * clip(floor(a*T/theta [+ 0.5]), 0, T)``, the
``+ 0.5`` coming from an initial membrane of ``theta/2``.
"""

from __future__ import annotations

import torch
from torch import Tensor

THRESHOLD_METHODS = ("mmse", "max", "percentile")


def clip_quantize(a: Tensor, theta: float | Tensor, T: int, half_init: bool = True) -> Tensor:
    """IF rate function of ``a`` for threshold ``theta`` over ``T`` steps (in units of ``a``)."""
    q = a * (T / theta)
    q = torch.floor(q + 0.5) if half_init else torch.floor(q)
    return q.clamp(0, T) * (theta / T)


def find_threshold(
    a: Tensor,
    T: int,
    method: str = "mmse",
    *,
    percentile: float = 99.99,
    half_init: bool = True,
    grid: int = 100,
) -> float:
    """Threshold for activations ``a`` (any shape); 1.0 for a layer that never activates.

    ``mmse``: of the candidates ``max(a) * k / grid`` (k = 1..grid), the one minimising
    ``||a - clip_quantize(a; theta, T)||^2``. ``max``: ``max(a)``. ``percentile``: that
    percentile of the positive activations.
    """
    if method not in THRESHOLD_METHODS:
        raise ValueError(f"threshold={method!r} is unknown; "
                         f"choose one of {list(THRESHOLD_METHODS)}")
    if not 0.0 < percentile <= 100.0:
        raise ValueError(f"percentile={percentile!r} must lie in (0, 100]")
    if int(grid) < 1:
        raise ValueError(f"grid={grid!r} must be a positive number of candidates")
    pos = a.detach().flatten()
    pos = pos[pos > 0].float()  # zeros quantise to zero for every threshold
    if pos.numel() == 0:
        return 1.0
    top = float(pos.max())
    if method == "max":
        return top
    if method == "percentile":
        k = max(1, min(pos.numel(), int(round(percentile / 100.0 * pos.numel()))))
        return float(pos.kthvalue(k).values)
    best, best_err = top, float("inf")
    for k in range(1, int(grid) + 1):
        theta = top * k / int(grid)
        diff = pos - clip_quantize(pos, theta, T, half_init)
        err = float((diff * diff).sum(dtype=torch.float64))
        if err < best_err:
            best, best_err = theta, err
    return best


def find_channel_thresholds(
    a: Tensor,
    T: int,
    method: str = "mmse",
    *,
    percentile: float = 99.99,
    half_init: bool = True,
    grid: int = 100,
) -> Tensor:
    """One threshold per channel (dimension 1 of ``a [N, C, ...]``) by :func:`find_threshold`
    on that channel's activations; a channel that never activates gets 1.0."""
    if a.dim() < 2:
        raise ValueError(f"per-channel thresholds need activations [N, C, ...]; got shape "
                         f"{tuple(a.shape)}")
    per = a.detach().transpose(0, 1).reshape(a.shape[1], -1)
    return torch.tensor([find_threshold(row, T, method, percentile=percentile,
                                        half_init=half_init, grid=grid) for row in per])
