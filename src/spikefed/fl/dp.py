"""Differential privacy inside federated training (config section `dp:`, docs/edge.md).

Two levels, each a wrapper around a registered algorithm:

- ``sample`` (DP-SGD, Abadi et al. 2016): every local step of a client computes per-sample
  gradients with ``torch.func``, clips each to L2 norm ``clip``, sums them, adds
  ``N(0, (sigma * clip)^2)`` and divides by the batch size (:func:`dp_gradient`). A data-free
  extra loss (FedProx's proximal term) and SCAFFOLD's gradient correction are added after the
  noise: they do not touch the data, so they cost no privacy. Each client reports its
  ``(epsilon, delta)`` for the sampling rate ``q = batch_size / partition size`` and the local
  steps it has taken so far (:func:`spikefed.privacy.accountant.epsilon`, Opacus's RDP).
- ``client`` (DP-FedAvg, McMahan et al. 2018): the server clips each client's update (upload
  minus broadcast) to L2 norm ``clip``, sums them, adds ``N(0, (sigma * clip)^2)`` and divides
  by the expected number of participants ``m`` (the fixed-denominator estimator, so one client
  changes the mean by at most ``clip / m``). The accountant is Opacus's ``RDPAccountant`` over
  rounds with client sampling rate ``q = m / num_clients``.

Both accountants assume Poisson sampling; spikefed shuffles minibatches and samples a fixed
number of clients per round, the usual approximation in DP-SGD practice (docs/edge.md).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import replace
from typing import Any

import torch
from opacus.accountants import RDPAccountant
from torch import Tensor, nn

from spikefed.fl.base import Algorithm, ClientData, Tensors, TrainContext, Upload
from spikefed.fl.local import SAMPLE_DP_OPTION
from spikefed.fl.wrap import DelegatingAlgorithm
from spikefed.privacy.accountant import epsilon
from spikefed.privacy.defenses import dp_gradient

#: Seed tag separating the DP noise streams from the training streams.
_NOISE_TAG = 0xD9


def noise_generator(seed: int, round_idx: int, client_id: int) -> torch.Generator:
    """The DP noise stream of one client (or the server, ``client_id=-1``) in one round."""
    return torch.Generator().manual_seed(hash((seed, round_idx, client_id, _NOISE_TAG))
                                         & 0x7FFF_FFFF)


def check_per_sample_model(model: nn.Module) -> None:
    """Raise ``ValueError`` when ``model`` has BatchNorm (per-sample gradients undefined)."""
    bn = [name for name, m in model.named_modules()
          if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if bn:
        raise ValueError(f"dp.level='sample' needs per-sample gradients, but the model has "
                         f"BatchNorm layers ({', '.join(bn[:3])}), which mix the examples of a "
                         "batch; set model.norm=gn")


class SampleDP:
    """DP-SGD gradients for :func:`spikefed.fl.local.local_train` (one client, one round)."""

    def __init__(self, noise_multiplier: float, clip: float, generator: torch.Generator) -> None:
        self.noise_multiplier, self.clip, self.generator = noise_multiplier, clip, generator

    def backward(self, model: nn.Module, x: Tensor, y: Tensor, extra: Tensor | None) -> None:
        """Set ``p.grad`` to the DP-SGD gradient of the cross-entropy, plus ``extra``'s."""
        params = {n: p for n, p in model.named_parameters() if p.requires_grad}
        grads = dp_gradient(model, {n: p.detach() for n, p in params.items()}, x, y,
                            self.noise_multiplier, self.clip, self.generator)
        for name, p in params.items():
            p.grad = grads[name].to(p.dtype)
        if extra is not None:
            extra.backward()


def _epsilon_or_none(q: float, sigma: float, steps: int, delta: float) -> float | None:
    """Epsilon of ``steps`` sampled-Gaussian steps; ``None`` (no guarantee) when sigma is 0."""
    if sigma == 0 or steps == 0:
        return None if sigma == 0 else 0.0
    return epsilon(q, sigma, steps, delta)[0]


class SampleLevelDP(DelegatingAlgorithm):
    """``base`` with DP-SGD local training; each client tracks and reports its epsilon."""

    def __init__(self, base: Algorithm, noise_multiplier: float, clip: float, delta: float
                 ) -> None:
        super().__init__(base)
        self.noise_multiplier, self.clip, self.delta = noise_multiplier, clip, delta

    def client_update(self, client_id: int, broadcast: Tensors, client_state: dict[str, Any],
                      data: ClientData, ctx: TrainContext
                      ) -> tuple[Upload, dict[str, Any], dict[str, float]]:
        private = SampleDP(self.noise_multiplier, self.clip,
                           noise_generator(ctx.seed, ctx.round, client_id))
        ctx = replace(ctx, options={**ctx.options, SAMPLE_DP_OPTION: private})
        upload, new_state, metrics = self.base.client_update(client_id, broadcast, client_state,
                                                             data, ctx)
        steps = int(client_state.get("dp_steps", 0)) + int(metrics["steps"])
        q = min(1.0, ctx.batch_size / max(len(data), 1))
        eps = _epsilon_or_none(q, self.noise_multiplier, steps, self.delta)
        dp_metrics = {"dp_epsilon": eps, "dp_steps": float(steps), "dp_q": q}
        metrics = {**metrics, **dp_metrics}
        upload.metrics = {**upload.metrics, **dp_metrics}
        return upload, {**new_state, "dp_steps": steps}, metrics

    def aggregate(self, server_state: dict[str, Any], uploads: list[Upload]
                  ) -> tuple[dict[str, Any], Tensors]:
        seen = dict(server_state.get("dp_epsilon", {}))
        seen.update({int(u.client_id): u.metrics.get("dp_epsilon") for u in uploads})
        new_state, broadcast = self.base.aggregate(server_state, uploads)
        return {**new_state, "dp_epsilon": seen}, broadcast

    def round_metrics(self, server_state: dict[str, Any]) -> dict[str, Any]:
        per_client = server_state.get("dp_epsilon", {})
        known = [e for e in per_client.values() if e is not None]
        worst = None if (not known or len(known) < len(per_client)) else max(known)
        return {"dp_level": "sample", "dp_delta": self.delta, "dp_epsilon_max": worst,
                "dp_epsilon": {str(c): e for c, e in sorted(per_client.items())}}


