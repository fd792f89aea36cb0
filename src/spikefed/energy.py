"""Energy of inference from counted events: E = spikes * E_spike + SynOps * E_syn + MACs * E_mac.

Event-driven hardware spends energy when something happens: a neuron emits a spike (E_spike) and
each spike is received at a synapse (E_syn, one accumulate); dense layers (an ANN, or the first
layer of a directly coded SNN) pay a multiply-accumulate per weight (E_mac). The counts come from
`spikefed.snn.counters.ActivityCounter`. Defaults are the 45 nm CMOS figures of Horowitz (ISSCC
2014) for 32-bit float operations (add 0.9 pJ, multiply-add 4.6 pJ) that SNN papers commonly
use; the per-spike cost is hardware specific and 0 by default: set it for your chip.
"""

from __future__ import annotations

from pydantic import ConfigDict, Field

from spikefed.strict_numbers import RealNumbers


class EnergyModel(RealNumbers):
    """Per-event energies in picojoules."""

    model_config = ConfigDict(extra="forbid")
    e_spike_pj: float = Field(0.0, ge=0, description="energy per emitted spike")
    e_synop_pj: float = Field(0.9, ge=0, description="energy per synaptic operation (accumulate)")
    e_mac_pj: float = Field(4.6, ge=0, description="energy per multiply-accumulate (dense input)")

    def energy_pj(self, spikes: float, synops: float, macs: float) -> float:
        """Total energy in picojoules of the given event counts."""
        return spikes * self.e_spike_pj + synops * self.e_synop_pj + macs * self.e_mac_pj
