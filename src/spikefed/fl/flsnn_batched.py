"""Batched FL-SNN: many (setting, trial, device) GLM models trained as one tensor computation.

The reproduction (``spikefed reproduce fl-snn``) sweeps communication periods and rates on common
randomness: every run is a slice of one batch, stepped by the same :class:`LocalLearner` and
exchanged with the same :func:`top_k_sent` / :func:`partial_average` / :func:`exchange_bytes` as
the registered :class:`~spikefed.fl.flsnn.FLSNN` algorithm that ``spikefed run`` drives.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from spikefed.fl.flsnn import (
    LocalLearner,
    exchange_bytes,
    k_for_rate,
    n_dense_values,
    n_ff_values,
    partial_average,
    stream_order,
    top_k_sent,
    valid_coefficients,
)
from spikefed.snn.glm import GLMSNN, LearningRule, Params


@dataclass(frozen=True)
class RunSetting:
    """One federated run of the batched engine: ``tau=None`` means never communicate."""

    tau: int | None
    comm_rate: float = 1.0
    trial: int = 0

    def __post_init__(self) -> None:
        if self.tau is not None and self.tau < 1:
            raise ValueError(f"tau={self.tau} must be >= 1 (or None for separate training)")
        if not 0 < self.comm_rate <= 1:
            raise ValueError(f"comm_rate={self.comm_rate} must lie in (0, 1]")


@dataclass
class FLHistory:
    """Per-evaluation metrics of every (run, device) model, and exact communication counts."""

    settings: list[RunSetting]
    n_devices: int
    iterations: list[int] = field(default_factory=list)      # global iteration t of each eval
    loss: list[torch.Tensor] = field(default_factory=list)    # each [R, D]
    accuracy: list[torch.Tensor] = field(default_factory=list)
    bytes_up: torch.Tensor | None = None                      # [R, D] totals
    bytes_down: torch.Tensor | None = None
    rounds: torch.Tensor | None = None                        # [R] communication rounds
    sent_per_round: list[tuple[int, torch.Tensor]] = field(default_factory=list)

    def loss_tensor(self) -> torch.Tensor:
        """``[evals, R, D]``."""
        return torch.stack(self.loss)

    def accuracy_tensor(self) -> torch.Tensor:
        """``[evals, R, D]``."""
        return torch.stack(self.accuracy)


def run_federated(snn: GLMSNN, rule: LearningRule,
                  devices: Sequence[tuple[torch.Tensor, torch.Tensor]],
                  test: tuple[torch.Tensor, torch.Tensor], settings: Sequence[RunSetting], *,
                  n_examples: int, n_evals: int = 20, seed: int = 0, init_scale: float = 0.5,
                  progress: Callable[[int, int], None] | None = None) -> FLHistory:
    """Train every ``settings`` run on ``devices`` (one ``(x, y)`` pool each) as one batch.

    Runs of the same trial share the initial parameters and every device's example order, so
    settings are compared on common randomness. Models are evaluated ``n_evals`` times, evenly
    over the ``T`` global iterations; ``progress(done, total)`` is called every iteration.
    """
    settings = list(settings)
    n_dev, n_runs = len(devices), len(settings)
    if n_dev < 1 or n_runs < 1:
        raise ValueError("need at least one device and one run setting")
    sizes = [len(y) for _, y in devices]
    starts = torch.tensor([0, *sizes]).cumsum(0)[:-1]
    pool_x = torch.cat([x for x, _ in devices])
    pool_y = torch.cat([y for _, y in devices])
    trials = sorted({s.trial for s in settings})
    init, orders = {}, {}
    for tr in trials:
        g = torch.Generator().manual_seed(seed * 1000 + tr)
        init[tr] = snn.init_params(1, g, scale=init_scale)
        orders[tr] = torch.stack([stream_order(sizes[d], n_examples, g) + starts[d]
                                  for d in range(n_dev)])
    params = {k: torch.cat([init[s.trial][k].expand(n_dev, *init[s.trial][k].shape[1:])
                            for s in settings]).clone() for k in init[trials[0]]}
    order = torch.cat([orders[s.trial] for s in settings])
    gen = torch.Generator().manual_seed(seed * 1000 + 999)
    learner = LocalLearner(snn, rule, pool_x, pool_y, order, gen)
    total = learner.total_iterations
    eval_at = sorted({round(total * (i + 1) / n_evals) for i in range(n_evals)})
    hist = FLHistory(settings, n_dev)
    hist.bytes_up = torch.zeros(n_runs, n_dev, dtype=torch.int64)
    hist.bytes_down = torch.zeros_like(hist.bytes_up)
    hist.rounds = torch.zeros(n_runs, dtype=torch.int64)
    n_ff, n_dense = n_ff_values(snn), n_dense_values(snn)
    k_run = torch.tensor([k_for_rate(snn, s.comm_rate) for s in settings])
    valid = valid_coefficients(snn)

    def record(t: int) -> None:
        ev = snn.evaluate(params, test[0], test[1], gen)
        hist.iterations.append(t)
        hist.loss.append(ev.loss.reshape(n_runs, n_dev))
        hist.accuracy.append(ev.accuracy.reshape(n_runs, n_dev))

    for t in range(total):
        learner.step(params)
        comm = torch.tensor([s.tau is not None and (t + 1) % s.tau == 0 for s in settings])
        if comm.any():
            sent = _communicate(params, learner, comm, k_run, valid, n_dev)
            counts = sent.sum(-1)                                   # [R, D] coefficients sent
            hist.sent_per_round.append((t + 1, counts))
            for r in comm.nonzero().flatten().tolist():
                for d in range(n_dev):
                    up, down = exchange_bytes(int(counts[r, d]), n_ff, n_dense)
                    hist.bytes_up[r, d] += up
                    hist.bytes_down[r, d] += down
                hist.rounds[r] += 1
        if t + 1 in eval_at:
            record(t + 1)
        if progress is not None:
            progress(t + 1, total)
    return hist


def _communicate(params: Params, learner: LocalLearner, comm: torch.Tensor, k_run: torch.Tensor,
                 valid: torch.Tensor, n_dev: int) -> torch.Tensor:
    """One exchange for the runs flagged in ``comm`` (in place); returns the sent mask."""
    n_runs = comm.shape[0]
    for name in ("fb", "bias"):
        v = params[name].view(n_runs, n_dev, -1)
        mean = v.mean(1, keepdim=True).expand_as(v)
        v.copy_(torch.where(comm[:, None, None], mean, v))
    ff = params["ff"].view(n_runs, n_dev, -1)
    sent = torch.zeros(ff.shape, dtype=torch.bool)
    full = comm & (k_run >= int(valid.sum()))
    sent[full] = valid
    part = (comm & ~full).nonzero().flatten()
    if len(part):
        score = learner.score.view(n_runs, n_dev, -1)[part].reshape(len(part) * n_dev, -1)
        chosen = top_k_sent(score, valid, k_run[part].repeat_interleave(n_dev))
        sent[part] = chosen.view(len(part), n_dev, -1)
    ff.copy_(partial_average(ff, sent))
    learner.score.view(n_runs, n_dev, -1).masked_fill_(sent, 0.0)   # unsent keep accumulating
    return sent
