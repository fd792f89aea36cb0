"""Probabilistic spiking neurons: the generalised-linear model (GLM / SRM) of FL-SNN.

Each learnable neuron ``i`` spikes at step ``t`` with probability ``sigmoid(u_i,t)``, where

    u_i,t = sum_j sum_k w_ijk (a_k * s_j)(t-1)  +  sum_k v_ik (b_k * s_i)(t-1)  +  gamma_i

``a_k`` are ``K_a`` feed-forward raised-cosine kernels, ``b_k`` the feedback (self) kernels and
``gamma`` a bias. Neurons are ordered ``[inputs | hidden | outputs]``; inputs are exogenous
(their spikes are given), hidden neurons are sampled, outputs are clamped to a target during
training and sampled at test time. The topology is an arbitrary directed graph (``mask``,
post x pre), recurrent connections included.

Every tensor carries a leading *model* dimension ``B`` so that many independent networks (devices
x trials x settings) run as one batched computation. Learning is the online, local, three-factor
rule of Jang et al. / Skatchkovsky et al.: per-step log-likelihood gradients summed over a window
of ``delta_s`` steps are the eligibility traces; visible (output) neurons follow them directly,
hidden neurons follow them scaled by a learning signal (output log-likelihood minus a KL term to a
target firing rate) minus a running baseline.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

Params = dict[str, torch.Tensor]


def raised_cosine_basis(n_basis: int, duration: int, *, stretch: float = 1.0) -> torch.Tensor:
    """Log-stretched raised-cosine kernels (Pillow et al. 2005), shape ``[n_basis, duration]``.

    Column ``d`` is the weight of a spike ``d + 1`` steps in the past. Kernels tile the window,
    narrow near the present and wide in the past; each peaks at 1.
    """
    if n_basis < 1:
        raise ValueError(f"n_basis={n_basis} must be >= 1")
    if duration < 1:
        raise ValueError(f"duration={duration} must be >= 1 (kernel memory in steps)")
    if stretch <= 0:
        raise ValueError(f"stretch={stretch} must be > 0")
    lag = torch.arange(duration, dtype=torch.float64)
    x = torch.log(lag + stretch)
    lo, hi = float(x[0]), float(x[-1])
    if n_basis == 1 or hi == lo:
        spacing = max(hi - lo, 1e-6)
        centres = torch.full((n_basis,), lo, dtype=torch.float64)
    else:
        spacing = (hi - lo) / (n_basis - 1)
        centres = torch.linspace(lo, hi, n_basis, dtype=torch.float64)
    arg = ((x[None, :] - centres[:, None]) * math.pi / (2 * spacing)).clamp(-math.pi, math.pi)
    return (0.5 * (1 + torch.cos(arg))).float()


@dataclass(frozen=True)
class Topology:
    """Neuron groups and the directed synapse mask ``mask[post, pre]`` (post = hidden + outputs).

    Self-connections are handled by the feedback kernel, so ``mask`` must not contain them.
    """

    n_input: int
    n_hidden: int
    n_output: int
    mask: torch.Tensor

    def __post_init__(self) -> None:
        for name in ("n_input", "n_hidden", "n_output"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}={getattr(self, name)} must be >= 0")
        if self.n_output < 1:
            raise ValueError(f"n_output={self.n_output} must be >= 1 (the readout)")
        shape = (self.n_learnable, self.n_total)
        if tuple(self.mask.shape) != shape:
            raise ValueError(f"mask has shape {tuple(self.mask.shape)}, "
                             f"expected {shape} (post x pre)")
        if self.mask.dtype != torch.bool:
            raise ValueError(f"mask dtype is {self.mask.dtype}; pass a bool tensor")
        if self.mask[:, self.n_input:].diagonal().any():
            raise ValueError("mask contains self-connections; the feedback kernel models them")

    @property
    def n_learnable(self) -> int:
        """Number of neurons with parameters (hidden + outputs)."""
        return self.n_hidden + self.n_output

    @property
    def n_total(self) -> int:
        """Number of neurons including the exogenous inputs."""
        return self.n_input + self.n_learnable

    @property
    def outputs_feed_back(self) -> bool:
        """Whether any neuron listens to an output neuron (then clamping changes the dynamics)."""
        return bool(self.mask[:, self.n_input + self.n_hidden:].any())

    @classmethod
    def layered(cls, n_input: int, n_hidden: int, n_output: int, *,
                recurrent_hidden: bool = True) -> Topology:
        """Inputs -> hidden and outputs; hidden -> outputs (and hidden <-> hidden if recurrent)."""
        n_learn = n_hidden + n_output
        mask = torch.zeros(n_learn, n_input + n_learn, dtype=torch.bool)
        mask[:, :n_input] = True
        hid = slice(n_input, n_input + n_hidden)
        mask[n_hidden:, hid] = True
        if recurrent_hidden and n_hidden > 1:
            mask[:n_hidden, hid] = ~torch.eye(n_hidden, dtype=torch.bool)
        return cls(n_input, n_hidden, n_output, mask)


@dataclass(frozen=True)
class LearningRule:
    """Hyper-parameters of the online three-factor rule (one update every ``delta_s`` steps)."""

    lr: float = 0.05
    delta_s: int = 5
    kl_weight: float = 1.0
    target_rate: float = 0.2
    baseline_decay: float = 0.9

    def __post_init__(self) -> None:
        if self.lr < 0:
            raise ValueError(f"lr={self.lr} must be >= 0")
        if self.delta_s < 1:
            raise ValueError(f"delta_s={self.delta_s} must be >= 1")
        if not 0 < self.target_rate < 1:
            raise ValueError(f"target_rate={self.target_rate} must lie in (0, 1)")
        if not 0 <= self.baseline_decay < 1:
            raise ValueError(f"baseline_decay={self.baseline_decay} must lie in [0, 1)")


@dataclass
class NetState:
    """Spike history of the learnable neurons, ``[B, n_learnable, memory]`` (index 0 = t-1)."""

    history: torch.Tensor


@dataclass
class Window:
    """What one window of ``delta_s`` steps produced: spikes, eligibility traces, signals."""

    spikes: torch.Tensor            # [B, steps, n_learnable] (hidden sampled, outputs clamped)
    elig: Params                    # per-step d log p(s) / d theta, summed over the window
    out_loglik: torch.Tensor        # [B] sum over steps and outputs of log p(target)
    kl: torch.Tensor                # [B] sum over steps and hidden of KL(p_h || target_rate)
    hidden_rate: torch.Tensor       # [B] mean hidden firing probability


@dataclass
class Evaluation:
    """Test metrics for each of the ``B`` models."""

    loss: torch.Tensor              # [B] mean per-example NLL of the clamped targets
    accuracy: torch.Tensor          # [B] fraction of examples whose most active output is right
    predictions: torch.Tensor = field(repr=False)  # [B, E]


class GLMSNN:
    """A batched network of GLM spiking neurons with fixed topology and kernel bases.

    Parameters (a :data:`Params` dict, each with leading model dim ``B``):
    ``ff`` ``[B, P, N, K_a]`` feed-forward kernel weights (zero outside ``mask``),
    ``fb`` ``[B, P, K_b]`` feedback kernel weights and ``bias`` ``[B, P]``.
    """

    def __init__(self, topology: Topology, *, n_basis_ff: int = 4, n_basis_fb: int = 1,
                 memory: int = 10, dtype: torch.dtype = torch.float32) -> None:
        self.topology = topology
        self.memory = memory
        self.dtype = dtype
        self.basis_ff = raised_cosine_basis(n_basis_ff, memory).to(dtype)   # [K_a, M]
        self.basis_fb = raised_cosine_basis(n_basis_fb, memory).to(dtype)   # [K_b, M]
        self.mask = topology.mask[None, :, :, None].to(dtype)               # [1, P, N, 1]

    @property
    def n_basis_ff(self) -> int:
        return self.basis_ff.shape[0]

    @property
    def n_basis_fb(self) -> int:
        return self.basis_fb.shape[0]

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        """Shapes of one model's parameters (without the leading model dim)."""
        t = self.topology
        return {"ff": (t.n_learnable, t.n_total, self.n_basis_ff),
                "fb": (t.n_learnable, self.n_basis_fb), "bias": (t.n_learnable,)}

    def init_params(self, n_models: int, generator: torch.Generator | None = None,
                    scale: float = 0.5, bias: float = -1.0) -> Params:
        """Small random weights (uniform, fan-in scaled), negative biases, zero feedback."""
        t = self.topology
        fan_in = t.mask.sum(1).clamp(min=1).to(self.dtype)[None, :, None, None]
        shape = (n_models, *self.param_shapes()["ff"])
        u = torch.rand(shape, generator=generator, dtype=self.dtype) * 2 - 1
        ff = u * scale / fan_in.sqrt() * self.mask
        fb = torch.zeros((n_models, *self.param_shapes()["fb"]), dtype=self.dtype)
        b = torch.full((n_models, t.n_learnable), bias, dtype=self.dtype)
        return {"ff": ff, "fb": fb, "bias": b}

    def init_state(self, n_models: int) -> NetState:
        """Empty spike history (the start of an example)."""
        shape = (n_models, self.topology.n_learnable, self.memory)
        return NetState(torch.zeros(shape, dtype=self.dtype))

    def input_traces(self, x: torch.Tensor) -> torch.Tensor:
        """Feed-forward traces of exogenous spikes ``[..., T, N_in]`` -> ``[..., T, N_in, K_a]``.

        The trace at step ``t`` filters spikes at steps ``t-1, ..., t-memory`` (strictly causal).
        """
        lead, steps, n_in = x.shape[:-2], x.shape[-2], x.shape[-1]
        xs = x.reshape(-1, steps, n_in).to(self.dtype).transpose(1, 2)     # [Z, N, T]
        padded = F.pad(xs, (self.memory, 0))[..., :-1]                      # spikes up to t-1
        win = padded.unfold(-1, self.memory, 1)                   # [Z, N, T, M], last = t-1
        tr = win @ self.basis_ff.flip(-1).T                                 # [Z, N, T, K]
        return tr.transpose(1, 2).reshape(*lead, steps, n_in, self.n_basis_ff)

    def _recurrent_drive(self, params: Params, w_rec: torch.Tensor, state: NetState
                         ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        tr_rec = state.history @ self.basis_ff.T                            # [B, P, K_a]
        tr_fb = state.history @ self.basis_fb.T                             # [B, P, K_b]
        drive = (w_rec @ tr_rec.reshape(tr_rec.shape[0], -1, 1)).squeeze(-1)
        drive = drive + (params["fb"] * tr_fb).sum(-1) + params["bias"]
        return drive, tr_rec, tr_fb

    def window(self, params: Params, state: NetState, in_traces: torch.Tensor,
               targets: torch.Tensor | None, generator: torch.Generator | None,
               rule: LearningRule | None = None, *, forced: torch.Tensor | None = None) -> Window:
        """Run ``steps`` steps; outputs are clamped to ``targets`` (``[B, steps, n_output]``).

        ``in_traces`` is ``[B, steps, N_in, K_a]``. ``forced`` (``[B, steps, n_learnable]``) replays
        given spikes instead of sampling (used to check gradients). ``rule`` supplies the KL target
        rate (0.5 without one). ``state`` is advanced in place.
        """
        t = self.topology
        n_in, n_h = t.n_input, t.n_hidden
        steps = in_traces.shape[1]
        u_in = torch.einsum("bpnk,btnk->btp", params["ff"][:, :, :n_in], in_traces)
        rate = rule.target_rate if rule is not None else 0.5
        w_rec = params["ff"][:, :, n_in:].reshape(u_in.shape[0], t.n_learnable, -1)
        errs, spikes, rec_traces, fb_traces = [], [], [], []
        out_ll = torch.zeros(u_in.shape[0], dtype=self.dtype)
        kl = torch.zeros_like(out_ll)
        rate_sum = torch.zeros_like(out_ll)
        for k in range(steps):
            drive, tr_rec, tr_fb = self._recurrent_drive(params, w_rec, state)
            u = u_in[:, k] + drive
            p = torch.sigmoid(u)
            if forced is not None:
                s = forced[:, k].to(self.dtype)
            else:
                h = torch.bernoulli(p[:, :n_h], generator=generator)
                o = (targets[:, k].to(self.dtype) if targets is not None
                     else torch.bernoulli(p[:, n_h:], generator=generator))
                s = torch.cat([h, o], dim=1)
            err = s - p                                                     # d log p / d u
            errs.append(err)
            spikes.append(s)
            rec_traces.append(tr_rec)
            fb_traces.append(tr_fb)
            so, uo = s[:, n_h:], u[:, n_h:]
            out_ll += (so * F.logsigmoid(uo) + (1 - so) * F.logsigmoid(-uo)).sum(-1)
            if n_h:
                ph = p[:, :n_h].clamp(1e-6, 1 - 1e-6)
                kl += (ph * torch.log(ph / rate)
                       + (1 - ph) * torch.log((1 - ph) / (1 - rate))).sum(-1)
                rate_sum += ph.mean(-1)
            state.history = torch.cat([s[..., None], state.history[..., :-1]], dim=-1)
        err_all = torch.stack(errs, 1)                                      # [B, T, P]
        e_in = torch.einsum("btp,btnk->bpnk", err_all, in_traces)
        e_rec = torch.einsum("btp,btqk->bpqk", err_all, torch.stack(rec_traces, 1))
        e_fb = torch.einsum("btp,btpk->bpk", err_all, torch.stack(fb_traces, 1))
        elig = {"ff": torch.cat([e_in, e_rec], dim=2) * self.mask, "fb": e_fb,
                "bias": err_all.sum(1)}
        return Window(torch.stack(spikes, 1), elig, out_ll, kl, rate_sum / steps)

    def evaluate(self, params: Params, x: torch.Tensor, y: torch.Tensor,
                 generator: torch.Generator | None, chunk: int = 64) -> Evaluation:
        """Test every model on examples ``x`` ``[E, T, N_in]`` with labels ``y`` ``[E]``.

        Loss: per-example, per-step negative log-likelihood of the one-hot target outputs (hidden
        sampled, outputs clamped). Accuracy: outputs sampled freely; the class is the output with
        most spikes (ties broken by summed firing probability).
        """
        losses, preds = [], []
        for lo in range(0, x.shape[0], chunk):
            xe, ye = x[lo:lo + chunk], y[lo:lo + chunk]
            loss, pred = self._evaluate_chunk(params, xe, ye, generator)
            losses.append(loss)
            preds.append(pred)
        loss = torch.cat(losses, 1).mean(1)
        pred = torch.cat(preds, 1)
        acc = (pred == y[None]).to(self.dtype).mean(1)
        return Evaluation(loss, acc, pred)

    def output_scores(self, params: Params, x: torch.Tensor,
                      generator: torch.Generator | None) -> torch.Tensor:
        """Free-running class scores ``[B, E, n_output]`` for examples ``x`` ``[E, T, N_in]``:
        each output's spike count plus ``1e-3`` x its mean firing probability (the tie-break
        of :meth:`evaluate`), so the argmax is the predicted class."""
        t = self.topology
        n_models, n_ex, steps = params["bias"].shape[0], x.shape[0], x.shape[1]
        tr = self.input_traces(x)
        u_in = torch.einsum("bpnk,etnk->betp", params["ff"][:, :, :t.n_input], tr)
        w_rec = params["ff"][:, :, t.n_input:].reshape(n_models, t.n_learnable, -1)
        flat = {"w_rec": w_rec, "fb": params["fb"], "bias": params["bias"]}
        flat = {k: v.repeat_interleave(n_ex, 0) for k, v in flat.items()}
        _, counts, prob = self._free_run(flat, u_in.reshape(n_models * n_ex, steps, -1), None,
                                         generator)
        return (counts + 1e-3 * prob / steps).reshape(n_models, n_ex, t.n_output)

    def _evaluate_chunk(self, params: Params, x: torch.Tensor, y: torch.Tensor,
                        generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
        t = self.topology
        n_models, n_ex, steps = params["bias"].shape[0], x.shape[0], x.shape[1]
        tr = self.input_traces(x)                                           # [E, T, N, K]
        u_in = torch.einsum("bpnk,etnk->betp", params["ff"][:, :, :t.n_input], tr)
        w_rec = params["ff"][:, :, t.n_input:].reshape(n_models, t.n_learnable, -1)
        flat = {"w_rec": w_rec, "fb": params["fb"], "bias": params["bias"]}
        flat = {k: v.repeat_interleave(n_ex, 0) for k, v in flat.items()}
        u_in = u_in.reshape(n_models * n_ex, steps, -1)
        target = F.one_hot(y, t.n_output).to(self.dtype)[None].expand(n_models, -1, -1)
        target = target.reshape(n_models * n_ex, 1, t.n_output).expand(-1, steps, -1)
        nll, counts, prob = self._free_run(flat, u_in, target, generator)
        if t.outputs_feed_back:
            _, counts, prob = self._free_run(flat, u_in, None, generator)
        score = counts + 1e-3 * prob / steps
        pred = score.argmax(-1).reshape(n_models, n_ex)
        return nll.reshape(n_models, n_ex) / steps, pred

    def _free_run(self, params: Params, u_in: torch.Tensor, target: torch.Tensor | None,
                  generator: torch.Generator | None
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        n_h = self.topology.n_hidden
        state = self.init_state(u_in.shape[0])
        nll = torch.zeros(u_in.shape[0], dtype=self.dtype)
        counts = torch.zeros(u_in.shape[0], self.topology.n_output, dtype=self.dtype)
        prob = torch.zeros_like(counts)
        for k in range(u_in.shape[1]):
            drive, _, _ = self._recurrent_drive(params, params["w_rec"], state)
            u = u_in[:, k] + drive
            p = torch.sigmoid(u)
            sampled = torch.bernoulli(p, generator=generator)
            if target is not None:
                tk, uo = target[:, k], u[:, n_h:]
                nll -= (tk * F.logsigmoid(uo) + (1 - tk) * F.logsigmoid(-uo)).sum(-1)
                s = torch.cat([sampled[:, :n_h], tk], 1)
            else:
                s = sampled
            counts += sampled[:, n_h:]
            prob += p[:, n_h:]
            state.history = torch.cat([s[..., None], state.history[..., :-1]], dim=-1)
        return nll, counts, prob


def apply_update(snn: GLMSNN, params: Params, win: Window, rule: LearningRule,
                 baseline: torch.Tensor) -> tuple[Params, torch.Tensor]:
    """One three-factor update; returns ``(delta, new_baseline)`` and adds ``delta`` to ``params``.

    Outputs: ``theta_O += lr * e_O``. Hidden: ``theta_H += lr * (l - b) * e_H`` with learning
    signal ``l = log p(outputs) - kl_weight * KL(hidden || target_rate)`` and baseline ``b`` a
    running mean of ``l`` (per model).
    """
    n_h = snn.topology.n_hidden
    signal = win.out_loglik - rule.kl_weight * win.kl                       # [B]
    adv = signal - baseline
    delta: Params = {}
    for name, e in win.elig.items():
        scale = torch.ones(e.shape[:2], dtype=e.dtype)
        scale[:, :n_h] = adv[:, None]
        d = rule.lr * e * scale.reshape(*e.shape[:2], *([1] * (e.dim() - 2)))
        params[name] += d
        delta[name] = d
    new_baseline = rule.baseline_decay * baseline + (1 - rule.baseline_decay) * signal
    return delta, new_baseline
