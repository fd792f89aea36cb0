"""The privacy benchmark: gradient inversion against ANN and SNN clients.

``run_attack_benchmark(cfg, out)`` writes ``results.csv`` (one row per attack x model x domain
x defense x seed x sample), ``summary.md``, ``reconstructions.png`` and ``psnr_curves.png``.
``snfl_attack_config()`` is the SNFL paper's DLG comparison (FedAvg vs SNFL). The attacks run
on ``cfg.device``; results are moved to the CPU before they are written.
"""

from __future__ import annotations

import copy
import math
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

import torch
import yaml
from pydantic import Field, ValidationError

from spikefed.config import ConfigError, Strict, _format_validation_error, apply_overrides
from spikefed.data import load_dataset
from spikefed.data.files import DATA_ENV
from spikefed.experiment import resolve_device
from spikefed.models import build_model
from spikefed.privacy import metrics as M
from spikefed.privacy.attacks import AttackResult, Problem, dlg, idlg, inverting_gradients
from spikefed.privacy.clients import build_twins, domain_for, image_raster, set_ann_activation
from spikefed.privacy.defenses import Defense, defended_observation, snfl_convert
from spikefed.privacy.domains import InputDomain
from spikefed.privacy.event_victims import event_victims
from spikefed.privacy.labels import multiset_accuracy
from spikefed.privacy.statprior import statprior_attack
from spikefed.privacy.threat import ThreatModel, flat, observe
from spikefed.report.tables import write_rows_csv
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


# data ---------------------------------------------------------------------------------------
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


# one attack ---------------------------------------------------------------------------------
def score(domain: InputDomain, x_hat: torch.Tensor, x: torch.Tensor) -> dict[str, Any]:
    """Metrics of a reconstruction batch after Hungarian matching (``perm`` included)."""
    perm = M.match_batch(x_hat, x)
    xh = x_hat[perm]
    if not domain.temporal:
        return {
            "perm": perm,
            "mse": float(M.mse(xh, x).mean()),
            "psnr": float(M.psnr(xh, x).mean()),
            "ssim": float(M.ssim(xh, x).mean()),
        }
    rows: dict[str, list[float]] = {"psnr": [], "ssim": [], "f1": [], "tc": []}
    bins: list[torch.Tensor] = []
    for a, b in zip(xh, x, strict=True):
        img_a, img_b = (a.unsqueeze(1), b.unsqueeze(1)) if a.dim() == 2 else (a, b)
        if a.dim() == 2:  # raster [T, channels]: score it as one image
            rows["ssim"].append(float(M.ssim(a[None, None], b[None, None])))
            p_bins = M.psnr(img_a, img_b)
        else:
            p_bins, s_bins = M.per_bin_scores(img_a, img_b)
            rows["ssim"].append(float(s_bins.mean()))
        bins.append(p_bins)
        rows["psnr"].append(float(M.psnr(a[None], b[None])))
        rows["f1"].append(M.spike_f1(a, b))
        rows["tc"].append(M.temporal_consistency(a, b))
    per_bin = torch.stack(bins).clamp(max=100).mean(0)
    return {
        "perm": perm,
        "mse": float(M.mse(xh, x).mean()),
        "psnr": statistics.fmean(rows["psnr"]),
        "ssim": statistics.fmean(rows["ssim"]),
        "spike_f1": statistics.fmean(rows["f1"]),
        "temporal_consistency": statistics.fmean(rows["tc"]),
        "per_bin_psnr": ";".join(f"{v:.2f}" for v in per_bin.tolist()),
    }


def make_monitor(
    domain: InputDomain, x: torch.Tensor
) -> Callable[[torch.Tensor], tuple[float, float]]:
    """History monitor: matched PSNR/SSIM of the current reconstruction."""

    def monitor(x_hat: torch.Tensor) -> tuple[float, float]:
        if x_hat.shape != x.shape:
            return math.nan, math.nan
        s = score(domain, x_hat, x)
        return s["psnr"], s["ssim"]

    return monitor


