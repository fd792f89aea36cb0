"""Kept for `spikefed.experiments.snfl`, which imports `evaluate` from here; the evaluation
lives in `spikefed.rounds.evaluate` (the round layer both engines share)."""

from spikefed.rounds.evaluate import EvalResult, evaluate

__all__ = ["EvalResult", "evaluate"]
