"""Ways to combine client tensors on the server."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:  # the algorithm contract (fl.base) combines with this module's mean
    from spikefed.fl.base import Tensors, Upload


def weighted_average(uploads: Sequence[Upload], keys: Sequence[str] | None = None) -> Tensors:
    """Sample-weighted mean of each tensor (FedAvg).

    Integer tensors (e.g. BatchNorm's num_batches_tracked) take the first client's value.
    """
    if not uploads:
        raise ValueError("cannot aggregate an empty list of uploads")
    total = sum(u.num_samples for u in uploads)
    if total <= 0:
        raise ValueError("uploads report no training samples; every num_samples is 0")
    keys = list(keys if keys is not None else uploads[0].tensors.keys())
    out: Tensors = {}
    for key in keys:
        first = uploads[0].tensors[key]
        if not torch.is_floating_point(first):
            out[key] = first.clone()
            continue
        acc = torch.zeros_like(first, dtype=torch.float64)
        for u in uploads:
            acc += u.tensors[key].to(torch.float64) * (u.num_samples / total)
        out[key] = acc.to(first.dtype)
    return out
