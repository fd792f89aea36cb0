"""Experiment configuration: pydantic models, YAML loading, `--set key=value` overrides.

Every error names the offending key, the value given and what would be valid.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import ConfigDict, Field, ValidationError, model_validator

from spikefed.energy import EnergyModel
from spikefed.fl.registry import validate_params
from spikefed.strict_numbers import RealNumbers


class Strict(RealNumbers):
    """Base: unknown keys are errors, assignments are validated, numbers are real numbers
    (no inf/nan, no booleans)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class PartitionConfig(Strict):
    scheme: Literal["iid", "dirichlet", "pathological", "quantity"] = "dirichlet"
    beta: float = Field(0.5, gt=0, description="Dirichlet concentration (dirichlet, quantity)")
    min_size: int = Field(10, ge=1, description="minimum samples per client (dirichlet)")
    classes_per_client: int = Field(2, ge=1, description="classes per client (pathological)")


class FeatureSkewConfig(Strict):
    kind: Literal["rotation", "noise", "brightness"] = "rotation"
    strength: float = Field(30.0, ge=0)


class EmulatorSettings(Strict):
    """Event-camera emulator for the `*-emulated` data sets (see docs/events.md)."""

    threshold: float = Field(0.4, gt=0, description="mean log-intensity contrast threshold")
    mismatch: float = Field(0.03, ge=0, description="per-pixel threshold std (log units)")
    refractory_us: int = Field(1000, ge=1, description="pixel refractory period (µs)")
    noise_hz: float = Field(0.1, ge=0, description="background events per pixel per second")
    dark: float = Field(0.1, gt=0, description="pedestal in log(dark + intensity)")
    amplitude_px: float = Field(3.0, ge=0, description="saccade triangle size (pixels)")
    saccade_us: int = Field(100_000, ge=1, description="duration of each of the 3 saccades")
    step_us: int = Field(2000, ge=1, description="time step of the emulation (µs)")
    margin: int = Field(3, ge=0, description="sensor border around the image (pixels)")
    seed: int = Field(0, ge=0, description="seed of threshold mismatch and noise")


class EventsConfig(Strict):
    """How event data sets are binned into frames `[T, C, H, W]` (see docs/events.md)."""

    T: int | None = Field(None, ge=1, le=1024,
                          description="time bins; default model.T (an SNN needs them equal)")
    window_ms: float | None = Field(None, gt=0, description="time window; default: the "
                                    "recording length (N-MNIST 300 ms)")
    bin_ms: float | None = Field(None, gt=0, description="bin width instead of window_ms "
                                 "(window = T x bin_ms)")
    start_ms: float = Field(0.0, ge=0, description="window start after the recording start")
    polarity: Literal["channels", "merge"] = Field(
        "channels", description="ON/OFF as 2 input channels, or merged into 1")
    downsample: int = Field(1, ge=1, description="spatial sum-pooling factor (divides H, W)")
    values: Literal["binary", "counts"] = Field(
        "binary", description="frames hold 0/1 (spikes) or event counts (uint8)")
    emulator: EmulatorSettings = EmulatorSettings()

    @model_validator(mode="after")
    def _one_duration(self) -> EventsConfig:
        if self.window_ms is not None and self.bin_ms is not None:
            raise ValueError(f"data.events: give window_ms ({self.window_ms}) or bin_ms "
                             f"({self.bin_ms}), not both (window = T x bin_ms)")
        return self


class DataConfig(Strict):
    dataset: str = "mnist-mini"
    root: str | None = Field(None, description="data root; default: $SPIKEFED_DATA")
    num_clients: int = Field(10, ge=1)
    partition: PartitionConfig = PartitionConfig()
    feature_skew: FeatureSkewConfig | None = None
    test_subset: int | None = Field(None, ge=1, description="evaluate on the first N test samples")
    augment: Literal["none", "auto", "crop_flip"] = Field(
        "auto", description="training augmentation per minibatch: crop_flip (random crop with "
        "4-pixel zero padding + horizontal flip), none, or auto (crop_flip for CIFAR-10/100, "
        "none otherwise); never applied to test or calibration data")
    train_subset: int | None = Field(None, ge=1, description="train on the first N samples "
                                     "(of each class in turn when the files are sorted by "
                                     "class); emulated event sets emulate only those")
    events: EventsConfig = EventsConfig()


