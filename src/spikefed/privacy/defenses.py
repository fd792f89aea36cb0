"""Client-side defenses applied to what the server observes.

- ``noise``: Gaussian noise ``N(0, sigma^2)`` added to every entry of the upload.
- ``prune``: gradient pruning (Zhu et al. 2019): the ``ratio`` smallest-magnitude entries of
  each tensor are zeroed (top-k kept).
- ``dpsgd``: DP-SGD (Abadi et al. 2016): per-sample gradients (``torch.func`` vmap of grad),
  each clipped to L2 norm ``clip``, summed, plus ``N(0, (sigma * clip)^2)``, divided by the
  batch; privacy from :mod:`spikefed.privacy.accountant`.
- ``snfl``: SNFL (client-side ANN->SNN conversion): the client converts its ANN with its own
  calibration data before computing the upload; see :func:`snfl_convert`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, vmap

from spikefed.privacy.devices import normal
from spikefed.privacy.threat import Grads, ThreatModel, observe, soft_cross_entropy, trainable

DEFENSES = ("none", "noise", "prune", "dpsgd", "snfl")


@dataclass(frozen=True)
class Defense:
    """A defense and its strength (only the fields of ``kind`` matter)."""

    kind: Literal["none", "noise", "prune", "dpsgd", "snfl"] = "none"
    sigma: float = 0.0  # noise std (noise) or noise multiplier (dpsgd)
    ratio: float = 0.0  # fraction pruned (prune)
    clip: float = 1.0  # per-sample L2 bound (dpsgd)

    def __post_init__(self) -> None:
        if self.kind not in DEFENSES:
            raise ValueError(
                f"defense kind={self.kind!r} is unknown; choose one of {list(DEFENSES)}"
            )
        if self.sigma < 0:
            raise ValueError(f"defense sigma={self.sigma} must be >= 0")
        if not 0.0 <= self.ratio < 1.0:
            raise ValueError(f"defense ratio={self.ratio} must lie in [0, 1)")
        if self.clip <= 0:
            raise ValueError(f"defense clip={self.clip} must be > 0")

    @property
    def label(self) -> str:
        """Short human-readable name, e.g. ``noise(sigma=0.01)``."""
        if self.kind == "noise":
            return f"noise(sigma={self.sigma:g})"
        if self.kind == "prune":
            return f"prune(ratio={self.ratio:g})"
        if self.kind == "dpsgd":
            return f"dpsgd(sigma={self.sigma:g},C={self.clip:g})"
        return self.kind


def add_noise(grads: Grads, sigma: float, generator: torch.Generator) -> Grads:
    """Every entry plus ``N(0, sigma^2)``, drawn on the generator's device, added on ``g``'s."""
    return {k: g + sigma * normal(g.shape, generator, g.device) for k, g in grads.items()}


def prune(grads: Grads, ratio: float) -> Grads:
    """Zero the ``ratio`` smallest-magnitude entries of each tensor (keep the top-k)."""
    out = {}
    for k, g in grads.items():
        n_drop = int(ratio * g.numel())
        if n_drop == 0:
            out[k] = g.clone()
            continue
        cut = g.abs().flatten().kthvalue(n_drop).values
        out[k] = torch.where(g.abs() > cut, g, torch.zeros_like(g))
    return out


def per_sample_grads(model: nn.Module, params: dict[str, Tensor], x: Tensor, y: Tensor) -> Grads:
    """Per-sample gradients ``{name: [B, *shape]}`` with ``vmap(grad)``.

    ``torch.func.grad`` returns zeros for parameters unused in the forward pass, as
    :func:`spikefed.privacy.threat.batch_gradient` does, so DP-SGD uploads stay complete.
    """

    def loss_one(p: dict[str, Tensor], xi: Tensor, yi: Tensor) -> Tensor:
        out = functional_call(model, p, (xi.unsqueeze(0),))
        return soft_cross_entropy(out, yi.unsqueeze(0))

    return vmap(grad(loss_one), in_dims=(None, 0, 0), randomness="different")(params, x, y)


def clip_per_sample(grads: Grads, clip: float) -> Grads:
    """Scale each sample's whole gradient to L2 norm at most ``clip``."""
    norms = torch.sqrt(sum(g.flatten(1).pow(2).sum(1) for g in grads.values()))
    scale = (clip / (norms + 1e-12)).clamp(max=1.0)
    return {k: g * scale.view(-1, *([1] * (g.dim() - 1))) for k, g in grads.items()}


def dp_gradient(
    model: nn.Module,
    params: dict[str, Tensor],
    x: Tensor,
    y: Tensor,
    sigma: float,
    clip: float,
    generator: torch.Generator,
) -> Grads:
    """One DP-SGD gradient: clipped per-sample gradients, summed, noised, averaged.

    The noise is drawn on the generator's device and added on the gradient's.
    """
    clipped = clip_per_sample(per_sample_grads(model, params, x, y), clip)
    return {
        k: (g.sum(0) + sigma * clip * normal(g.shape[1:], generator, g.device)) / len(x)
        for k, g in clipped.items()
    }


def defended_observation(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    threat: ThreatModel,
    defense: Defense,
    generator: torch.Generator,
) -> Grads:
    """The upload the server observes when the client applies ``defense``.

    For ``snfl`` pass the client's converted SNN as ``model`` (see :func:`snfl_convert`).
    """
    if defense.kind in ("none", "snfl"):
        return observe(model, x, y, threat)
    if defense.kind == "noise":
        return add_noise(observe(model, x, y, threat), defense.sigma, generator)
    if defense.kind == "prune":
        return prune(observe(model, x, y, threat), defense.ratio)
    theta0 = trainable(model)
    theta = dict(theta0)
    steps = threat.local_steps if threat.kind == "fedavg" else 1
    for _ in range(steps):
        g = dp_gradient(model, theta, x, y, defense.sigma, defense.clip, generator)
        theta = {k: theta[k] - threat.lr * g[k] for k in theta}
    return {k: (theta0[k] - theta[k]) / threat.lr for k in theta}


def snfl_convert(ann: nn.Module, calib_x: Tensor, T: int) -> Any:
    """SNFL client step: convert the ANN to an SNN with the client's private calibration data.

    Returns the converter's ``ConvertedSNN`` (``.model``, ``.thresholds``). The converter
    moves ``calib_x`` to the ANN's device and builds the SNN there.
    """
    try:
        from spikefed.convert import convert_ann_to_snn
    except ImportError as err:
        raise ValueError(
            "defense 'snfl' needs spikefed.convert.convert_ann_to_snn, which is not "
            f"available in this installation ({err})"
        ) from None
    return convert_ann_to_snn(ann, calib_x, T, threshold="mmse", calibration="light")
