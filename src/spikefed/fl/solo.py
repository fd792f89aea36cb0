"""SOLO: every client trains only on its own data; nothing is communicated."""

from __future__ import annotations

from typing import Any

from torch import nn

from spikefed.fl.base import Algorithm, ClientData, Tensors, TrainContext, Upload
from spikefed.fl.fedavg import clone_state
from spikefed.fl.local import local_train


class Solo(Algorithm):
    """The no-federation baseline: each client's model lives in its private state."""

    name = "solo"
    communicates = False

    def init_server(self, model: nn.Module) -> tuple[dict[str, Any], Tensors]:
        return {"init": clone_state(model)}, {}

    def client_update(
        self, client_id: int, broadcast: Tensors, client_state: dict[str, Any], data: ClientData,
        ctx: TrainContext
    ) -> tuple[Upload, dict[str, Any], dict[str, float]]:
        model = ctx.model_fn()
        if "params" in client_state:
            model.load_state_dict(client_state["params"])
        metrics = local_train(model, data, ctx, client_id)
        new_state = {**client_state, "params": clone_state(model)}
        return Upload(client_id, {}, len(data), metrics), new_state, metrics

    def aggregate(
        self, server_state: dict[str, Any], uploads: list[Upload]
    ) -> tuple[dict[str, Any], Tensors]:
        return server_state, {}

    def server_model_state(self, server_state: dict[str, Any]) -> Tensors | None:
        return None

    def client_model_state(self, upload: Upload, client_state: dict[str, Any]) -> Tensors | None:
        return client_state.get("params")

    def upload_keys(self, model: nn.Module) -> set[str]:
        return set()
