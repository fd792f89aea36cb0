"""The privacy benchmark: gradient inversion against ANN and SNN clients.

``run_attack_benchmark(cfg, out)`` writes ``results.csv`` (one row per attack x model x domain
x defense x seed x sample), ``summary.md``, ``reconstructions.png`` and ``psnr_curves.png``.
``snfl_attack_config()`` is the SNFL paper's DLG comparison (FedAvg vs SNFL).

One job per module: :mod:`.config` (schema, loader, device), :mod:`.plan` (which models and
defenses run, how many runs), :mod:`.victims` (the data and models attacked), :mod:`.attack`
(one attack and its scores), :mod:`.run` (the benchmark loop) and :mod:`.report` (the files).
"""

from spikefed.experiments.privacy.attack import result_row, run_one, score
from spikefed.experiments.privacy.config import (
    AttackConfig,
    attack_device,
    load_attack_config,
    snfl_attack_config,
)
from spikefed.experiments.privacy.plan import count_runs
from spikefed.experiments.privacy.report import CSV_FIELDS, summary_markdown
from spikefed.experiments.privacy.run import run_attack_benchmark
from spikefed.experiments.privacy.victims import load_victim_data, models_for

__all__ = [
    "CSV_FIELDS", "AttackConfig", "attack_device", "count_runs", "load_attack_config",
    "load_victim_data", "models_for", "result_row", "run_attack_benchmark", "run_one", "score",
    "snfl_attack_config", "summary_markdown",
]
