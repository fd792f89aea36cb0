"""Test-set evaluation of a model, with spike and synaptic-operation counts for SNNs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from spikefed.snn.counters import ActivityCounter


@dataclass
class EvalResult:
    accuracy: float
    loss: float
    spikes_per_sample: float | None = None
    synops_per_sample: float | None = None
    macs_per_sample: float | None = None


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 500,
             device: torch.device | str = "cpu", count_activity: bool = False,
             progress: Callable[[int, int], None] | None = None) -> EvalResult:
    """Accuracy and mean cross-entropy over (x, y); optionally count spikes/SynOps/MACs.

    Runs in minibatches of `batch_size` (an SNN in step order holds one time step's state
    per batch, so memory does not grow with T); `progress(done, total)` after each batch.
    """
    model.eval().to(device)
    correct, loss_sum = 0, 0.0
    counter = ActivityCounter(model) if count_activity else None
    if counter is not None:
        counter.__enter__()
    try:
        for start in range(0, len(y), batch_size):
            xb, yb = x[start:start + batch_size].to(device), y[start:start + batch_size].to(device)
            logits = model(xb)
            loss_sum += float(F.cross_entropy(logits, yb, reduction="sum"))
            correct += int((logits.argmax(1) == yb).sum())
            if progress is not None:
                progress(min(start + batch_size, len(y)), len(y))
    finally:
        if counter is not None:
            counter.__exit__(None, None, None)
    n = max(len(y), 1)
    result = EvalResult(correct / n, loss_sum / n)
    if counter is not None:
        result.spikes_per_sample = counter.spikes / n
        result.synops_per_sample = counter.synops / n
        result.macs_per_sample = counter.macs / n
    return result
