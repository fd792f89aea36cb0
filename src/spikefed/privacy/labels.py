"""Label restoration from the classifier's gradient.

For cross-entropy, ``dL/dlogit_j = p_j - y_j`` per sample. The readout input (ReLU outputs of
an ANN, time-averaged spikes of an SNN with a non-spiking linear readout) is non-negative, so
for a single sample the classifier weight row of the true label is the only one whose sum is
negative (iDLG, Zhao et al. 2020). For a batch, the bias gradient is
``db_j = mean_i p_ij - n_j / B``; with the attacker's estimate of ``mean_i p_ij`` the label
counts are ``n_j = B (p_j - db_j)``, rounded by largest remainder to sum to ``B``
(in the spirit of Yin et al. 2021 and Wainakh et al. 2022).
"""

from __future__ import annotations

import torch
from torch import Tensor

from spikefed.privacy.threat import Grads


def classifier_keys(grads: Grads, prefix: str = "classifier") -> tuple[str, str | None]:
    """Names of the readout weight and bias in a gradient dict (last Linear if no ``prefix``)."""
    w = f"{prefix}.weight"
    if w not in grads:
        mats = [k for k, v in grads.items() if k.endswith("weight") and v.dim() == 2]
        if not mats:
            raise ValueError("no 2-D readout weight in the gradient; cannot restore labels")
        w = mats[-1]
    b = w[: -len("weight")] + "bias"
    return w, (b if b in grads else None)


def idlg_label(grads: Grads) -> int:
    """iDLG: the label of a single sample, the only readout entry with a negative gradient.

    The readout bias gradient ``p - y`` is used when the readout has a bias (exact even when an
    SNN's hidden layer is silent and the weight gradient vanishes); otherwise the weight row
    with the most negative sum.
    """
    w, b = classifier_keys(grads)
    if b is not None:
        return int(grads[b].argmin())
    return int(grads[w].sum(dim=1).argmin())


def restore_batch_labels(grads: Grads, batch: int, mean_probs: Tensor | None = None) -> Tensor:
    """Labels (sorted) of a batch of size ``batch`` from the readout gradient, on its device.

    ``mean_probs`` is the attacker's estimate of the client's mean softmax output (default:
    uniform, exact for a model at initialisation in expectation).
    """
    if batch < 1:
        raise ValueError(f"batch={batch} must be >= 1")
    w, b = classifier_keys(grads)
    k, dev = grads[w].shape[0], grads[w].device
    if batch == 1:
        return torch.tensor([idlg_label(grads)], device=dev)
    db = grads[b] if b is not None else grads[w].sum(1) / grads[w].sum(1).abs().sum()
    p = mean_probs.to(dev) if mean_probs is not None else torch.full((k,), 1.0 / k, device=dev)
    counts = (batch * (p - db)).clamp(min=0.0)
    base = counts.floor()
    rest = int(batch - base.sum())
    if rest > 0:
        order = torch.argsort(counts - base, descending=True)
        base[order[:rest]] += 1
    elif rest < 0:  # overshoot: remove from the smallest remainders first
        order = torch.argsort(counts - base)
        for j in order.tolist():
            if rest == 0:
                break
            if base[j] > 0:
                base[j] -= 1
                rest += 1
    return torch.repeat_interleave(torch.arange(k, device=dev), base.long())


def multiset_accuracy(pred: Tensor, true: Tensor) -> float:
    """Fraction of labels restored regardless of order (multiset intersection / batch)."""
    pred = pred.to(true.device)
    k = int(max(pred.max(), true.max())) + 1
    hit = torch.minimum(torch.bincount(pred, minlength=k), torch.bincount(true, minlength=k))
    return float(hit.sum()) / len(true)
