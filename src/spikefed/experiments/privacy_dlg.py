"""DLG in its own setting: the DLG LeNet on CIFAR-10, batch 1, L-BFGS, FedAvg arm vs SNFL arm.

The SNFL paper (Sec. 5.1, Fig. 2a) reports that DLG recovers CIFAR-10 images from the
gradients of an ANN within about 70 iterations and recovers nothing from the converted SNN
after 280. This module measures that comparison on ``lenet-dlg`` (see
:mod:`spikefed.models.lenet_dlg`) with three arms that share one set of initial weights:

- ``ann-sigmoid``: DLG's own network (sigmoid activations): the FedAvg arm of the paper;
- ``ann-relu``: the same weights with ReLU: the network the SNFL client actually trains and
  converts, attacked as an ANN (separates the effect of the activation from that of spikes);
- ``snfl``: that ReLU network converted SNFL-style (BN folding, MMSE thresholds, IF neurons,
  light calibration on private training images), attacked white-box through its surrogate.

Each (image, seed, arm) run is DLG: a dummy image and soft label from N(0, 1), L-BFGS with
learning rate 1, 20 inner iterations and strong-Wolfe line search, ``iterations`` steps on
the squared L2 gradient distance. Iterations-to-leak is the first step whose reconstruction
reaches PSNR >= 20 dB or SSIM >= 0.5. ``run_dlg_cifar`` writes ``results.csv``,
``summary.md`` and ``strips.png`` (reconstruction after selected steps, one row per arm).
"""

from __future__ import annotations

import copy
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from spikefed.models import build_model
from spikefed.privacy import metrics as M
from spikefed.privacy.attacks import Problem, dlg
from spikefed.privacy.defenses import snfl_convert
from spikefed.privacy.domains import InputDomain
from spikefed.privacy.threat import ThreatModel, observe
from spikefed.report.tables import markdown_table, write_rows_csv

ARMS = ("ann-sigmoid", "ann-relu", "snfl")
PAPER = {  # SNFL paper, Sec. 5.1 / Fig. 2a (DLG, CIFAR-10, batch 1)
    "ann-sigmoid": "~70 iterations (all images recovered)",
    "ann-relu": "not reported",
    "snfl": "none after 280 iterations",
}
CSV_FIELDS = ["arm", "image", "label", "seed", "psnr", "ssim", "iters_to_leak", "steps",
              "grad_evals", "loss", "seconds"]


@dataclass
class DLGCifarSetting:
    """What one reproduction attacks and how long (see the module docstring)."""

    iterations: int = 300
    T: int = 8
    arms: tuple[str, ...] = ARMS
    seeds: tuple[int, ...] = (0, 1)
    snapshots: tuple[int, ...] = (10, 30, 50, 70, 100, 200, 300)

    def __post_init__(self) -> None:
        unknown = [a for a in self.arms if a not in ARMS]
        if unknown:
            raise ValueError(f"arms={unknown} are unknown; choose from {list(ARMS)}")
        if self.iterations < 1 or self.T < 1 or not self.seeds:
            raise ValueError(
                f"iterations={self.iterations} and T={self.T} must be >= 1 and seeds "
                f"{list(self.seeds)} non-empty"
            )


def load_cifar_victims(root: str | Path, images: int) -> tuple[Tensor, Tensor, Tensor, list[int]]:
    """Test images ``[N, 3, 32, 32]`` (one per class: indices 0, 1000, ... of the class-sorted
    test split), their labels, 64 private calibration images (train) and the indices.

    Reads whatever CIFAR-10 release ``root`` holds (pickles or the lossy JPEG zip).
    """
    from spikefed.data import load_dataset

    if not 1 <= images <= 10:
        raise ValueError(f"--images={images} must lie in 1..10 (one test image per class)")
    test = load_dataset("cifar10", "test", root=str(root))
    train = load_dataset("cifar10", "train", root=str(root))
    per_class = len(test.y) // 10
    idx = [c * per_class for c in range(images)]
    x = torch.as_tensor(test.x[idx]).float()
    y = torch.as_tensor(test.y[idx]).long()
    calib = torch.as_tensor(train.x[:64]).float()
    return x, y, calib, idx


def build_arms(
    arms: tuple[str, ...], seed: int, calib: Tensor, T: int, num_classes: int = 10
) -> dict[str, nn.Module]:
    """The victim model of every arm, all from the weights ``seed`` draws for ``lenet-dlg``."""
    torch.manual_seed(seed)
    shape = tuple(calib.shape[1:])
    relu = build_model("lenet-dlg", spiking=False, in_shape=shape, num_classes=num_classes,
                       norm="none", activation="relu")
    out: dict[str, nn.Module] = {}
    for arm in arms:
        if arm == "ann-relu":
            out[arm] = relu.train()
        elif arm == "ann-sigmoid":
            sig = build_model("lenet-dlg", spiking=False, in_shape=shape,
                              num_classes=num_classes, norm="none", activation="sigmoid")
            sig.load_state_dict(relu.state_dict())
            out[arm] = sig.train()
        else:
            out[arm] = snfl_convert(copy.deepcopy(relu), calib, T).model.train()
    return out


