"""The server side of asynchronous FL, for both engines: staleness weights, the choice of the
next client, FedAsync's mixing, FedBuff's buffered step, and the record of one server update.

Staleness t - tau is counted in server model versions: t the version when an update is
applied, tau the version its client was sent. The engines differ only in what moves time
(`spikefed.sim.asynchronous`: a virtual clock; `spikefed.flower.asynchronous`: the wall clock
and Flower's message API); the arithmetic here is shared, so both apply an update the same way.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from spikefed.config import AsyncConfig
from spikefed.fl.base import Tensors, Upload
from spikefed.rounds.record import mean_or_none
from spikefed.rounds.validation import Clip, Rejection

#: Seed stream of the choice of the next client to dispatch.
DISPATCH_STREAM = 0xD15B


def staleness_weight(cfg: AsyncConfig, staleness: int) -> float:
    """s(t - tau) of Xie et al. (2019): constant, polynomial or hinge (see `AsyncConfig`)."""
    if staleness < 0:
        raise ValueError(f"staleness {staleness} < 0: an update cannot come from the future")
    if cfg.staleness == "constant":
        return 1.0
    if cfg.staleness == "polynomial":
        return math.pow(staleness + 1, -cfg.staleness_a)
    if staleness <= cfg.staleness_b:
        return 1.0
    return 1.0 / (cfg.staleness_a * (staleness - cfg.staleness_b) + 1.0)


def next_client(seed: int, dispatch: int, idle: Sequence[int]) -> int:
    """The client dispatched `dispatch`-th (from 1): uniform over the idle ones, drawn from
    (seed, dispatch) alone, so no generator state needs saving for an exact resume."""
    rng = np.random.default_rng([seed, DISPATCH_STREAM, dispatch])
    return sorted(idle)[int(rng.integers(len(idle)))]


def mix(server: Tensors, client: Tensors, alpha: float) -> Tensors:
    """FedAsync's update (1 - alpha) server + alpha client (float64 arithmetic; integer
    tensors, e.g. BatchNorm's counter, keep the server's value)."""
    out: Tensors = {}
    for key, w in server.items():
        if torch.is_floating_point(w):
            mixed = (1.0 - alpha) * w.to(torch.float64) + alpha * client[key].to(torch.float64)
            out[key] = mixed.to(w.dtype)
        else:
            out[key] = w.clone()
    return out


def delta(upload: Tensors, dispatched: Tensors) -> Tensors:
    """A client's update: upload minus the model it was dispatched with (float64, exact for
    float32 models)."""
    return {k: upload[k].to(torch.float64) - v.to(torch.float64)
            for k, v in dispatched.items() if torch.is_floating_point(v)}


def apply_buffer(server: Tensors, buffer: list[dict[str, Any]], server_lr: float) -> Tensors:
    """FedBuff's step: server + server_lr x sum_i n_i s_i delta_i / sum_j n_j."""
    total = sum(entry["num_samples"] for entry in buffer)
    out: Tensors = {}
    for key, w in server.items():
        if not torch.is_floating_point(w):
            out[key] = w.clone()
            continue
        acc = torch.zeros_like(w, dtype=torch.float64)
        for entry in buffer:
            acc += entry["delta"][key] * (entry["num_samples"] * entry["weight"] / total)
        out[key] = (w.to(torch.float64) + server_lr * acc).to(w.dtype)
    return out


def apply_update(cfg: AsyncConfig, server: Tensors, buffer: list[dict[str, Any]],
                 upload: Upload, dispatched: Tensors, staleness: int, step: AsyncStep,
                 wire_bytes: int | None = None) -> Tensors | None:
    """Apply one valid update that left as `dispatched`, `staleness` versions ago: the new
    server model (FedAsync; FedBuff when the buffer fills, which empties it), or None (FedBuff,
    update buffered). The update's numbers go into `step`; `wire_bytes`, the bytes the client
    sent when a decoder ran (default: the upload's own size)."""
    weight = staleness_weight(cfg, staleness)
    step.applied.append(upload)
    step.staleness.append(staleness)
    step.weights.append(weight)
    step.losses.append(upload.metrics.get("train_loss"))
    step.bytes_up += upload.nbytes if wire_bytes is None else wire_bytes
    if cfg.mode == "fedasync":
        step.stepped = True
        return mix(server, upload.tensors, cfg.alpha * weight)
    buffer.append({"delta": delta(upload.tensors, dispatched),
                   "num_samples": upload.num_samples, "weight": weight})
    if len(buffer) >= cfg.buffer_size:
        return flush_buffer(cfg, server, buffer, step)
    return None


def flush_buffer(cfg: AsyncConfig, server: Tensors, buffer: list[dict[str, Any]],
                 step: AsyncStep) -> Tensors:
    """FedBuff's server step on the buffered deltas (the buffer empties)."""
    new = apply_buffer(server, buffer, cfg.server_lr)
    buffer.clear()
    step.stepped = True
    return new


@dataclass
class AsyncStep:
    """What happened since the last record of an asynchronous run (becomes the next one)."""

    applied: list[Upload] = field(default_factory=list)
    staleness: list[int] = field(default_factory=list)
    weights: list[float] = field(default_factory=list)
    arrived: list[int] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)
    clipped: list[Clip] = field(default_factory=list)
    losses: list[float | None] = field(default_factory=list)
    bytes_up: int = 0
    bytes_down: int = 0
    dispatched: int = 0
    stepped: bool = False

    def record(self, round_idx: int, version: int, clock: tuple[str, float], updates: int,
               lr: float) -> dict[str, Any]:
        """The record of this step: `clock` is (key, seconds), `virtual_time_s` in the
        in-process engine, `elapsed_s` (wall clock since the start) on Flower."""
        return {
            "round": round_idx, "model_version": version,
            clock[0]: clock[1], "updates": updates, "lr": lr,
            "participants": self.dispatched, "uploads": len(self.applied),
            "stragglers": 0, "aggregated": self.stepped, "arrived": self.arrived,
            "bytes_up": self.bytes_up, "bytes_down": self.bytes_down,
            "train_loss_mean": mean_or_none(self.losses),
            "staleness_mean": mean_or_none([float(s) for s in self.staleness]),
            "staleness_max": max(self.staleness, default=None),
            "staleness_weight_mean": mean_or_none(self.weights),
            "rejected": [bad.as_record() for bad in self.rejected],
            "clipped": [clip.as_record() for clip in self.clipped],
        }