class NeuronConfig(Strict):
    type: Literal["lif", "if"] = Field(
        "lif", description="lif (leaky, decay beta) or if (integrate-and-fire: no leak, so "
        "beta and learn_beta do not apply)")
    beta: float = Field(0.9, ge=0, le=1)
    threshold: float = Field(1.0, gt=0)
    reset: Literal["subtract", "zero", "none"] = "subtract"
    surrogate: Literal["atan", "fast_sigmoid", "sigmoid", "triangle"] = "atan"
    alpha: float = Field(2.0, gt=0)
    learn_beta: bool = False
    learn_threshold: bool = False
    reset_convention: Literal["spikefed", "snntorch"] = Field(
        "spikefed", description="spike/reset timing: spikefed (fire at v >= threshold, reset "
        "in the same step) or snntorch (fire at v > threshold, reset at the next step, as "
        "snnTorch's Leaky) for weights trained with snnTorch; see docs/snn.md")

    @model_validator(mode="after")
    def _check_leak(self) -> NeuronConfig:
        if self.type == "if" and self.learn_beta:
            raise ValueError("model.neuron.learn_beta=true with model.neuron.type='if': an IF "
                             "neuron has no leak to learn; set learn_beta=false or type=lif")
        return self

    def neuron_kwargs(self) -> dict[str, Any]:
        """The options `spikefed.snn.make_neuron` takes for this neuron type."""
        options = self.model_dump()
        if self.type == "if":
            del options["beta"], options["learn_beta"]
        return options


class ModelConfig(Strict):
    name: str = "mlp"
    spiking: bool = True
    T: int = Field(8, ge=1, le=1024)
    encoder: Literal["direct", "rate", "latency"] = "direct"
    norm: Literal["bn", "none", "gn"] = "none"
    neuron: NeuronConfig = NeuronConfig()
    kwargs: dict[str, Any] = Field(default_factory=dict, description="architecture options")
    order: Literal["auto", "step", "layer"] = Field(
        "auto", description="SNN time-step order: step (whole net one step at a time), layer "
        "(each layer over all steps), auto (layer on CUDA, step on CPU)")
    stem_once: bool = Field(
        False, description="with direct-coded static input compute the first layer once, not "
        "T times (same results within float rounding; its MACs are charged once either way)")

    @model_validator(mode="after")
    def _order_not_in_kwargs(self) -> ModelConfig:
        for key in ("order", "stem_once"):
            if key in self.kwargs:
                raise ValueError(f"model.kwargs.{key}={self.kwargs[key]!r}: set model.{key} "
                                 "instead of passing it in model.kwargs")
        return self


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
    divergence: Literal["stop", "skip_client"] = Field(
        "stop", description="a client whose training loss is non-finite or exploding: stop the "
        "run with an error, or skip_client (reject its upload, recorded in `rejected`)")
    divergence_factor: float = Field(
        100.0, gt=0, description="a training loss above this many times ln(num_classes) (a "
        "uniform guess's cross-entropy) counts as exploding")
    max_upload_abs: float | None = Field(
        1e6, gt=0, description="reject uploads holding a float value of larger magnitude "
        "(a sanity bound far above any trained weight; null: off)")
    update_norm_bound: float | None = Field(
        None, gt=0, description="bound on the L2 norm of a client's update, upload - broadcast "
        "(null: off); see train.update_norm_policy")
    update_norm_policy: Literal["reject", "clip"] = Field(
        "reject", description="an update above train.update_norm_bound is rejected, or clipped "
        "(scaled down to the bound)")
    eval_every: int = Field(1, ge=1)
    eval_clients: bool = True
    eval_batch_size: int = Field(500, ge=1)
    vectorize: Literal["off", "auto", "on"] = Field(
        "off", description="train clients together with torch.func (algorithms with a "
        "functional local objective: FedAvg, FedProx, SCAFFOLD, MOON): "
        "off, auto (when per-client work is small), on (error if impossible)")

    lr_schedule: Literal["constant", "step", "cosine"] = Field(
        "constant", description="learning rate per round: constant, step (x lr_factor at each "
        "of lr_milestones) or cosine (from lr down to lr_min over the rounds)")
    lr_milestones: list[int] = Field(default_factory=list,
                                     description="rounds at which `step` multiplies the rate")
    lr_factor: float = Field(0.1, gt=0, le=1, description="`step` decay factor per milestone")
    lr_warmup_rounds: int = Field(0, ge=0, description="linear warm-up rounds before the "
                                  "schedule (any schedule)")
    lr_min: float = Field(0.0, ge=0, description="final rate of `cosine`")
    amp: bool = Field(False, description="bf16 autocast in local training (CUDA only)")
    channels_last: bool = Field(False, description="channels-last memory format for conv "
                                "models and image batches in local training")

    @model_validator(mode="after")
    def _check_schedule(self) -> TrainConfig:
        ms = self.lr_milestones
        if self.lr_schedule == "step" and not ms:
            raise ValueError("train.lr_schedule=step needs train.lr_milestones, the rounds at "
                             "which the rate is multiplied by train.lr_factor, e.g. [61, 96]")
        if ms and self.lr_schedule != "step":
            raise ValueError(f"train.lr_milestones={ms} only applies to train.lr_schedule=step "
                             f"(got {self.lr_schedule!r}); remove it or set the schedule to step")
        if any(m < 1 for m in ms) or any(b <= a for a, b in zip(ms, ms[1:], strict=False)):
            raise ValueError(f"train.lr_milestones={ms} must be rounds >= 1 in increasing "
                             "order, e.g. [61, 96]")
        if self.lr_warmup_rounds >= self.rounds:
            raise ValueError(f"train.lr_warmup_rounds={self.lr_warmup_rounds} must be smaller "
                             f"than train.rounds={self.rounds}")
        if self.lr_schedule == "cosine" and self.lr_min >= self.lr:
            raise ValueError(f"train.lr_min={self.lr_min} must be below train.lr={self.lr} for "
                             "the cosine schedule")
        return self

    @model_validator(mode="before")
    @classmethod
    def _vectorize_from_yaml(cls, data: Any) -> Any:
        """YAML reads a bare `off`/`on` as a boolean: map it back for `vectorize`."""
        if isinstance(data, dict) and isinstance(data.get("vectorize"), bool):
            data = {**data, "vectorize": "on" if data["vectorize"] else "off"}
        return data