def run_one(
    attack: str,
    problem: Problem,
    cfg: AttackConfig,
    x: torch.Tensor,
    seed: int,
    thresholds: dict[str, float] | None = None,
) -> AttackResult:
    """Run ``attack`` on ``problem`` with the settings of ``cfg``."""
    mon = make_monitor(problem.domain, x)
    common = {"seed": seed, "record_every": cfg.record_every, "monitor": mon}
    if attack in ("dlg", "idlg"):
        d = cfg.dlg
        fn = dlg if attack == "dlg" else idlg
        return fn(
            problem,
            iterations=d.iterations,
            lr=d.lr,
            inner_iter=d.inner_iter,
            line_search=d.line_search,
            **common,
        )
    if attack == "ig":
        g = cfg.ig
        return inverting_gradients(
            problem, iterations=g.iterations, lr=g.lr, tv=g.tv, restarts=g.restarts, **common
        )
    s = cfg.statprior
    sizes = list(range(1, 2 * problem.batch + 1)) if cfg.threat.unknown_batch_size else None
    return statprior_attack(
        problem,
        iterations=s.iterations,
        lr=s.lr,
        tv=s.tv,
        bn_weight=s.bn_weight,
        thresholds=thresholds,
        threshold_weight=s.threshold_weight,
        batch_sizes=sizes,
        probe_iterations=s.probe_iterations,
        restarts=s.restarts,
        **common,
        monitor_for=lambda b: mon if b == problem.batch else None,
    )


def result_row(
    res: AttackResult, problem: Problem, x: torch.Tensor, y: torch.Tensor
) -> dict[str, Any]:
    """Metrics of one attack result (scored against the truth, residual against the upload)."""
    if res.reconstruction.shape != x.shape:  # wrong batch-size guess: score the overlap
        n = min(len(x), len(res.reconstruction))
        sc = score(problem.domain, res.reconstruction[:n], x[:n])
    else:
        sc = score(problem.domain, res.reconstruction, x)
    z = (
        res.reconstruction
        if problem.domain.temporal is False
        else torch.logit(res.reconstruction.clamp(1e-4, 1 - 1e-4))
    )
    sim = observe(problem.model, problem.domain.model_input(z), res.labels, problem.threat)
    tgt = flat(problem.target)
    residual = float((flat(sim) - tgt).norm() / (tgt.norm() + 1e-12))
    hist = [h for h in res.history if "psnr" in h and not math.isnan(h["psnr"])]
    leak = M.iterations_to_leak(
        [int(h["iteration"]) for h in hist], [h["psnr"] for h in hist], [h["ssim"] for h in hist]
    )
    leak_evals = next((int(h["grad_evals"]) for h in hist if int(h["iteration"]) == leak), None)
    row = {k: v for k, v in sc.items() if k != "perm"}
    row.update(
        label_acc=multiset_accuracy(res.labels, y),
        residual=residual,
        steps=res.steps,
        grad_evals=res.grad_evals,
        iters_to_leak=leak,
        evals_to_leak=leak_evals,
        batch_found=len(res.reconstruction),
    )
    return row


# the benchmark ------------------------------------------------------------------------------
CSV_FIELDS = [
    "attack",
    "model",
    "domain",
    "defense",
    "seed",
    "sample",
    "batch_size",
    "batch_found",
    "label_acc",
    "mse",
    "psnr",
    "ssim",
    "residual",
    "steps",
    "grad_evals",
    "iters_to_leak",
    "evals_to_leak",
    "spike_f1",
    "temporal_consistency",
    "per_bin_psnr",
    "epsilon",
    "seconds",
]


