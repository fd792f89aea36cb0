"""Per-task accuracy of the server model, average accuracy, forgetting and the heat map."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from spikefed.drift.tasks import DriftData  # noqa: E402
from spikefed.rounds.evaluate import evaluate  # noqa: E402


def forgetting(history: Sequence[Sequence[float]], current: Sequence[float]) -> float | None:
    """Mean drop from the best accuracy ever reached on each *finished* task.

    ``history`` holds earlier evaluations' per-task accuracies (each list covers the tasks
    seen then), ``current`` the accuracies now. Task ``j`` is finished when a later task has
    been seen (``j < len(current) - 1``); its forgetting is ``max(acc_j over history and now)
    - acc_j now`` (>= 0). None while no task is finished.
    """
    finished = range(len(current) - 1)
    if not finished:
        return None
    drops = [max([row[j] for row in history if j < len(row)] + [current[j]]) - current[j]
             for j in finished]
    return float(np.mean(drops))


def drift_record(drift: DriftData, model: nn.Module | None, round_idx: int,
                 earlier: Sequence[dict[str, Any]], batch_size: int, device: torch.device
                 ) -> dict[str, Any]:
    """The drift entries of one evaluation round: ``task_acc`` (server accuracy on every
    task seen so far), ``avg_task_acc``, ``forgetting`` and ``tasks_seen``."""
    seen = drift.schedule.seen(round_idx)
    if model is None:
        return {"tasks_seen": seen}
    accs = [evaluate(model, *drift.test_set(k), batch_size, device).accuracy
            for k in range(seen)]
    history = [r["task_acc"] for r in earlier if r.get("task_acc") is not None]
    return {"tasks_seen": seen, "task_acc": accs, "avg_task_acc": float(np.mean(accs)),
            "forgetting": forgetting(history, accs)}


def plot_task_heatmap(records: Sequence[dict[str, Any]], num_tasks: int, path: str | Path,
                      title: str = "") -> Path | None:
    """Task x round heat map of the server's per-task accuracy (blank: not yet seen)."""
    rows = [r for r in records if r.get("task_acc") is not None]
    if not rows:
        return None
    grid = np.full((num_tasks, len(rows)), np.nan)
    for col, r in enumerate(rows):
        grid[:len(r["task_acc"]), col] = r["task_acc"]
    fig, ax = plt.subplots(figsize=(max(5.0, 0.35 * len(rows) + 2), 0.5 * num_tasks + 1.8))
    image = ax.imshow(grid, aspect="auto", cmap="viridis", vmin=0, vmax=1,
                      interpolation="nearest")
    step = max(1, len(rows) // 15)
    ax.set_xticks(range(0, len(rows), step), [str(rows[c]["round"]) for c in
                                              range(0, len(rows), step)])
    ax.set_yticks(range(num_tasks), [f"task {k}" for k in range(num_tasks)])
    ax.set(xlabel="round", title=title or "server accuracy per task")
    fig.colorbar(image, ax=ax, label="test accuracy")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
