"""Assemble an experiment from a config: data per client, model factory, algorithm.

Both engines (in-process `sim` and the Flower adapter) start from `build_federation`, so the
same config means the same clients, data and initial model everywhere.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from spikefed.config import ExperimentConfig
from spikefed.data import ArrayDataset, feature_skew, load_dataset, partition
from spikefed.data.augment import resolve_augment
from spikefed.data.binning import EventBinning
from spikefed.data.emulate import EmulatorConfig
from spikefed.data.event_sets import is_event_dataset, leading_samples, load_event_dataset
from spikefed.drift.consolidation import Consolidation
from spikefed.drift.tasks import DriftData, build_drift
from spikefed.fl.aggregators import build_aggregator
from spikefed.fl.base import Algorithm, ClientData, TrainContext
from spikefed.fl.dp import make_private
from spikefed.fl.on_chip import OnChipTraining, chip_for
from spikefed.fl.registry import build_algorithm
from spikefed.fl.schedule import scheduled_lr
from spikefed.models import build_model
from spikefed.snn.hardware import place_on_chip


def resolve_device(name: str) -> torch.device:
    """'auto' picks CUDA when present; asking for CUDA without it is a clear error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' but no CUDA GPU is visible; use --device cpu or auto")
    return torch.device(name)


def resolve_order(order: str, device: torch.device) -> str:
    """`model.order`: `auto` is layer order on CUDA (fewer, larger kernels: 2x on the FC net
    in docs/benchmarks.md) and step order on CPU (faster there for conv SNNs)."""
    if order != "auto":
        return order
    return "layer" if device.type == "cuda" else "step"


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
    #: the task schedule of `cfg.drift` (continual learning), None without drift
    drift: DriftData | None = None

    def clients_for_round(self, round_idx: int) -> Sequence[ClientData]:
        """The clients' training data in round `round_idx` (drift: that round's tasks)."""
        return self.clients if self.drift is None else self.drift.round_clients(round_idx)

    def initial_model(self) -> nn.Module:
        """The seeded initial global model (same weights in every engine)."""
        torch.manual_seed(self.cfg.seed)
        return self.model_fn()

    def train_context(self, round_idx: int) -> TrainContext:
        """The clients' training context of round `round_idx` (rate from the lr schedule)."""
        t = self.cfg.train
        return TrainContext(model_fn=self.model_fn, local_epochs=t.local_epochs,
                            batch_size=t.batch_size, lr=round_lr(self.cfg, round_idx),
                            momentum=t.momentum, weight_decay=t.weight_decay,
                            optimizer=t.optimizer, device=self.device, seed=self.cfg.seed,
                            round=round_idx,
                            augment=resolve_augment(self.cfg.data.augment, self.cfg.data.dataset),
                            amp=t.amp, channels_last=t.channels_last,
                            count_activity=self.cfg.energy.count_training)


def round_lr(cfg: ExperimentConfig, round_idx: int) -> float:
    """The learning rate clients train with in round `round_idx` (train.lr_schedule)."""
    t = cfg.train
    return scheduled_lr(max(1, round_idx), t.lr, t.rounds, t.lr_schedule,
                        milestones=t.lr_milestones, factor=t.lr_factor,
                        warmup=t.lr_warmup_rounds, min_lr=t.lr_min)


def check_recipe(cfg: ExperimentConfig, device: torch.device) -> None:
    """Reject recipe options the resolved device cannot honour (`train.amp` off CUDA)."""
    if cfg.train.amp and device.type != "cuda":
        raise ValueError(f"train.amp=true needs a CUDA GPU (bf16 autocast), but device="
                         f"{cfg.device!r} resolved to {device.type}; set train.amp=false")


def model_factory(cfg: ExperimentConfig, in_shape: tuple[int, ...], num_classes: int,
                  factory: Callable[..., nn.Module] | None = None) -> Callable[[], nn.Module]:
    """A zero-argument builder of the configured model.

    ``factory`` (or ``model.name: "package.module:factory"``) brings your own network; it is
    wrapped by :class:`spikefed.models.foreign.ForeignModel` (snnTorch/SpikingJelly aware).
    """
    m = cfg.model
    if factory is not None or ":" in m.name:
        from spikefed.models.foreign import foreign_model_fn, load_factory

        return foreign_model_fn(factory or load_factory(m.name), in_shape, num_classes, T=m.T,
                                encoder=m.encoder, kwargs=m.kwargs)
    order = resolve_order(m.order, resolve_device(cfg.device))

    events = {"temporal_input": "batch_first"} if is_event_dataset(cfg.data.dataset) else {}

    def build() -> nn.Module:
        return build_model(m.name, spiking=m.spiking, in_shape=in_shape, num_classes=num_classes,
                           T=m.T, neuron=m.neuron.neuron_kwargs(), encoder=m.encoder, norm=m.norm,
                           order=order, stem_once=m.stem_once, **events, **m.kwargs)

    return build


def event_binning(cfg: ExperimentConfig) -> EventBinning:
    """The `EventBinning` of `data.events` (T defaults to model.T)."""
    e = cfg.data.events
    T = e.T if e.T is not None else cfg.model.T
    window = e.window_ms if e.bin_ms is None else e.bin_ms * T
    return EventBinning(T=T, window_us=None if window is None else round(window * 1000),
                        start_us=round(e.start_ms * 1000), polarity=e.polarity,
                        downsample=e.downsample, values=e.values)


def load_event_splits(cfg: ExperimentConfig) -> tuple[ArrayDataset, ArrayDataset]:
    """Train and test event frames of `data.dataset` binned per `data.events`."""
    d = cfg.data
    emulator = EmulatorConfig(**d.events.emulator.model_dump())
    b = event_binning(cfg)
    return (load_event_dataset(d.dataset, "train", d.root, b, limit=d.train_subset,
                               emulator=emulator),
            load_event_dataset(d.dataset, "test", d.root, b, limit=d.test_subset,
                               emulator=emulator))


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


def build_federation(cfg: ExperimentConfig,
                     model: Callable[..., nn.Module] | None = None) -> Federation:
    """Load data, split it across clients and build the model factory and algorithm;
    ``model``: your own network factory instead of ``cfg.model.name`` (see `model_factory`)."""
    device = resolve_device(cfg.device)
    check_recipe(cfg, device)
    if is_event_dataset(cfg.data.dataset):
        train, test = load_event_splits(cfg)
    else:
        train = load_dataset(cfg.data.dataset, "train", cfg.data.root)
        test = load_dataset(cfg.data.dataset, "test", cfg.data.root)
        if cfg.data.train_subset is not None:
            train = train.subset(leading_samples(train.y.numpy(), cfg.data.train_subset))
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
    model_fn = model_factory(cfg, train.in_shape, train.num_classes, model)
    algorithm = build_algorithm(cfg.algorithm.name, cfg.algorithm.params)
    algorithm.use_combiner(build_aggregator(cfg.aggregator).combine)
    if cfg.dp.level != "none":
        with torch.random.fork_rng(devices=[]):  # building a model must not move the RNG
            algorithm = make_private(algorithm, cfg, model_fn())
    algorithm = on_chip_algorithm(algorithm, cfg, model_fn)
    drift = build_drift(cfg, clients, test.x, test.y, train.num_classes, train.in_shape)
    if cfg.drift is not None and cfg.drift.consolidation != "none":
        d = cfg.drift
        algorithm = Consolidation(algorithm, d.consolidation, d.strength, d.fisher_samples)
    return Federation(cfg, clients, parts, labels, list(train.classes), test.x, test.y, model_fn,
                      algorithm, device, drift)
