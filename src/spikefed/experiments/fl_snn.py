"""FL-SNN reproduction (Skatchkovsky et al., ICASSP 2020, Fig. 4 and partial exchange).

Two devices with disjoint classes ('1' on one, '7' on the other) train GLM spiking networks
and average their parameters every ``tau`` global iterations. MNIST-DVS (the paper's data) is not
available offline beyond digit 0, so this uses real N-MNIST recordings of '1' and '7' as the
substitute (bundled, preprocessed, in ``spikefed/assets``; or read from ``--data-root``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from spikefed.data.events import load_nmnist_subset, nmnist_frames
from spikefed.fl.flsnn import exchange_bytes, k_for_rate, n_dense_values, n_ff_values
from spikefed.fl.flsnn_batched import FLHistory, RunSetting, run_federated
from spikefed.report.tables import rows_markdown, write_rows_csv
from spikefed.snn.glm import GLMSNN, LearningRule, Topology

CLASSES = (1, 7)
ASSET = "nmnist_1_7_frames.npz"
ASSET_DIR = Path(__file__).resolve().parents[1] / "assets"
NMNIST_ARCHIVE = Path("nmnist_small") / "NMNISTsmall.tar.gz"


@dataclass
class SpikeData:
    """Binary spike frames ``[n, S', N_in]`` (uint8) with labels 0 ('1') / 1 ('7')."""

    x: torch.Tensor
    y: torch.Tensor

    def of_class(self, c: int) -> SpikeData:
        keep = self.y == c
        return SpikeData(self.x[keep], self.y[keep])


def frames_from_archive(archive: Path, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Preprocess the N-MNIST '1'/'7' recordings of ``split``: (frames, labels 0/1, sample ids)."""
    ids, events, labels = load_nmnist_subset(archive, split, CLASSES)
    frames = np.stack([nmnist_frames(e) for e in events])
    frames = frames.reshape(len(frames), frames.shape[1], -1).astype(np.uint8)
    return frames, (labels == CLASSES[1]).astype(np.int64), np.asarray(ids)


def load_data(data_root: Path | None = None) -> tuple[SpikeData, SpikeData]:
    """Train and test data: from ``<data_root>/nmnist_small`` if given, else the bundled asset."""
    if data_root is not None:
        archive = Path(data_root) / NMNIST_ARCHIVE
        if not archive.is_file():
            raise FileNotFoundError(f"--data-root {data_root} has no {NMNIST_ARCHIVE}; point it "
                                    "at the folder holding nmnist_small/ or omit it to use the "
                                    "bundled subset")
        splits = [frames_from_archive(archive, s)[:2] for s in ("train", "test")]
    else:
        z = np.load(ASSET_DIR / ASSET)
        splits = []
        for s in ("train", "test"):
            n, steps, n_in = z[f"{s}_shape"]
            bits = np.unpackbits(z[f"{s}_bits"], count=int(n * steps * n_in))
            splits.append((bits.reshape(n, steps, n_in), z[f"{s}_y"]))
    out = [SpikeData(torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(y))
           for x, y in splits]
    return out[0], out[1]


@dataclass
class FLSNNConfig:
    """Everything the reproduction varies (paper defaults where they carry over)."""

    taus: tuple[int, ...] = (1, 2, 4, 8, 16)
    trials: int = 3
    n_examples: int = 200
    n_hidden: int = 8
    n_basis_ff: int = 4
    memory: int = 10
    lr: float = 0.01
    delta_s: int = 5
    kl_weight: float = 1.0
    target_rate: float = 0.2
    comm_rates: tuple[float, ...] = (0.05, 0.1, 0.25, 0.5, 1.0)
    partial_tau: int = 4
    n_evals: int = 20
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.taus or min(self.taus) < 1:
            raise ValueError(f"taus={self.taus} must be a non-empty list of integers >= 1")
        if self.trials < 1:
            raise ValueError(f"trials={self.trials} must be >= 1")
        if self.n_examples < 1:
            raise ValueError(f"n_examples={self.n_examples} must be >= 1")

    def settings(self) -> list[RunSetting]:
        """τ sweep, separate training (τ=None) and the partial-exchange sweep, per trial."""
        out = []
        for trial in range(self.trials):
            out += [RunSetting(t, 1.0, trial) for t in self.taus]
            out.append(RunSetting(None, 1.0, trial))
            out += [RunSetting(self.partial_tau, r, trial) for r in self.comm_rates
                    if not (r >= 1 and self.partial_tau in self.taus)]
        return out


@dataclass
class FLSNNResult:
    """Measured curves and tables of one reproduction."""

    config: FLSNNConfig
    history: FLHistory
    iterations: list[int]
    curves: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    tau_rows: list[dict] = field(default_factory=list)
    partial_rows: list[dict] = field(default_factory=list)


def build_network(cfg: FLSNNConfig, n_input: int) -> tuple[GLMSNN, LearningRule]:
    """The GLM network and learning rule of the reproduction."""
    snn = GLMSNN(Topology.layered(n_input, cfg.n_hidden, len(CLASSES)),
                 n_basis_ff=cfg.n_basis_ff, memory=cfg.memory)
    rule = LearningRule(lr=cfg.lr, delta_s=cfg.delta_s, kl_weight=cfg.kl_weight,
                        target_rate=cfg.target_rate)
    return snn, rule


def run_experiment(cfg: FLSNNConfig, train: SpikeData, test: SpikeData,
                   progress: Callable[[int, int], None] | None = None) -> FLSNNResult:
    """Run all settings as one batched computation and summarise them."""
    snn, rule = build_network(cfg, train.x.shape[-1])
    devices = [(d.x, d.y) for d in (train.of_class(0), train.of_class(1))]
    settings = cfg.settings()
    hist = run_federated(snn, rule, devices, (test.x.float(), test.y), settings,
                         n_examples=cfg.n_examples, n_evals=cfg.n_evals, seed=cfg.seed,
                         progress=progress)
    return summarise(cfg, snn, hist)


def _key(s: RunSetting) -> str:
    tau = "sep" if s.tau is None else str(s.tau)
    return f"tau={tau},rate={s.comm_rate:g}"


def summarise(cfg: FLSNNConfig, snn: GLMSNN, hist: FLHistory) -> FLSNNResult:
    """Normalise losses by the final loss of separate training (per trial); mean ± std."""
    loss = hist.loss_tensor().mean(-1).numpy()           # [E, R] device-averaged
    acc = hist.accuracy_tensor().mean(-1).numpy()
    settings = hist.settings
    base = {s.trial: loss[-1, i] for i, s in enumerate(settings) if s.tau is None}
    res = FLSNNResult(cfg, hist, hist.iterations)
    groups: dict[str, list[int]] = {}
    for i, s in enumerate(settings):
        groups.setdefault(_key(s), []).append(i)
    n_ff, n_dense = n_ff_values(snn), n_dense_values(snn)
    for key, idx in groups.items():
        norm = np.stack([loss[:, i] / base[settings[i].trial] for i in idx], 1)   # [E, trials]
        a = acc[:, idx]
        res.curves[key] = {"norm_mean": norm.mean(1), "norm_std": norm.std(1),
                           "acc_mean": a.mean(1), "acc_std": a.std(1)}
        s = settings[idx[0]]
        row = {"tau": "separate" if s.tau is None else s.tau, "comm_rate": s.comm_rate,
               "final_norm_loss_mean": float(norm[-1].mean()),
               "final_norm_loss_std": float(norm[-1].std()),
               "mean_norm_loss_2nd_half": float(norm[len(norm) // 2:].mean()),
               "final_test_loss_mean": float(loss[-1, idx].mean()),
               "final_accuracy_mean": float(a[-1].mean()), "final_accuracy_std": float(a[-1].std()),
               "rounds": int(hist.rounds[idx[0]]),
               "bytes_up_per_device": int(hist.bytes_up[idx[0]].float().mean()),
               "bytes_down_per_device": int(hist.bytes_down[idx[0]].float().mean())}
        if s.tau is None or s.comm_rate >= 1:
            res.tau_rows.append(row)
        if s.tau == cfg.partial_tau:
            k = k_for_rate(snn, s.comm_rate)
            up, down = exchange_bytes(k, n_ff, n_dense)
            res.partial_rows.append({**row, "k_per_round": k, "n_ff": n_ff,
                                     "bytes_up_per_round": up, "bytes_down_per_round": down})
    res.tau_rows.sort(key=lambda r: math.inf if r["tau"] == "separate" else r["tau"])
    res.partial_rows.sort(key=lambda r: r["comm_rate"])
    return res


#: columns of the summary's τ table and partial-exchange table
TAU_COLUMNS = ("tau", "final_norm_loss_mean", "final_norm_loss_std", "mean_norm_loss_2nd_half",
               "final_accuracy_mean", "final_accuracy_std", "rounds", "bytes_up_per_device")
PARTIAL_COLUMNS = ("comm_rate", "k_per_round", "bytes_up_per_round", "bytes_down_per_round",
                   "final_norm_loss_mean", "mean_norm_loss_2nd_half", "final_accuracy_mean",
                   "final_accuracy_std")


def _fmt(v: object) -> str:
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def write_outputs(res: FLSNNResult, out: Path, runtime_s: float | None = None) -> list[Path]:
    """Write curves/summary CSVs, a markdown report and the PNG figures into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    hist, settings = res.history, res.history.settings
    rows = []
    for e, t in enumerate(res.iterations):
        for i, s in enumerate(settings):
            for d in range(hist.n_devices):
                rows.append({"tau": "separate" if s.tau is None else s.tau,
                             "comm_rate": s.comm_rate, "trial": s.trial, "device": d,
                             "iteration": t, "test_loss": float(hist.loss[e][i, d]),
                             "accuracy": float(hist.accuracy[e][i, d])})
    written = [out / "curves.csv", out / "tau_sweep.csv", out / "partial_exchange.csv",
               out / "summary.md"]
    write_rows_csv(rows, written[0])
    write_rows_csv(res.tau_rows, written[1])
    write_rows_csv(res.partial_rows, written[2])
    cfg = res.config
    md = ["# FL-SNN reproduction (N-MNIST '1' vs '7', two devices)", "",
          f"Config: `{asdict(cfg)}`", ""]
    if runtime_s is not None:
        md += [f"Runtime: {runtime_s:.0f} s", ""]
    md += ["## Communication period τ (full exchange)", "",
           rows_markdown(res.tau_rows, TAU_COLUMNS, fmt=_fmt), "",
           f"## Partial exchange (τ = {cfg.partial_tau})", "",
           rows_markdown(res.partial_rows, PARTIAL_COLUMNS, fmt=_fmt), ""]
    written[3].write_text("\n".join(md))
    written += _plots(res, out)
    return written


def _plots(res: FLSNNResult, out: Path) -> list[Path]:
    import matplotlib.pyplot as plt

    from spikefed.report.figures import save_png

    t = np.asarray(res.iterations)
    cfg = res.config
    paths = []
    for metric, ylabel, name in (("norm", "test loss / separate training", "fl_snn_loss.png"),
                                 ("acc", "test accuracy", "fl_snn_accuracy.png")):
        fig, ax = plt.subplots(figsize=(6, 4))
        for tau in [*cfg.taus, None]:
            c = res.curves[_key(RunSetting(tau, 1.0))]
            m, s = c[f"{metric}_mean"], c[f"{metric}_std"]
            line = ax.plot(t, m, label="separate" if tau is None else f"τ = {tau}")[0]
            lower = np.maximum(m - s, m / 10) if metric == "norm" else m - s   # log axis
            ax.fill_between(t, lower, m + s, alpha=0.2, color=line.get_color())
        if metric == "norm":
            ax.set_yscale("log")
        ax.set_xlabel("global algorithmic time t")
        ax.set_ylabel(ylabel)
        ax.legend()
        paths.append(save_png(fig, out / name))
    rows = res.partial_rows
    fig, ax = plt.subplots(figsize=(6, 4))
    rate = [r["comm_rate"] for r in rows]
    ax.errorbar(rate, [r["final_accuracy_mean"] for r in rows],
                yerr=[r["final_accuracy_std"] for r in rows], marker="o", capsize=3)
    ax.set_xscale("log")
    ax.set_xlabel(f"communication rate (fraction of synaptic coefficients, τ = {cfg.partial_tau})")
    ax.set_ylabel("final test accuracy")
    paths.append(save_png(fig, out / "fl_snn_partial_exchange.png"))
    return paths


def build_asset(archive: Path, dest: Path) -> Path:
    """Write the bundled asset: N-MNIST '1'/'7' frames as packed bits (see ATTRIBUTION.md)."""
    arrays = {}
    for split in ("train", "test"):
        x, y, ids = frames_from_archive(archive, split)
        arrays[f"{split}_bits"] = np.packbits(x.reshape(-1))
        arrays[f"{split}_shape"] = np.asarray(x.shape)
        arrays[f"{split}_y"] = y
        arrays[f"{split}_ids"] = ids
    np.savez_compressed(dest, **arrays)
    return dest
