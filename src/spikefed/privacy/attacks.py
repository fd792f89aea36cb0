"""Gradient-inversion attacks: DLG, iDLG and Inverting Gradients.

- **DLG** (Zhu et al. 2019): a dummy input and a dummy soft label, optimised with L-BFGS on
  the squared L2 distance between the dummy's and the observed gradients.
- **iDLG** (Zhao et al. 2020): the label is read from the sign of the readout gradient, then
  DLG optimises the input only.
- **Inverting Gradients** (Geiping et al. 2020): cosine distance plus total variation, Adam on
  the *sign* of the input gradient, box constraints, step decay at 3/8, 5/8 and 7/8 of the
  budget, several restarts of which the one with the lowest loss is kept.

Every attack returns an :class:`AttackResult` with its history. An iteration is one optimiser
step; ``grad_evals`` counts evaluations of the matching loss and its gradient (L-BFGS takes
several per step, Adam one).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from spikefed.privacy import devices
from spikefed.privacy.domains import InputDomain
from spikefed.privacy.labels import restore_batch_labels
from spikefed.privacy.threat import Grads, ThreatModel, observe

# called with the current reconstruction [B, ...] in [0, 1]; returns (psnr, ssim) for history
Monitor = Callable[[Tensor], tuple[float, float]]


@dataclass
class AttackResult:
    """Outcome of one attack run."""

    reconstruction: Tensor  # [B, ...] in [0, 1]
    labels: Tensor  # [B] restored labels
    steps: int  # optimiser steps taken
    grad_evals: int  # matching-loss gradient evaluations
    loss: float  # final matching loss of the kept run
    history: list[dict[str, float]] = field(default_factory=list)


@dataclass
class Problem:
    """One inversion problem: the model at the observed parameters, the observation, the setting."""

    model: nn.Module
    target: Grads
    threat: ThreatModel
    domain: InputDomain
    num_classes: int
    batch: int

    @property
    def device(self) -> torch.device:
        """Where the model lives; the attack's variables are created there."""
        return devices.module_device(self.model)

    def simulate(self, z: Tensor, y: Tensor) -> Grads:
        """The attacker's differentiable simulation of the observation for dummy ``(z, y)``."""
        return observe(self.model, self.domain.model_input(z), y, self.threat, create_graph=True)

    def variables(self) -> list[Tensor]:
        """Unknowns optimised with the input (none here; see ``privacy.protocol``)."""
        return []

    def reset_variables(self) -> None:
        """Put the extra unknowns back at their starting values (before each restart)."""


def l2_distance(a: Grads, b: Grads) -> Tensor:
    """Squared L2 distance summed over all tensors."""
    return sum(((a[k] - b[k]) ** 2).sum() for k in b)  # type: ignore[return-value]


def cosine_distance(a: Grads, b: Grads) -> Tensor:
    """``1 - cos`` between the two gradients flattened into single vectors."""
    dot = sum((a[k] * b[k]).sum() for k in b)
    na = torch.sqrt(sum((a[k] ** 2).sum() for k in b))
    nb = torch.sqrt(sum((b[k] ** 2).sum() for k in b))
    return 1.0 - dot / (na * nb + 1e-12)


def total_variation(x: Tensor) -> Tensor:
    """Anisotropic total variation (mean absolute difference of neighbours, last two dims)."""
    return (x[..., 1:, :] - x[..., :-1, :]).abs().mean() + (
        x[..., :, 1:] - x[..., :, :-1]
    ).abs().mean()


def _backward(loss: Tensor) -> None:
    """Backpropagate the matching loss if it depends on the attacker's variables.

    A loss constant in them (a model silent on the dummy, so every simulated gradient is a
    materialised zero) leaves their gradients unset, which the optimisers read as zero.
    """
    if loss.requires_grad:
        loss.backward()


def _record(
    history: list[dict[str, float]],
    step: int,
    evals: int,
    loss: float,
    z: Tensor,
    problem: Problem,
    monitor: Monitor | None,
) -> None:
    row = {"iteration": float(step), "grad_evals": float(evals), "loss": loss}
    if monitor is not None:
        row["psnr"], row["ssim"] = monitor(problem.domain.reconstruction(z))
    history.append(row)


