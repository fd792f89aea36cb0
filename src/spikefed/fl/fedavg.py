"""FedAvg (McMahan et al. 2017): local SGD, sample-weighted parameter averaging."""

from __future__ import annotations

from typing import Any

from torch import nn

from spikefed.fl.base import Algorithm, ClientData, Tensors, TrainContext, Upload
from spikefed.fl.local import Penalty, local_train
from spikefed.fl.objective import LocalObjective


def clone_state(model: nn.Module) -> Tensors:
    """A detached copy of a model's state_dict."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


class FedAvg(Algorithm):
    """Every client starts from the broadcast, trains locally and uploads its full model."""

    name = "fedavg"
    #: The engine may train this class's clients together (`spikefed.sim.vectorized`) with
    #: `local_objective` / `finish_local`. Not inherited: only a class that declares it itself
    #: opts in, so a subclass that changes local training stays serial unless it restates
    #: its objective and declares it too.
    vectorizable = True

    def init_server(self, model: nn.Module) -> tuple[dict[str, Any], Tensors]:
        params = clone_state(model)
        return {"params": params}, params

    def penalty(self, broadcast: Tensors, ctx: TrainContext) -> Penalty | None:
        """Extra local loss term; FedAvg has none."""
        return None

    def local_objective(self, broadcast: Tensors, client_state: dict[str, Any],
                        ctx: TrainContext) -> LocalObjective | None:
        """Plain cross-entropy from the broadcast."""
        return LocalObjective(start=broadcast)

    def client_update(
        self, client_id: int, broadcast: Tensors, client_state: dict[str, Any], data: ClientData,
        ctx: TrainContext
    ) -> tuple[Upload, dict[str, Any], dict[str, float]]:
        model = ctx.local_model(broadcast)
        metrics = local_train(model, data, ctx, client_id, penalty=self.penalty(broadcast, ctx))
        upload = Upload(client_id, clone_state(model), len(data), metrics)
        return upload, client_state, metrics

    def aggregate(
        self, server_state: dict[str, Any], uploads: list[Upload]
    ) -> tuple[dict[str, Any], Tensors]:
        params = self.combine(uploads)
        return {**server_state, "params": params}, params
