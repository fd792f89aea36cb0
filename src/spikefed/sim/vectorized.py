"""Vectorised clients: train a round's homogeneous clients together with `torch.func`.

Every participant of a round runs the same model, so their parameters (and BatchNorm
buffers, optimiser state and any extra trainable tensors) can be stacked along a leading
client axis and trained at once: `vmap(grad(loss))` computes every client's gradient in one
batched pass and a functional optimiser step (`torch.optim.SGD` with momentum and weight
decay, or `torch.optim.Adam`) updates them.

The engine knows nothing about particular algorithms: each algorithm states its local
objective through `Algorithm.local_objective` (start state, penalty terms such as FedProx's
proximal term or MOON's contrastive term, gradient offsets such as SCAFFOLD's control
correction, extra trainable tensors such as MOON's head) and packages the result with
`Algorithm.finish_local`, the same code its serial `client_update` uses.

Each client takes exactly the steps and sees exactly the samples it would in the serial loop
(`spikefed.fl.local.local_train`): its minibatch order comes from the same
`client_generator(seed, round, client)` stream. At every step the clients whose minibatch
has the same size train together (a partial last batch forms its own group, a client whose
steps are done rests), so batch statistics and mean losses are the serial ones. With a
deterministic encoder (`direct`, `latency`) the result equals the serial loop within float
tolerance. The `rate` encoder draws Bernoulli spikes: under `vmap` they come from one global
stream (`randomness="different"`), so results are statistically equivalent to the serial loop
but not equal bit for bit; the same holds for a MOON client's projection head in the round
it is created (drawn from the global generator at a different moment).

Not vectorisable: algorithms whose own class does not declare `vectorizable = True` (a
subclass that changes local training must restate its objective) and optimisers other than
SGD and Adam.
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
from spikefed.fl.local import client_generator
from spikefed.fl.moon import capture_features
from spikefed.fl.objective import LocalObjective, LocalStep

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
#: Optimisers the functional step reproduces, and Adam's constants (torch's defaults, which
#: `spikefed.fl.local.make_optimizer` uses).
OPTIMIZERS = ("sgd", "adam")
ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8


def vectorize_blockers(alg: Algorithm, model: nn.Module, ctx: TrainContext) -> list[str]:
    """Why the clients of `alg` on `model` cannot be trained together (empty list: they can)."""
    reasons = []
    if type(alg).__dict__.get("vectorizable") is not True:
        reasons.append(f"algorithm {alg.name!r} ({type(alg).__name__}) does not state its local "
                       "objective functionally (Algorithm.local_objective; FedAvg, FedProx, "
                       "SCAFFOLD and MOON do)")
    if ctx.optimizer not in OPTIMIZERS:
        reasons.append(f"train.optimizer={ctx.optimizer!r}: vectorised clients support "
                       f"{list(OPTIMIZERS)}")
    recipe = [k for k, on in (("data.augment", ctx.augment != "none"), ("train.amp", ctx.amp),
                              ("train.channels_last", ctx.channels_last)) if on]
    if recipe:
        reasons.append(f"{', '.join(recipe)}: vectorised clients train without augmentation, "
                       "autocast or channels-last; turn those off")
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
                   mode: str = "off", downlinks: Mapping[int, Tensors] | None = None
                   ) -> Iterator[tuple[int, Upload, dict[str, Any]]]:
    """`(client_id, upload, new_client_state)` for every client in `active`, in order.

    Client `cid` trains from `downlinks[cid]` when given (`Algorithm.downlink`), else from
    `broadcast`; clients with personal downlinks train serially.

    Serial (`alg.client_update` one client at a time, lazily) or vectorised per `mode`
    (on CPU in groups of at most `CPU_GROUP` clients, on a GPU all at once). The mode is
    decided here, before any client trains: `on` when impossible raises `ValueError` from
    this call, not from the iterator, so client-failure handling cannot swallow it.
    """
    if downlinks is not None and any(downlinks[c] is not broadcast for c in active):
        return _serial_updates(alg, broadcast, client_states, clients, list(active), ctx,
                               downlinks)
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
                    active: list[int], ctx: TrainContext,
                    downlinks: Mapping[int, Tensors] | None = None
                    ) -> Iterator[tuple[int, Upload, dict[str, Any]]]:
    for cid in active:
        sent = broadcast if downlinks is None else downlinks[cid]
        upload, new_state, _ = alg.client_update(cid, sent, client_states[cid], clients[cid],
                                                 ctx)
        yield cid, upload, new_state


def _vectorized_updates(alg: Algorithm, broadcast: Tensors,
                        client_states: Mapping[int, dict[str, Any]],
                        clients: Sequence[ClientData], active: list[int], ctx: TrainContext,
                        model: nn.Module, group: int
                        ) -> Iterator[tuple[int, Upload, dict[str, Any]]]:
    for start in range(0, len(active), group):
        ids = active[start:start + group]
        results = train_vectorized(alg, broadcast, [clients[c] for c in ids], ids, ctx,
                                   model=model, client_states=[client_states[c] for c in ids])
        for cid, (upload, new_state) in zip(ids, results, strict=True):
            yield cid, upload, new_state


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


def _stack(objectives: Sequence[LocalObjective], field: str, device: torch.device) -> Tensors:
    """One of the objectives' tensor dicts, stacked along a leading client axis."""
    first = getattr(objectives[0], field)
    return {k: torch.stack([getattr(o, field)[k].detach() for o in objectives]).to(device)
            for k in first}


