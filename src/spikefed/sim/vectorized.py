"""Vectorised clients: train a round's homogeneous clients together with `torch.func`.

Every participant of a FedAvg/FedProx round starts from the same broadcast and runs the same
model, so their parameters can be stacked along a leading client axis and trained at once:
`vmap(grad(loss))` computes every client's gradient in one batched pass, and a functional
SGD step (momentum, weight decay and dampening 0, exactly as `torch.optim.SGD`) updates them.

Each client takes exactly the steps and sees exactly the samples it would in the serial loop
(`spikefed.fl.local.local_train`): its minibatch order comes from the same
`client_generator(seed, round, client)` stream, and clients with fewer samples get padded,
masked minibatches (a padded row has weight 0; a client whose steps are done is frozen,
momentum included). With a deterministic encoder (`direct`, `latency`) the result equals the
serial loop within float tolerance. The `rate` encoder draws Bernoulli spikes: under `vmap`
they come from one global stream (`randomness="different"`), so results are statistically
equivalent to the serial loop but not equal bit for bit.

Not vectorisable: algorithms that do not opt in (`vectorizable = True` declared on their own
class, currently `FedAvg` and `FedProx`), optimisers other than SGD, and models with buffers
(BatchNorm running statistics: use `model.norm=none` or `gn`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Literal

import torch
from torch import nn
from torch.func import functional_call, grad, vmap
from torch.nn import functional as F

from spikefed.fl.base import Algorithm, ClientData, Tensors, TrainContext, Upload
from spikefed.fl.fedprox import FedProx
from spikefed.fl.local import client_generator

VectorizeMode = Literal["off", "auto", "on"]
MODES = ("off", "auto", "on")

#: `auto` vectorises on CPU only when minibatches are at most this large (per-client work
#: small). docs/benchmarks.md: on CPU grouped vmap was 1.1-1.5x the loop at batch 16 and 128
#: (SNN MLP, 8-64 clients); larger batches were not measured, so `auto` stays serial there.
AUTO_MAX_BATCH_CPU = 128
#: ... and only with at least this many clients in the round.
AUTO_MIN_CLIENTS = 4
#: On CPU, clients are trained in groups of at most this many: with more, the stacked
#: parameters, gradients and momentum fall out of cache and a group becomes slower than the
#: loop (measured: 64 clients in one group 0.95x the loop, groups of 16 1.3x).
CPU_GROUP = 16


def vectorize_blockers(alg: Algorithm, model: nn.Module, ctx: TrainContext) -> list[str]:
    """Why the clients of `alg` on `model` cannot be trained together (empty list: they can)."""
    reasons = []
    if type(alg).__dict__.get("vectorizable") is not True:
        reasons.append(f"algorithm {alg.name!r} ({type(alg).__name__}) does not support "
                       "vectorised clients (FedAvg and FedProx do)")
    if ctx.optimizer != "sgd":
        reasons.append(f"train.optimizer={ctx.optimizer!r}: vectorised clients use SGD only")
    recipe = [k for k, on in (("data.augment", ctx.augment != "none"), ("train.amp", ctx.amp),
                              ("train.channels_last", ctx.channels_last)) if on]
    if recipe:
        reasons.append(f"{', '.join(recipe)}: vectorised clients train without augmentation, "
                       "autocast or channels-last; turn those off")
    buffers = [name for name, _ in model.named_buffers()]
    if buffers:
        shown = ", ".join(buffers[:3]) + (" ..." if len(buffers) > 3 else "")
        reasons.append(f"the model has buffers ({shown}), e.g. BatchNorm running statistics; "
                       "use model.norm=none or model.norm=gn")
    return reasons


def should_vectorize(mode: str, alg: Algorithm, model: nn.Module, ctx: TrainContext,
                     num_clients: int) -> bool:
    """Decide `train.vectorize` for one round; `on` raises `ValueError` when impossible.

    `auto` vectorises when nothing blocks it, the round has at least `AUTO_MIN_CLIENTS`
    clients and, on CPU, `train.batch_size <= AUTO_MAX_BATCH_CPU` (the range where grouped
    vmap was measured faster than the loop); on a GPU at any batch size.
    """
    if mode not in MODES:
        raise ValueError(f"train.vectorize={mode!r} is not valid; choose one of {list(MODES)}")
    if mode == "off" or num_clients == 0:
        return False
    blockers = vectorize_blockers(alg, model, ctx)
    if mode == "on":
        if blockers:
            raise ValueError("train.vectorize='on' is impossible here: " + "; ".join(blockers)
                             + ". Set train.vectorize=auto (falls back to the serial loop) "
                             "or off.")
        return True
    small_work = ctx.device.type != "cpu" or ctx.batch_size <= AUTO_MAX_BATCH_CPU
    return not blockers and num_clients >= AUTO_MIN_CLIENTS and small_work


def client_updates(alg: Algorithm, broadcast: Tensors, client_states: Mapping[int, dict[str, Any]],
                   clients: Sequence[ClientData], active: Sequence[int], ctx: TrainContext,
                   mode: str = "off") -> Iterator[tuple[int, Upload, dict[str, Any]]]:
    """`(client_id, upload, new_client_state)` for every client in `active`, in order.

    Serial (`alg.client_update` one client at a time, lazily) or vectorised per `mode`
    (on CPU in groups of at most `CPU_GROUP` clients, on a GPU all at once). The mode is
    decided here, before any client trains: `on` when impossible raises `ValueError` from
    this call, not from the iterator, so client-failure handling cannot swallow it.
    """
    model = None
    if mode != "off" and active:
        with torch.random.fork_rng(devices=[]):  # building a model must not move the RNG
            model = ctx.model_fn()
    if model is not None and should_vectorize(mode, alg, model, ctx, len(active)):
        group = CPU_GROUP if ctx.device.type == "cpu" else len(active)
        return _vectorized_updates(alg, broadcast, client_states, clients, list(active), ctx,
                                   model, group)
    return _serial_updates(alg, broadcast, client_states, clients, list(active), ctx)


def _serial_updates(alg: Algorithm, broadcast: Tensors,
                    client_states: Mapping[int, dict[str, Any]], clients: Sequence[ClientData],
                    active: list[int], ctx: TrainContext
                    ) -> Iterator[tuple[int, Upload, dict[str, Any]]]:
    for cid in active:
        upload, new_state, _ = alg.client_update(broadcast, client_states[cid], clients[cid], ctx)
        yield cid, upload, new_state


def _vectorized_updates(alg: Algorithm, broadcast: Tensors,
                        client_states: Mapping[int, dict[str, Any]],
                        clients: Sequence[ClientData], active: list[int], ctx: TrainContext,
                        model: nn.Module, group: int
                        ) -> Iterator[tuple[int, Upload, dict[str, Any]]]:
    for start in range(0, len(active), group):
        ids = active[start:start + group]
        uploads = train_vectorized(alg, broadcast, [clients[c] for c in ids], ids, ctx,
                                   model=model)
        for cid, upload in zip(ids, uploads, strict=True):
            yield cid, upload, client_states[cid]


def _schedule(datas: Sequence[ClientData], client_ids: Sequence[int], ctx: TrainContext
              ) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Per-client sample indices `[C, S, B]`, a validity mask and the first client's seed.

    Uses the serial loop's generator stream: one draw for the torch seed, then one
    `randperm` per epoch, cut into `batch_size` chunks (the last may be partial).
    """
    B = ctx.batch_size
    per_client: list[torch.Tensor] = []
    seeds: list[int] = []
    for data, cid in zip(datas, client_ids, strict=True):
        n = len(data)
        if n == 0:
            raise ValueError(f"client {cid} has no training samples; "
                             "raise data.partition.min_size")
        gen = client_generator(ctx.seed, ctx.round, cid)
        seeds.append(int(torch.randint(0, 2**31 - 1, (1,), generator=gen)))
        steps = math.ceil(n / B)
        epochs = []
        for _ in range(ctx.local_epochs):
            order = torch.randperm(n, generator=gen)
            epochs.append(torch.cat([order, order.new_full((steps * B - n,), -1)]).view(steps, B))
        per_client.append(torch.cat(epochs))
    S = max(len(p) for p in per_client)
    idx = torch.full((len(datas), S, B), -1, dtype=torch.long)
    for i, p in enumerate(per_client):
        idx[i, :len(p)] = p
    return idx.clamp_min(0), idx >= 0, seeds[0]