def dlg(
    problem: Problem,
    *,
    iterations: int = 100,
    lr: float = 1.0,
    inner_iter: int = 20,
    line_search: bool = True,
    labels: Tensor | None = None,
    seed: int = 0,
    record_every: int = 1,
    monitor: Monitor | None = None,
    stop_when_stalled: bool = False,
) -> AttackResult:
    """DLG with L-BFGS; ``labels`` fixes the labels (iDLG), otherwise soft labels are learnt.

    The dummies are drawn from a seeded CPU generator and moved to the model's device.
    ``stop_when_stalled`` ends the run once an L-BFGS step leaves the loss and the dummies
    bit for bit unchanged: its line search found no decrease from a point its history does
    not change, so every later step would repeat the same computation.
    """
    dev = problem.device
    gen = torch.Generator().manual_seed(seed)
    z = problem.domain.init(problem.batch, gen, device=dev).requires_grad_(True)
    learn_label = labels is None
    if labels is not None:
        labels = labels.to(dev)
    y_logit = devices.normal((problem.batch, problem.num_classes), gen, dev).requires_grad_(True)
    problem.reset_variables()
    variables = [z, y_logit, *problem.variables()] if learn_label else [z, *problem.variables()]
    opt = torch.optim.LBFGS(
        variables,
        lr=lr,
        max_iter=inner_iter,
        history_size=100,
        line_search_fn="strong_wolfe" if line_search else None,
        # PyTorch's absolute defaults (1e-7, 1e-9) end DLG at its first evaluation when the
        # observed gradient is small (sigmoid LeNet-5 at initialisation: distance 8e-5)
        tolerance_grad=1e-12,
        tolerance_change=1e-15,
    )
    evals = 0
    best = (float("inf"), z.detach().clone(), y_logit.detach().clone())
    history: list[dict[str, float]] = []

    def target_y() -> Tensor:
        return F.softmax(y_logit, -1) if learn_label else labels  # type: ignore[return-value]

    def closure() -> Tensor:
        nonlocal evals
        opt.zero_grad()
        loss = l2_distance(problem.simulate(z, target_y()), problem.target)
        _backward(loss)
        evals += 1
        return loss.detach()

    step = 0
    previous: tuple[float, Tensor] | None = None
    for step in range(1, iterations + 1):
        loss = float(opt.step(closure))
        if not math.isfinite(loss) or not torch.isfinite(z).all():
            with torch.no_grad():  # diverged: continue from the best point seen
                z.copy_(best[1])
                y_logit.copy_(best[2])
            break
        if loss < best[0]:
            best = (loss, z.detach().clone(), y_logit.detach().clone())
        if step % record_every == 0 or step == iterations:
            _record(history, step, evals, loss, z, problem, monitor)
        if loss == 0.0:
            break
        if stop_when_stalled:
            point = torch.cat([v.detach().flatten() for v in variables])
            if previous is not None and loss == previous[0] and torch.equal(point, previous[1]):
                break
            previous = (loss, point)
    z_best, y_best = best[1], best[2]
    out_labels = y_best.argmax(-1) if learn_label else labels
    return AttackResult(
        problem.domain.reconstruction(z_best),
        out_labels,
        step,
        evals,  # type: ignore[arg-type]
        best[0],
        history,
    )


def infer_labels(problem: Problem) -> Tensor:
    """Labels from the observed readout gradient (iDLG for one sample, counts for a batch).

    They lie on the device of the observation.
    """
    return restore_batch_labels(problem.target, problem.batch)


def idlg(problem: Problem, **kwargs) -> AttackResult:
    """iDLG: restore the label(s) analytically, then run DLG on the input only."""
    return dlg(problem, labels=infer_labels(problem), **kwargs)


def inverting_gradients(
    problem: Problem,
    *,
    iterations: int = 300,
    lr: float = 0.1,
    tv: float = 1e-4,
    restarts: int = 1,
    labels: Tensor | None = None,
    seed: int = 0,
    record_every: int = 10,
    monitor: Monitor | None = None,
    prior: Callable[[Tensor], Tensor] | None = None,
) -> AttackResult:
    """Inverting Gradients (cosine + TV, signed Adam, box constraints, step decay, restarts).

    ``prior(z)`` adds an extra differentiable penalty (used by the statistics-prior attack).
    """
    if restarts < 1:
        raise ValueError(f"restarts={restarts} must be >= 1")
    dev = problem.device
    y = (labels if labels is not None else infer_labels(problem)).to(dev)
    kept: AttackResult | None = None
    total_evals = 0
    for r in range(restarts):
        gen = torch.Generator().manual_seed(seed * 1000 + r)
        z = problem.domain.init(problem.batch, gen, device=dev).requires_grad_(True)
        problem.reset_variables()
        extra = problem.variables()
        opt = torch.optim.Adam([z, *extra], lr=lr)
        miles = [int(iterations * f) for f in (3 / 8, 5 / 8, 7 / 8)]
        sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=miles, gamma=0.1)
        history: list[dict[str, float]] = []
        loss_v = float("inf")
        for step in range(1, iterations + 1):
            opt.zero_grad()
            loss = cosine_distance(problem.simulate(z, y), problem.target)
            if tv > 0:
                loss = loss + tv * total_variation(
                    torch.sigmoid(z) if problem.domain.temporal else z
                )
            if prior is not None:
                loss = loss + prior(z)
            _backward(loss)
            total_evals += 1
            for v in (z, *extra):
                if v.grad is None:
                    v.grad = torch.zeros_like(v)
                v.grad.sign_()
            opt.step()
            sched.step()
            problem.domain.project(z)
            loss_v = float(loss.detach())
            if step % record_every == 0 or step == iterations:
                _record(history, step, total_evals, loss_v, z, problem, monitor)
        if kept is None or loss_v < kept.loss:
            kept = AttackResult(
                problem.domain.reconstruction(z), y, iterations, total_evals, loss_v, history
            )
    assert kept is not None
    kept.grad_evals = total_evals
    return kept
