"""Metric sinks, plots, the HTML run report and run comparisons."""

from spikefed.report.compare import write_comparison
from spikefed.report.html import write_report
from spikefed.report.metrics import MetricsLog, read_metrics
from spikefed.report.plots import plot_curves

__all__ = ["MetricsLog", "plot_curves", "read_metrics", "write_comparison", "write_report"]
