"""Threat models: what an honest-but-curious server observes, and how it simulates it.

The server is white-box: it knows the architecture, the broadcast parameters, the loss and,
for an SNN client, the neuron model and its surrogate gradient. It observes one upload:

- ``fedsgd``: the gradient of the client's loss on one batch, ``g = dL/dtheta``.
- ``fedavg``: the update after ``local_steps`` full-batch SGD steps with learning rate ``lr``
  on the same batch, reported as ``(theta_0 - theta_E) / lr`` (equal to ``g`` for one step).

The attacker simulates the same computation differentiably (``create_graph=True``) on its
dummy batch and matches the two.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

Grads = dict[str, Tensor]

THREATS = ("fedsgd", "fedavg")


@dataclass(frozen=True)
class ThreatModel:
    """What the server observes: one FedSGD gradient or one FedAvg update."""

    kind: Literal["fedsgd", "fedavg"] = "fedsgd"
    local_steps: int = 1
    lr: float = 0.1

    def __post_init__(self) -> None:
        if self.kind not in THREATS:
            raise ValueError(f"threat kind={self.kind!r} is unknown; choose one of {list(THREATS)}")
        if self.local_steps < 1:
            raise ValueError(f"threat local_steps={self.local_steps} must be >= 1")
        if self.lr <= 0:
            raise ValueError(f"threat lr={self.lr} must be > 0")


def soft_cross_entropy(logits: Tensor, target: Tensor) -> Tensor:
    """Cross-entropy with integer labels ``[B]`` or label distributions ``[B, K]``."""
    if target.dim() == 1:
        return F.cross_entropy(logits, target)
    return -(target * F.log_softmax(logits, dim=-1)).sum(-1).mean()


def trainable(model: nn.Module) -> dict[str, Tensor]:
    """The model's trainable parameters by name, detached copies."""
    return {k: v.detach().clone() for k, v in model.named_parameters() if v.requires_grad}


def batch_gradient(
    model: nn.Module,
    params: dict[str, Tensor],
    x: Tensor,
    target: Tensor,
    create_graph: bool = False,
) -> Grads:
    """``dL/dparams`` of the (soft) cross-entropy at ``params`` (buffers taken from ``model``).

    Parameters that take no part in the loss (a converted SNN's threshold or a layer behind a
    spike path without surrogate gradient, a silent layer, a head unused in ``forward``) get a
    zero gradient, not an error: the upload of such a tensor is zero, and the client's upload
    and the attacker's simulation both go through here, so the matching distance stays defined.
    """
    params = {
        k: v if (create_graph and v.requires_grad) else v.detach().requires_grad_(True)
        for k, v in params.items()
    }
    loss = soft_cross_entropy(functional_call(model, params, (x,)), target)
    names = list(params)
    grads = torch.autograd.grad(
        loss,
        [params[k] for k in names],
        create_graph=create_graph,
        allow_unused=True,
        materialize_grads=True,
    )
    return dict(zip(names, grads, strict=True))


def observe(
    model: nn.Module,
    x: Tensor,
    target: Tensor,
    threat: ThreatModel,
    create_graph: bool = False,
    params: dict[str, Tensor] | None = None,
) -> Grads:
    """What the server sees for batch ``(x, target)`` under ``threat`` (gradient-shaped).

    With ``create_graph=True`` the result is differentiable in ``x`` and ``target`` (the
    attacker's simulation); otherwise it is the client's real, detached upload.
    """
    theta0 = params if params is not None else trainable(model)
    if threat.kind == "fedsgd":
        g = batch_gradient(model, theta0, x, target, create_graph)
        return g if create_graph else {k: v.detach() for k, v in g.items()}
    theta = dict(theta0)
    for _ in range(threat.local_steps):
        g = batch_gradient(model, theta, x, target, create_graph)
        theta = {k: theta[k] - threat.lr * g[k] for k in theta}
    upd = {k: (theta0[k] - theta[k]) / threat.lr for k in theta}
    return upd if create_graph else {k: v.detach() for k, v in upd.items()}


def flat(grads: Grads) -> Tensor:
    """All tensors of a gradient dict concatenated into one vector (dict order)."""
    return torch.cat([g.reshape(-1) for g in grads.values()])
