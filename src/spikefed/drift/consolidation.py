"""EWC and proximal consolidation as a wrapper around any algorithm's local objective.

At the first round a client trains task ``k >= 1`` (a *switch*; ``TaskData.task``), it keeps
the broadcast it received as the anchor ``w*`` (the federation's model after the previous
task) and, for EWC, adds the diagonal Fisher information of that model on its data of task
``k - 1`` to a running sum (online EWC). Until the next switch every local step adds

- ``ewc``: ``lambda / 2 * sum_i F_i (w_i - w*_i)^2``
- ``proximal``: ``lambda / 2 * ||w - w*||^2``

to the base algorithm's loss (through `TrainContext.options`, see
:data:`spikefed.fl.local.CONSOLIDATION_OPTION`). Anchor and Fisher live in the client's own
state and are never uploaded: the Fisher is a function of the client's data (squared
per-sample gradients), sending it would cost another model-sized upload every switch, and
the server has no use for it when consolidation happens locally. ``lambda = 0`` adds no term
at all, so training is plain training bit for bit.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch
from torch import nn

from spikefed.drift.tasks import TaskData
from spikefed.fl.base import Algorithm, ClientData, Tensors, TrainContext, Upload
from spikefed.fl.local import CONSOLIDATION_OPTION, client_generator
from spikefed.fl.wrap import DelegatingAlgorithm
from spikefed.privacy.defenses import per_sample_grads

#: Per-sample gradients are computed in chunks of this many samples.
FISHER_CHUNK = 64


def fisher_diagonal(model: nn.Module, data: ClientData, samples: int,
                    generator: torch.Generator, device: torch.device) -> Tensors:
    """Empirical diagonal Fisher: mean squared per-sample gradient of the cross-entropy at the
    true labels, over ``samples`` examples of ``data`` drawn without replacement."""
    params = {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}
    total = {n: torch.zeros_like(p) for n, p in params.items()}
    pick = torch.randperm(len(data), generator=generator)[:samples]
    model.eval()
    with torch.random.fork_rng(devices=[]):  # rate encoders must not move the training RNG
        for start in range(0, len(pick), FISHER_CHUNK):
            idx = pick[start:start + FISHER_CHUNK]
            x = data.x[idx]
            if data.transform is not None:
                x = data.transform(x)
            grads = per_sample_grads(model, params, x.to(device), data.y[idx].to(device))
            for n, g in grads.items():
                total[n] += g.pow(2).sum(0)
    return {n: t / max(len(pick), 1) for n, t in total.items()}


class Consolidation(DelegatingAlgorithm):
    """``base`` whose clients consolidate what they learnt before each task switch."""

    def __init__(self, base: Algorithm, method: str, strength: float, fisher_samples: int
                 ) -> None:
        if method not in ("ewc", "proximal"):
            raise ValueError(f"drift.consolidation={method!r}: use ewc or proximal")
        super().__init__(base)
        self.method, self.strength, self.fisher_samples = method, strength, fisher_samples

    def _switch(self, client_id: int, broadcast: Tensors, state: dict[str, Any],
                data: TaskData, ctx: TrainContext) -> dict[str, Any]:
        """The client's consolidation state after switching to ``data.task``."""
        anchor = {k: v.detach().clone() for k, v in broadcast.items()}
        new = {**state, "drift_task": data.task, "drift_anchor": anchor}
        if self.method == "ewc" and data.previous is not None:
            model = ctx.local_model(broadcast)
            fisher = fisher_diagonal(model, data.previous(), self.fisher_samples,
                                     client_generator(ctx.seed, ctx.round, client_id),
                                     ctx.device)
            old = state.get("drift_fisher")
            new["drift_fisher"] = fisher if old is None else {
                n: old[n] + f for n, f in fisher.items()}
        return new

    def _penalty(self, state: dict[str, Any], ctx: TrainContext):
        """The consolidation term of ``state`` for `local_train`, or None (nothing to keep)."""
        anchor = state.get("drift_anchor")
        if anchor is None or self.strength == 0 or (
                self.method == "ewc" and "drift_fisher" not in state):
            return None
        names = set(state["drift_fisher"]) if self.method == "ewc" else None
        anchors = {n: a.to(ctx.device) for n, a in anchor.items()}
        fisher = ({n: f.to(ctx.device) for n, f in state["drift_fisher"].items()}
                  if self.method == "ewc" else {})
        half = 0.5 * self.strength

        def consolidate(model: nn.Module, x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
            terms = []
            for n, p in model.named_parameters():
                if names is not None and n not in names:
                    continue
                sq = (p - anchors[n]) ** 2
                terms.append((fisher[n] * sq).sum() if fisher else sq.sum())
            return half * sum(terms)

        return consolidate

    def client_update(self, client_id: int, broadcast: Tensors, client_state: dict[str, Any],
                      data: ClientData, ctx: TrainContext
                      ) -> tuple[Upload, dict[str, Any], dict[str, float]]:
        state = client_state
        task = getattr(data, "task", 0)
        if task > int(state.get("drift_task", 0)):
            state = self._switch(client_id, broadcast, state, data, ctx)
        penalty = self._penalty(state, ctx)
        if penalty is not None:
            ctx = replace(ctx, options={**ctx.options, CONSOLIDATION_OPTION: penalty})
        upload, new_state, metrics = self.base.client_update(client_id, broadcast, state, data,
                                                             ctx)
        kept = {k: v for k, v in state.items() if k.startswith("drift_")}
        return upload, {**new_state, **kept}, metrics
