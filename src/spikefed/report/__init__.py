"""Metric sinks and plots for run directories."""

from spikefed.report.metrics import MetricsLog, read_metrics
from spikefed.report.plots import plot_curves

__all__ = ["MetricsLog", "plot_curves", "read_metrics"]
