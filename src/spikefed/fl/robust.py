"""Byzantine-robust aggregators: Krum / Multi-Krum, coordinate-wise median, trimmed mean.

Each takes the same list of :class:`Upload` as :func:`weighted_average` and returns one tensor
per key. Integer tensors (e.g. BatchNorm's ``num_batches_tracked``) take the first client's
value. ``keys`` restricts the aggregation (and, for Krum, the distance) to a subset of keys.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from spikefed.fl.base import Tensors, Upload


def _keys(uploads: Sequence[Upload], keys: Sequence[str] | None) -> list[str]:
    if not uploads:
        raise ValueError("cannot aggregate an empty list of uploads")
    return list(keys if keys is not None else uploads[0].tensors.keys())


def flatten_uploads(uploads: Sequence[Upload], keys: Sequence[str] | None = None) -> torch.Tensor:
    """``[n_clients, d]`` float64 matrix of the floating-point tensors under ``keys``."""
    keys = [k for k in _keys(uploads, keys) if torch.is_floating_point(uploads[0].tensors[k])]
    return torch.stack([torch.cat([u.tensors[k].reshape(-1).to(torch.float64) for k in keys])
                        for u in uploads])


def _stack(uploads: Sequence[Upload], key: str) -> torch.Tensor:
    return torch.stack([u.tensors[key].to(torch.float64) for u in uploads])


def krum_scores(vectors: torch.Tensor, num_byzantine: int) -> torch.Tensor:
    """Krum score of each row: summed squared distance to its ``n - f - 2`` nearest other rows."""
    n = len(vectors)
    closest = n - num_byzantine - 2
    if num_byzantine < 0 or closest < 1:
        raise ValueError(f"Krum needs n - f - 2 >= 1 neighbours per client; "
                         f"got n={n}, num_byzantine={num_byzantine}: lower num_byzantine")
    d2 = torch.cdist(vectors, vectors).pow(2)
    d2.fill_diagonal_(float("inf"))
    return d2.sort(dim=1).values[:, :closest].sum(dim=1)


def krum(uploads: Sequence[Upload], num_byzantine: int, multi: int = 1,
         keys: Sequence[str] | None = None) -> Tensors:
    """Mean of the ``multi`` uploads with the lowest Krum score (``multi=1``: Krum)."""
    keys = _keys(uploads, keys)
    if not 1 <= multi <= len(uploads):
        raise ValueError(f"multi={multi} must lie in 1..{len(uploads)} (number of uploads)")
    scores = krum_scores(flatten_uploads(uploads, keys), num_byzantine)
    chosen = [uploads[int(i)] for i in scores.argsort()[:multi]]
    out: Tensors = {}
    for k in keys:
        first = uploads[0].tensors[k]
        out[k] = (_stack(chosen, k).mean(0).to(first.dtype) if torch.is_floating_point(first)
                  else first.clone())
    return out


def _coordinatewise(uploads: Sequence[Upload], keys: Sequence[str] | None,
                    reduce: Callable[[torch.Tensor], torch.Tensor]) -> Tensors:
    """Apply ``reduce`` to each tensor's client values sorted along dim 0; integer tensors
    take the first client's value."""
    out: Tensors = {}
    for k in _keys(uploads, keys):
        first = uploads[0].tensors[k]
        if not torch.is_floating_point(first):
            out[k] = first.clone()
            continue
        out[k] = reduce(_stack(uploads, k).sort(dim=0).values).to(first.dtype)
    return out


def coordinate_median(uploads: Sequence[Upload], keys: Sequence[str] | None = None) -> Tensors:
    """Coordinate-wise median (mean of the two middle values for an even count)."""
    n = len(uploads)
    return _coordinatewise(
        uploads, keys, lambda s: s[n // 2] if n % 2 else 0.5 * (s[n // 2 - 1] + s[n // 2]))


def trimmed_mean(uploads: Sequence[Upload], trim: int,
                 keys: Sequence[str] | None = None) -> Tensors:
    """Coordinate-wise mean after dropping the ``trim`` largest and ``trim`` smallest values."""
    n = len(uploads)
    if trim < 0 or 2 * trim >= n:
        raise ValueError(f"trim={trim} must satisfy 0 <= 2*trim < n={n} uploads")
    return _coordinatewise(uploads, keys, lambda s: s[trim:n - trim].mean(0))
