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

This module holds the one implementation of the exchange (:func:`top_k_sent`,
:func:`coefficient_mean` / :func:`partial_average`, :func:`exchange_bytes`), the local learner
and :class:`FLSNN`, the registered ``Algorithm`` the generic engines (``sim``, Flower) drive.
The batched reproduction (:mod:`spikefed.fl.flsnn_batched`) runs many models as one tensor
computation with the same learner and exchange functions.
"""

from __future__ import annotations

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


def top_k_sent(score: torch.Tensor, valid: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """What each device sends: its ``k[row]`` largest ``score`` among ``valid`` coefficients.

    ``score`` ``[B, M]`` (accumulated update magnitudes), ``valid`` ``[1, M]`` (existing
    synapses), ``k`` ``[B]``; returns the ``[B, M]`` boolean mask of sent coefficients.
    """
    ranked = torch.where(valid, score, torch.full_like(score, -1.0))
    return select_top_k(ranked, k) & valid


def coefficient_mean(values: torch.Tensor, sent: torch.Tensor
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean of each coefficient over the devices that sent it, and how many sent it.

    ``values`` and ``sent`` are ``[R, D, M]`` (runs x devices x coefficients); returns
    ``[R, 1, M]`` means (0 where nobody sent) and counts.
    """
    w = sent.to(values.dtype)
    count = w.sum(1, keepdim=True)
    return (values * w).sum(1, keepdim=True) / count.clamp(min=1), count


def partial_average(values: torch.Tensor, sent: torch.Tensor) -> torch.Tensor:
    """Each device's coefficients after an exchange: the mean where it sent, its own elsewhere.

    ``values`` and ``sent`` are ``[R, D, M]`` (runs x devices x coefficients).
    """
    mean, _ = coefficient_mean(values, sent)
    return torch.where(sent, mean.expand_as(values), values)


def n_dense_values(snn: GLMSNN) -> int:
    """Feedback weights plus biases of one model (always exchanged in full)."""
    shapes = snn.param_shapes()
    return int(torch.Size(shapes["fb"]).numel() + torch.Size(shapes["bias"]).numel())


def n_ff_values(snn: GLMSNN) -> int:
    """Feed-forward kernel coefficients of one model on existing synapses."""
    return int(snn.topology.mask.sum()) * snn.n_basis_ff


def valid_coefficients(snn: GLMSNN) -> torch.Tensor:
    """``[1, M]`` mask of the flat feed-forward tensor's entries that are real synapses."""
    return snn.mask.expand(1, *snn.param_shapes()["ff"]).reshape(1, -1).bool()


