"""The in-process simulation engine."""

from spikefed.sim.engine import Simulation, sample_clients, summarize

__all__ = ["Simulation", "sample_clients", "summarize"]
