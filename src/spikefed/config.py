"""Experiment configuration: pydantic models, YAML loading, `--set key=value` overrides.

Every error names the offending key, the value given and what would be valid.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from spikefed.energy import EnergyModel
from spikefed.fl.registry import validate_params


class Strict(BaseModel):
    """Base: unknown keys are errors, assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class PartitionConfig(Strict):
    scheme: Literal["iid", "dirichlet", "pathological", "quantity"] = "dirichlet"
    beta: float = Field(0.5, gt=0, description="Dirichlet concentration (dirichlet, quantity)")
    min_size: int = Field(10, ge=1, description="minimum samples per client (dirichlet)")
    classes_per_client: int = Field(2, ge=1, description="classes per client (pathological)")


class FeatureSkewConfig(Strict):
    kind: Literal["rotation", "noise", "brightness"] = "rotation"
    strength: float = Field(30.0, ge=0)


class DataConfig(Strict):
    dataset: str = "mnist-mini"
    root: str | None = Field(None, description="data root; default: $SPIKEFED_DATA")
    num_clients: int = Field(10, ge=1)
    partition: PartitionConfig = PartitionConfig()
    feature_skew: FeatureSkewConfig | None = None
    test_subset: int | None = Field(None, ge=1, description="evaluate on the first N test samples")


class NeuronConfig(Strict):
    beta: float = Field(0.9, ge=0, le=1)
    threshold: float = Field(1.0, gt=0)
    reset: Literal["subtract", "zero", "none"] = "subtract"
    surrogate: Literal["atan", "fast_sigmoid", "sigmoid", "triangle"] = "atan"
    alpha: float = Field(2.0, gt=0)
    learn_beta: bool = False
    learn_threshold: bool = False


class ModelConfig(Strict):
    name: str = "mlp"
    spiking: bool = True
    T: int = Field(8, ge=1, le=1024)
    encoder: Literal["direct", "rate", "latency"] = "direct"
    norm: Literal["bn", "none", "gn"] = "none"
    neuron: NeuronConfig = NeuronConfig()
    kwargs: dict[str, Any] = Field(default_factory=dict, description="architecture options")


class AlgorithmConfig(Strict):
    name: str = "fedavg"
    params: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check_params(self) -> AlgorithmConfig:
        validated = validate_params(self.name, self.params)
        object.__setattr__(self, "params", validated)
        return self


class TrainConfig(Strict):
    rounds: int = Field(15, ge=1)
    local_epochs: int = Field(1, ge=1)
    batch_size: int = Field(32, ge=1)
    optimizer: Literal["sgd", "adam"] = "sgd"
    lr: float = Field(0.05, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)
    clients_per_round: int | None = Field(None, ge=1, description="sample this many per round")
    fraction: float = Field(1.0, gt=0, le=1, description="fraction sampled per round")
    straggler_prob: float = Field(0.0, ge=0, lt=1, description="chance a sampled client drops")
    min_clients: int = Field(1, ge=1, description="fewest valid uploads a round may aggregate")
    max_upload_bytes: int | None = Field(None, ge=1, description="reject larger client uploads")
    eval_every: int = Field(1, ge=1)
    eval_clients: bool = True
    eval_batch_size: int = Field(500, ge=1)
    vectorize: Literal["off", "auto", "on"] = Field(
        "off", description="train clients together with torch.func (FedAvg/FedProx, no BN): "
        "off, auto (when per-client work is small), on (error if impossible)")

    @model_validator(mode="before")
    @classmethod
    def _vectorize_from_yaml(cls, data: Any) -> Any:
        """YAML reads a bare `off`/`on` as a boolean: map it back for `vectorize`."""
        if isinstance(data, dict) and isinstance(data.get("vectorize"), bool):
            data = {**data, "vectorize": "on" if data["vectorize"] else "off"}
        return data


#: Algorithms whose clients train with the shared loop and a data-independent extra loss
#: (FedProx's proximal term, SCAFFOLD's gradient correction), so DP-SGD can replace it.
DP_SAMPLE_ALGORITHMS = ("fedavg", "fedprox", "scaffold", "solo", "centralized")
#: Algorithms whose server step is FedAvg's parameter average (DP-FedAvg replaces it).
DP_CLIENT_ALGORITHMS = ("fedavg", "fedprox", "moon")


class DPConfig(Strict):
    """Differential privacy inside training (docs/edge.md): DP-SGD or DP-FedAvg."""

    level: Literal["none", "sample", "client"] = Field(
        "none", description="none; sample: DP-SGD in local training (per-example privacy); "
        "client: DP-FedAvg on the server (per-client privacy)")
    noise_multiplier: float = Field(1.0, ge=0, description="Gaussian noise std / clip (sigma)")
    clip: float = Field(1.0, gt=0, description="L2 bound: per-sample gradient (sample) or "
                        "client update (client)")
    delta: float = Field(1e-5, gt=0, lt=1, description="delta of the reported (epsilon, delta)")


class HardwareConfig(Strict):
    """Simulated neuromorphic chips, one per client plus a held-out population (docs/edge.md)."""

    threshold_sigma: float = Field(0.0, ge=0, le=1, description="relative per-neuron spread "
                                   "of the firing threshold")
    beta_sigma: float = Field(0.0, ge=0, le=1, description="relative per-neuron spread of the "
                              "leak beta (leaky neurons)")
    weight_bits: int | None = Field(None, ge=2, le=16, description="synaptic weight precision "
                                    "(symmetric, chip's own per-tensor scale); null: float")
    read_noise: float = Field(0.0, ge=0, le=1, description="weight read noise std relative to "
                              "the tensor's largest weight, fresh every read")
    aware: bool = Field(False, description="hardware-aware training: each client trains on "
                        "its own chip")
    eval_chips: int = Field(8, ge=0, description="held-out chips the server model is "
                            "evaluated on each evaluation round")
    seed: int = Field(0, ge=0, lt=2**32, description="seed of the chips' mismatch draws")


