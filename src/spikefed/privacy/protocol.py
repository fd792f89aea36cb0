"""The SNFL threat model as the protocol exposes it: ANN weight updates from SNN uploads.

An SNFL client uploads its converted SNN (``snn.<name>``: BN-folded weights ``W_S``,
calibrated biases ``b_S``, thresholds, initial membranes) and its BatchNorm parameters
(``bn.<name>``). The server must recover ``W_A = W_S * sigma / gamma`` to aggregate (see
:mod:`spikefed.fl.snfl`), so an honest-but-curious server holds, for every client, the
exact ANN weights *after* local training, and it knows the weights *before* (its own
broadcast). Their difference divided by the learning rate is the FedAvg update
``(theta_0 - theta_E) / lr`` of those tensors; for one local step it is the gradient.

Only the ANN biases are private. The server does not know the biases the client started
from; its estimates (:data:`BIAS_ESTIMATES`):

- ``oracle``: the true starting biases (an upper bound for the attacker, not available);
- ``inferred``: the biases inferred from the client's *previous* upload (two consecutive
  uploads; :func:`spikefed.fl.snfl.inferred_biases`: exact without bias calibration, since a
  client starts a round from the biases it ended the last one with);
- ``mean``: the mean of the biases inferred from every client of the previous round (what
  ``bias_back`` would broadcast);
- ``joint``: optimised jointly with the image, starting from ``inferred``.

The update of the biases themselves is not matched (the server only has estimates of both
ends); the attacker matches the exactly known tensors: weights and BatchNorm ``gamma/beta``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from spikefed.fl.snfl import SNFL, inferred_biases
from spikefed.privacy.attacks import Problem
from spikefed.privacy.threat import Grads, observe, trainable

BIAS_ESTIMATES = ("oracle", "inferred", "mean", "joint")


def recover_client_weights(algo: SNFL, layout: dict[str, Any], upload: dict[str, Tensor]
                           ) -> dict[str, Tensor]:
    """The client's ANN weights and BN parameters after local training, from one upload."""
    return {k: v for k, v in algo.recover_ann(upload, layout).items()
            if not k.endswith(("running_mean", "running_var"))}


def bias_keys(layout: dict[str, Any]) -> list[str]:
    """ANN bias names of the bias-carrying layers (private under SNFL)."""
    return [f"{n}.bias" for n in layout["bias_layers"]]


def weight_update(broadcast: dict[str, Tensor], recovered: dict[str, Tensor], lr: float
                  ) -> Grads:
    """``(theta_0 - theta_E) / lr`` for every tensor the server knows at both ends."""
    return {k: (broadcast[k] - v) / lr for k, v in recovered.items() if k in broadcast}


def estimate_start_biases(
    kind: str,
    layout: dict[str, Any],
    previous_upload: dict[str, Tensor] | None,
    previous_round: list[dict[str, Tensor]] | None = None,
    oracle: dict[str, Tensor] | None = None,
) -> dict[str, Tensor]:
    """The server's estimate of the biases a client started its round from (see module doc)."""
    if kind not in BIAS_ESTIMATES:
        raise ValueError(f"bias estimate {kind!r} is unknown; choose one of {list(BIAS_ESTIMATES)}")
    if kind == "oracle":
        if oracle is None:
            raise ValueError("bias estimate 'oracle' needs the client's true starting biases")
        return {k: oracle[k].clone() for k in bias_keys(layout)}
    if kind == "mean":
        if not previous_round:
            raise ValueError("bias estimate 'mean' needs the uploads of the previous round")
        per_client = [inferred_biases(u, layout) for u in previous_round]
        return {k: torch.stack([b[k] for b in per_client]).mean(0) for k in per_client[0]}
    if previous_upload is None:
        raise ValueError(f"bias estimate {kind!r} needs the client's previous upload")
    return inferred_biases(previous_upload, layout)


@dataclass
class ProtocolProblem(Problem):
    """An inversion problem whose simulation starts from estimated private biases.

    ``start`` holds the attacker's starting parameters (the broadcast weights and the bias
    estimate). With ``learn_biases`` the biases are attack variables too (``variables()``),
    reset to ``start`` by ``reset_variables()`` at every restart.
    """

    start: dict[str, Tensor] = field(default_factory=dict)
    learn_biases: tuple[str, ...] = ()
    _vars: dict[str, Tensor] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.reset_variables()

    def reset_variables(self) -> None:
        """Fresh leaf copies of the learnt biases, at their starting estimate."""
        self._vars = {k: self.start[k].detach().clone().requires_grad_(True)
                      for k in self.learn_biases}

    def variables(self) -> list[Tensor]:
        """Attack variables besides the input: the jointly optimised biases."""
        return list(self._vars.values())

    def simulate(self, z: Tensor, y: Tensor) -> Grads:
        params = {**trainable(self.model), **self.start, **self._vars}
        return observe(self.model, self.domain.model_input(z), y, self.threat,
                       create_graph=True, params=params)


def known_keys(model: nn.Module, layout: dict[str, Any]) -> list[str]:
    """Trainable tensors whose update the server knows exactly (all but the private biases)."""
    private = set(bias_keys(layout))
    return [k for k in trainable(model) if k not in private]
