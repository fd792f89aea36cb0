"""SCAFFOLD (Karimireddy et al. 2020), option II control variates.

Client ``i`` corrects every local gradient by ``c - c_i`` (server minus client control), then
updates its control ``c_i+ = c_i - c + (x - y_i) / (K * lr)`` where ``x`` is the broadcast
model, ``y_i`` the local model after ``K`` optimiser steps. It uploads the model delta
``y_i - x`` (keys ``delta.<name>``) and the control delta ``c_i+ - c_i`` (``dcontrol.<name>``).
The server applies ``x += server_lr * mean(delta)`` (sample-weighted, as FedAvg) and
``c += |S| / N * mean(dcontrol)``. The broadcast carries ``x`` and ``c`` (``control.<name>``).
Client controls stay in ``client_state``.
"""

from __future__ import annotations

from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from spikefed.fl.base import Algorithm, ClientData, Tensors, TrainContext, Upload
from spikefed.fl.fedavg import clone_state
from spikefed.fl.local import local_train
from spikefed.fl.objective import LocalObjective

CONTROL, DELTA, DCONTROL = "control.", "delta.", "dcontrol."


def _split(broadcast: Tensors) -> tuple[Tensors, Tensors]:
    params = {k: v for k, v in broadcast.items() if not k.startswith(CONTROL)}
    controls = {k[len(CONTROL):]: v for k, v in broadcast.items() if k.startswith(CONTROL)}
    return params, controls


class Scaffold(Algorithm):
    """Stochastic controlled averaging: drift correction with control variates."""

    name = "scaffold"
    vectorizable = True

    def __init__(self, server_lr: float = 1.0, num_clients: int | None = None) -> None:
        if server_lr <= 0:
            raise ValueError(f"algorithm.params.server_lr={server_lr} must be > 0")
        if num_clients is not None and num_clients < 1:
            raise ValueError(f"algorithm.params.num_clients={num_clients} must be >= 1 or null")
        self.server_lr = server_lr
        self.num_clients = num_clients

    def init_server(self, model: nn.Module) -> tuple[dict[str, Any], Tensors]:
        params = clone_state(model)
        control = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
        state = {"params": params, "control": control}
        return state, self._broadcast(params, control)

    def coded_keys(self, received: Tensors) -> dict[str, tuple[str, bool]]:
        """The uploads are already deltas (model and control): coded as they are."""
        params, control = _split(received)
        keys = {DELTA + k: (k, False) for k, v in params.items() if v.is_floating_point()}
        keys.update({DCONTROL + k: (CONTROL + k, False) for k in control})
        return keys

    @staticmethod
    def _broadcast(params: Tensors, control: Tensors) -> Tensors:
        return {**params, **{CONTROL + k: v for k, v in control.items()}}

    def client_update(
        self, client_id: int, broadcast: Tensors, client_state: dict[str, Any], data: ClientData,
        ctx: TrainContext
    ) -> tuple[Upload, dict[str, Any], dict[str, float]]:
        x, c = _split(broadcast)
        model = ctx.local_model(x)
        c_i = client_state.get("control") or {k: torch.zeros_like(v) for k, v in c.items()}
        correction = {k: (c[k] - c_i[k]).to(ctx.device) for k in c}

        def correct(m: nn.Module) -> None:
            for name, p in m.named_parameters():
                if p.grad is not None:
                    p.grad.add_(correction[name])

        metrics = local_train(model, data, ctx, client_id, grad_hook=correct)
        upload, new_state = self.finish_local(client_id, broadcast, client_state, data, ctx,
                                              clone_state(model), {}, metrics)
        return upload, new_state, metrics

    def local_objective(self, broadcast: Tensors, client_state: dict[str, Any],
                        ctx: TrainContext) -> LocalObjective | None:
        """Cross-entropy from ``x``; every gradient shifted by ``c - c_i``."""
        x, c = _split(broadcast)
        c_i = client_state.get("control") or {k: torch.zeros_like(v) for k, v in c.items()}
        return LocalObjective(start=x, grad_offset={k: c[k] - c_i[k] for k in c})

    def finish_local(self, client_id: int, broadcast: Tensors, client_state: dict[str, Any],
                     data: ClientData,
                     ctx: TrainContext, trained: Tensors, extra: Tensors,
                     metrics: dict[str, float]) -> tuple[Upload, dict[str, Any]]:
        """Model and control deltas from the trained model ``y``; new control ``c_i+``."""
        x, c = _split(broadcast)
        c_i = client_state.get("control") or {k: torch.zeros_like(v) for k, v in c.items()}
        y = trained
        scale = 1.0 / (metrics["steps"] * ctx.lr)
        c_new = {k: c_i[k] - c[k] + (x[k] - y[k].cpu()) * scale for k in c}
        tensors = {DELTA + k: y[k].cpu() - x[k] for k in x}
        tensors.update({DCONTROL + k: c_new[k] - c_i[k] for k in c})
        new_state = {**client_state, "control": c_new, "model": y}
        return Upload(client_id, tensors, len(data), metrics), new_state

    def aggregate(
        self, server_state: dict[str, Any], uploads: list[Upload]
    ) -> tuple[dict[str, Any], Tensors]:
        x, c = server_state["params"], server_state["control"]
        delta = self.combine(uploads, [DELTA + k for k in x])
        new_x = {}
        for k, v in x.items():
            d = delta[DELTA + k]
            new_x[k] = v + self.server_lr * d if torch.is_floating_point(v) else v + d
        n_total = self.num_clients or len(uploads)
        frac = len(uploads) / n_total
        new_c = {k: v + frac * torch.stack([u.tensors[DCONTROL + k] for u in uploads]).mean(0)
                 for k, v in c.items()}
        return {**server_state, "params": new_x, "control": new_c}, self._broadcast(new_x, new_c)

    def client_model_state(self, upload: Upload, client_state: dict[str, Any]) -> Tensors | None:
        return client_state.get("model")

    def upload_keys(self, model: nn.Module) -> set[str]:
        return ({DELTA + k for k in model.state_dict()}
                | {DCONTROL + n for n, _ in model.named_parameters()})


class ScaffoldParams(BaseModel):
    """Validated parameters of ``scaffold``."""

    model_config = ConfigDict(extra="forbid")
    server_lr: float = Field(1.0, gt=0, description="global step size on the mean model delta")
    num_clients: int | None = Field(None, ge=1, description="total clients N for the control "
                                    "update |S|/N (null: the round's uploads)")
