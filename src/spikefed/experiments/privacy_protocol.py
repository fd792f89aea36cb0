"""Protocol-level attack on SNFL against plain FedAvg, under the same local training.

Per victim image and number of local steps ``E``:

1. An SNFL federation (:func:`spikefed.fl.snfl.s_fedavg`, bias calibration) of two clients
   runs one round: the victim holds only its image (batch 1), a peer holds ``peer_images``
   other images. The server aggregates and broadcasts.
2. Round two: the victim trains ``E`` SGD steps (batch 1, learning rate ``lr``) from the
   broadcast and its private biases, converts and uploads. The server recovers the
   victim's ANN weights (``W_A = W_S sigma / gamma``), forms the update
   ``(W_broadcast - W_A) / lr`` and inverts it with the starting biases replaced by an
   estimate (:data:`spikefed.privacy.protocol.BIAS_ESTIMATES`).
3. The FedAvg arm attacks the same client's full update (weights and biases, starting point
   known): what a FedAvg server sees for the same local training.

The recovered weight update is compared with the update computed directly from the
client's training (``weight_update_error``, the largest absolute difference): the SNFL
upload reveals it exactly up to float rounding.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from spikefed.fl.base import ClientData, TrainContext, Upload
from spikefed.fl.snfl import s_fedavg
from spikefed.models import build_model
from spikefed.privacy import metrics as M
from spikefed.privacy.attacks import AttackResult, Problem, idlg, inverting_gradients
from spikefed.privacy.domains import InputDomain
from spikefed.privacy.labels import idlg_label
from spikefed.privacy.protocol import (
    BIAS_ESTIMATES,
    ProtocolProblem,
    bias_keys,
    estimate_start_biases,
    known_keys,
    recover_client_weights,
    weight_update,
)
from spikefed.privacy.threat import ThreatModel, observe, trainable
from spikefed.report.tables import markdown_table, write_rows_csv

ARMS = ("fedavg", *(f"snfl-{b}" for b in BIAS_ESTIMATES))
CSV_FIELDS = ["arm", "attack", "local_steps", "image", "seed", "psnr", "ssim", "iters_to_leak",
              "label_ok", "weight_update_error", "bias_error", "seconds"]


@dataclass
class ProtocolSetting:
    """The model, the local training and the attack budget (see the module docstring)."""

    model: str = "mlp"
    options: dict[str, Any] | None = None
    norm: str = "none"
    local_steps: tuple[int, ...] = (1, 5)
    lr: float = 0.05
    T: int = 8
    attacks: tuple[str, ...] = ("ig", "idlg")
    ig_iterations: int = 300
    dlg_iterations: int = 50
    seeds: tuple[int, ...] = (0,)
    peer_images: int = 8

    def __post_init__(self) -> None:
        bad = [a for a in self.attacks if a not in ("ig", "idlg")]
        if bad or not self.local_steps or min(self.local_steps) < 1 or self.lr <= 0:
            raise ValueError(
                f"attacks={list(self.attacks)} (choose ig, idlg), local_steps="
                f"{list(self.local_steps)} (each >= 1) and lr={self.lr} (> 0) are invalid"
            )


@dataclass
class Exposure:
    """What the server holds after round two, and the truth to check it against."""

    model: nn.Module  # the client ANN architecture at the broadcast weights
    layout: dict[str, Any]
    broadcast: dict[str, Tensor]
    recovered: dict[str, Tensor]  # victim ANN weights after local training (from its upload)
    previous_upload: dict[str, Tensor]
    previous_round: list[dict[str, Tensor]]
    true_start: dict[str, Tensor]  # the victim's real starting parameters (biases included)


def _model_fn(setting: ProtocolSetting, shape: tuple[int, ...]) -> Callable[[], nn.Module]:
    def make() -> nn.Module:
        return build_model(setting.model, spiking=False, in_shape=shape, num_classes=10,
                           norm=setting.norm, **({"bias": True} if setting.norm == "bn" else {}),
                           **(setting.options or {}))
    return make


def snfl_exposure(
    x: Tensor, y: Tensor, peer_x: Tensor, peer_y: Tensor, setting: ProtocolSetting,
    steps: int, seed: int,
) -> Exposure:
    """Run the two SNFL rounds of the module docstring and collect what the server holds."""
    make = _model_fn(setting, tuple(x.shape[1:]))
    algo = s_fedavg(T=setting.T, calibration="bias", calib_size=64)
    torch.manual_seed(seed)
    template = make()
    state, bcast = algo.init_server(template)
    data = [ClientData(x, y), ClientData(peer_x, peer_y)]
    states: list[dict[str, Any]] = [{} for _ in range(2)]

    def ctx(c: int, r: int) -> TrainContext:
        return TrainContext(model_fn=make, local_epochs=steps if c == 0 else 1,
                            batch_size=1 if c == 0 else len(peer_y), lr=setting.lr,
                            seed=seed, round=r)

    first: list[Upload] = []
    for c in range(2):
        up, states[c], _ = algo.client_update(c, bcast, states[c], data[c], ctx(c, 0))
        first.append(up)
    state, bcast = algo.aggregate(state, first)
    true_start = {**bcast, **states[0]["bias"]}
    victim, _, _ = algo.client_update(0, bcast, states[0], data[0], ctx(0, 1))
    layout = state["layout"]
    model = make().train()
    model.load_state_dict(true_start, strict=False)
    return Exposure(model, layout, dict(bcast), recover_client_weights(algo, layout,
                    victim.tensors), first[0].tensors, [u.tensors for u in first], true_start)


def arm_problem(arm: str, exp: Exposure, x: Tensor, y: Tensor, threat: ThreatModel
                ) -> tuple[Problem, dict[str, float]]:
    """The inversion problem of ``arm`` and its checks (update error, bias error)."""
    domain = InputDomain("image", tuple(x.shape[1:]))
    true_update = observe(exp.model, x, y, threat)
    if arm == "fedavg":
        return Problem(exp.model, true_update, threat, domain, 10, len(x)), {}
    known = known_keys(exp.model, exp.layout)
    observed = weight_update(exp.broadcast, exp.recovered, threat.lr)
    target = {k: observed[k] for k in known}
    err = max(float((target[k] - true_update[k]).abs().max()) for k in known)
    kind = arm.removeprefix("snfl-")
    biases = estimate_start_biases(
        kind if kind != "joint" else "inferred", exp.layout, exp.previous_upload,
        exp.previous_round, exp.true_start)
    start = {**{k: v for k, v in trainable(exp.model).items() if k not in biases}, **biases}
    bias_err = max(float((biases[k] - exp.true_start[k]).abs().max())
                   for k in bias_keys(exp.layout))
    problem = ProtocolProblem(exp.model, target, threat, domain, 10, len(x), start=start,
                              learn_biases=tuple(biases) if kind == "joint" else ())
    return problem, {"weight_update_error": err, "bias_error": bias_err}


def attack(name: str, problem: Problem, x: Tensor, setting: ProtocolSetting, seed: int
           ) -> AttackResult:
    """IG (cosine, signed Adam, TV) or iDLG (L-BFGS) with a PSNR/SSIM monitor."""
    def monitor(x_hat: Tensor) -> tuple[float, float]:
        return float(M.psnr(x_hat, x).mean()), float(M.ssim(x_hat, x).mean())

    if name == "ig":
        return inverting_gradients(problem, iterations=setting.ig_iterations, lr=0.1, tv=1e-4,
                                   seed=seed, record_every=10, monitor=monitor)
    return idlg(problem, iterations=setting.dlg_iterations, seed=seed, record_every=1,
                monitor=monitor, stop_when_stalled=True)


def run_protocol_attack(
    x: Tensor, y: Tensor, peer_x: Tensor, peer_y: Tensor, setting: ProtocolSetting, out: Path,
    arms: tuple[str, ...] = ARMS, progress: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """Every (seed, local steps, image, arm, attack); writes ``results.csv`` and ``summary.md``."""
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    for seed in setting.seeds:
        for steps in setting.local_steps:
            threat = ThreatModel("fedavg", steps, setting.lr)
            for i in range(len(x)):
                xi, yi = x[i : i + 1], y[i : i + 1]
                exp = snfl_exposure(xi, yi, peer_x, peer_y, setting, steps, seed)
                for arm in arms:
                    problem, checks = arm_problem(arm, exp, xi, yi, threat)
                    for name in setting.attacks:
                        t0 = time.perf_counter()
                        res = attack(name, problem, xi, setting, seed)
                        h = res.history
                        rows.append({
                            "arm": arm, "attack": name, "local_steps": steps, "image": i,
                            "seed": seed, "psnr": float(M.psnr(res.reconstruction, xi).mean()),
                            "ssim": float(M.ssim(res.reconstruction, xi).mean()),
                            "iters_to_leak": M.iterations_to_leak(
                                [int(r["iteration"]) for r in h], [r["psnr"] for r in h],
                                [r["ssim"] for r in h]),
                            "label_ok": int(idlg_label(problem.target) == int(yi[0])),
                            "seconds": time.perf_counter() - t0, **checks,
                        })
                        if progress is not None:
                            progress(f"E={steps} {arm}/{name}: {rows[-1]['psnr']:.1f} dB")
    write_rows_csv(rows, out / "results.csv", CSV_FIELDS)
    (out / "summary.md").write_text(summary_markdown(rows, setting, len(x)))
    return rows


def summary_markdown(rows: list[dict[str, Any]], setting: ProtocolSetting, images: int) -> str:
    """One line per (local steps, attack, arm)."""
    lines = [
        "# SNFL protocol-level attack vs FedAvg",
        "",
        f"Model {setting.model} {setting.options or {}} (norm {setting.norm}), {images} images x "
        f"seeds {list(setting.seeds)}, batch 1, SGD lr {setting.lr}; IG "
        f"{setting.ig_iterations} steps, iDLG {setting.dlg_iterations} L-BFGS steps. Leak: PSNR "
        ">= 20 dB or SSIM >= 0.5. Update error: largest |recovered - true| weight-update entry.",
        "",
    ]
    table = []
    keys = dict.fromkeys((r["local_steps"], r["attack"], r["arm"]) for r in rows)
    for steps, name, arm in keys:
        rs = [r for r in rows if (r["local_steps"], r["attack"], r["arm"]) == (steps, name, arm)]
        leaked = sum(r["iters_to_leak"] is not None for r in rs)

        def ms(k: str, rs: list[dict[str, Any]] = rs) -> str:
            v = [min(r[k], 100.0) for r in rs]
            return f"{statistics.fmean(v):.2f} ± {statistics.pstdev(v):.2f}"

        def worst(k: str, rs: list[dict[str, Any]] = rs) -> str:
            v = [r[k] for r in rs if r.get(k) is not None]
            return f"{max(v):.1e}" if v else "–"

        table.append([steps, name, arm, f"{leaked}/{len(rs)}", ms("psnr"), ms("ssim"),
                      f"{sum(r['label_ok'] for r in rs)}/{len(rs)}",
                      worst("weight_update_error"), worst("bias_error")])
    lines.append(markdown_table(["local steps", "attack", "arm", "leaked", "PSNR dB", "SSIM",
                                 "label", "update error", "bias error"], table))
    return "\n".join(lines) + "\n"



def protocol_setting(name: str, seeds: tuple[int, ...], iterations: int | None = None
                     ) -> ProtocolSetting:
    """The shipped settings: ``protocol-mnist`` (MLP 64, the bundled MNIST sample),
    ``protocol-cifar`` (``lenet-dlg`` with ReLU and PyTorch's init, CIFAR-10, IG only, one
    local step) and ``protocol-cifar-mlp`` (MLP 64 on CIFAR-10).

    ``iterations`` overrides the IG budget.
    """
    if name in ("protocol-mnist", "protocol-cifar-mlp"):
        cfg = ProtocolSetting(model="mlp", options={"hidden": [64]}, seeds=seeds)
    elif name == "protocol-cifar":
        cfg = ProtocolSetting(model="lenet-dlg", options={"init": "torch"}, local_steps=(1,),
                              attacks=("ig",), seeds=seeds)
    else:
        raise ValueError(f"setting={name!r} is unknown; choose protocol-mnist, protocol-cifar "
                         "or protocol-cifar-mlp")
    if iterations is not None:
        cfg.ig_iterations = iterations
    return cfg


def load_protocol_victims(name: str, images: int, root: Path | None = None
                          ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Victim test images and the peer's 8 training images.

    MNIST: the first ``images`` test images; CIFAR-10 (test split sorted by class): one per
    class, as in ``privacy_dlg``.
    """
    from spikefed.data import load_dataset

    dataset = "mnist-mini" if name == "protocol-mnist" else "cifar10"
    kw = {"root": str(root)} if root is not None else {}
    test, train = load_dataset(dataset, "test", **kw), load_dataset(dataset, "train", **kw)
    if not 1 <= images <= len(test.y):
        raise ValueError(f"--samples={images} must lie in 1..{len(test.y)}")
    idx = list(range(images))
    if dataset == "cifar10":
        if images > 10:
            raise ValueError(f"--samples={images} must lie in 1..10 (one test image per class)")
        idx = [c * (len(test.y) // 10) for c in range(images)]
    x, y = torch.as_tensor(test.x[idx]).float(), torch.as_tensor(test.y[idx]).long()
    return x, y, torch.as_tensor(train.x[:8]).float(), torch.as_tensor(train.y[:8]).long()
