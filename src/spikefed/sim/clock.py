"""The virtual clock of asynchronous runs: device speeds and link latencies (staleness weights
and the dispatch draw are engine-neutral: `spikefed.rounds.asynchronous`).

Every device draws its compute speed and its link latency once, from the run's seed alone
(`numpy.random.default_rng([seed, CLOCK_STREAM])`), so the same config gives the same devices
on every run and every resume. A client update's virtual duration is the downlink latency,
the local work (samples x epochs x `seconds_per_sample`) divided by the speed, and the uplink
latency.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from spikefed.config import ClockConfig

#: Seed stream of the device draws (kept apart from every other use of the run's seed).
CLOCK_STREAM = 0xC10C


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