def clipped_update(upload: Tensors, reference: Tensors, clip: float) -> tuple[Tensors, float]:
    """``upload - reference`` over floating tensors, scaled to L2 norm at most ``clip``.

    Returns the clipped update and the norm before clipping.
    """
    deltas = {k: upload[k].to(torch.float64) - reference[k].to(torch.float64)
              for k in reference if torch.is_floating_point(reference[k])}
    norm = math.sqrt(sum(float(d.pow(2).sum()) for d in deltas.values()))
    scale = min(1.0, clip / (norm + 1e-12))
    return {k: d * scale for k, d in deltas.items()}, norm


class ClientLevelDP(DelegatingAlgorithm):
    """``base`` (FedAvg-style averaging) with DP-FedAvg's clipped, noised server step."""

    def __init__(self, base: Algorithm, noise_multiplier: float, clip: float, delta: float,
                 expected_clients: int, num_clients: int, seed: int) -> None:
        super().__init__(base)
        self.noise_multiplier, self.clip, self.delta = noise_multiplier, clip, delta
        self.expected_clients, self.seed = expected_clients, seed
        self.sample_rate = expected_clients / num_clients

    def init_server(self, model: nn.Module) -> tuple[dict[str, Any], Tensors]:
        state, broadcast = self.base.init_server(model)
        return {**state, "dp_rounds": 0, "dp_clip_fraction": None}, broadcast

    def aggregate(self, server_state: dict[str, Any], uploads: list[Upload]
                  ) -> tuple[dict[str, Any], Tensors]:
        if not uploads:
            raise ValueError("cannot aggregate an empty list of uploads")
        current = server_state["params"]
        rnd = int(server_state["dp_rounds"]) + 1
        total: dict[str, Tensor] = {}
        clipped = 0
        for u in uploads:
            update, norm = clipped_update(u.tensors, current, self.clip)
            clipped += norm > self.clip
            for k, d in update.items():
                total[k] = total[k] + d if k in total else d
        gen = noise_generator(self.seed, rnd, -1)
        params = dict(current)
        for k, s in total.items():
            noise = torch.randn(s.shape, generator=gen, dtype=torch.float64)
            step = (s + self.noise_multiplier * self.clip * noise) / self.expected_clients
            params[k] = (current[k].to(torch.float64) + step.to(current[k].device)
                         ).to(current[k].dtype)
        new_state = {**server_state, "params": params, "dp_rounds": rnd,
                     "dp_clip_fraction": clipped / len(uploads)}
        return new_state, params

    def epsilon(self, rounds: int) -> float | None:
        """Client-level epsilon after ``rounds`` DP-FedAvg rounds (Opacus ``RDPAccountant``)."""
        if self.noise_multiplier == 0:
            return None
        if rounds == 0:
            return 0.0
        accountant = RDPAccountant()
        accountant.history = [(self.noise_multiplier, self.sample_rate, rounds)]
        with warnings.catch_warnings():  # the smallest-order warning only fires for huge epsilon
            warnings.simplefilter("ignore", UserWarning)
            return float(accountant.get_epsilon(self.delta))

    def round_metrics(self, server_state: dict[str, Any]) -> dict[str, Any]:
        rounds = int(server_state.get("dp_rounds", 0))
        return {"dp_level": "client", "dp_delta": self.delta, "dp_q": self.sample_rate,
                "dp_epsilon_max": self.epsilon(rounds),
                "dp_clip_fraction": server_state.get("dp_clip_fraction")}


def make_private(algorithm: Algorithm, cfg: Any, model: nn.Module) -> Algorithm:
    """Wrap ``algorithm`` for ``cfg.dp`` (an ``ExperimentConfig``); unchanged when level none."""
    dp = cfg.dp
    if dp.level == "none":
        return algorithm
    if dp.level == "sample":
        check_per_sample_model(model)
        return SampleLevelDP(algorithm, dp.noise_multiplier, dp.clip, dp.delta)
    n = cfg.data.num_clients
    t = cfg.train
    m = min(n, t.clients_per_round or max(1, round(t.fraction * n)))
    return ClientLevelDP(algorithm, dp.noise_multiplier, dp.clip, dp.delta, m, n, cfg.seed)
