"""Statistics-prior attack (GradInversion, Yin et al. 2021; Huang et al. 2021).

Inverting Gradients plus priors on the dummy batch's internal statistics:

- **BN prior**: for every BatchNorm layer, ``||mu(x') - mu*|| + ||var(x') - var*||`` of its
  input over (batch, space); the targets are the layer's running statistics (DeepInversion)
  or statistics the attacker inferred otherwise (Huang et al. assume the batch's own).
- **Threshold prior** (converted SNNs, SNFL): the client uploads per-layer firing thresholds
  found by MMSE search on its private calibration data, i.e. a high quantile of each layer's
  ANN activation. The prior pulls the 99th percentile of each layer's (rectified) input
  current towards its threshold: ``sum_l (q99(relu(h_l)) / theta_l - 1)^2``.

Labels are restored from the readout gradient for the whole batch; when the batch size is
unknown, each candidate size gets a short probe run and the size with the lowest matching
loss is kept.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from spikefed.privacy.attacks import AttackResult, Monitor, Problem, inverting_gradients
from spikefed.privacy.labels import restore_batch_labels


def _rectified_quantile(h: Tensor, q: float) -> Tensor:
    flat = h.clamp(min=0).flatten()
    k = max(1, int(round(q * flat.numel())))
    return flat.kthvalue(k).values


def make_prior(
    problem: Problem,
    bn_weight: float = 0.0,
    thresholds: Mapping[str, float | Tensor] | None = None,
    threshold_weight: float = 0.0,
) -> Callable[[Tensor], Tensor] | None:
    """The combined BN/threshold prior for ``problem.model`` (None when both weights are 0)."""
    model = problem.model
    bns = [m for m in model.modules() if isinstance(m, _BatchNorm) and m.running_mean is not None]
    acts: dict[str, nn.Module] = {}
    if thresholds and threshold_weight > 0:
        named = dict(model.named_modules())
        missing = sorted(set(thresholds) - set(named))
        if missing:
            raise ValueError(
                f"thresholds name unknown layers {missing}; expected module names "
                f"of the model's activation layers"
            )
        acts = {k: named[k] for k in thresholds}
    if (bn_weight <= 0 or not bns) and not acts:
        return None

    def prior(z: Tensor) -> Tensor:
        seen: list[Tensor] = []
        hooks = []
        if bn_weight > 0:
            for m in bns:

                def bn_hook(mod: nn.Module, inp: tuple[Tensor, ...], _out: Tensor) -> None:
                    h = inp[0]
                    dims = [0] + list(range(2, h.dim()))
                    seen.append(
                        bn_weight
                        * (
                            (h.mean(dims) - mod.running_mean).norm()
                            + (h.var(dims, unbiased=False) - mod.running_var).norm()
                        )
                    )

                hooks.append(m.register_forward_hook(bn_hook))
        for name, m in acts.items():
            theta = float(thresholds[name])  # type: ignore[index]

            def act_hook(
                _mod: nn.Module, inp: tuple[Tensor, ...], _out: object, theta: float = theta
            ) -> None:
                seen.append(threshold_weight * (_rectified_quantile(inp[0], 0.99) / theta - 1) ** 2)

            hooks.append(m.register_forward_hook(act_hook))
        try:
            model(problem.domain.model_input(z))
        finally:
            for h in hooks:
                h.remove()
        return torch.stack(seen).mean() if seen else z.sum() * 0.0

    return prior


def statprior_attack(
    problem: Problem,
    *,
    iterations: int = 300,
    lr: float = 0.1,
    tv: float = 1e-4,
    bn_weight: float = 0.01,
    thresholds: Mapping[str, float | Tensor] | None = None,
    threshold_weight: float = 0.1,
    batch_sizes: Sequence[int] | None = None,
    probe_iterations: int = 50,
    restarts: int = 1,
    seed: int = 0,
    record_every: int = 10,
    monitor: Monitor | None = None,
    monitor_for: Callable[[int], Monitor | None] | None = None,
) -> AttackResult:
    """GradInversion-style attack; ``batch_sizes`` lists candidates when the size is unknown.

    ``monitor_for(b)`` builds the history monitor for candidate size ``b`` (scoring needs the
    matching batch size); it overrides ``monitor`` when given.
    """
    candidates = list(batch_sizes) if batch_sizes else [problem.batch]
    if any(b < 1 for b in candidates):
        raise ValueError(f"batch_sizes={candidates} must be positive")

    def attack_with(b: int, **kwargs: Any) -> AttackResult:
        """Inverting Gradients with the priors, assuming batch size ``b``."""
        probe = replace(problem, batch=b)
        return inverting_gradients(
            probe, lr=lr, tv=tv, labels=restore_batch_labels(problem.target, b),
            prior=make_prior(probe, bn_weight, thresholds, threshold_weight), seed=seed, **kwargs)

    best_b, best_loss = candidates[0], float("inf")
    if len(candidates) > 1:  # unknown batch size: keep the size whose short probe fits best
        for b in candidates:
            loss = attack_with(b, iterations=probe_iterations, record_every=probe_iterations).loss
            if loss < best_loss:
                best_b, best_loss = b, loss
    mon = monitor_for(best_b) if monitor_for is not None else monitor
    return attack_with(best_b, iterations=iterations, restarts=restarts,
                       record_every=record_every, monitor=mon)
