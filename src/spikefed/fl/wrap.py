"""An algorithm that wraps another (DP, on-chip training, consolidation, attacks, recorders)
and forwards what it does not change."""

from __future__ import annotations

from typing import Any

from torch import nn

from spikefed.fl.base import Algorithm, ClientData, Tensors, TrainContext, Upload


class DelegatingAlgorithm(Algorithm):
    """An algorithm that forwards everything to ``base`` (subclasses override some)."""

    def __init__(self, base: Algorithm) -> None:
        self.base = base
        self.name = base.name
        self.communicates = base.communicates

    def init_server(self, model: nn.Module) -> tuple[dict[str, Any], Tensors]:
        return self.base.init_server(model)

    def client_update(self, client_id: int, broadcast: Tensors, client_state: dict[str, Any],
                      data: ClientData, ctx: TrainContext
                      ) -> tuple[Upload, dict[str, Any], dict[str, float]]:
        return self.base.client_update(client_id, broadcast, client_state, data, ctx)

    def aggregate(self, server_state: dict[str, Any], uploads: list[Upload]
                  ) -> tuple[dict[str, Any], Tensors]:
        return self.base.aggregate(server_state, uploads)

    def downlink(self, server_state: dict[str, Any], broadcast: Tensors, client_id: int
                 ) -> Tensors:
        return self.base.downlink(server_state, broadcast, client_id)

    def combine(self, uploads: Any, keys: Any = None) -> Tensors:
        return self.base.combine(uploads, keys)

    def use_combiner(self, combiner: Any) -> None:
        self.base.use_combiner(combiner)

    def server_model_state(self, server_state: dict[str, Any]) -> Tensors | None:
        return self.base.server_model_state(server_state)

    def server_model(self, server_state: dict[str, Any], model_fn: Any) -> nn.Module | None:
        return self.base.server_model(server_state, model_fn)

    def client_model_state(self, upload: Upload, client_state: dict[str, Any]) -> Tensors | None:
        return self.base.client_model_state(upload, client_state)

    def upload_keys(self, model: nn.Module) -> set[str]:
        return self.base.upload_keys(model)

    def coded_keys(self, received: Tensors) -> dict[str, tuple[str, bool]]:
        return self.base.coded_keys(received)

    def round_metrics(self, server_state: dict[str, Any]) -> dict[str, Any]:
        return self.base.round_metrics(server_state)
