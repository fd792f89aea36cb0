"""Learning-rate schedules over federated rounds (one rate per round, set by the server).

Rounds count from 1. With `warmup` rounds the rate first rises linearly, `lr * r / warmup`
for r = 1..warmup, then follows the schedule:

- `constant`: `lr`;
- `step`: `lr * factor ** k`, k = number of milestones <= r (SNFL: x0.1 at rounds 61 and 96);
- `cosine`: `min_lr + (lr - min_lr) * (1 + cos(pi * p)) / 2` with p = (r - warmup - 1) /
  (rounds - warmup), so the first round after warm-up trains at `lr` and the last just above
  `min_lr` (never at exactly `min_lr`, which would waste the round when `min_lr` is 0).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

SCHEDULES = ("constant", "step", "cosine")


def scheduled_lr(round_idx: int, lr: float, rounds: int, schedule: str = "constant", *,
                 milestones: Sequence[int] = (), factor: float = 0.1, warmup: int = 0,
                 min_lr: float = 0.0) -> float:
    """Learning rate of round `round_idx` (1-based) under `schedule`."""
    if schedule not in SCHEDULES:
        raise ValueError(f"train.lr_schedule={schedule!r} is unknown; choose one of "
                         f"{list(SCHEDULES)}")
    if round_idx < 1:
        raise ValueError(f"round {round_idx} must be >= 1 (rounds count from 1)")
    if warmup and round_idx <= warmup:
        return lr * round_idx / warmup
    if schedule == "step":
        return lr * factor ** sum(1 for m in milestones if round_idx >= m)
    if schedule == "cosine":
        progress = (round_idx - warmup - 1) / max(1, rounds - warmup)
        return min_lr + (lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))
    return lr
