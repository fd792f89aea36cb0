"""What a task is (a label subset or a domain transform) and each client's data per round."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from spikefed.data.feature_skew import feature_skew
from spikefed.drift.schedule import DRIFT_TAG, DriftSchedule, TaskSlot
from spikefed.fl.base import ClientData

Transform = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class TaskData(ClientData):
    """A client's training data in one round of a drift schedule.

    ``task`` is the newest task in it (0 in joint training, which never switches);
    ``previous()`` builds the client's data of task ``task - 1`` (what EWC estimates its
    Fisher on; ``None`` for task 0).
    """

    task: int = 0
    previous: Callable[[], ClientData] | None = None


def permutation(num_features: int, seed: int) -> Transform:
    """A fixed, seeded permutation of the flattened input features (permuted MNIST)."""
    perm = torch.from_numpy(np.random.default_rng([seed, DRIFT_TAG]).permutation(num_features))

    def permute(x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(len(x), -1)
        return flat[:, perm.to(x.device)].reshape(x.shape)
    return permute


def domain_transforms(kind: str, tasks: int, strength: float, in_shape: Sequence[int],
                      seed: int) -> list[Transform | None]:
    """One input transform per task; task 0 is the raw data (``None``).

    rotation / brightness / noise reuse :func:`spikefed.data.feature_skew` (task ``k`` at
    level ``k * strength / tasks``); permutation draws one pixel permutation per task.
    """
    if kind == "permutation":
        n = int(np.prod(in_shape))
        return [None] + [permutation(n, seed * 1_000_003 + k) for k in range(1, tasks)]
    return [None] + feature_skew(tasks, kind=kind, strength=strength, seed=seed)[1:]


class DriftData:
    """The tasks of a drift schedule over a federation's clients and test set."""

    def __init__(self, cfg: Any, schedule: DriftSchedule, clients: Sequence[ClientData],
                 test_x: torch.Tensor, test_y: torch.Tensor, num_classes: int,
                 in_shape: Sequence[int]) -> None:
        d = cfg.drift
        self.kind, self.joint, self.seed = d.kind, d.joint, cfg.seed
        self.schedule, self.base = schedule, list(clients)
        self.class_sets: list[list[int]] = []
        self.transforms: list[Transform | None] = []
        if d.kind == "class_incremental":
            groups = -(-num_classes // d.classes_per_task)
            tasks = groups if d.tasks is None else d.tasks
            if tasks > groups:
                raise ValueError(f"drift.tasks={tasks} but {num_classes} classes in groups of "
                                 f"drift.classes_per_task={d.classes_per_task} make only "
                                 f"{groups} tasks; lower drift.tasks or classes_per_task")
            self.class_sets = [list(range(k * d.classes_per_task,
                                          min((k + 1) * d.classes_per_task, num_classes)))
                               for k in range(tasks)]
        else:
            self.transforms = domain_transforms(d.domain, d.tasks, d.domain_strength, in_shape,
                                                cfg.seed)
        self.test_x, self.test_y = test_x, test_y
        self._tests: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self._round: tuple[int, dict[int, TaskData]] = (-1, {})

    @property
    def num_tasks(self) -> int:
        return len(self.class_sets) or len(self.transforms)

    # ----- one task -----------------------------------------------------------------------
    def _mask(self, y: torch.Tensor, task: int) -> torch.Tensor:
        return torch.isin(y, torch.tensor(self.class_sets[task], dtype=y.dtype))

    def _apply(self, x: torch.Tensor, task: int) -> torch.Tensor:
        tf = self.transforms[task]
        return x if tf is None else tf(x)

    def task_data(self, client_id: int, task: int) -> ClientData:
        """Client ``client_id``'s data of ``task`` alone."""
        base = self.base[client_id]
        if self.class_sets:
            keep = self._mask(base.y, task)
            return ClientData(base.x[keep], base.y[keep], base.transform)
        return ClientData(self._apply(base.x, task), base.y, base.transform)

    def test_set(self, task: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The test samples of ``task`` (its classes, or the test set in its domain)."""
        if task not in self._tests:
            if self.class_sets:
                keep = self._mask(self.test_y, task)
                self._tests[task] = (self.test_x[keep], self.test_y[keep])
            else:
                self._tests[task] = (self._apply(self.test_x, task), self.test_y)
        return self._tests[task]

    # ----- one round ----------------------------------------------------------------------
    def _draws(self, client_id: int, round_idx: int, n: int) -> torch.Tensor:
        """Uniform draws, one per sample, seeded by (seed, round, client)."""
        rng = np.random.default_rng([self.seed, DRIFT_TAG, round_idx, client_id])
        return torch.from_numpy(rng.random(n))

    def _mixed(self, client_id: int, round_idx: int, slot: TaskSlot) -> ClientData:
        """Gradual drift: each sample from ``slot.task`` with probability ``slot.share``,
        else from ``slot.task - 1``."""
        base = self.base[client_id]
        newer = self._draws(client_id, round_idx, len(base)) < slot.share
        if self.class_sets:
            keep = ((newer & self._mask(base.y, slot.task))
                    | (~newer & self._mask(base.y, slot.task - 1)))
            return ClientData(base.x[keep], base.y[keep], base.transform)
        x = torch.where(newer.view(-1, *[1] * (base.x.dim() - 1)),
                        self._apply(base.x, slot.task), self._apply(base.x, slot.task - 1))
        return ClientData(x, base.y, base.transform)

    def _joint(self, client_id: int, round_idx: int) -> ClientData:
        """Every task at once: all the tasks' classes, or each sample in a random domain."""
        base = self.base[client_id]
        if self.class_sets:
            keep = torch.isin(base.y, torch.tensor(sum(self.class_sets, []), dtype=base.y.dtype))
            return ClientData(base.x[keep], base.y[keep], base.transform)
        domain = (self._draws(client_id, round_idx, len(base)) * self.num_tasks).long()
        x = base.x.clone()
        for k in range(self.num_tasks):
            pick = domain == k
            x[pick] = self._apply(base.x[pick], k)
        return ClientData(x, base.y, base.transform)

    def client_data(self, client_id: int, round_idx: int) -> TaskData:
        """Client ``client_id``'s training data in round ``round_idx``."""
        if self.joint:
            data, task, previous = self._joint(client_id, round_idx), 0, None
        else:
            slot = self.schedule.slot(client_id, round_idx)
            task = slot.task
            data = (self.task_data(client_id, task) if slot.share == 1.0
                    else self._mixed(client_id, round_idx, slot))
            previous = None if task == 0 else (
                lambda: self.task_data(client_id, task - 1))
        if len(data) == 0:
            raise ValueError(f"client {client_id} holds no samples of drift task {task} in "
                             f"round {round_idx}; use data.partition.scheme=iid or fewer, "
                             "larger tasks (drift.classes_per_task)")
        return TaskData(data.x, data.y, data.transform, task=task, previous=previous)

    def round_clients(self, round_idx: int) -> RoundClients:
        """The clients' data of round ``round_idx``, built on first access."""
        if self._round[0] != round_idx:
            self._round = (round_idx, {})
        return RoundClients(self, round_idx, self._round[1])


class RoundClients(Sequence):
    """A lazy sequence of one round's client data (only the participants are built)."""

    def __init__(self, drift: DriftData, round_idx: int, cache: dict[int, TaskData]) -> None:
        self.drift, self.round_idx, self.cache = drift, round_idx, cache

    def __len__(self) -> int:
        return len(self.drift.base)

    def __getitem__(self, client_id):  # type: ignore[override]
        if isinstance(client_id, slice):
            return [self[i] for i in range(len(self))[client_id]]
        if client_id not in self.cache:
            self.cache[client_id] = self.drift.client_data(client_id, self.round_idx)
        return self.cache[client_id]


def build_drift(cfg: Any, clients: Sequence[ClientData], test_x: torch.Tensor,
                test_y: torch.Tensor, num_classes: int, in_shape: Sequence[int]
                ) -> DriftData | None:
    """The `DriftData` of ``cfg.drift`` (an ``ExperimentConfig``), or None without drift."""
    d = cfg.drift
    if d is None:
        return None
    groups = -(-num_classes // d.classes_per_task)
    tasks = d.tasks if d.tasks is not None else groups
    schedule = DriftSchedule(tasks, d.rounds_per_task, len(clients), cfg.seed,
                             d.gradual_rounds, d.client_offset)
    return DriftData(cfg, schedule, clients, test_x, test_y, num_classes, in_shape)
