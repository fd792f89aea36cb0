"""MOON (Li, He & Song 2021): model-contrastive federated learning.

The local loss adds ``mu * l_con`` to the cross-entropy, where ``l_con`` pulls the projected
representation ``z`` of the local model towards that of the global model (``z_glob``) and away
from that of the client's previous local model (``z_prev``)::

    l_con = -log( exp(cos(z, z_glob)/tau) / (exp(cos(z, z_glob)/tau) + exp(cos(z, z_prev)/tau)) )

The representation is the penultimate feature (the input of the readout layer), captured with a
forward pre-hook, so zoo models need no change. A small projection head (``proj_dim > 0``) maps
it to ``z``; the head is client-private (kept in ``client_state``, never uploaded), and the
global/previous representations are projected with the head as it was at the start of the
round. The previous local model also lives in ``client_state``.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn
from torch.func import functional_call
from torch.nn import functional as F

from spikefed.fl.base import ClientData, Tensors, TrainContext, Upload
from spikefed.fl.fedavg import FedAvg, clone_state
from spikefed.fl.local import local_train
from spikefed.fl.objective import LocalObjective, LocalStep


def readout_layer(model: nn.Module) -> nn.Linear:
    """The layer producing the logits: ``model.classifier`` or else the last ``nn.Linear``."""
    head = getattr(model, "classifier", None)
    if isinstance(head, nn.Linear):
        return head
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError(f"{type(model).__name__} has no nn.Linear readout; MOON needs one to "
                         "take the penultimate representation")
    return linears[-1]


@contextmanager
def capture_features(model: nn.Module) -> Iterator[dict[str, torch.Tensor]]:
    """Within the block, ``box['z']`` holds the readout input of the latest forward pass."""
    box: dict[str, torch.Tensor] = {}

    def hook(_module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        box["z"] = inputs[0].flatten(1)

    handle = readout_layer(model).register_forward_pre_hook(hook)
    try:
        yield box
    finally:
        handle.remove()


def penultimate(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Penultimate representation ``[B, D]`` of ``model`` on ``x``."""
    with capture_features(model) as box:
        model(x)
    return box["z"]


def model_contrastive_loss(z: torch.Tensor, z_glob: torch.Tensor, z_prev: torch.Tensor,
                           temperature: float) -> torch.Tensor:
    """MOON's ``l_con`` averaged over the batch (positive pair: global, negative: previous)."""
    pos = F.cosine_similarity(z, z_glob, dim=1) / temperature
    neg = F.cosine_similarity(z, z_prev, dim=1) / temperature
    logits = torch.stack([pos, neg], dim=1)
    return F.cross_entropy(logits, torch.zeros(len(z), dtype=torch.long, device=z.device))


def make_head(in_dim: int, proj_dim: int) -> nn.Module:
    """Projection head ``Linear-ReLU-Linear`` to ``proj_dim`` (identity when ``proj_dim == 0``)."""
    if proj_dim == 0:
        return nn.Identity()
    return nn.Sequential(nn.Linear(in_dim, in_dim), nn.ReLU(), nn.Linear(in_dim, proj_dim))


