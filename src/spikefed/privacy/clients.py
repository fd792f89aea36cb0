"""Victim models and data for the benchmark: ANN/SNN twins and per-domain samples."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from spikefed.models import build_model
from spikefed.privacy.domains import InputDomain

ANN_ACTIVATIONS = ("relu", "sigmoid")


def set_ann_activation(model: nn.Module, kind: str) -> nn.Module:
    """Make every ``nn.ReLU``/``nn.Sigmoid`` of an ANN the activation ``kind``, in place.

    Parameter names do not change (both are parameter-free), so ANN and SNN still share a
    ``state_dict``. DLG was introduced on sigmoid networks, whose smooth gradients L-BFGS
    inverts reliably; ANN-to-SNN conversion (SNFL) needs ``relu``.
    """
    if kind not in ANN_ACTIVATIONS:
        raise ValueError(
            f"ann_activation={kind!r} is unknown; choose one of {list(ANN_ACTIVATIONS)}"
        )
    act = nn.ReLU if kind == "relu" else nn.Sigmoid
    for parent in list(model.modules()):
        for name, child in parent.named_children():
            if isinstance(child, (nn.ReLU, nn.Sigmoid)) and not isinstance(child, act):
                setattr(parent, name, act())
    return model


def build_twins(
    name: str,
    in_shape: tuple[int, ...],
    num_classes: int,
    *,
    T: int,
    encoder: str,
    norm: str,
    neuron: dict[str, Any],
    options: dict[str, Any],
    ann_activation: str,
    seed: int,
) -> tuple[nn.Module, nn.Module]:
    """An ANN and an SNN of the same architecture; the SNN loads the ANN's weights."""
    torch.manual_seed(seed)
    ann = build_model(
        name, spiking=False, in_shape=in_shape, num_classes=num_classes, T=T, norm=norm, **options
    )
    set_ann_activation(ann, ann_activation)
    snn = build_model(
        name,
        spiking=True,
        in_shape=in_shape,
        num_classes=num_classes,
        T=T,
        encoder=encoder,
        norm=norm,
        neuron=neuron,
        **options,
    )
    snn.load_state_dict(ann.state_dict())
    return ann.train(), snn.train()


def image_raster(x: Tensor, threshold: float = 0.5) -> Tensor:
    """Audio-like spike rasters ``[N, T, channels]`` synthesised from real images.

    No spoken-digit spike data (SHD) is available offline, so image rows become time bins and
    columns become channels: a binary raster with the shape and sparsity of an audio raster,
    whose content is a real MNIST digit. It is an input-domain stand-in, not SHD.
    """
    if x.dim() != 4 or x.shape[1] != 1:
        raise ValueError(f"images of shape {tuple(x.shape)}: expected [N, 1, H, W]")
    return (x[:, 0] >= threshold).float()


def nmnist_samples(
    root: Path, count: int, start: int = 0, n_steps: int = 10, dt_us: int = 30_000
) -> tuple[Tensor, Tensor]:
    """N-MNIST test recordings as CPU binary frames ``[N, T, 2, 17, 17]`` (34x34 OR-pooled by 2)."""
    from spikefed.data.events import load_nmnist_subset, nmnist_frames

    archive = Path(root) / "nmnist_small" / "NMNISTsmall.tar.gz"
    _, events, labels = load_nmnist_subset(archive, "test")
    if start + count > len(events):
        raise ValueError(
            f"data.start + data.samples = {start + count} exceeds the "
            f"{len(events)} N-MNIST test recordings"
        )
    frames = [
        nmnist_frames(e, dt_us=dt_us, n_steps=n_steps, pool=2, merge_polarity=False)
        for e in events[start : start + count]
    ]
    return (
        torch.as_tensor(np.stack(frames), device="cpu").float(),
        torch.as_tensor(labels[start : start + count], device="cpu").long(),
    )


def domain_for(
    kind: str, sample_shape: tuple[int, ...], T: int, relax: str, tau: float
) -> InputDomain:
    """The attacker's input domain for data of per-sample shape ``sample_shape``."""
    temporal = kind in ("events", "raster")
    return InputDomain(
        kind, tuple(sample_shape), T=sample_shape[0] if temporal else T, relax=relax, tau=tau
    )
