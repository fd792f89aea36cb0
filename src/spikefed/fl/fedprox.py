"""FedProx (Li et al. 2020): FedAvg with a proximal term mu/2 * ||w - w_global||^2."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from spikefed.fl.base import Tensors, TrainContext
from spikefed.fl.fedavg import FedAvg
from spikefed.fl.local import Penalty
from spikefed.fl.objective import LocalObjective, LocalStep


class FedProx(FedAvg):
    """Local objective gets mu/2 ||w - w_t||^2 towards the broadcast weights."""

    name = "fedprox"
    vectorizable = True

    def __init__(self, mu: float = 0.01) -> None:
        if mu < 0:
            raise ValueError(f"algorithm.params.mu={mu} must be >= 0")
        self.mu = mu

    def penalty(self, broadcast: Tensors, ctx: TrainContext) -> Penalty | None:
        if self.mu == 0:
            return None
        anchors = {k: v.detach().to(ctx.device) for k, v in broadcast.items()}

        def proximal(model: nn.Module, x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
            sq = sum(((p - anchors[n]) ** 2).sum() for n, p in model.named_parameters())
            return 0.5 * self.mu * sq

        return proximal

    def local_objective(self, broadcast: Tensors, client_state: dict[str, Any],
                        ctx: TrainContext) -> LocalObjective | None:
        """Cross-entropy + mu/2 ||w - w_t||^2 over the model parameters."""
        if self.mu == 0:
            return LocalObjective(start=broadcast)
        anchors = {k: v.detach().to(ctx.device) for k, v in broadcast.items()}

        def proximal(step: LocalStep) -> torch.Tensor:
            sq = sum(((p - anchors[n]) ** 2).sum() for n, p in step.params.items())
            return 0.5 * self.mu * sq

        return LocalObjective(start=broadcast, penalty=proximal)
