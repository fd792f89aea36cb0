"""Reproduce the SNFL paper's experiments (Tables 1-3, Fig. 3, Appendix A) at three scales.

One job per module: :mod:`.scales` (the settings), :mod:`.jobs` (the plan: every run's config
as a picklable job), :mod:`.cost` (the plan's estimated GPU time), :mod:`.run` (run the jobs,
in a process pool when asked), :mod:`.analysis` (bias inference and backdoor detection from the
server's view) and :mod:`.report` (``<out>/<experiment>/results.csv``, ``results.md``, plots,
``raw.json``). Run directories stay under ``<out>/runs/``.
"""

from spikefed.experiments.snfl.analysis import Recorder, backdoor_analysis, bias_inference
from spikefed.experiments.snfl.jobs import backdoor_boost, describe_plan, make_config, plan
from spikefed.experiments.snfl.report import (
    PAPER_SERVER_ACC,
    paper_comparison,
    table_markdown,
    write_results,
    write_rows,
)
from spikefed.experiments.snfl.run import cap_clients, reproduce, run_job
from spikefed.experiments.snfl.scales import (
    EXPERIMENTS,
    GPU_WORKERS,
    METHODS,
    SCALES,
    Scale,
    default_workers,
    with_scale,
)

__all__ = [
    "EXPERIMENTS", "GPU_WORKERS", "METHODS", "PAPER_SERVER_ACC", "SCALES", "Recorder", "Scale",
    "backdoor_analysis", "backdoor_boost", "bias_inference", "cap_clients", "default_workers",
    "describe_plan", "make_config", "paper_comparison", "plan", "reproduce", "run_job",
    "table_markdown", "with_scale", "write_results", "write_rows",
]