def train_vectorized(alg: Algorithm, broadcast: Tensors, datas: Sequence[ClientData],
                     client_ids: Sequence[int], ctx: TrainContext,
                     model: nn.Module | None = None) -> list[Upload]:
    """Train `datas` (one client each) from `broadcast` together; return their uploads.

    Equivalent to `alg.client_update` on each client (see the module docstring for the
    rate-encoder caveat). Raises `ValueError` when `vectorize_blockers` finds a reason.
    """
    if not datas:
        return []
    model = model if model is not None else ctx.model_fn()
    blockers = vectorize_blockers(alg, model, ctx)
    if blockers:
        raise ValueError("cannot vectorise clients: " + "; ".join(blockers))
    device, C = ctx.device, len(datas)
    model.load_state_dict(broadcast)
    model.train()
    model.to(device)
    mu = alg.mu if isinstance(alg, FedProx) else 0.0
    named = dict(model.named_parameters())
    names = [k for k, p in named.items() if p.requires_grad]
    frozen = {k: p.detach() for k, p in named.items() if not p.requires_grad}
    anchors = {k: named[k].detach().clone() for k in names}
    params = {k: anchors[k].unsqueeze(0).repeat(C, *([1] * anchors[k].dim())) for k in names}
    momentum_buf: dict[str, torch.Tensor] = {}

    idx, mask, seed = _schedule(datas, client_ids, ctx)
    torch.manual_seed(seed)
    transforms = any(d.transform is not None for d in datas)
    x_all = None if transforms else torch.cat([d.x for d in datas])
    y_all = torch.cat([d.y for d in datas])
    sizes = torch.tensor([len(d) for d in datas])
    offsets = torch.cumsum(sizes, 0) - sizes

    def loss_fn(p: Tensors, x: torch.Tensor, y: torch.Tensor, w: torch.Tensor):
        logits = functional_call(model, {**p, **frozen}, (x,))
        ce = F.cross_entropy(logits, y, reduction="none")
        loss = (ce * w).sum() / w.sum().clamp_min(1.0)
        if mu:
            loss = loss + 0.5 * mu * sum(((p[k] - anchors[k]) ** 2).sum() for k in names)
        correct = ((logits.argmax(1) == y) & (w > 0)).sum()
        return loss, (loss.detach(), correct)

    step_grads = vmap(grad(loss_fn, has_aux=True), randomness="different")
    total_loss = torch.zeros(C, dtype=torch.float64, device=device)
    correct = torch.zeros(C, dtype=torch.long, device=device)
    steps = torch.zeros(C, dtype=torch.long, device=device)
    for s in range(idx.shape[1]):
        sel, valid = idx[:, s], mask[:, s]
        if x_all is not None:
            xb = x_all[sel + offsets[:, None]]
        else:
            xb = torch.stack([_transformed(d, i_, v_)
                              for d, i_, v_ in zip(datas, sel, valid, strict=True)])
        yb = y_all[sel + offsets[:, None]]
        valid = valid.to(device)
        counts = valid.sum(1)
        active = counts > 0
        grads, (losses, hits) = step_grads(params, xb.to(device), yb.to(device),
                                           valid.to(torch.float32))
        _sgd_step(params, grads, momentum_buf, active, ctx, first=s == 0)
        total_loss += losses.double() * counts
        correct += hits
        steps += active.long()

    state_keys = list(model.state_dict().keys())
    uploads = []
    for i, (data, cid) in enumerate(zip(datas, client_ids, strict=True)):
        seen = int(mask[i].sum())
        tensors = {k: (params[k][i] if k in params else frozen[k]).detach().clone()
                   for k in state_keys}
        metrics = {"train_loss": float(total_loss[i]) / seen, "train_acc": int(correct[i]) / seen,
                   "steps": float(steps[i])}
        uploads.append(Upload(cid, tensors, len(data), metrics))
    return uploads


def _transformed(data: ClientData, sel: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """One client's minibatch with its feature transform applied to the real rows only."""
    x = data.x[sel[valid]]
    x = data.transform(x) if data.transform is not None else x
    pad = x.new_zeros((len(sel) - len(x), *x.shape[1:]))
    return torch.cat([x, pad])


def _sgd_step(params: Tensors, grads: Tensors, bufs: dict[str, torch.Tensor],
              active: torch.Tensor, ctx: TrainContext, first: bool) -> None:
    """`torch.optim.SGD` (dampening 0, no Nesterov) on stacked parameters; inactive clients
    (no minibatch this step) keep their parameters and momentum."""
    for k, p in params.items():
        keep = active.view(-1, *([1] * (p.dim() - 1)))
        g = grads[k]
        if ctx.weight_decay:
            g = g.add(p, alpha=ctx.weight_decay)
        if ctx.momentum:
            buf = g.clone() if first else torch.where(keep, bufs[k].mul(ctx.momentum).add(g),
                                                      bufs[k])
            bufs[k] = buf
            g = buf
        params[k] = torch.where(keep, p.add(g, alpha=-ctx.lr), p)