def _models_for(
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
    kinds = m.kinds if domain in ("image", "events") else ["snn"]
    return {k: (ann if k == "ann" else snn) for k in kinds}, ann


def _epsilon(defense: Defense, cfg: AttackConfig) -> float | None:
    if defense.kind != "dpsgd" or defense.sigma <= 0:
        return None
    from spikefed.privacy.accountant import epsilon

    steps = cfg.threat.local_steps if cfg.threat.kind == "fedavg" else 1
    return epsilon(1.0, defense.sigma, steps, 1e-5)[0]


def run_attack_benchmark(
    cfg: AttackConfig, out: Path, progress: Callable[[str], None] | None = None
) -> list[dict[str, Any]]:
    """Run every (seed, domain, model, defense, sample, attack) and write the outputs to ``out``.

    Models, victim data and attack variables live on ``cfg.device``; seeded draws come from
    CPU generators, so a GPU run starts from the same dummies and noise as a CPU run.
    """
    device = attack_device(cfg)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
    torch.set_num_threads(max(1, torch.get_num_threads()))
    threat = ThreatModel(cfg.threat.kind, cfg.threat.local_steps, cfg.threat.lr)
    rows: list[dict[str, Any]] = []
    examples: dict[tuple[str, str, str], dict[str, torch.Tensor]] = {}
    curves: dict[tuple[str, str, str, str], list[list[tuple[float, float]]]] = {}
    b = cfg.threat.batch_size
    for seed in cfg.seeds:
        for dom_kind in cfg.domain.kinds:
            xs, ys = load_victim_data(cfg, dom_kind, device)
            domain = domain_for(
                dom_kind, tuple(xs.shape[1:]), cfg.model.T, cfg.domain.relax, cfg.domain.tau
            )
            models, ann = _models_for(dom_kind, cfg, tuple(xs.shape[1:]), seed, device)
            for kind, model in models.items():
                for dsec in cfg.defenses:
                    defense = Defense(dsec.kind, dsec.sigma, dsec.ratio, dsec.clip)
                    victim, thresholds, model_name = model, None, kind
                    dom = replace(domain, stacked=kind == "ann" and domain.temporal)
                    if defense.kind == "snfl":
                        if kind != "ann" or dom_kind != "image":
                            continue
                        calib = torch.as_tensor(
                            load_dataset("mnist-mini", "train").x[: cfg.snfl_calibration],
                            device=device,
                        ).float()
                        relu_ann = set_ann_activation(copy.deepcopy(ann), "relu")
                        conv = snfl_convert(relu_ann, calib, cfg.model.T)
                        victim, thresholds, model_name = conv.model.train(), conv.thresholds, "snfl"
                    for i in range(cfg.data.samples):
                        x, y = xs[i * b : (i + 1) * b], ys[i * b : (i + 1) * b]
                        gen = torch.Generator().manual_seed(seed * 7919 + i)
                        target = defended_observation(
                            victim, dom.client_input(x), y, threat, defense, gen
                        )
                        problem = Problem(victim, target, threat, dom, 10, b)
                        for attack in cfg.attacks:
                            t0 = time.perf_counter()
                            res = run_one(attack, problem, cfg, x, seed, thresholds)
                            row = result_row(res, problem, x, y)
                            row.update(
                                attack=attack,
                                model=model_name,
                                domain=dom_kind,
                                defense=defense.label,
                                seed=seed,
                                sample=i,
                                batch_size=b,
                                epsilon=_epsilon(defense, cfg),
                                seconds=time.perf_counter() - t0,
                            )
                            rows.append(row)
                            key = (dom_kind, defense.label, model_name)
                            examples.setdefault(key, {"truth": x[0].cpu()})
                            if i == 0 and seed == cfg.seeds[0]:
                                examples[key][attack] = _first_match(res.reconstruction, x)
                            curves.setdefault(
                                (dom_kind, defense.label, attack, model_name), []
                            ).append(
                                [(h["iteration"], h["psnr"]) for h in res.history if "psnr" in h]
                            )
                            if progress is not None:
                                progress(f"{attack}/{model_name}/{dom_kind}: {row['psnr']:.1f} dB")
    write_rows_csv(rows, out / "results.csv", CSV_FIELDS)
    (out / "summary.md").write_text(summary_markdown(rows, cfg, str(device)))
    from spikefed.privacy.plots import plot_curves, plot_reconstructions

    plot_reconstructions(examples, cfg.attacks, out / "reconstructions.png")
    plot_curves(curves, out / "psnr_curves.png")
    return rows


def _first_match(x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The reconstruction matched to ``x[0]``, on the CPU (wrong batch-size guess: ``x_hat[0]``)."""
    if x_hat.shape != x.shape:
        return x_hat[0].cpu()
    return x_hat[M.match_batch(x_hat, x)][0].cpu()


def count_runs(cfg: AttackConfig) -> int:
    """Number of attack runs the benchmark will do (for progress bars)."""
    per_domain = 0
    for dom in cfg.domain.kinds:
        kinds = cfg.model.kinds if dom in ("image", "events") else ["snn"]
        for d in cfg.defenses:
            n = sum(1 for k in kinds if d.kind != "snfl" or (k == "ann" and dom == "image"))
            per_domain += n
    return len(cfg.seeds) * per_domain * cfg.data.samples * len(cfg.attacks)


def _ms(values: list[float]) -> str:
    vals = [min(v, 100.0) for v in values if v is not None and not math.isnan(v)]
    if not vals:
        return "–"
    sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
    return f"{statistics.fmean(vals):.2f} ± {sd:.2f}"


SUMMARY_METRICS = (
    ("psnr", "PSNR dB"),
    ("ssim", "SSIM"),
    ("label_acc", "label acc"),
    ("iters_to_leak", "iters to leak"),
    ("leaked", "leaked"),
)


def _cell(metric: str, rs: list[dict[str, Any]]) -> str:
    """One summary cell: mean ± std, median iterations to leak, or leaked count."""
    if not rs:
        return "–"
    if metric == "leaked":
        return f"{sum(r['iters_to_leak'] is not None for r in rs)}/{len(rs)}"
    if metric == "iters_to_leak":
        its = [r["iters_to_leak"] for r in rs if r["iters_to_leak"] is not None]
        return f"{statistics.median(its):g}" if its else "never"
    return _ms([r[metric] for r in rs])


def summary_markdown(
    rows: list[dict[str, Any]], cfg: AttackConfig, device: str | None = None
) -> str:
    """One row per (domain, defense, attack); each metric has one column per model."""
    models = list(dict.fromkeys(r["model"] for r in rows))
    lines = [
        f"# Gradient inversion: {cfg.name}",
        "",
        f"Threat: {cfg.threat.kind} (local steps {cfg.threat.local_steps}, lr "
        f"{cfg.threat.lr}), batch {cfg.threat.batch_size}; model {cfg.model.name} "
        f"{cfg.model.options} (ANN activation {cfg.model.ann_activation}, SNN T={cfg.model.T}, "
        f"neuron {cfg.model.neuron}); seeds {cfg.seeds}; {cfg.data.samples} batches per seed"
        + (f"; device {device}." if device else "."),
        "Cells: mean ± std over seeds and batches; PSNR capped at 100 dB when averaging "
        "(exact recovery gives infinity); iters to leak = median optimiser step of the first "
        "recorded PSNR ≥ 20 dB or SSIM ≥ 0.5 over the runs that leaked; leaked = runs that did.",
        "",
    ]
    groups: dict[tuple[str, str, str], dict[str, list[dict[str, Any]]]] = {}
    for r in rows:
        key = (r["domain"], r["defense"], r["attack"])
        groups.setdefault(key, {}).setdefault(r["model"], []).append(r)
    side_by_side = any(len(by_model) > 1 for by_model in groups.values())
    if side_by_side:
        head = [f"{label} ({m})" for _, label in SUMMARY_METRICS for m in models]
        lines += [
            "| domain | defense | attack | " + " | ".join(head) + " |",
            "|" + "---|" * (3 + len(head)),
        ]
        for (dom, dfn, att), by_model in groups.items():
            cells = [_cell(k, by_model.get(m, [])) for k, _ in SUMMARY_METRICS for m in models]
            lines.append(f"| {dom} | {dfn} | {att} | " + " | ".join(cells) + " |")
    else:
        head = [label for _, label in SUMMARY_METRICS]
        lines += [
            "| domain | defense | attack | model | " + " | ".join(head) + " |",
            "|" + "---|" * (4 + len(head)),
        ]
        for (dom, dfn, att), by_model in groups.items():
            for m, rs in by_model.items():
                cells = [_cell(k, rs) for k, _ in SUMMARY_METRICS]
                lines.append(f"| {dom} | {dfn} | {att} | {m} | " + " | ".join(cells) + " |")
    if any(r.get("spike_f1") is not None for r in rows):
        lines += [
            "",
            "## Temporal data",
            "",
            "| domain | attack | model | spike F1 | "
            "temporal consistency | PSNR per time bin (mean over samples) |",
            "|---|---|---|---|---|---|",
        ]
        for (dom, _dfn, att), by_model in groups.items():
            for m, rs in by_model.items():
                rs = [r for r in rs if r.get("spike_f1") is not None]
                if rs:
                    bins = [[float(v) for v in r["per_bin_psnr"].split(";")] for r in rs]
                    per_bin = ";".join(
                        f"{statistics.fmean(c):.1f}" for c in zip(*bins, strict=True)
                    )
                    lines.append(
                        f"| {dom} | {att} | {m} | {_ms([r['spike_f1'] for r in rs])} | "
                        f"{_ms([r['temporal_consistency'] for r in rs])} | {per_bin} |"
                    )
    eps = {r["defense"]: r["epsilon"] for r in rows if r.get("epsilon") is not None}
    if eps:
        lines += [
            "",
            "DP-SGD ε at δ = 1e-5 (one client update, sampling rate 1): "
            + ", ".join(f"{k}: ε = {v:.3g}" for k, v in eps.items()),
        ]
    return "\n".join(lines) + "\n"


# SNFL reproduction --------------------------------------------------------------------------
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