def train_vectorized(alg: Algorithm, broadcast: Tensors, datas: Sequence[ClientData],
                     client_ids: Sequence[int], ctx: TrainContext,
                     model: nn.Module | None = None,
                     client_states: Sequence[dict[str, Any]] | None = None
                     ) -> list[tuple[Upload, dict[str, Any]]]:
    """Train `datas` (one client each) together; return every client's (upload, new state).

    Equivalent to `alg.client_update` on each client (see the module docstring for the
    rate-encoder caveat). `client_states` default to empty states. Raises
    `ValueError` when `vectorize_blockers` finds a reason.
    """
    if not datas:
        return []
    model = model if model is not None else ctx.model_fn()
    blockers = vectorize_blockers(alg, model, ctx)
    if blockers:
        raise ValueError("cannot vectorise clients: " + "; ".join(blockers))
    states = (list(client_states) if client_states is not None
              else [{} for _ in client_ids])
    objectives = [alg.local_objective(broadcast, st, ctx) for st in states]
    if any(o is None for o in objectives):
        raise ValueError(f"algorithm {alg.name!r} gave no local objective for a client; "
                         "set train.vectorize=off")
    device, C, obj = ctx.device, len(datas), objectives[0]
    model.load_state_dict(obj.start)
    model.train()
    model.to(device)
    named = dict(model.named_parameters())
    frozen = {k: p.detach() for k, p in named.items() if not p.requires_grad}
    starts = [{k: o.start[k] for k in named if k not in frozen} for o in objectives]
    train = {"p/" + k: torch.stack([s[k].detach() for s in starts]).to(device) for k in starts[0]}
    train.update({"e/" + k: v for k, v in _stack(objectives, "extra", device).items()})
    buffers = {k: torch.stack([o.start[k] for o in objectives]).to(device)
               for k, _ in model.named_buffers()}
    consts = _stack(objectives, "consts", device)
    grad_offset = {"p/" + k: v for k, v in _stack(objectives, "grad_offset", device).items()}
    penalty = obj.penalty

    def loss_fn(train: Tensors, bufs: Tensors, consts: Tensors, x: torch.Tensor,
                y: torch.Tensor):
        params = {k[2:]: v for k, v in train.items() if k.startswith("p/")}
        extra = {k[2:]: v for k, v in train.items() if k.startswith("e/")}
        bufs = {k: v.clone() for k, v in bufs.items()}  # BatchNorm updates them in place
        features = None
        if obj.features:
            with capture_features(model) as box:
                logits = functional_call(model, {**params, **frozen, **bufs}, (x,))
            features = box["z"]
        else:
            logits = functional_call(model, {**params, **frozen, **bufs}, (x,))
        loss = F.cross_entropy(logits, y)
        if penalty is not None:
            loss = loss + penalty(LocalStep(model, params, bufs, extra, consts, x, logits,
                                            features))
        return loss, (loss.detach(), (logits.argmax(1) == y).sum(), bufs)

    step_grads = vmap(grad(loss_fn, has_aux=True), randomness="different")
    idx, mask, seed = _schedule(datas, client_ids, ctx)
    torch.manual_seed(seed)
    transforms = any(d.transform is not None for d in datas)
    x_all = None if transforms else torch.cat([d.x for d in datas])
    y_all = torch.cat([d.y for d in datas])
    sizes = torch.tensor([len(d) for d in datas])
    offsets = torch.cumsum(sizes, 0) - sizes
    total_loss = torch.zeros(C, dtype=torch.float64, device=device)
    correct = torch.zeros(C, dtype=torch.long, device=device)
    opt: Tensors = {}
    counts = mask.sum(2)  # [C, S] samples per client and step
    for s in range(idx.shape[1]):
        # clients whose minibatch has the same size train together (no padding, so BatchNorm
        # statistics and the mean loss are exactly the serial ones); finished clients rest
        for k in sorted(set(counts[:, s].tolist()) - {0}, reverse=True):
            sub = (counts[:, s] == k).nonzero().flatten()
            sel = idx[sub, s, :k]
            if x_all is not None:
                xb = x_all[sel + offsets[sub, None]]
            else:
                xb = torch.stack([_transformed(datas[int(i)], row)
                                  for i, row in zip(sub, sel, strict=True)])
            yb = y_all[sel + offsets[sub, None]].to(device)
            whole = len(sub) == C
            sub_d = sub.to(device)

            def part(d: Tensors, whole: bool = whole, sub_d: torch.Tensor = sub_d) -> Tensors:
                return d if whole else {key: v[sub_d] for key, v in d.items()}

            grads, (losses, hits, new_bufs) = step_grads(part(train), part(buffers),
                                                         part(consts), xb.to(device), yb)
            for key, off in part(grad_offset).items():
                grads[key] = grads[key] + off
            new_train, new_opt = _optimizer_step(part(train), grads, part(opt), ctx, s)
            for d, new in ((train, new_train), (opt, new_opt), (buffers, new_bufs)):
                _scatter(d, new, None if whole else sub_d, C)
            total_loss[sub_d] += losses.double() * k
            correct[sub_d] += hits

    state_keys = list(model.state_dict().keys())
    results = []
    for i, (data, cid) in enumerate(zip(datas, client_ids, strict=True)):
        seen = int(mask[i].sum())
        trained = {k: (train["p/" + k][i] if "p/" + k in train else
                       buffers[k][i] if k in buffers else frozen[k]).detach().clone()
                   for k in state_keys}
        extra = {k[2:]: v[i].detach().clone() for k, v in train.items() if k.startswith("e/")}
        metrics = {"train_loss": float(total_loss[i]) / seen, "train_acc": int(correct[i]) / seen,
                   "steps": float((counts[i] > 0).sum())}
        upload, new_state = alg.finish_local(cid, broadcast, states[i], data, ctx, trained,
                                             extra, metrics)
        results.append((upload, new_state))
    return results


