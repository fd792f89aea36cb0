"""Spot poisoned clients from the firing thresholds in their SNFL uploads.

Each client's upload carries one threshold per spiking layer: a vector of a few dozen numbers
instead of millions of weights. Clients are scored by their distance to the cluster centre of
all threshold vectors (the coordinate-wise median, so a minority of attackers cannot drag it);
outliers are flagged with a median-absolute-deviation rule.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch


def threshold_vectors(uploads: Sequence[Mapping[str, torch.Tensor]], keys: Sequence[str]
                      ) -> torch.Tensor:
    """``[n_clients, d]`` matrix of the threshold tensors ``keys`` of each upload, flattened."""
    if not keys:
        raise ValueError("threshold_vectors needs at least one threshold key")
    return torch.stack([torch.cat([u[k].reshape(-1).to(torch.float64) for k in keys])
                        for u in uploads])


def anomaly_scores(vectors: torch.Tensor, centre: str = "median") -> torch.Tensor:
    """Euclidean distance of each row to the cluster centre (``'median'`` or ``'mean'``)."""
    if centre == "median":
        c = vectors.median(dim=0).values
    elif centre == "mean":
        c = vectors.mean(dim=0)
    else:
        raise ValueError(f"centre={centre!r} must be 'median' or 'mean'")
    return (vectors - c).norm(dim=1)


def flag_outliers(scores: torch.Tensor, z: float = 3.0) -> torch.Tensor:
    """Boolean mask of scores above ``median + z * 1.4826 * MAD``."""
    med = scores.median()
    mad = (scores - med).abs().median() * 1.4826
    return scores > med + z * mad.clamp_min(1e-12)


def roc_auc(scores: Sequence[float] | torch.Tensor, labels: Sequence[bool] | torch.Tensor
            ) -> float:
    """Area under the ROC curve (probability a positive outscores a negative; ties count 1/2)."""
    s = np.asarray(scores, dtype=np.float64)
    lab = np.asarray(labels, dtype=bool)
    pos, neg = s[lab], s[~lab]
    if len(pos) == 0 or len(neg) == 0:
        raise ValueError("roc_auc needs at least one positive and one negative label")
    greater = (pos[:, None] > neg[None, :]).sum()
    ties = (pos[:, None] == neg[None, :]).sum()
    return float((greater + 0.5 * ties) / (len(pos) * len(neg)))


def separation_ratio(scores: Sequence[float] | torch.Tensor,
                     labels: Sequence[bool] | torch.Tensor) -> float:
    """Smallest poisoned score over largest clean score (> 1: a threshold separates them)."""
    s = np.asarray(scores, dtype=np.float64)
    lab = np.asarray(labels, dtype=bool)
    if not lab.any() or lab.all():
        raise ValueError("separation_ratio needs both poisoned and clean clients")
    return float(s[lab].min() / max(s[~lab].max(), 1e-12))
