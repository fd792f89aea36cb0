"""Continual federated learning under drift (config section `drift:`, docs/edge.md).

- :mod:`~spikefed.drift.schedule`: which task each client trains in each round.
- :mod:`~spikefed.drift.tasks`: what a task is (a label subset or a domain transform) and the
  client data and test set of a task.
- :mod:`~spikefed.drift.consolidation`: EWC and proximal consolidation around any algorithm.
- :mod:`~spikefed.drift.metrics`: per-task accuracy, average accuracy, forgetting, heat map.
"""

from spikefed.drift.consolidation import Consolidation, fisher_diagonal
from spikefed.drift.metrics import drift_record, forgetting, plot_task_heatmap
from spikefed.drift.schedule import DriftSchedule, TaskSlot
from spikefed.drift.tasks import DriftData, TaskData, build_drift

__all__ = ["Consolidation", "DriftData", "DriftSchedule", "TaskData", "TaskSlot", "build_drift",
           "drift_record", "fisher_diagonal", "forgetting", "plot_task_heatmap"]
