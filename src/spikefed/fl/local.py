"""The local training loop shared by every gradient-based algorithm."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext

import torch
from torch import nn
from torch.nn import functional as F

from spikefed.data.augment import batch_augmenter
from spikefed.fl.base import ClientData, TrainContext
from spikefed.snn.counters import ActivityCounter

Penalty = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]
GradHook = Callable[[nn.Module], None]
#: `TrainContext.options` key of a DP-SGD gradient source (`spikefed.fl.dp.SampleDP`): its
#: `backward(model, x, y, extra_loss)` replaces `loss.backward()`.
SAMPLE_DP_OPTION = "sample_dp"
#: `TrainContext.options` key of an extra data-free penalty added to the algorithm's own
#: (drift consolidation, `spikefed.drift.consolidation`), with the `Penalty` signature.
CONSOLIDATION_OPTION = "consolidation"


def client_generator(seed: int, round_idx: int, client_id: int) -> torch.Generator:
    """A generator whose stream depends only on (seed, round, client): resume stays exact."""
    return torch.Generator().manual_seed(hash((seed, round_idx, client_id)) & 0x7FFF_FFFF)


def seed_global_rng(seed: int, device: torch.device) -> None:
    """Seed the generators stochastic layers (rate encoders) draw from on `device`.

    Cheaper than `torch.manual_seed`, which also initialises every lazy accelerator generator
    (about 0.3 ms per call, measured in benchmarks/bench_sim.py).
    """
    torch.default_generator.manual_seed(seed)
    if device.type == "cuda":
        torch.cuda.manual_seed(seed)


def make_optimizer(model: nn.Module, ctx: TrainContext) -> torch.optim.Optimizer:
    """Build the client optimiser named in the context."""
    params = [p for p in model.parameters() if p.requires_grad]
    if ctx.optimizer == "sgd":
        return torch.optim.SGD(params, lr=ctx.lr, momentum=ctx.momentum,
                               weight_decay=ctx.weight_decay)
    if ctx.optimizer == "adam":
        return torch.optim.Adam(params, lr=ctx.lr, weight_decay=ctx.weight_decay)
    raise ValueError(f"train.optimizer={ctx.optimizer!r} is not supported; use 'sgd' or 'adam'")


def iterate_minibatches(data: ClientData, batch_size: int, generator: torch.Generator):
    """Yield shuffled (x, y) minibatches, applying the client's feature transform if any."""
    order = torch.randperm(len(data), generator=generator)
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        x = data.x[idx]
        if data.transform is not None:
            x = data.transform(x)
        yield x, data.y[idx]


def local_train(
    model: nn.Module,
    data: ClientData,
    ctx: TrainContext,
    client_id: int,
    penalty: Penalty | None = None,
    grad_hook: GradHook | None = None,
) -> dict[str, float]:
    """Run `ctx.local_epochs` epochs of minibatch training in place.

    `penalty(model, x, logits)` adds a regulariser to the cross-entropy (FedProx, MOON);
    `ctx.options[CONSOLIDATION_OPTION]`, a second penalty, is added to it (drift consolidation);
    `grad_hook(model)` edits gradients before the step (SCAFFOLD); a DP-SGD gradient source
    in `ctx.options[SAMPLE_DP_OPTION]` computes them (then the penalty must not depend on the
    data). Returns the mean training loss and accuracy and the number of optimiser steps taken.
    The context's recipe options apply here: `augment` (per minibatch, on the device), `amp`
    (bf16 autocast) and `channels_last`.
    """
    model.train()
    model.to(ctx.device)
    if ctx.channels_last:
        model.to(memory_format=torch.channels_last)
    augment = batch_augmenter(ctx.augment, ctx.seed, ctx.round, client_id)
    optimizer = make_optimizer(model, ctx)
    generator = client_generator(ctx.seed, ctx.round, client_id)
    seed_global_rng(int(torch.randint(0, 2**31 - 1, (1,), generator=generator)), ctx.device)
    counter = ActivityCounter(model) if ctx.count_activity else None
    with counter if counter is not None else nullcontext():
        total_loss, correct, seen, steps = _train_epochs(model, data, ctx, client_id, penalty,
                                                         grad_hook, optimizer, generator,
                                                         augment, counter)
    if seen == 0:
        raise ValueError(f"client {client_id} has no training samples; "
                         "raise data.partition.min_size")
    metrics = {"train_loss": total_loss / seen, "train_acc": correct / seen,
               "steps": float(steps)}
    if counter is not None:
        metrics.update(train_spikes=float(counter.spikes), train_synops=float(counter.synops),
                       train_macs=float(counter.macs))
    return metrics


def _train_epochs(model: nn.Module, data: ClientData, ctx: TrainContext, client_id: int,
                  penalty: Penalty | None, grad_hook: GradHook | None,
                  optimizer: torch.optim.Optimizer, generator: torch.Generator,
                  augment: Callable[[torch.Tensor], torch.Tensor] | None,
                  counter: ActivityCounter | None) -> tuple[float, int, int, int]:
    """The epochs of `local_train`: (summed loss, correct, samples seen, steps).

    `counter` counts only the training forward `model(x)` (a penalty's or DP's extra passes
    are not counted)."""
    private = ctx.options.get(SAMPLE_DP_OPTION)
    consolidation = ctx.options.get(CONSOLIDATION_OPTION)
    total_loss, correct, seen, steps = 0.0, 0, 0, 0
    for _ in range(ctx.local_epochs):
        for x, y in iterate_minibatches(data, ctx.batch_size, generator):
            x, y = x.to(ctx.device), y.to(ctx.device)
            if augment is not None:
                x = augment(x)
            if ctx.channels_last and x.dim() == 4:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(ctx.device.type, dtype=torch.bfloat16, enabled=ctx.amp):
                if counter is not None:
                    counter.counting = True
                logits = model(x)
                if counter is not None:
                    counter.counting = False
                loss = F.cross_entropy(logits, y)
                extra = penalty(model, x, logits) if penalty is not None else None
                if consolidation is not None:
                    kept = consolidation(model, x, logits)
                    extra = kept if extra is None else extra + kept
                if extra is not None:
                    loss = loss + extra
            optimizer.zero_grad(set_to_none=True)
            if private is None:
                loss.backward()
            else:  # DP-SGD: clipped, noised per-sample gradients (spikefed.fl.dp)
                private.backward(model, x, y, extra)
            if grad_hook is not None:
                grad_hook(model)
            optimizer.step()
            total_loss += float(loss.detach()) * len(y)
            correct += int((logits.argmax(1) == y).sum())
            seen += len(y)
            steps += 1
    return total_loss, correct, seen, steps
