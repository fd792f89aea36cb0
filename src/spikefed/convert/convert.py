"""ANN -> SNN conversion with layer-wise calibration (SNFL Sec. 4.2; Li et al. 2021).

Pipeline: fold BatchNorm; replace each ``nn.ReLU`` by a :class:`ConvertedIF` neuron with a
per-layer threshold (max / percentile / MMSE); then, layer by layer in forward order and on
a small calibration batch, correct the SNN towards the ANN:

- weight calibration (``advanced``): minimise ``||a - clip(h_bar, 0, theta)||^2`` over the
  layers feeding the neuron, where ``h_bar`` is the SNN's time-averaged input current given
  the (already calibrated) spiking layers before it;
- bias calibration: ``b_c += mean_c(a - s_bar)`` per output channel;
- potential calibration: ``v0 += T * mean_batch(a - s_bar)`` per neuron, the element-wise
  remainder after bias calibration (a shift of ``dv`` in the initial membrane moves the rate
  by ``dv / T``).

``a`` is the ANN's ReLU output and ``s_bar`` the SNN output averaged over ``T`` steps.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from spikefed.convert.bn import _set_submodule, fold_bn
from spikefed.convert.neuron import ConvertedIF
from spikefed.convert.record import ann_activations, preactivation, snn_rates
from spikefed.convert.threshold import THRESHOLD_METHODS, find_channel_thresholds, find_threshold
from spikefed.convert.trace import Structure, trace_structure
from spikefed.snn.neurons import SpikingNeuron

CALIBRATIONS = ("none", "bias", "light", "advanced")
_STEPS = {
    "none": (),
    "bias": ("bias",),
    "light": ("bias", "potential"),
    "advanced": ("weight", "bias", "potential"),
}


@dataclass
class ConvertedSNN:
    """A converted SNN: ``model`` runs ``T`` steps on static images and returns mean logits."""

    model: nn.Module
    thresholds: dict[str, float | Tensor]
    T: int
    report: dict[str, Any] = field(default_factory=dict)


def _check_ann(ann: nn.Module) -> None:
    if getattr(ann, "spiking", False):
        raise ValueError("conversion needs an ANN (a zoo model built with spiking=False); "
                         "got a spiking model")
    for name, m in ann.named_modules():
        if isinstance(m, (nn.GroupNorm, nn.LayerNorm, nn.InstanceNorm2d)):
            raise ValueError(f"norm module {name!r} ({type(m).__name__}) cannot be folded into "
                             "weights; train the ANN with model.norm=bn or model.norm=none")


def spiking_copy(
    ann: nn.Module,
    T: int,
    thresholds: dict[str, float | Tensor] | None = None,
    *,
    half_init: bool = True,
) -> nn.Module:
    """The SNN structure of zoo ``ann`` without calibration: BN folded, each ``nn.ReLU``
    replaced by a :class:`ConvertedIF` (threshold from ``thresholds``, default 1.0, a float or
    a 1-D tensor of per-channel thresholds; initial membrane ``theta/2`` if ``half_init``),
    direct input coding, ``T`` steps, step order.

    Also the template to load a converted SNN's ``state_dict`` into.
    """
    if int(T) < 1:
        raise ValueError(f"T={T!r} must be a positive number of time steps")
    _check_ann(ann)
    snn = fold_bn(ann)
    structure = trace_structure(snn)
    thresholds = thresholds or {}
    unknown = sorted(set(thresholds) - set(structure.acts))
    if unknown:
        raise ValueError(f"thresholds given for {unknown}, which are not activation modules; "
                         f"the model has {structure.acts}")
    for name in structure.acts:
        theta = thresholds.get(name, 1.0)
        theta = theta.detach().cpu().float() if isinstance(theta, Tensor) else float(theta)
        if not bool(torch.all(torch.as_tensor(theta) > 0.0)):
            raise ValueError(f"threshold of {name!r} is {theta!r}; thresholds must be > 0")
        neuron = ConvertedIF(theta, structure.shapes[name], theta / 2 if half_init else 0.0,
                             pool=structure.pools.get(name))
        p = next(snn.parameters(), None)
        if p is not None:
            neuron.to(p.device)
        _set_submodule(snn, name, neuron)
    snn.spiking, snn.T, snn.encoder, snn.order = True, int(T), "direct", "step"
    snn.neuron_cfg = {"type": "if", "reset": "subtract"}
    return snn.eval()


def snn_thresholds(model: nn.Module) -> dict[str, Tensor]:
    """Firing threshold of every spiking neuron of ``model`` by module name (scalar tensors)."""
    out: dict[str, Tensor] = {}
    for name, m in model.named_modules():
        if isinstance(m, SpikingNeuron):
            thresh = getattr(m, "thresh", None)
            out[name] = (thresh.theta.detach().clone() if thresh is not None
                         else torch.tensor(float(m.threshold)))
    return out


def _channel_mean(e: Tensor) -> Tensor:
    return e.mean(dim=[0, *range(2, e.dim())])


def _calibrate_weights(
    snn: nn.Module, x: Tensor, name: str, feeds: list[str], target: Tensor, theta: Tensor,
    T: int, steps: int, lr: float,
) -> dict[str, float]:
    rates, inputs = snn_rates(snn, x, T, stop=name, inputs_of=feeds)
    params = [p for f in feeds for p in snn.get_submodule(f).parameters()]
    saved = [p.detach().clone() for p in params]
    opt = torch.optim.Adam(params, lr=lr)

    def loss() -> Tensor:
        h = preactivation(snn, x, name, rates, inputs)
        return torch.mean((torch.minimum(h.clamp_min(0.0), theta) - target) ** 2)

    with torch.enable_grad():
        before = float(loss().detach())
        for _ in range(steps):
            opt.zero_grad(set_to_none=True)
            loss().backward()
            opt.step()
        with torch.no_grad():
            after = float(loss())
    for p in params:
        p.grad = None
    if after > before:
        with torch.no_grad():
            for p, s in zip(params, saved, strict=True):
                p.copy_(s)
        after = before
    return {"wc_loss_before": before, "wc_loss_after": after}


@torch.no_grad()
def _calibrate_layer(
    snn: nn.Module, x: Tensor, structure: Structure, name: str, target: Tensor, T: int,
    steps: tuple[str, ...], wc_steps: int, wc_lr: float,
) -> dict[str, float]:
    feeds = structure.feeds[name]
    info: dict[str, float] = {}
    if not feeds:
        return info
    neuron = snn.get_submodule(name)
    theta = neuron.output_scale.detach()
    if "weight" in steps:
        info.update(_calibrate_weights(snn, x, name, feeds, target, theta, T, wc_steps, wc_lr))
    rates, _ = snn_rates(snn, x, T, stop=name)
    error = target - rates[name]
    info["mse_before"] = float((error**2).mean())
    if "bias" in steps:
        layer = snn.get_submodule(feeds[0])
        shift = _channel_mean(error)
        if layer.bias is None or layer.bias.shape != shift.shape:
            raise ValueError(f"cannot bias-calibrate {name!r}: layer {feeds[0]!r} has no bias "
                             f"of shape {tuple(shift.shape)}")
        layer.bias += shift
        info["bias_shift"] = float(shift.abs().mean())
        if "potential" in steps:
            rates, _ = snn_rates(snn, x, T, stop=name)
            error = target - rates[name]
            info["mse_after_bias"] = float((error**2).mean())
    if "potential" in steps:
        shift = T * error.mean(0)
        neuron.v0 += shift
        info["v0_shift"] = float(shift.abs().mean())
    return info


def convert_ann_to_snn(
    ann: nn.Module,
    calib_x: Tensor,
    T: int,
    *,
    threshold: str = "mmse",
    calibration: str = "light",
    percentile: float = 99.99,
    half_init: bool = True,
    grid: int = 100,
    wc_steps: int = 100,
    wc_lr: float = 1e-4,
    per_channel: bool = False,
) -> ConvertedSNN:
    """Convert zoo ANN ``ann`` to a calibrated IF-neuron SNN simulated for ``T`` steps.

    ``calib_x``: a small batch of training inputs ``[N, *in_shape]`` (e.g. 128 images).
    ``threshold``: ``mmse`` | ``max`` | ``percentile``. ``calibration``: ``none`` |
    ``bias`` (SNFL's BC only) | ``light`` (bias + potential) | ``advanced`` (weight + bias +
    potential). ``grid``: MMSE candidates. ``wc_steps``/``wc_lr``: Adam for weight calibration.
    ``per_channel``: one threshold per output channel (searched on that channel's activations)
    instead of one per layer.
    """
    if threshold not in THRESHOLD_METHODS:
        raise ValueError(f"threshold={threshold!r} is unknown; choose one of "
                         f"{list(THRESHOLD_METHODS)}")
    if calibration not in CALIBRATIONS:
        raise ValueError(f"calibration={calibration!r} is unknown; choose one of "
                         f"{list(CALIBRATIONS)}")
    if int(T) < 1:
        raise ValueError(f"T={T!r} must be a positive number of time steps")
    _check_ann(ann)
    in_shape = tuple(getattr(ann, "in_shape", ()))
    if calib_x.dim() != len(in_shape) + 1 or tuple(calib_x.shape[1:]) != in_shape or \
            len(calib_x) == 0:
        raise ValueError(f"calib_x of shape {tuple(calib_x.shape)} must be a non-empty batch "
                         f"[N, *{in_shape}] of training inputs")
    start = time.perf_counter()
    T = int(T)
    p = next(ann.parameters())
    x = calib_x.to(device=p.device, dtype=p.dtype)
    targets = ann_activations(ann, x)
    structure = trace_structure(ann)
    search = find_channel_thresholds if per_channel else find_threshold
    thresholds = {
        name: search(targets[name], T, threshold, percentile=percentile, half_init=half_init,
                     grid=grid)
        for name in structure.acts
    }
    snn = spiking_copy(ann, T, thresholds, half_init=half_init)
    layers = []
    for name in structure.acts:
        theta = thresholds[name]
        row: dict[str, Any] = {"name": name,
                               "threshold": theta.tolist() if per_channel else theta,
                               "max_activation": float(targets[name].max())}
        row.update(_calibrate_layer(snn, x, structure, name, targets[name], T,
                                    _STEPS[calibration], wc_steps, wc_lr))
        layers.append(row)
    report = {
        "T": T, "threshold": threshold, "calibration": calibration,
        "steps": list(_STEPS[calibration]), "half_init": bool(half_init),
        "per_channel": bool(per_channel),
        "percentile": percentile if threshold == "percentile" else None,
        "calib_samples": len(x), "bn_folded": len(structure.bn_pairs), "layers": layers,
        "seconds": time.perf_counter() - start,
    }
    return ConvertedSNN(snn.eval(), thresholds, T, report)