def _scatter(into: Tensors, new: Tensors, rows: torch.Tensor | None, C: int) -> None:
    """Write `new` (stacked over the clients `rows`; None: all `C`) into `into`."""
    for key, v in new.items():
        if rows is None:
            into[key] = v
            continue
        old = into.get(key)
        if old is None:
            old = v.new_zeros((C, *v.shape[1:]))
        into[key] = old.index_copy(0, rows, v)


def _transformed(data: ClientData, sel: torch.Tensor) -> torch.Tensor:
    """One client's minibatch with its feature transform applied."""
    x = data.x[sel]
    return data.transform(x) if data.transform is not None else x


def _optimizer_step(params: Tensors, grads: Tensors, state: Tensors, ctx: TrainContext,
                    step: int) -> tuple[Tensors, Tensors]:
    """One step of `torch.optim.SGD` (dampening 0, no Nesterov) or `torch.optim.Adam`
    (default betas and eps, L2 weight decay) on stacked parameters, all of which have taken
    `step` steps before. Returns (new parameters, new optimiser state)."""
    new_params: Tensors = {}
    new_state: Tensors = {}
    for k, p in params.items():
        g = grads[k]
        if ctx.weight_decay:
            g = g.add(p, alpha=ctx.weight_decay)
        if ctx.optimizer == "adam":
            m = state["m/" + k] if step else torch.zeros_like(p)
            v = state["v/" + k] if step else torch.zeros_like(p)
            m = m.lerp(g, 1 - ADAM_BETAS[0])
            v = v.mul(ADAM_BETAS[1]).addcmul(g, g, value=1 - ADAM_BETAS[1])
            new_state["m/" + k], new_state["v/" + k] = m, v
            t = step + 1
            denom = (v.sqrt() / math.sqrt(1 - ADAM_BETAS[1] ** t)).add(ADAM_EPS)
            new_params[k] = p.addcdiv(m, denom, value=-ctx.lr / (1 - ADAM_BETAS[0] ** t))
            continue
        if ctx.momentum:
            g = g.clone() if step == 0 else state["b/" + k].mul(ctx.momentum).add(g)
            new_state["b/" + k] = g
        new_params[k] = p.add(g, alpha=-ctx.lr)
    return new_params, new_state