class MlflowConfig(Strict):
    tracking_uri: str | None = Field(
        None, description="MLflow tracking URI; default: a file store in <run dir>/mlruns")
    experiment: str = Field("spikefed", min_length=1, description="MLflow experiment name")


class ReportConfig(Strict):
    tensorboard: bool = Field(False, description="write TensorBoard event files to "
                              "<run dir>/tensorboard (needs the `tensorboard` package)")
    mlflow: MlflowConfig | None = Field(
        None, description="log params, per-round metrics and artifacts to MLflow "
        "(needs the `mlflow` extra: pip install 'spikefed[mlflow]')")


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
    report: ReportConfig = ReportConfig()
    dp: DPConfig = DPConfig()
    hardware: HardwareConfig | None = None

    @model_validator(mode="after")
    def _check_round_sizes(self) -> ExperimentConfig:
        """Rounds must be able to reach `train.min_clients` and draw `clients_per_round`."""
        t = self.train
        central = self.algorithm.name == "centralized"  # one client; sampling is clamped
        clients = 1 if central else self.data.num_clients
        if t.clients_per_round is not None and t.clients_per_round > clients and not central:
            raise ValueError(f"train.clients_per_round={t.clients_per_round} exceeds the "
                             f"{clients} client(s) of the federation (data.num_clients); lower it "
                             "or raise data.num_clients")
        per_round = min(t.clients_per_round or max(1, round(t.fraction * clients)), clients)
        if t.min_clients > per_round:
            raise ValueError(f"train.min_clients={t.min_clients} exceeds the {per_round} "
                             "participant(s) a round can have (train.clients_per_round or "
                             "train.fraction x data.num_clients), so the model would never be "
                             "aggregated; lower train.min_clients or sample more clients")
        return self

    @model_validator(mode="after")
    def _check_amp_device(self) -> ExperimentConfig:
        if self.train.amp and self.device == "cpu":
            raise ValueError("train.amp=true needs a CUDA GPU (bf16 autocast) but device='cpu'; "
                             "set train.amp=false or device=cuda")
        return self

    @model_validator(mode="after")
    def _check_event_data(self) -> ExperimentConfig:
        """Event data: frames are the SNN's time steps (T agrees, no encoder, no image skew)."""
        from spikefed.data.event_sets import is_event_dataset

        d, m = self.data, self.model
        if not is_event_dataset(d.dataset):
            return self
        if m.spiking and d.events.T is not None and d.events.T != m.T:
            raise ValueError(f"data.events.T={d.events.T} but model.T={m.T}: each event frame "
                             f"is one SNN time step; set both to the same value (or drop "
                             f"data.events.T to use model.T)")
        if m.spiking and m.encoder != "direct":
            raise ValueError(f"model.encoder={m.encoder!r} with event data set {d.dataset!r}: "
                             "event frames are spikes already and bypass the encoder; set "
                             "model.encoder=direct")
        if d.feature_skew is not None:
            raise ValueError(f"data.feature_skew applies to images, not to event data set "
                             f"{d.dataset!r}; remove data.feature_skew")
        return self

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
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise ConfigError(f"config file {path} is not UTF-8 text (byte {exc.start} is "
                              f"{exc.object[exc.start:exc.start + 1]!r}); is it a binary file? "
                              "`spikefed config > my.yaml` writes a template") from None
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None
        try:
            raw = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
        if raw is None:
            raise ConfigError(f"config file {path} is empty (or only comments); write `{{}}` in "
                              "it to run the defaults, or `spikefed config > my.yaml` for a "
                              "template")
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
