"""The virtual clock of asynchronous runs: device speeds, link latencies, staleness weights.

Every device draws its compute speed and its link latency once, from the run's seed alone
(`numpy.random.default_rng([seed, CLOCK_STREAM])`), so the same config gives the same devices
on every run and every resume. A client update's virtual duration is the downlink latency,
the local work (samples x epochs x `seconds_per_sample`) divided by the speed, and the uplink
latency.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from spikefed.config import AsyncConfig, ClockConfig

#: Seed stream of the device draws (kept apart from every other use of the run's seed).
CLOCK_STREAM = 0xC10C
#: Seed stream of the choice of the next client to dispatch.
DISPATCH_STREAM = 0xD15B


@dataclass(frozen=True)
class Devices:
    """Per-device compute speed (1 = nominal), one-way latency (s) and slow flag."""

    speed: tuple[float, ...]
    latency_s: tuple[float, ...]
    slow: tuple[bool, ...]


def draw_devices(clock: ClockConfig, num_clients: int, seed: int) -> Devices:
    """The devices of a federation: lognormal speeds (median 1, spread `speed_sigma`), of
    which exactly round(`slow_fraction` x clients) are `slowdown` times slower, and lognormal
    latencies (median `latency_s`, spread `latency_sigma`)."""
    rng = np.random.default_rng([seed, CLOCK_STREAM])
    speed = rng.lognormal(0.0, clock.speed_sigma, num_clients)
    latency = clock.latency_s * rng.lognormal(0.0, clock.latency_sigma, num_clients)
    num_slow = round(clock.slow_fraction * num_clients)
    slow = np.zeros(num_clients, dtype=bool)
    slow[rng.choice(num_clients, size=num_slow, replace=False)] = True
    speed = np.where(slow, speed / clock.slowdown, speed)
    return Devices(tuple(float(s) for s in speed), tuple(float(x) for x in latency),
                   tuple(bool(b) for b in slow))


def update_duration(clock: ClockConfig, devices: Devices, client: int, num_samples: int,
                    local_epochs: int) -> float:
    """Virtual seconds from dispatching `client` to its upload arriving at the server."""
    compute = clock.seconds_per_sample * num_samples * local_epochs / devices.speed[client]
    return 2.0 * devices.latency_s[client] + compute


def sync_round_time(clock: ClockConfig, devices: Devices, participants: Sequence[int],
                    sizes: Sequence[int], local_epochs: int) -> float:
    """Virtual seconds of one synchronous round: the slowest participant's update."""
    return max((update_duration(clock, devices, c, sizes[c], local_epochs)
                for c in participants), default=0.0)


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
