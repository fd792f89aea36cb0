"""A small in-process run for tests: every client cut to its first samples."""

from __future__ import annotations

from pathlib import Path

from spikefed.config import load_config
from spikefed.report import read_metrics
from spikefed.sim import Simulation


def run_small(out: Path, overrides: list[str], samples: int) -> tuple[Simulation, list[dict]]:
    """Run the config of `overrides` into `out` with each client holding its first `samples`
    samples; return the simulation and its metrics records."""
    sim = Simulation(load_config(overrides=overrides), out)
    for c in sim.fed.clients:
        c.x, c.y = c.x[:samples], c.y[:samples]
    sim.run()
    return sim, read_metrics(out / "metrics.jsonl")
