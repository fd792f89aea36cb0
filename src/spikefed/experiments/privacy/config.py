"""The privacy benchmark's config: the attack config schema (``configs/attack*.yaml``), its
loader, the device it runs on, and the SNFL paper's DLG comparison as a config."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import Field, ValidationError

from spikefed.config import ConfigError, Strict, _format_validation_error, apply_overrides
from spikefed.experiment import resolve_device
from spikefed.yamlfile import read_yaml_mapping

AttackName = Literal["dlg", "idlg", "ig", "statprior"]


# configuration ------------------------------------------------------------------------------
class DataSection(Strict):
    dataset: Literal["mnist-mini", "mnist", "fashion-mnist", "cifar10"] = "mnist-mini"
    root: str | None = Field(None, description="data root for non-bundled sets and events")
    start: int = Field(0, ge=0, description="index of the first test sample attacked")
    samples: int = Field(3, ge=1, description="batches attacked per seed")


class ModelSection(Strict):
    name: str = "mlp"
    options: dict[str, Any] = Field(default_factory=lambda: {"hidden": [64]})
    norm: Literal["bn", "none", "gn"] = "none"
    T: int = Field(4, ge=1)
    ann_activation: Literal["relu", "sigmoid"] = "sigmoid"
    neuron: dict[str, Any] = Field(default_factory=lambda: {"surrogate": "sigmoid", "alpha": 4.0})
    kinds: list[Literal["ann", "snn"]] = Field(default_factory=lambda: ["ann", "snn"])
    trained_rounds: int = Field(0, ge=0, description="FedAvg rounds before the attack")


class ThreatSection(Strict):
    kind: Literal["fedsgd", "fedavg"] = "fedsgd"
    local_steps: int = Field(1, ge=1)
    lr: float = Field(0.1, gt=0)
    batch_size: int = Field(1, ge=1, le=64)
    unknown_batch_size: bool = False


class DomainSection(Strict):
    kinds: list[Literal["image", "rate", "latency", "events", "raster"]] = Field(
        default_factory=lambda: ["image"]
    )
    relax: Literal["expected", "ste"] = "expected"
    tau: float = Field(0.5, gt=0)
    event_steps: int = Field(10, ge=1)
    events_source: Literal["nmnist", "nmnist-bundled", "dvs-gesture", "auto"] = Field(
        "nmnist", description="recordings of the events domain (see privacy.event_victims)"
    )


class DLGSection(Strict):
    iterations: int = Field(30, ge=1)
    inner_iter: int = Field(20, ge=1)
    lr: float = Field(1.0, gt=0)
    line_search: bool = True


class IGSection(Strict):
    iterations: int = Field(200, ge=1)
    lr: float = Field(0.1, gt=0)
    tv: float = Field(1e-4, ge=0)
    restarts: int = Field(1, ge=1)


class StatPriorSection(IGSection):
    bn_weight: float = Field(0.01, ge=0)
    threshold_weight: float = Field(0.1, ge=0)
    probe_iterations: int = Field(40, ge=1)


class DefenseSection(Strict):
    kind: Literal["none", "noise", "prune", "dpsgd", "snfl"] = "none"
    sigma: float = Field(0.0, ge=0)
    ratio: float = Field(0.0, ge=0, lt=1)
    clip: float = Field(1.0, gt=0)


class AttackConfig(Strict):
    name: str = "attack"
    device: Literal["cpu", "cuda", "auto"] = Field(
        "cpu", description="where models, data and attacks run; auto = cuda when visible"
    )
    seeds: list[int] = Field(default_factory=lambda: [0])
    attacks: list[AttackName] = Field(default_factory=lambda: ["dlg", "idlg", "ig"])
    data: DataSection = DataSection()
    model: ModelSection = ModelSection()
    threat: ThreatSection = ThreatSection()
    domain: DomainSection = DomainSection()
    dlg: DLGSection = DLGSection()
    ig: IGSection = IGSection()
    statprior: StatPriorSection = StatPriorSection()
    defenses: list[DefenseSection] = Field(default_factory=lambda: [DefenseSection()])
    snfl_calibration: int = Field(64, ge=1, description="client calibration images (snfl)")
    record_every: int = Field(1, ge=1, description="history every N iterations")


def load_attack_config(path: str | Path | None, overrides: list[str] | None = None) -> AttackConfig:
    """Read a YAML attack config (or the defaults), apply ``--set`` overrides, validate."""
    raw: dict[str, Any] = {}
    source = "defaults"
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(
                f"attack config {path} does not exist; see configs/attack_*.yaml"
            )
        raw = read_yaml_mapping(path, "attack config")
        source = str(path)
    raw = apply_overrides(raw, overrides or [])
    try:
        return AttackConfig.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(_format_validation_error(err, source)) from None


def attack_device(cfg: AttackConfig) -> torch.device:
    """The torch device for ``cfg.device`` ('auto': CUDA when visible, else the CPU)."""
    try:
        return resolve_device(cfg.device)
    except ValueError as err:
        raise ValueError(
            f"attack config: {err} (or set device: cpu or device: auto in the config)"
        ) from None



def snfl_attack_config(
    iterations: int = 40, samples: int = 2, device: str = "cpu"
) -> AttackConfig:
    """The SNFL paper's DLG comparison on offline data: LeNet-5, batch 1, one FedSGD gradient.

    FedAvg arm: the ANN with sigmoid activations (DLG's own LeNet setting, which the SNFL paper
    follows) and L-BFGS with 20 inner iterations and strong-Wolfe line search (DLG's best
    chance). SNFL arm: the ReLU network with the same weights, converted to the IF-neuron SNN
    the protocol uploads; the attacker differentiates that SNN white-box.
    """
    raw = {
        "name": "snfl-attack",
        "device": device,
        "attacks": ["dlg", "idlg"],
        "data": {"samples": samples},
        "model": {
            "name": "lenet5",
            "options": {},
            "ann_activation": "sigmoid",
            "kinds": ["ann"],
            "T": 8,
        },
        "dlg": {"iterations": iterations, "inner_iter": 20, "line_search": True},
        "defenses": [{"kind": "none"}, {"kind": "snfl"}],
        "record_every": 1,
    }
    try:
        return AttackConfig.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(_format_validation_error(err, "snfl-attack")) from None