class ExperimentConfig(Strict):
    """A whole experiment: data, model, algorithm, training and the energy model."""

    name: str = "default"
    seed: int = Field(0, ge=0, lt=2**32, description="experiment seed")
    device: Literal["cpu", "cuda", "auto"] = "cpu"
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    algorithm: AlgorithmConfig = AlgorithmConfig()
    train: TrainConfig = TrainConfig()
    energy: EnergyModel = EnergyModel()
    dp: DPConfig = DPConfig()
    hardware: HardwareConfig | None = None

    @model_validator(mode="after")
    def _check_dp(self) -> ExperimentConfig:
        level = self.dp.level
        if level == "none":
            return self
        allowed = DP_SAMPLE_ALGORITHMS if level == "sample" else DP_CLIENT_ALGORITHMS
        if self.algorithm.name not in allowed:
            why = ("its local training touches the data outside the shared DP-SGD loop "
                   "(a contrastive loss, or an ANN-to-SNN calibration)" if level == "sample" else
                   "its server step is not FedAvg's parameter average")
            raise ValueError(f"dp.level={level!r} does not support algorithm.name="
                             f"{self.algorithm.name!r}: {why}; use one of {list(allowed)} "
                             "or dp.level=none")
        if level == "sample" and self.model.norm == "bn":
            raise ValueError("dp.level='sample' with model.norm='bn': BatchNorm mixes examples, "
                             "so per-sample gradients are undefined; set model.norm=gn")
        if self.train.vectorize == "on":
            raise ValueError(f"dp.level={level!r} trains clients one by one; "
                             "set train.vectorize=off (or auto)")
        return self

    @model_validator(mode="after")
    def _check_hardware(self) -> ExperimentConfig:
        hw = self.hardware
        if hw is None:
            return self
        converted = self.algorithm.name.startswith("s-")
        if not self.model.spiking and not converted:
            raise ValueError("hardware: needs spiking neurons, but model.spiking=false (and "
                             f"algorithm.name={self.algorithm.name!r} does not convert to an "
                             "SNN); set model.spiking=true or remove the hardware section")
        if hw.aware and converted:
            raise ValueError(f"hardware.aware=true with algorithm.name={self.algorithm.name!r}:"
                             " SNFL clients train ANNs, which have no chip; set "
                             "hardware.aware=false")
        if hw.aware and self.dp.level == "sample":
            raise ValueError("hardware.aware=true cannot be combined with dp.level='sample' "
                             "(per-sample gradients bypass the chip hooks); choose one")
        if hw.aware and self.train.vectorize == "on":
            raise ValueError("hardware.aware=true trains clients one by one on their chips; "
                             "set train.vectorize=off (or auto)")
        return self


class ConfigError(ValueError):
    """A configuration problem, phrased for the user."""


def _format_validation_error(err: ValidationError, source: str) -> str:
    lines = [f"invalid configuration ({source}):"]
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "<root>"
        value = e.get("input")
        if e["type"] == "extra_forbidden":
            lines.append(f"  - unknown key '{key}'; remove it or check the spelling "
                         "(`spikefed config` prints every valid key)")
        elif e["type"] == "value_error":
            lines.append(f"  - {e['msg'].removeprefix('Value error, ')}")
        else:
            msg = e["msg"]
            lines.append(f"  - {key}={value!r}: {msg}")
    return "\n".join(lines)


def parse_value(text: str) -> Any:
    """Parse a `--set` value with YAML rules (numbers, booleans, lists, null)."""
    if text == "":
        return ""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set value {text!r} is not valid YAML ({exc.__class__.__name__}); "
                          "quote strings and close brackets, e.g. --set model.kwargs.hidden=[64]"
                          ) from None


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply `a.b.c=value` overrides to a nested dict (creating levels as needed)."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. --set train.rounds=5")
        key, value = item.split("=", 1)
        parts = key.strip().split(".")
        node = raw
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"--set {key}: '{part}' is a value, not a section")
            node = child
        node[parts[-1]] = parse_value(value)
    return raw


def load_config(path: str | Path | None = None,
                overrides: list[str] | None = None) -> ExperimentConfig:
    """Load a YAML config (or the defaults), apply overrides and validate."""
    raw: dict[str, Any] = {}
    source = "defaults"
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist; `spikefed config > my.yaml` "
                              "writes a template")
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
        if not isinstance(raw, dict):
            raise ConfigError(f"config file {path} must hold a mapping at the top level")
        source = str(path)
    raw = apply_overrides(raw, overrides or [])
    return validate_config(raw, source)


def validate_config(raw: dict[str, Any], source: str = "dict") -> ExperimentConfig:
    """Validate a raw dict, turning pydantic errors into a readable ConfigError."""
    try:
        return ExperimentConfig.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(_format_validation_error(err, source)) from None
    except ValueError as err:
        raise ConfigError(f"invalid configuration ({source}): {err}") from None


def dump_config(cfg: ExperimentConfig) -> str:
    """YAML text of a resolved config."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
