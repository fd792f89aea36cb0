"""FL-SNN (Skatchkovsky, Jang, Simeone, ICASSP 2020): federated training of GLM spiking networks.

Time scales: each device sees ``D`` examples of ``S'`` steps, ``S = D S'`` local steps in all;
one *global iteration* is ``delta_s`` local steps ending in a local update, so ``T = S / delta_s``.
Every ``tau`` global iterations each device uploads its parameters and the base station
broadcasts their mean.

Partial exchange: with ``comm_rate < 1`` a device uploads only its top-``K_D`` feed-forward
kernel coefficients ranked by the magnitude of the updates accumulated since its last upload
(values + indices); feedback weights and biases (a few per neuron) always travel in full. The
server averages each coefficient over the devices that sent it, and each device replaces only the
coefficients it sent; everything else stays local.

Two entry points share the same local learner: :func:`run_federated`, a batched engine that runs
many (setting, trial, device) models as one tensor computation, and :class:`FLSNN`, the
``Algorithm`` contract of :mod:`spikefed.fl.base` for the generic engines.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from spikefed.fl.base import Algorithm, ClientData, Tensors, TrainContext, Upload
from spikefed.snn.glm import GLMSNN, LearningRule, Params, apply_update

VALUE_DTYPE = torch.float32


def index_dtype(n_coefficients: int) -> torch.dtype:
    """Smallest signed integer dtype that indexes ``n_coefficients`` positions."""
    for dtype in (torch.int16, torch.int32):
        if n_coefficients - 1 <= torch.iinfo(dtype).max:
            return dtype
    return torch.int64


def exchange_bytes(k: int, n_ff: int, n_dense: int) -> tuple[int, int]:
    """Bytes ``(up, down)`` one device moves in one round.

    Full exchange (``k == n_ff``): every value up and down, no indices. Partial: ``k`` values and
    ``k`` indices up, the ``k`` averaged values down (the server knows which); ``n_dense``
    feedback/bias values both ways.
    """
    vb = torch.finfo(VALUE_DTYPE).bits // 8
    if k >= n_ff:
        return (n_ff + n_dense) * vb, (n_ff + n_dense) * vb
    ib = torch.iinfo(index_dtype(n_ff)).bits // 8
    return k * (vb + ib) + n_dense * vb, (k + n_dense) * vb


def select_top_k(scores: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Boolean mask of each row's ``k[row]`` largest ``scores`` (``scores`` ``[B, M]``)."""
    k_max = int(k.max()) if k.numel() else 0
    top = scores.topk(min(k_max, scores.shape[1]), dim=1, sorted=True).indices
    rank_ok = torch.arange(top.shape[1])[None, :] < k[:, None]
    return torch.zeros(scores.shape, dtype=torch.bool).scatter(1, top, rank_ok)


def partial_average(values: torch.Tensor, sent: torch.Tensor) -> torch.Tensor:
    """Average each coefficient over the devices that sent it; unsent ones stay local.

    ``values`` and ``sent`` are ``[R, D, M]`` (runs x devices x coefficients).
    """
    w = sent.to(values.dtype)
    count = w.sum(1, keepdim=True)
    mean = (values * w).sum(1, keepdim=True) / count.clamp(min=1)
    return torch.where(sent, mean.expand_as(values), values)


def n_dense_values(snn: GLMSNN) -> int:
    """Feedback weights plus biases of one model (always exchanged in full)."""
    shapes = snn.param_shapes()
    return int(torch.Size(shapes["fb"]).numel() + torch.Size(shapes["bias"]).numel())


def n_ff_values(snn: GLMSNN) -> int:
    """Feed-forward kernel coefficients of one model on existing synapses."""
    return int(snn.topology.mask.sum()) * snn.n_basis_ff


def k_for_rate(snn: GLMSNN, comm_rate: float) -> int:
    """``K_D`` for a communication rate (fraction of the feed-forward coefficients sent)."""
    if not 0 < comm_rate <= 1:
        raise ValueError(f"comm_rate={comm_rate} must lie in (0, 1]")
    return max(1, round(comm_rate * n_ff_values(snn)))


