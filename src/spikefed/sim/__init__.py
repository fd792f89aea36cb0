"""The in-process simulation engine."""

from spikefed.sim.engine import Simulation

__all__ = ["Simulation"]