def attack_one(
    model: nn.Module, x: Tensor, y: Tensor, iterations: int, seed: int,
    snapshots: tuple[int, ...] = (),
) -> tuple[dict[str, Any], dict[int, Tensor]]:
    """DLG on one image; the metrics row and the reconstructions at the ``snapshots`` steps.

    A stalled L-BFGS (a step that changes nothing) is stopped early; its reconstruction
    would stay the same for the remaining steps, and the snapshots are filled with it.
    """
    threat = ThreatModel("fedsgd")
    domain = InputDomain("image", tuple(x.shape[1:]))
    problem = Problem(model, observe(model, x, y, threat), threat, domain, 10, len(x))
    shots: dict[int, Tensor] = {}
    step = 0

    def monitor(x_hat: Tensor) -> tuple[float, float]:
        nonlocal step
        step += 1
        if step in snapshots:
            shots[step] = x_hat[0].detach().cpu().clone()
        return float(M.psnr(x_hat, x).mean()), float(M.ssim(x_hat, x).mean())

    t0 = time.perf_counter()
    res = dlg(problem, iterations=iterations, lr=1.0, inner_iter=20, line_search=True,
              seed=seed, record_every=1, monitor=monitor, stop_when_stalled=True)
    final = res.reconstruction
    for s in snapshots:
        if s > res.steps and s <= iterations:
            shots[s] = final[0].cpu().clone()
    hist = res.history
    leak = M.iterations_to_leak([int(h["iteration"]) for h in hist], [h["psnr"] for h in hist],
                                [h["ssim"] for h in hist])
    row = {
        "psnr": float(M.psnr(final, x).mean()),
        "ssim": float(M.ssim(final, x).mean()),
        "iters_to_leak": leak,
        "steps": res.steps,
        "grad_evals": res.grad_evals,
        "loss": res.loss,
        "seconds": time.perf_counter() - t0,
    }
    return row, shots


def run_dlg_cifar(
    x: Tensor, y: Tensor, calib: Tensor, setting: DLGCifarSetting, out: Path,
    image_ids: list[int] | None = None, progress: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """Attack every image with every arm and seed; write the CSV, summary and strips."""
    out.mkdir(parents=True, exist_ok=True)
    ids = image_ids or list(range(len(x)))
    rows: list[dict[str, Any]] = []
    strips: dict[str, dict[int, Tensor]] = {}
    for seed in setting.seeds:
        models = build_arms(setting.arms, seed, calib, setting.T)
        for i in range(len(x)):
            for arm, model in models.items():
                row, shots = attack_one(model, x[i : i + 1], y[i : i + 1], setting.iterations,
                                        seed, setting.snapshots)
                row.update(arm=arm, image=ids[i], label=int(y[i]), seed=seed)
                rows.append(row)
                if i == 0 and seed == setting.seeds[0]:
                    strips[arm] = shots
                if progress is not None:
                    progress(f"{arm} image {ids[i]} seed {seed}: {row['psnr']:.1f} dB")
    write_rows_csv(rows, out / "results.csv", CSV_FIELDS)
    (out / "summary.md").write_text(summary_markdown(rows, setting, len(x)))
    plot_strips(x[0], strips, setting.snapshots, out / "strips.png")
    return rows


def _mean_sd(values: list[float]) -> str:
    vals = [min(v, 100.0) for v in values]
    sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
    return f"{statistics.fmean(vals):.2f} ± {sd:.2f}"


def summary_markdown(rows: list[dict[str, Any]], setting: DLGCifarSetting, images: int) -> str:
    """One line per arm: leaked runs, median iterations to leak, final PSNR/SSIM, the paper."""
    lines = [
        "# DLG on its own LeNet, CIFAR-10, batch 1",
        "",
        f"{images} test images x seeds {list(setting.seeds)}; L-BFGS (lr 1, 20 inner "
        f"iterations, strong Wolfe), {setting.iterations} steps; SNN T={setting.T}. Leak: "
        "PSNR >= 20 dB or SSIM >= 0.5. Cells: mean ± std over runs (PSNR capped at 100 dB).",
        "",
    ]
    table = []
    for arm in setting.arms:
        rs = [r for r in rows if r["arm"] == arm]
        if not rs:
            continue
        its = [r["iters_to_leak"] for r in rs if r["iters_to_leak"] is not None]
        leak = f"{statistics.median(its):g} ({min(its)}–{max(its)})" if its else "never"
        table.append([arm, f"{len(its)}/{len(rs)}", leak, _mean_sd([r["psnr"] for r in rs]),
                      _mean_sd([r["ssim"] for r in rs]),
                      f"{statistics.median([r['steps'] for r in rs]):g}", PAPER[arm]])
    lines.append(markdown_table(["arm", "leaked", "median iters to leak (range)",
                                 "final PSNR dB", "final SSIM", "median steps run", "paper"],
                                table))
    return "\n".join(lines) + "\n"


def plot_strips(truth: Tensor, strips: dict[str, dict[int, Tensor]], snapshots: tuple[int, ...],
                path: Path) -> None:
    """Ground truth, then each arm's reconstruction after the ``snapshots`` steps."""
    import matplotlib.pyplot as plt

    from spikefed.report.figures import save_png

    cols = 1 + len(snapshots)
    fig, axes = plt.subplots(len(strips), cols, figsize=(1.3 * cols, 1.45 * len(strips)),
                             squeeze=False)
    for r, (arm, shots) in enumerate(strips.items()):
        for c in range(cols):
            ax = axes[r][c]
            ax.axis("off")
            img = truth if c == 0 else shots.get(snapshots[c - 1])
            if img is not None:
                ax.imshow(img.clamp(0, 1).permute(1, 2, 0).numpy())
            ax.set_title("truth" if c == 0 else f"it {snapshots[c - 1]}", fontsize=7)
        axes[r][0].text(-4, 16, arm, fontsize=7, ha="right", va="center")
    save_png(fig, path, dpi=110)