@dataclass
class LocalLearner:
    """The online local rule for ``B`` models, each walking through its own example stream.

    ``pool_x`` ``[n, S', N_in]`` holds every example any model may see; ``order`` ``[B, D]`` says
    which pool rows model ``b`` sees, in order. One :meth:`step` = one global iteration.
    """

    snn: GLMSNN
    rule: LearningRule
    pool_x: torch.Tensor
    pool_y: torch.Tensor
    order: torch.Tensor
    generator: torch.Generator
    t: int = 0
    baseline: torch.Tensor | None = None
    score: torch.Tensor | None = None
    history: torch.Tensor | None = None
    _traces: torch.Tensor | None = field(default=None, repr=False)
    _targets: torch.Tensor | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        steps = self.pool_x.shape[1]
        if steps % self.rule.delta_s:
            raise ValueError(f"delta_s={self.rule.delta_s} must divide the example length "
                             f"S'={steps} so that updates align with examples")
        n = self.order.shape[0]
        if self.baseline is None:
            self.baseline = torch.zeros(n, dtype=self.snn.dtype)
        if self.score is None:
            self.score = torch.zeros((n, *self.snn.param_shapes()["ff"]), dtype=self.snn.dtype)

    @property
    def steps_per_example(self) -> int:
        return self.pool_x.shape[1]

    @property
    def total_iterations(self) -> int:
        """``T = D S' / delta_s`` global iterations in one pass over the stream."""
        return self.order.shape[1] * self.steps_per_example // self.rule.delta_s

    def step(self, params: Params) -> Params:
        """Run ``delta_s`` local steps and apply one update to ``params``; return the update."""
        ds, sp = self.rule.delta_s, self.steps_per_example
        offset = (self.t * ds) % sp
        example = (self.t * ds) // sp % self.order.shape[1]
        if offset == 0 or self._traces is None:
            idx = self.order[:, example]
            self._traces = self.snn.input_traces(self.pool_x[idx].to(self.snn.dtype))
            onehot = F.one_hot(self.pool_y[idx], self.snn.topology.n_output).to(self.snn.dtype)
            self._targets = onehot[:, None, :].expand(-1, sp, -1)
            if offset == 0 or self.history is None:
                self.history = self.snn.init_state(len(idx)).history
        state = _State(self.history)
        win = self.snn.window(params, state, self._traces[:, offset:offset + ds],
                              self._targets[:, offset:offset + ds], self.generator, self.rule)
        self.history = state.history
        delta, self.baseline = apply_update(self.snn, params, win, self.rule, self.baseline)
        self.score += delta["ff"].abs()
        self.t += 1
        return delta


@dataclass
class _State:
    history: torch.Tensor


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