class _WithHead(nn.Module):
    """Trains a model and a projection head together (the head only feeds the penalty)."""

    def __init__(self, model: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.model, self.head = model, head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def _frozen(model: nn.Module) -> nn.Module:
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


class Moon(FedAvg):
    """FedAvg aggregation with MOON's model-contrastive local objective."""

    name = "moon"
    vectorizable = True

    def __init__(self, mu: float = 1.0, temperature: float = 0.5, proj_dim: int = 64) -> None:
        if mu < 0:
            raise ValueError(f"algorithm.params.mu={mu} must be >= 0")
        if temperature <= 0:
            raise ValueError(f"algorithm.params.temperature={temperature} must be > 0")
        if proj_dim < 0:
            raise ValueError(f"algorithm.params.proj_dim={proj_dim} must be >= 0 (0: no head)")
        self.mu, self.temperature, self.proj_dim = mu, temperature, proj_dim

    def train_local(self, client_id: int, model: nn.Module, reference: Tensors,
                    client_state: dict[str, Any], data: ClientData, ctx: TrainContext
                    ) -> tuple[dict[str, float], dict[str, Any]]:
        """Train ``model`` (loaded with ``reference``, the global model) in place.

        Returns the training metrics and the new client state (previous model, head).
        """
        if self.mu == 0:
            return local_train(model, data, ctx, client_id), client_state
        glob = _frozen(copy.deepcopy(model)).to(ctx.device)
        prev = ctx.model_fn()
        prev.load_state_dict(client_state.get("moon_prev", reference))
        prev = _frozen(prev).to(ctx.device)
        head = make_head(readout_layer(model).in_features, self.proj_dim)
        if "moon_head" in client_state:
            head.load_state_dict(client_state["moon_head"])
        head0 = _frozen(copy.deepcopy(head)).to(ctx.device)
        wrapped = _WithHead(model, head)
        with capture_features(model) as box:

            def contrastive(_m: nn.Module, x: torch.Tensor, _logits: torch.Tensor) -> torch.Tensor:
                z = head(box["z"])
                with torch.no_grad():
                    z_glob = head0(penultimate(glob, x))
                    z_prev = head0(penultimate(prev, x))
                return self.mu * model_contrastive_loss(z, z_glob, z_prev, self.temperature)

            metrics = local_train(wrapped, data, ctx, client_id, penalty=contrastive)
        new_state = {**client_state, "moon_prev": clone_state(model),
                     "moon_head": {k: v.detach().clone() for k, v in head.state_dict().items()}}
        return metrics, new_state

    def local_objective(self, broadcast: Tensors, client_state: dict[str, Any],
                        ctx: TrainContext) -> LocalObjective | None:
        """Cross-entropy + ``mu * l_con``; the private head (``extra``) trains with the model,
        the global model, the previous local model and the head as it was (``consts``) do not.
        A client without a head yet draws one from the global generator, as the serial loop
        does (at a different moment, so first-round heads differ from the serial ones)."""
        if self.mu == 0:
            return LocalObjective(start=broadcast)
        in_dim = readout_layer(ctx.local_model(broadcast)).in_features
        head = make_head(in_dim, self.proj_dim).to(ctx.device)
        if "moon_head" in client_state:
            head.load_state_dict(client_state["moon_head"])
        head_start = {k: v.detach().clone() for k, v in head.state_dict().items()}
        prev = client_state.get("moon_prev", broadcast)
        glob = {k: v.to(ctx.device) for k, v in broadcast.items()}
        consts = {**{"prev." + k: v.to(ctx.device) for k, v in prev.items()},
                  **{"head0." + k: v for k, v in head_start.items()}}

        def project(params: Tensors, prefix: str, z: torch.Tensor) -> torch.Tensor:
            weights = {k[len(prefix):]: v for k, v in params.items() if k.startswith(prefix)}
            return functional_call(head, weights, (z,)) if weights else z

        def represent(model: nn.Module, state: Tensors, x: torch.Tensor) -> torch.Tensor:
            model.eval()  # the frozen models of the serial loop run in eval mode
            try:
                with capture_features(model) as box:
                    functional_call(model, state, (x,))
            finally:
                model.train()
            return box["z"]

        def contrastive(step: LocalStep) -> torch.Tensor:
            z = project(step.extra, "head.", step.features)
            with torch.no_grad():
                prev_state = {k[5:]: v for k, v in step.consts.items() if k.startswith("prev.")}
                z_glob = project(step.consts, "head0.", represent(step.model, glob, step.x))
                z_prev = project(step.consts, "head0.", represent(step.model, prev_state, step.x))
            return self.mu * model_contrastive_loss(z, z_glob, z_prev, self.temperature)

        return LocalObjective(start=broadcast, consts=consts, penalty=contrastive, features=True,
                              extra={"head." + k: v for k, v in head_start.items()})

    def finish_local(self, client_id: int, broadcast: Tensors, client_state: dict[str, Any],
                     data: ClientData,
                     ctx: TrainContext, trained: Tensors, extra: Tensors,
                     metrics: dict[str, float]) -> tuple[Upload, dict[str, Any]]:
        """Upload the model; keep it as the previous model, and the trained head."""
        upload = Upload(client_id, trained, len(data), metrics)
        if self.mu == 0:
            return upload, client_state
        head = {k[len("head."):]: v for k, v in extra.items()}
        return upload, {**client_state, "moon_prev": {k: v.clone() for k, v in trained.items()},
                        "moon_head": head}

    def client_update(
        self, client_id: int, broadcast: Tensors, client_state: dict[str, Any], data: ClientData,
        ctx: TrainContext
    ) -> tuple[Upload, dict[str, Any], dict[str, float]]:
        model = ctx.model_fn()
        model.load_state_dict(broadcast)
        metrics, new_state = self.train_local(client_id, model, broadcast, client_state, data,
                                              ctx)
        upload = Upload(client_id, clone_state(model), len(data), metrics)
        return upload, new_state, metrics


class MoonParams(BaseModel):
    """Validated parameters of ``moon`` (and ``s-moon``)."""

    model_config = ConfigDict(extra="forbid")
    mu: float = Field(1.0, ge=0, description="weight of the model-contrastive loss")
    temperature: float = Field(0.5, gt=0, description="temperature tau of the contrastive loss")
    proj_dim: int = Field(64, ge=0, description="projection head output size (0: no head)")
