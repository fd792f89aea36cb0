"""Who takes part in a round: the sampled clients and which of them straggle."""

from __future__ import annotations

import numpy as np

from spikefed.config import ExperimentConfig


def sample_clients(num_clients: int, cfg: ExperimentConfig, round_idx: int
                   ) -> tuple[list[int], list[int]]:
    """Participants of a round and which of them straggle (drop out); seeded by (seed, round)."""
    t = cfg.train
    rng = np.random.default_rng([cfg.seed, round_idx])
    m = t.clients_per_round or max(1, round(t.fraction * num_clients))
    m = min(m, num_clients)
    chosen = sorted(int(c) for c in rng.choice(num_clients, size=m, replace=False))
    drops = rng.random(m) < t.straggler_prob
    stragglers = [c for c, d in zip(chosen, drops, strict=True) if d]
    return chosen, stragglers
