"""When each client trains which task: rounds per task, gradual windows, per-client offsets."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Seed tag separating the drift streams (offsets, mixing draws) from the training streams.
DRIFT_TAG = 0xD21F


@dataclass(frozen=True)
class TaskSlot:
    """A client's data in one round: the newest task it sees and that task's share of the
    samples (1.0: only ``task``; below 1: gradual drift, the rest from ``task - 1``)."""

    task: int
    share: float = 1.0


class DriftSchedule:
    """Task ``k`` runs rounds ``k * rounds_per_task + 1 ..`` of a client's own clock.

    Client ``i``'s clock lags the federation's by ``offsets[i]`` rounds (drawn once, seeded,
    uniformly from ``0..client_offset``). With ``gradual_rounds = W > 0``, the ``W`` rounds
    before a switch to task ``k`` already mix in task ``k``: in the ``j``-th of them
    (``j = 1..W``) a share ``j / (W + 1)`` of the client's samples comes from task ``k``.
    The last task lasts until the end of the run.
    """

    def __init__(self, num_tasks: int, rounds_per_task: int, num_clients: int, seed: int,
                 gradual_rounds: int = 0, client_offset: int = 0) -> None:
        if gradual_rounds >= rounds_per_task:
            raise ValueError(f"drift.gradual_rounds={gradual_rounds} must be smaller than "
                             f"drift.rounds_per_task={rounds_per_task}")
        self.num_tasks, self.rounds_per_task = num_tasks, rounds_per_task
        self.gradual_rounds = gradual_rounds
        rng = np.random.default_rng([seed, DRIFT_TAG])
        self.offsets = [int(o) for o in rng.integers(0, client_offset + 1, size=num_clients)]

    def slot(self, client_id: int, round_idx: int) -> TaskSlot:
        """The task (and its share) client ``client_id`` trains in round ``round_idx`` (1-based)."""
        local = round_idx - self.offsets[client_id]  # the client's own clock
        task = min(max(local - 1, 0) // self.rounds_per_task, self.num_tasks - 1)
        if task + 1 < self.num_tasks and self.gradual_rounds:
            next_start = (task + 1) * self.rounds_per_task + 1
            into = local - (next_start - self.gradual_rounds) + 1  # 1..W inside the window
            if into >= 1:
                return TaskSlot(task + 1, into / (self.gradual_rounds + 1))
        return TaskSlot(task)

    def seen(self, round_idx: int) -> int:
        """How many tasks some client has trained on by round ``round_idx``."""
        return max(self.slot(c, round_idx).task for c in range(len(self.offsets))) + 1
