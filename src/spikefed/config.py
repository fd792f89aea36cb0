"""Experiment configuration: pydantic models, YAML loading, `--set key=value` overrides.

Every error names the offending key, the value given and what would be valid.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import ConfigDict, Field, ValidationError, model_validator

from spikefed.energy import EnergyModel
from spikefed.fl.aggregators import aggregator_spec
from spikefed.fl.registry import validate_params
from spikefed.snn.neurons import NEURONS, neuron_options
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
    type: str = Field(
        "lif", description="a registered neuron (`spikefed.snn.register_neuron`): lif (leaky, "
        "decay beta) or if (integrate-and-fire: no leak, so beta and learn_beta do not apply)")
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
    def _check_type(self) -> NeuronConfig:
        if self.type not in NEURONS:
            raise ValueError(f"model.neuron.type={self.type!r} is unknown; choose one of "
                             f"{sorted(NEURONS)}")
        if self.learn_beta and "learn_beta" not in neuron_options(self.type):
            raise ValueError(f"model.neuron.learn_beta=true with model.neuron.type="
                             f"{self.type!r}: an {NEURONS[self.type].__name__} neuron has no "
                             "leak to learn; set learn_beta=false or type=lif")
        return self

    def neuron_kwargs(self) -> dict[str, Any]:
        """The options `spikefed.snn.make_neuron` takes for this neuron type (options the
        type has no use for, such as an IF neuron's beta, are left out)."""
        accepted = neuron_options(self.type) | {"type", "reset_convention"}
        return {k: v for k, v in self.model_dump().items() if k in accepted}


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


class CodecConfig(Strict):
    """Compression of client updates (upload - broadcast) on the wire (docs/communication.md)."""

    name: Literal["none", "topk", "qsgd", "sign"] = Field(
        "none", description="none (lossless, the tensors as they are), topk (the largest "
        "`fraction` of each tensor's entries: values + indices), qsgd (stochastic unbiased "
        "quantisation to `bits` bits with a per-tensor scale) or sign (1 bit + a scale)")
    fraction: float = Field(0.01, gt=0, le=1, description="topk: fraction of each tensor's "
                            "entries sent (at least one)")
    bits: int = Field(8, ge=1, le=16, description="qsgd: bits per entry")
    error_feedback: bool | None = Field(
        None, description="keep what the codec did not send in client state and add it to the "
        "next update; null: the codec's default (on for sign, off otherwise)")

    @model_validator(mode="after")
    def _check_codec_options(self) -> CodecConfig:
        if self.name == "none" and self.error_feedback:
            raise ValueError("train.codec.error_feedback=true with train.codec.name=none: the "
                             "none codec is lossless, nothing is left to feed back; remove it "
                             "or choose topk, qsgd or sign")
        return self

    @property
    def uses_error_feedback(self) -> bool:
        """Whether the residual is kept (the codec's default when `error_feedback` is null)."""
        if self.error_feedback is None:
            return self.name == "sign"
        return self.error_feedback


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
    codec: CodecConfig = Field(
        CodecConfig(), description="compression of client updates on the wire, applied by "
        "both engines' upload pipeline (docs/communication.md)")

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


class AggregatorConfig(Strict):
    """How the server aggregates a round's uploads (`spikefed.fl.aggregators`)."""

    name: str = Field("mean", description="mean (sample-weighted, default), median, "
                      "trimmed_mean, krum, multi_krum or threshold (SNFL only)")
    num_byzantine: int = Field(1, ge=0, description="krum / multi_krum: clients assumed "
                               "Byzantine (f); Krum scores need n - f - 2 >= 1")
    trim: int = Field(1, ge=0, description="trimmed_mean: values dropped at each end per "
                      "coordinate")
    z: float = Field(3.0, gt=0, description="threshold: an upload whose threshold-vector "
                     "distance exceeds median + z x 1.4826 x MAD is dropped")

    @model_validator(mode="after")
    def _check_name(self) -> AggregatorConfig:
        aggregator_spec(self.name)
        return self


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


#: Algorithms whose clients train from the broadcast through `spikefed.fl.local.local_train`,
#: so a consolidation penalty (drift.consolidation) reaches their local objective.
DRIFT_CONSOLIDATION_ALGORITHMS = ("fedavg", "fedprox", "scaffold", "moon", "centralized")


class DriftConfig(Strict):
    """Continual federated learning: a schedule of tasks over rounds (docs/edge.md)."""

    kind: Literal["class_incremental", "domain"] = Field(
        "class_incremental", description="class_incremental: task k holds classes "
        "[k*classes_per_task, (k+1)*classes_per_task); domain: every task holds all classes, "
        "task k seen through domain transform k")
    classes_per_task: int = Field(2, ge=1, description="class_incremental: labels per task")
    tasks: int | None = Field(None, ge=1, description="number of tasks; class_incremental: "
                              "null = all label groups; domain: required")
    domain: Literal["rotation", "permutation", "brightness", "noise"] = Field(
        "rotation", description="domain: transform family (data.feature_skew's, plus a seeded "
        "pixel permutation); task 0 is the raw data")
    domain_strength: float = Field(90.0, ge=0, description="domain: task k gets level "
                                   "k * domain_strength / tasks (degrees, brightness factor - 1, "
                                   "noise sigma; unused by permutation)")
    rounds_per_task: int = Field(5, ge=1, description="rounds each task lasts")
    gradual_rounds: int = Field(0, ge=0, description="gradual drift: over this many rounds "
                                "before a switch the next task's share of the data grows "
                                "linearly (0: abrupt switches)")
    client_offset: int = Field(0, ge=0, description="per-client timing: client i's schedule "
                               "starts a seeded 0..client_offset rounds late (fixed per client)")
    joint: bool = Field(False, description="baseline: clients train on all tasks at once "
                        "every round (the schedule then only sets the evaluation)")
    consolidation: Literal["none", "ewc", "proximal"] = Field(
        "none", description="at a task switch the client keeps the broadcast as anchor; ewc: "
        "lambda/2 sum F (w - anchor)^2 with the diagonal Fisher F of its previous task(s); "
        "proximal: lambda/2 ||w - anchor||^2")
    strength: float = Field(0.0, ge=0, description="consolidation strength lambda")
    fisher_samples: int = Field(256, ge=1, description="ewc: samples of the previous task the "
                                "Fisher diagonal is estimated on (per-sample gradients)")

    @model_validator(mode="after")
    def _check_schedule(self) -> DriftConfig:
        if self.kind == "domain" and self.tasks is None:
            raise ValueError("drift.kind='domain' needs drift.tasks, the number of domains; "
                             "e.g. drift.tasks=4")
        if self.gradual_rounds >= self.rounds_per_task:
            raise ValueError(f"drift.gradual_rounds={self.gradual_rounds} must be smaller than "
                             f"drift.rounds_per_task={self.rounds_per_task} (a task must have "
                             "pure rounds); lower gradual_rounds or raise rounds_per_task")
        if self.joint and self.consolidation != "none":
            raise ValueError(f"drift.joint=true trains every task at once, so "
                             f"drift.consolidation={self.consolidation!r} has no task switch to "
                             "consolidate at; set drift.consolidation=none or drift.joint=false")
        if self.consolidation == "none" and self.strength != 0:
            raise ValueError(f"drift.strength={self.strength} has no effect with "
                             "drift.consolidation='none'; set drift.consolidation=ewc or "
                             "proximal, or drift.strength=0")
        return self
#: Algorithms the asynchronous engine runs: they upload whole models, so a client's update is
#: its upload minus the model version it was dispatched with (docs/async.md).
ASYNC_ALGORITHMS = ("fedavg", "fedprox")


class ClockConfig(Strict):
    """The virtual clock of asynchronous runs: each device's speed and link latency, drawn
    once per device from the run's seed (docs/async.md)."""

    seconds_per_sample: float = Field(0.01, gt=0, description="virtual compute time of one "
                                      "training sample-epoch on a device of speed 1")
    speed_sigma: float = Field(0.5, ge=0, description="lognormal spread (sigma of ln speed, "
                               "median 1) of the devices' compute speeds")
    slow_fraction: float = Field(0.0, ge=0, le=1, description="fraction of devices (rounded "
                                 "to whole devices) that are very slow")
    slowdown: float = Field(10.0, ge=1, description="how many times slower the very slow "
                            "devices compute")
    latency_s: float = Field(0.5, ge=0, description="median one-way link latency (s), "
                             "charged for the download and again for the upload")
    latency_sigma: float = Field(0.5, ge=0, description="lognormal spread of the devices' "
                                 "link latencies (0: all equal)")


class AsyncConfig(Strict):
    """Asynchronous FL: on a virtual clock in the in-process engine, on the wall clock on
    Flower (where `clock` does not apply; docs/async.md)."""

    mode: Literal["fedasync", "fedbuff"] = Field(
        "fedasync", description="fedasync (Xie et al. 2019: mix each arriving model into the "
        "server model) or fedbuff (Nguyen et al. 2022: apply buffers of buffer_size deltas)")
    updates: int = Field(100, ge=1, description="client updates (arrivals) the run lasts")
    concurrency: int = Field(5, ge=1, description="clients training at once")
    alpha: float = Field(0.6, gt=0, le=1, description="fedasync mixing weight before "
                         "staleness weighting")
    staleness: Literal["constant", "polynomial", "hinge"] = Field(
        "polynomial", description="staleness weight s(t - tau): constant 1, polynomial "
        "(t - tau + 1)^-staleness_a, hinge 1 up to staleness_b then "
        "1 / (staleness_a (t - tau - staleness_b) + 1)")
    staleness_a: float = Field(0.5, ge=0, description="exponent (polynomial) or slope (hinge)")
    staleness_b: int = Field(4, ge=0, description="hinge: staleness still weighted 1")
    buffer_size: int = Field(5, ge=1, description="fedbuff: uploads per server step (K)")
    server_lr: float = Field(1.0, gt=0, description="fedbuff: server learning rate on the "
                             "buffered mean delta")
    clock: ClockConfig = ClockConfig()


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
    drift: DriftConfig | None = None
    aggregator: AggregatorConfig = AggregatorConfig()
    asynchronous: AsyncConfig | None = Field(
        None, description="run asynchronously (in-process engine: on a virtual clock; "
        "Flower: on the wall clock); null: synchronous rounds")

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
    def _check_aggregator(self) -> ExperimentConfig:
        """The aggregator fits the algorithm, DP and the round size."""
        agg, t = self.aggregator, self.train
        spec = aggregator_spec(agg.name)
        if spec.snn_only and not self.algorithm.name.startswith("s-"):
            raise ValueError(f"aggregator.name={agg.name!r} reads the SNN firing thresholds of "
                             f"SNFL uploads, but algorithm.name={self.algorithm.name!r} sends "
                             "none; use an SNFL algorithm (s-fedavg, s-fedprox, s-moon) or "
                             "another aggregator")
        if spec.combines and self.dp.level == "client":
            raise ValueError(f"aggregator.name={agg.name!r} replaces the mean, but dp.level="
                             "'client' adds noise calibrated to the clipped mean of the updates; "
                             "use aggregator.name=mean (or a filter: krum, multi_krum) or "
                             "dp.level=none")
        clients = 1 if self.algorithm.name == "centralized" else self.data.num_clients
        per_round = min(t.clients_per_round or max(1, round(t.fraction * clients)), clients)
        if agg.name in ("krum", "multi_krum") and per_round - agg.num_byzantine - 2 < 1:
            raise ValueError(f"aggregator.num_byzantine={agg.num_byzantine} leaves Krum no "
                             f"neighbours with {per_round} client(s) a round (needs "
                             "n - num_byzantine - 2 >= 1); lower aggregator.num_byzantine or "
                             "sample more clients")
        if agg.name == "trimmed_mean" and 2 * agg.trim >= per_round:
            raise ValueError(f"aggregator.trim={agg.trim} trims every value of a round of "
                             f"{per_round} client(s) (needs 2 x trim < clients per round); "
                             "lower aggregator.trim or sample more clients")
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

    @model_validator(mode="after")
    def _check_drift(self) -> ExperimentConfig:
        from spikefed.data.event_sets import is_event_dataset

        dr = self.drift
        if dr is None:
            return self
        if dr.kind == "domain" and is_event_dataset(self.data.dataset):
            raise ValueError(f"drift.kind='domain' transforms images, not event data set "
                             f"{self.data.dataset!r}; use drift.kind=class_incremental")
        if dr.consolidation != "none":
            if self.algorithm.name not in DRIFT_CONSOLIDATION_ALGORITHMS:
                raise ValueError(f"drift.consolidation={dr.consolidation!r} does not support "
                                 f"algorithm.name={self.algorithm.name!r} (its clients do not "
                                 "train from the broadcast in the shared local loop); use one "
                                 f"of {list(DRIFT_CONSOLIDATION_ALGORITHMS)} or "
                                 "drift.consolidation=none")
            if self.train.vectorize == "on":
                raise ValueError(f"drift.consolidation={dr.consolidation!r} trains clients one "
                                 "by one; set train.vectorize=off (or auto)")
        return self

    @model_validator(mode="after")
    def _check_asynchronous(self) -> ExperimentConfig:
        a = self.asynchronous
        if a is None:
            return self
        if self.algorithm.name not in ASYNC_ALGORITHMS:
            raise ValueError(f"asynchronous: does not support algorithm.name="
                             f"{self.algorithm.name!r}; supported: {list(ASYNC_ALGORITHMS)} "
                             "(remove the asynchronous section for synchronous rounds)")
        clients = self.data.num_clients
        if a.concurrency > clients:
            raise ValueError(f"asynchronous.concurrency={a.concurrency} exceeds the {clients} "
                             "client(s) of the federation (data.num_clients); lower it")
        if a.mode == "fedbuff" and a.buffer_size > a.updates:
            raise ValueError(f"asynchronous.buffer_size={a.buffer_size} exceeds "
                             f"asynchronous.updates={a.updates}: the buffer would never fill")
        if self.train.codec.name != "none":
            raise ValueError(f"asynchronous: does not compress uploads (train.codec.name="
                             f"{self.train.codec.name!r}); set train.codec.name=none or remove "
                             "the asynchronous section (synchronous rounds apply the codec)")
        unsupported = [(self.dp.level != "none", f"dp.level={self.dp.level!r}", "none"),
                       (self.hardware is not None, "hardware", "null"),
                       (self.train.vectorize == "on", "train.vectorize='on'", "off"),
                       (self.drift is not None, "drift", "null"),
                       (self.aggregator.name != "mean", f"aggregator.name="
                        f"{self.aggregator.name!r}", "'mean'"),
                       (self.train.lr_schedule != "constant" or self.train.lr_warmup_rounds > 0,
                        "train.lr_schedule / train.lr_warmup_rounds", "constant / 0")]
        for bad, key, fix in unsupported:
            if bad:
                raise ValueError(f"asynchronous: cannot be combined with {key} (the "
                                 f"asynchronous engine trains one client at a time with a "
                                 f"constant rate); set it to {fix} or remove the "
                                 "asynchronous section")
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
