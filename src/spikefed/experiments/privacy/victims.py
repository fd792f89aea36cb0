"""The privacy benchmark's victims: the ground-truth samples an attacker tries to recover and
the ANN/SNN models (twins with the same weights) whose updates it observes."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from spikefed.data import load_dataset
from spikefed.data.files import DATA_ENV
from spikefed.experiments.privacy.config import AttackConfig
from spikefed.experiments.privacy.plan import model_kinds
from spikefed.models import build_model
from spikefed.privacy.clients import build_twins, image_raster, set_ann_activation
from spikefed.privacy.event_victims import event_victims


def load_victim_data(
    cfg: AttackConfig, domain: str, device: torch.device | str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Ground-truth samples ``[N, ...]`` and labels for ``domain`` on ``device``.

    Temporal domains give ``[N, T, ...]`` samples.
    """
    n = cfg.data.samples * cfg.threat.batch_size
    if domain == "events":
        root = cfg.data.root or os.environ.get(DATA_ENV)
        if not root and cfg.domain.events_source in ("nmnist", "dvs-gesture"):
            raise ValueError(
                f"domain 'events' with events_source={cfg.domain.events_source!r} reads the data "
                f"root: set data.root (or ${DATA_ENV}) to the folder holding nmnist_small/ or "
                "dvs_gesture_10/, or set domain.events_source=auto (bundled N-MNIST fallback)"
            )
        x, y = event_victims(
            cfg.domain.events_source, Path(root) if root else None, n, cfg.data.start,
            cfg.domain.event_steps,
        )
        return x.to(device), y.to(device)
    ds = load_dataset(
        cfg.data.dataset, "test", **({"root": cfg.data.root} if cfg.data.root else {})
    )
    x = torch.as_tensor(ds.x[cfg.data.start : cfg.data.start + n], device=device).float()
    y = torch.as_tensor(ds.y[cfg.data.start : cfg.data.start + n], device=device).long()
    if len(y) < n:
        raise ValueError(
            f"data.samples x threat.batch_size = {n} exceeds the {len(y)} test images "
            f"after data.start={cfg.data.start}"
        )
    return (image_raster(x) if domain == "raster" else x), y


def _pretrain(model: torch.nn.Module, cfg: AttackConfig, seed: int) -> None:
    """``trained_rounds`` FedAvg rounds (2 IID clients, 256 images each) on mnist-mini train.

    Runs on the CPU (``model`` is still there), so every device attacks the same weights.
    """
    if cfg.data.dataset != "mnist-mini" or cfg.domain.kinds != ["image"]:
        raise ValueError(
            "model.trained_rounds > 0 is supported for data.dataset='mnist-mini' with "
            "domain.kinds=[image]; set model.trained_rounds=0 otherwise"
        )
    from spikefed.fl.base import ClientData, TrainContext
    from spikefed.fl.fedavg import FedAvg

    ds = load_dataset("mnist-mini", "train")
    x = torch.as_tensor(ds.x[:512], device="cpu").float()
    y = torch.as_tensor(ds.y[:512], device="cpu").long()
    algo = FedAvg()
    state, bcast = algo.init_server(model)
    for r in range(cfg.model.trained_rounds):
        ctx = TrainContext(model_fn=lambda: model, batch_size=32, lr=0.05, seed=seed, round=r)
        ups = [
            algo.client_update(c, bcast, {}, ClientData(x[c::2], y[c::2]), ctx)[0]
            for c in range(2)
        ]
        state, bcast = algo.aggregate(state, ups)
    model.load_state_dict(bcast)



def models_for(
    domain: str, cfg: AttackConfig, sample_shape: tuple[int, ...], seed: int, device: torch.device
):
    """``{kind: model}`` on ``device`` for a domain (raster and spike codings: SNN only; events:
    the ANN sees the time bins stacked as channels, see ``InputDomain.stacked``).

    Weights are initialised (and pre-trained) on the CPU, so every device attacks the same model.
    """
    in_shape = sample_shape[1:] if domain in ("events", "raster") else sample_shape
    encoder = domain if domain in ("rate", "latency") else "direct"
    m = cfg.model
    ann, snn = build_twins(
        m.name,
        in_shape,
        10,
        T=m.T,
        encoder=encoder,
        norm=m.norm,
        neuron=m.neuron,
        options=m.options,
        ann_activation=m.ann_activation,
        seed=seed,
    )
    if m.trained_rounds:
        _pretrain(ann, cfg, seed)
        snn.load_state_dict(ann.state_dict())
    if domain == "events":
        torch.manual_seed(seed)
        stacked = (sample_shape[0] * sample_shape[1], *sample_shape[2:])
        ann = build_model(m.name, spiking=False, in_shape=stacked, num_classes=10, T=m.T,
                          norm=m.norm, **m.options)
        set_ann_activation(ann, m.ann_activation).train()
    ann, snn = ann.to(device), snn.to(device)
    return {k: (ann if k == "ann" else snn) for k in model_kinds(cfg, domain)}, ann

