"""Assemble an experiment from a config: data per client, model factory, algorithm.

Both engines (in-process `sim` and the Flower adapter) start from `build_federation`, so the
same config means the same clients, data and initial model everywhere.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from spikefed.config import ExperimentConfig
from spikefed.data import feature_skew, load_dataset, partition
from spikefed.fl.base import Algorithm, ClientData, TrainContext
from spikefed.fl.dp import make_private
from spikefed.fl.on_chip import OnChipTraining, chip_for
from spikefed.fl.registry import build_algorithm
from spikefed.models import build_model
from spikefed.snn.hardware import place_on_chip


def resolve_device(name: str) -> torch.device:
    """'auto' picks CUDA when present; asking for CUDA without it is a clear error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' but no CUDA GPU is visible; use --device cpu or auto")
    return torch.device(name)


@dataclass
class Federation:
    """Everything an engine needs to run one experiment."""

    cfg: ExperimentConfig
    clients: list[ClientData]
    partitions: list[np.ndarray]
    train_labels: np.ndarray
    classes: list[str]
    test_x: torch.Tensor
    test_y: torch.Tensor
    model_fn: Callable[[], nn.Module]
    algorithm: Algorithm
    device: torch.device

    def initial_model(self) -> nn.Module:
        """The seeded initial global model (same weights in every engine)."""
        torch.manual_seed(self.cfg.seed)
        return self.model_fn()

    def train_context(self, round_idx: int) -> TrainContext:
        t = self.cfg.train
        return TrainContext(model_fn=self.model_fn, local_epochs=t.local_epochs,
                            batch_size=t.batch_size, lr=t.lr, momentum=t.momentum,
                            weight_decay=t.weight_decay, optimizer=t.optimizer,
                            device=self.device, seed=self.cfg.seed, round=round_idx)


def model_factory(cfg: ExperimentConfig, in_shape: tuple[int, ...], num_classes: int
                  ) -> Callable[[], nn.Module]:
    """A zero-argument builder of the configured model."""
    m = cfg.model

    def build() -> nn.Module:
        return build_model(m.name, spiking=m.spiking, in_shape=in_shape, num_classes=num_classes,
                           T=m.T, neuron=m.neuron.model_dump(), encoder=m.encoder, norm=m.norm,
                           **m.kwargs)

    return build


def on_chip_algorithm(algorithm: Algorithm, cfg: ExperimentConfig,
                      model_fn: Callable[[], nn.Module]) -> Algorithm:
    """Check the model can go on a chip; wrap for hardware-aware training when asked."""
    hw = cfg.hardware
    if hw is None:
        return algorithm
    with torch.random.fork_rng(devices=[]):  # building a model must not move the RNG
        if not cfg.algorithm.name.startswith("s-"):  # SNFL: the server SNN is converted later
            place_on_chip(model_fn(), chip_for(hw, 0))
    if not hw.aware:
        return algorithm
    return OnChipTraining(algorithm, lambda cid: chip_for(hw, cid))


def build_federation(cfg: ExperimentConfig) -> Federation:
    """Load data, split it across clients and build the model factory and algorithm."""
    train = load_dataset(cfg.data.dataset, "train", cfg.data.root)
    test = load_dataset(cfg.data.dataset, "test", cfg.data.root)
    if cfg.data.test_subset is not None:
        test = test.subset(np.arange(min(cfg.data.test_subset, len(test))))
    labels = train.y.numpy()
    p = cfg.data.partition
    if cfg.algorithm.name == "centralized":
        parts = [np.arange(len(labels))]
    else:
        params = {"dirichlet": {"beta": p.beta, "min_size": p.min_size},
                  "pathological": {"classes_per_client": p.classes_per_client},
                  "quantity": {"beta": p.beta}, "iid": {}}[p.scheme]
        parts = partition(labels, cfg.data.num_clients, p.scheme, cfg.seed, **params)
    transforms: list = [None] * len(parts)
    if cfg.data.feature_skew is not None:
        fs = cfg.data.feature_skew
        transforms = feature_skew(len(parts), kind=fs.kind, strength=fs.strength, seed=cfg.seed)
    clients = [ClientData(train.x[torch.as_tensor(idx)], train.y[torch.as_tensor(idx)], tf)
               for idx, tf in zip(parts, transforms, strict=True)]
    model_fn = model_factory(cfg, train.in_shape, train.num_classes)
    algorithm = build_algorithm(cfg.algorithm.name, cfg.algorithm.params)
    if cfg.dp.level != "none":
        with torch.random.fork_rng(devices=[]):  # building a model must not move the RNG
            algorithm = make_private(algorithm, cfg, model_fn())
    algorithm = on_chip_algorithm(algorithm, cfg, model_fn)
    return Federation(cfg, clients, parts, labels, list(train.classes), test.x, test.y, model_fn,
                      algorithm, resolve_device(cfg.device))
