"""Fold BatchNorm into the preceding Conv/Linear layer, and the SNFL server's inverse.

With ``sigma = sqrt(var + eps)``: ``W_S = W_A * gamma / sigma`` and
``b_S = beta + (b_A - mu) * gamma / sigma`` (Rueckauer et al. 2017; SNFL Sec. 4.2), scaling
along the output-channel axis (dim 0) of the weight.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from spikefed.convert.trace import trace_structure


def _per_out(t: Tensor, like: Tensor) -> Tensor:
    """Reshape a per-output-channel vector to broadcast against weight ``like``."""
    return t.reshape(-1, *([1] * (like.dim() - 1)))


def fold_bn_tensors(
    weight: Tensor,
    bias: Tensor | None,
    gamma: Tensor | None,
    beta: Tensor | None,
    mean: Tensor,
    var: Tensor,
    eps: float,
) -> tuple[Tensor, Tensor]:
    """``(W_S, b_S)`` of a layer with its BatchNorm folded in (``None`` bias/gamma/beta = 0/1/0)."""
    if weight.shape[0] != mean.shape[0]:
        raise ValueError(f"weight has {weight.shape[0]} output channels but the BatchNorm has "
                         f"{mean.shape[0]}; pass the BatchNorm that follows this layer")
    gamma = torch.ones_like(mean) if gamma is None else gamma
    beta = torch.zeros_like(mean) if beta is None else beta
    bias = torch.zeros_like(mean) if bias is None else bias
    scale = gamma / torch.sqrt(var + eps)
    return weight * _per_out(scale, weight), beta + (bias - mean) * scale


def unfold_bn_weight(w_s: Tensor, gamma: Tensor | None, var: Tensor, eps: float) -> Tensor:
    """``W_A = W_S * sigma / gamma``: the ANN weight behind a folded one (gamma non-zero)."""
    gamma = torch.ones_like(var) if gamma is None else gamma
    return w_s * _per_out(torch.sqrt(var + eps) / gamma, w_s)


def bn_pairs(model: nn.Module) -> list[tuple[str, str]]:
    """``(layer name, BatchNorm name)`` for every BatchNorm of zoo ``model``, in forward order."""
    return trace_structure(model).bn_pairs


def _set_submodule(root: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, leaf, module)


@torch.no_grad()
def fold_bn(ann: nn.Module) -> nn.Module:
    """A deep copy of zoo ``ann`` (eval mode) with every BatchNorm folded into its layer.

    Each BatchNorm becomes ``nn.Identity`` and its layer gains a bias; eval-mode outputs are
    unchanged up to float rounding.
    """
    folded = copy.deepcopy(ann).eval()
    for layer_name, bn_name in bn_pairs(folded):
        layer = folded.get_submodule(layer_name)
        bn = folded.get_submodule(bn_name)
        assert isinstance(bn, _BatchNorm)
        if bn.running_mean is None or bn.running_var is None:
            raise ValueError(f"BatchNorm {bn_name!r} keeps no running statistics "
                             "(track_running_stats=False), so it cannot be folded")
        w, b = fold_bn_tensors(layer.weight, layer.bias, bn.weight, bn.bias, bn.running_mean,
                               bn.running_var, bn.eps)
        layer.weight = nn.Parameter(w)
        layer.bias = nn.Parameter(b)
        _set_submodule(folded, bn_name, nn.Identity())
    if hasattr(folded, "norm_kind") and not any(
        isinstance(m, nn.modules.normalization.GroupNorm) for m in folded.modules()
    ):
        folded.norm_kind = "none"
    return folded