def stream_order(n_pool: int, n_examples: int, generator: torch.Generator) -> torch.Tensor:
    """``n_examples`` pool indices: concatenated random permutations (each example ~equally)."""
    reps = -(-n_examples // n_pool)
    perms = [torch.randperm(n_pool, generator=generator) for _ in range(reps)]
    return torch.cat(perms)[:n_examples]


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


def spike_frames(x: torch.Tensor) -> torch.Tensor:
    """Binary spike input ``[n, S', N_in]`` (uint8) from frames ``[n, S', ...]`` (> 0: spike)."""
    return (x.reshape(x.shape[0], x.shape[1], -1) > 0).to(torch.uint8)


def network_of(model: nn.Module) -> GLMSNN:
    """The GLM network a model carries (``model.name: glm``); a clear error for any other."""
    snn = getattr(model, "snn", None)
    if not isinstance(snn, GLMSNN):
        raise ValueError(f"algorithm.name=flsnn trains GLM spiking networks, but the model is a "
                         f"{type(model).__name__}; set model.name=glm")
    return snn


class FLSNN(Algorithm):
    """FL-SNN through the generic contract: ``client_update`` = ``tau`` global iterations.

    ``ClientData.x`` is ``[n, S', ...]`` spike frames (flattened to ``N_in`` inputs; any value
    > 0 is a spike), ``y`` the labels. Client state keeps the local parameters, the learner's
    stream position, generator, baseline, accumulated update magnitudes and the indices last
    sent (never uploaded). Payloads carry only real synapses: ``ff_values`` (all ``n_ff`` in
    full exchange; the top ``K`` plus ``ff_index`` in partial exchange), ``fb`` and ``bias``.
    The downlink (:meth:`downlink`) is the full model to a device the server has no record of,
    and in partial exchange the current mean of the ``K`` coefficients a known device last sent.
    """

    name = "flsnn"

    def __init__(self, snn: GLMSNN | None, rule: LearningRule, *, tau: int,
                 comm_rate: float = 1.0, k: int | None = None,
                 n_examples: int | None = None) -> None:
        if k is not None and (k < 1 or comm_rate != 1.0):
            raise ValueError(f"k={k} must be >= 1 and comes instead of comm_rate={comm_rate} "
                             "(leave comm_rate at 1)")
        if tau < 1:
            raise ValueError(f"tau={tau} must be >= 1")
        if not 0 < comm_rate <= 1:
            raise ValueError(f"comm_rate={comm_rate} must lie in (0, 1]")
        if n_examples is not None and n_examples < 1:
            raise ValueError(f"n_examples={n_examples} must be >= 1 (or None: the local set)")
        self.rule, self.tau, self.comm_rate, self.n_examples = rule, tau, comm_rate, n_examples
        self.fixed_k = k
        self.snn: GLMSNN | None = None
        if snn is not None:
            self._bind(snn)

    def _bind(self, snn: GLMSNN) -> None:
        self.snn = snn
        self.n_ff = n_ff_values(snn)
        self.k = (k_for_rate(snn, self.comm_rate) if self.fixed_k is None
                  else min(self.fixed_k, self.n_ff))
        self.partial = self.k < self.n_ff
        self.valid = valid_coefficients(snn)
        self.valid_index = self.valid[0].nonzero().flatten()

    def _network(self, ctx: TrainContext) -> GLMSNN:
        if self.snn is None:
            with torch.random.fork_rng(devices=[]):  # building a model must not move the RNG
                self._bind(network_of(ctx.model_fn()))
        assert self.snn is not None
        return self.snn

    def _attach(self, model: nn.Module) -> None:
        """Bind the model's GLM network; its step count must be a multiple of ``delta_s``."""
        self._bind(network_of(model))
        steps = getattr(model, "T", None)
        if isinstance(steps, int) and steps % self.rule.delta_s:
            raise ValueError(f"algorithm.params.delta_s={self.rule.delta_s} must divide "
                             f"model.T={steps} (updates align with examples)")

    def init_server(self, model: nn.Module) -> tuple[dict[str, Any], Tensors]:
        self._attach(model)
        params = {k: v.detach().clone() for k, v in model.state_dict().items()}
        return {"params": params, "last_sent": {}}, self._full_broadcast(params)

    def _full_broadcast(self, params: Tensors) -> Tensors:
        return {"ff_values": params["ff"].reshape(-1)[self.valid_index].to(VALUE_DTYPE),
                "fb": params["fb"].clone(), "bias": params["bias"].clone()}

    def upload_keys(self, model: nn.Module) -> set[str]:
        self._attach(model)
        return {"ff_values", "fb", "bias", *(["ff_index"] if self.partial else [])}

    def downlink(self, server_state: dict[str, Any], broadcast: Tensors, client_id: int
                 ) -> Tensors:
        """Full model to a device without a record; else the means of what it last sent."""
        idx = server_state.get("last_sent", {}).get(client_id)
        if idx is None:
            return broadcast
        flat = server_state["params"]["ff"].reshape(-1)
        return {"ff_values": flat[idx].to(VALUE_DTYPE), "fb": broadcast["fb"],
                "bias": broadcast["bias"]}

    def _receive(self, broadcast: Tensors, state: dict[str, Any]) -> Params:
        """The local parameters after applying a downlink."""
        assert self.snn is not None
        values = broadcast["ff_values"]
        if "params" in state:
            params = {k: v.clone() for k, v in state["params"].items()}
        else:
            params = {k: torch.zeros((1, *s), dtype=self.snn.dtype)
                      for k, s in self.snn.param_shapes().items()}
        if len(values) == self.n_ff:
            params["ff"].view(-1)[self.valid_index] = values.to(self.snn.dtype)
        elif "sent_index" in state and len(values) == len(state["sent_index"]):
            params["ff"].view(-1)[state["sent_index"]] = values.to(self.snn.dtype)
        else:
            raise ValueError(f"downlink carries {len(values)} feed-forward values; a device "
                             f"expects all {self.n_ff} or the {self.k} it last sent")
        params["fb"][0], params["bias"][0] = broadcast["fb"], broadcast["bias"]
        return params

    def client_update(self, client_id: int, broadcast: Tensors, client_state: dict[str, Any],
                      data: ClientData, ctx: TrainContext
                      ) -> tuple[Upload, dict[str, Any], dict[str, float]]:
        snn = self._network(ctx)
        x = spike_frames(data.x)
        if x.shape[-1] != snn.topology.n_input:
            raise ValueError(f"client {client_id}'s frames have {x.shape[-1]} inputs per step; "
                             f"the GLM network has {snn.topology.n_input}")
        params = self._receive(broadcast, client_state)
        learner = self._learner(client_state, x, data.y, ctx.seed * 7919 + client_id)
        for _ in range(self.tau):
            learner.step(params)
        ff = params["ff"].reshape(-1)
        tensors: Tensors = {"fb": params["fb"][0].clone(), "bias": params["bias"][0].clone()}
        new_state: dict[str, Any] = {"params": params, "t": learner.t, "order": learner.order,
                                     "baseline": learner.baseline, "history": learner.history,
                                     "rng": learner.generator.get_state()}
        score = learner.score.reshape(1, -1)
        if self.partial:
            sent = top_k_sent(score, self.valid, torch.tensor([self.k]))[0]
            idx = sent.nonzero().flatten()
            tensors["ff_index"] = idx.to(index_dtype(self.n_ff))
            new_state["sent_index"] = idx
        else:
            idx = self.valid_index
        tensors["ff_values"] = ff[idx].to(VALUE_DTYPE)
        new_state["score"] = score.index_fill(1, idx, 0.0).view_as(learner.score)
        upload = Upload(client_id, tensors, len(data), {"baseline": float(learner.baseline[0])})
        return upload, new_state, {"iterations": float(learner.t)}

    def _learner(self, state: dict[str, Any], x: torch.Tensor, y: torch.Tensor,
                 seed: int) -> LocalLearner:
        assert self.snn is not None
        gen = torch.Generator().manual_seed(seed)
        if "order" not in state:
            order = stream_order(len(y), self.n_examples or len(y), gen)[None]
            return LocalLearner(self.snn, self.rule, x, y, order, gen)
        gen.set_state(state["rng"])
        return LocalLearner(self.snn, self.rule, x, y, state["order"], gen, t=state["t"],
                            baseline=state["baseline"], score=state["score"],
                            history=state["history"])

    def aggregate(self, server_state: dict[str, Any], uploads: list[Upload]
                  ) -> tuple[dict[str, Any], Tensors]:
        if not uploads:
            raise ValueError("aggregate got no uploads")
        prev = server_state["params"]
        flat_prev = prev["ff"].reshape(-1)
        values = torch.zeros((1, len(uploads), flat_prev.numel()), dtype=flat_prev.dtype)
        sent = torch.zeros(values.shape, dtype=torch.bool)
        last_sent = dict(server_state.get("last_sent", {}))
        for i, u in enumerate(uploads):
            idx = u.tensors["ff_index"].long() if self.partial else self.valid_index
            values[0, i, idx] = u.tensors["ff_values"].to(values.dtype)
            sent[0, i, idx] = True
            if self.partial:
                last_sent[u.client_id] = idx
        mean, count = coefficient_mean(values, sent)
        flat = torch.where(count[0, 0] > 0, mean[0, 0], flat_prev)
        params = {"ff": flat.view_as(prev["ff"]),
                  **{k: torch.stack([u.tensors[k] for u in uploads]).mean(0)
                     for k in ("fb", "bias")}}
        return {"params": params, "last_sent": last_sent}, self._full_broadcast(params)

    def client_model_state(self, upload: Upload, client_state: dict[str, Any]) -> Tensors | None:
        """A device's local model is its own parameters (the upload is only part of them)."""
        return {k: v[0] for k, v in client_state["params"].items()}