def stream_order(n_pool: int, n_examples: int, generator: torch.Generator) -> torch.Tensor:
    """``n_examples`` pool indices: concatenated random permutations (each example ~equally)."""
    reps = -(-n_examples // n_pool)
    perms = [torch.randperm(n_pool, generator=generator) for _ in range(reps)]
    return torch.cat(perms)[:n_examples]


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
    valid = snn.mask.expand_as(params["ff"][:1]).reshape(1, -1).bool()

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
        ranked = torch.where(valid, score, torch.full_like(score, -1.0))
        chosen = select_top_k(ranked, k_run[part].repeat_interleave(n_dev)) & valid
        sent[part] = chosen.view(len(part), n_dev, -1)
    ff.copy_(partial_average(ff, sent))
    learner.score.view(n_runs, n_dev, -1).masked_fill_(sent, 0.0)   # unsent keep accumulating
    return sent


class GLMModule(nn.Module):
    """One GLM network's parameters as a module (for the ``Algorithm`` contract)."""

    def __init__(self, snn: GLMSNN, generator: torch.Generator | None = None,
                 init_scale: float = 0.5) -> None:
        super().__init__()
        p = snn.init_params(1, generator, scale=init_scale)
        for name, value in p.items():
            self.register_buffer(name, value[0].clone())


class FLSNN(Algorithm):
    """FL-SNN through the generic contract: ``client_update`` = ``tau`` local global-iterations.

    ``ClientData.x`` is ``[n, S', N_in]`` binary spike frames, ``y`` the labels. Client state keeps
    the local parameters, the learner's stream position, baseline and accumulated update
    magnitudes, and the indices last sent (never uploaded).
    """

    name = "flsnn"

    def __init__(self, snn: GLMSNN, rule: LearningRule, *, tau: int, comm_rate: float = 1.0,
                 n_examples: int = 100) -> None:
        if tau < 1:
            raise ValueError(f"tau={tau} must be >= 1")
        self.snn, self.rule, self.tau = snn, rule, tau
        self.k = k_for_rate(snn, comm_rate)
        self.n_ff = n_ff_values(snn)
        self.partial = self.k < self.n_ff
        self.n_examples = n_examples

    def init_server(self, model: nn.Module) -> tuple[dict[str, Any], Tensors]:
        params = {k: v.detach().clone() for k, v in model.state_dict().items()}
        return {"params": params}, {k: v.clone() for k, v in params.items()}

    def client_update(self, client_id: int, broadcast: Tensors, client_state: dict[str, Any],
                      data: ClientData, ctx: TrainContext
                      ) -> tuple[Upload, dict[str, Any], dict[str, float]]:
        cid = client_id
        if "params" not in client_state:
            params = {k: broadcast[k].clone()[None] for k in ("ff", "fb", "bias")}
        else:
            params = {k: v.clone() for k, v in client_state["params"].items()}
            params["fb"][0], params["bias"][0] = broadcast["fb"], broadcast["bias"]
            if "ff" in broadcast:
                params["ff"][0] = broadcast["ff"]
            else:
                idx = client_state["sent_index"]
                params["ff"].view(-1)[idx] = broadcast["ff_mean"][idx]
        learner = self._learner(client_state, data, ctx.seed * 7919 + cid)
        for _ in range(self.tau):
            learner.step(params)
        ff = params["ff"][0].reshape(-1)
        tensors: Tensors = {"fb": params["fb"][0].clone(), "bias": params["bias"][0].clone()}
        new_state: dict[str, Any] = {"params": params, "t": learner.t, "order": learner.order,
                                     "baseline": learner.baseline, "history": learner.history,
                                     "rng": learner.generator.get_state()}
        if self.partial:
            valid = self.snn.mask.expand_as(params["ff"]).reshape(1, -1).bool()
            ranked = torch.where(valid, learner.score.reshape(1, -1), torch.tensor(-1.0))
            sent = (select_top_k(ranked, torch.tensor([self.k])) & valid)[0]
            idx = sent.nonzero().flatten()
            tensors["ff_values"] = ff[idx].to(VALUE_DTYPE)
            tensors["ff_index"] = idx.to(index_dtype(self.n_ff))
            new_state["sent_index"] = idx
            new_state["score"] = learner.score.reshape(-1).index_fill(0, idx, 0.0).view_as(
                learner.score)
        else:
            tensors["ff"] = params["ff"][0].clone()
            new_state["score"] = learner.score
        upload = Upload(cid, tensors, len(data), {"baseline": float(learner.baseline[0])})
        return upload, new_state, {"iterations": float(learner.t)}

    def _learner(self, state: dict[str, Any], data: ClientData, seed: int) -> LocalLearner:
        gen = torch.Generator().manual_seed(seed)
        if "order" not in state:
            order = stream_order(len(data), self.n_examples, gen)[None]
            return LocalLearner(self.snn, self.rule, data.x, data.y, order, gen)
        gen.set_state(state["rng"])
        learner = LocalLearner(self.snn, self.rule, data.x, data.y, state["order"], gen,
                               t=state["t"], baseline=state["baseline"], score=state["score"],
                               history=state["history"])
        return learner

    def aggregate(self, server_state: dict[str, Any], uploads: list[Upload]
                  ) -> tuple[dict[str, Any], Tensors]:
        if not uploads:
            raise ValueError("aggregate got no uploads")
        prev = server_state["params"]
        params = {k: torch.stack([u.tensors[k] for u in uploads]).mean(0) for k in ("fb", "bias")}
        if self.partial:
            total = torch.zeros(prev["ff"].numel(), dtype=VALUE_DTYPE)
            count = torch.zeros_like(total)
            for u in uploads:
                idx = u.tensors["ff_index"].long()
                total.index_add_(0, idx, u.tensors["ff_values"])
                count.index_add_(0, idx, torch.ones_like(u.tensors["ff_values"]))
            flat = prev["ff"].reshape(-1).clone()
            got = count > 0
            flat[got] = total[got] / count[got]
            params["ff"] = flat.view_as(prev["ff"])
            broadcast = {"ff_mean": flat, "fb": params["fb"], "bias": params["bias"]}
        else:
            params["ff"] = torch.stack([u.tensors["ff"] for u in uploads]).mean(0)
            broadcast = dict(params)
        return {"params": params}, broadcast
