"""Energy of inference, of local training and of a federated round, from counted events.

Compute: E = spikes * E_spike + SynOps * E_syn + MACs * E_mac. Event-driven hardware spends
energy when something happens: a neuron emits a spike (E_spike) and each spike is received at
a synapse (E_syn, one accumulate); dense layers (an ANN, or the first layer of a directly coded
SNN, computed once per forward when its input is constant over time steps) pay a
multiply-accumulate per weight (E_mac). The counts come from
`spikefed.snn.counters.ActivityCounter`. Defaults are the 45 nm CMOS figures of Horowitz (ISSCC
2014) for 32-bit float operations (add 0.9 pJ, multiply-add 4.6 pJ) that SNN papers commonly
use; the per-spike cost is hardware specific and 0 by default: set it for your chip.

Training: the forward passes of local training are counted exactly (`fl.local.local_train`);
the backward pass is estimated as `backward_factor` times the forward energy (default 2: the
backward pass costs about twice the forward pass, Kaplan et al. 2020, arXiv:2001.08361, §2.1).

Communication: exact payload bits times an energy per bit, for the client's transmitter
(uplink) and receiver (downlink). Defaults: 50 nJ/bit, the radio electronics energy of the
first-order radio model of Heinzelman, Chandrakasan and Balakrishnan (HICSS 2000), which
excludes the distance-dependent transmit amplifier (100 pJ/bit/m^2 there; add it to
`e_up_pj_per_bit` for your link distance).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pydantic import ConfigDict, Field, field_validator

from spikefed.strict_numbers import RealNumbers

#: upload metrics local training fills with its forward-pass counts
TRAIN_COUNT_KEYS = ("train_spikes", "train_synops", "train_macs")


class EnergyModel(RealNumbers):
    """Per-event energies in picojoules, per-bit radio energies and the energy targets."""

    model_config = ConfigDict(extra="forbid")
    e_spike_pj: float = Field(0.0, ge=0, description="energy per emitted spike")
    e_synop_pj: float = Field(0.9, ge=0, description="energy per synaptic operation (accumulate)")
    e_mac_pj: float = Field(4.6, ge=0, description="energy per multiply-accumulate (dense input)")
    e_up_pj_per_bit: float = Field(
        50_000.0, ge=0, description="client transmit energy per uploaded bit (pJ; default 50 "
        "nJ/bit, Heinzelman et al. HICSS 2000 radio electronics)")
    e_down_pj_per_bit: float = Field(
        50_000.0, ge=0, description="client receive energy per downloaded bit (pJ; default 50 "
        "nJ/bit, Heinzelman et al. HICSS 2000 radio electronics)")
    backward_factor: float = Field(
        2.0, ge=0, description="training backward-pass energy as a multiple of the counted "
        "forward energy (2: Kaplan et al. 2020); 0 counts forward passes only")
    count_training: bool = Field(
        True, description="count spikes/SynOps/MACs of local training's forward passes")
    target_acc: list[float] = Field(
        default_factory=lambda: [0.8, 0.85, 0.9],
        description="server accuracies to report the cumulative energy to reach (summary)")

    @field_validator("target_acc")
    @classmethod
    def _targets_are_accuracies(cls, value: list[float]) -> list[float]:
        bad = [v for v in value if not 0 < v <= 1]
        if bad:
            raise ValueError(f"energy.target_acc={value!r}: {bad} not in (0, 1]; give "
                             "accuracies as fractions, e.g. [0.8, 0.9]")
        return value

    def energy_pj(self, spikes: float, synops: float, macs: float) -> float:
        """Total energy in picojoules of the given event counts."""
        return spikes * self.e_spike_pj + synops * self.e_synop_pj + macs * self.e_mac_pj

    def train_energy_pj(self, metrics: Mapping[str, float]) -> float | None:
        """Training energy of one client from its upload metrics (None: not counted)."""
        if any(metrics.get(k) is None for k in TRAIN_COUNT_KEYS):
            return None
        forward = self.energy_pj(*(float(metrics[k]) for k in TRAIN_COUNT_KEYS))
        return forward * (1.0 + self.backward_factor)

    def up_pj(self, nbytes: int) -> float:
        """Client transmit energy of an upload of `nbytes` bytes."""
        return 8 * nbytes * self.e_up_pj_per_bit

    def down_pj(self, nbytes: int) -> float:
        """Client receive energy of a download of `nbytes` bytes."""
        return 8 * nbytes * self.e_down_pj_per_bit


def _sum_or_none(values: Iterable[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return float(sum(vals)) if vals else None


def round_energy(uploads: Sequence[Any], up_bytes: Mapping[int, int],
                 down_bytes: Mapping[int, int], model: EnergyModel) -> dict[str, Any]:
    """The energy entries of a round's metrics record (the clients' energy, in pJ).

    `uploads` are the accepted uploads (`client_id`, `metrics`); `up_bytes` maps a client to
    the bytes its upload took on the wire, `down_bytes` every client sent work this round
    (stragglers included) to the bytes it received. Returns `energy_train_pj` (None when no
    upload carries training counts), `energy_comm_up_pj`, `energy_comm_down_pj`,
    `energy_round_pj` and `energy_clients` ({client id: its entries}).
    """
    clients: dict[int, dict[str, float | None]] = {}
    for u in uploads:
        cid = int(u.client_id)
        train = model.train_energy_pj(u.metrics)
        up, down = model.up_pj(up_bytes[cid]), model.down_pj(down_bytes.get(cid, 0))
        clients[cid] = {"energy_train_pj": train, "energy_comm_up_pj": up,
                        "energy_comm_down_pj": down, "energy_pj": (train or 0.0) + up + down}
    train_total = _sum_or_none(c["energy_train_pj"] for c in clients.values())
    up_total = model.up_pj(sum(up_bytes[int(u.client_id)] for u in uploads))
    down_total = model.down_pj(sum(down_bytes.values()))
    return {"energy_train_pj": train_total, "energy_comm_up_pj": up_total,
            "energy_comm_down_pj": down_total,
            "energy_round_pj": (train_total or 0.0) + up_total + down_total,
            "energy_clients": clients}


def add_client_energy(record: dict[str, Any], energy: Mapping[str, Any]) -> None:
    """Merge `round_energy`'s per-round keys into `record`, and each client's entries into
    the record's `clients` list when it has one."""
    per_client = energy["energy_clients"]
    record.update({k: v for k, v in energy.items() if k != "energy_clients"})
    for entry in record.get("clients", []):
        entry.update(per_client.get(int(entry["client"]), {}))


def energy_to_target(records: Sequence[Mapping[str, Any]], target: float) -> float | None:
    """Cumulative `energy_round_pj` up to the first round whose `server_acc` reaches
    `target` (None when no round does, or rounds lack energy)."""
    total = 0.0
    for r in records:
        if r.get("energy_round_pj") is None:
            return None
        total += r["energy_round_pj"]
        acc = r.get("server_acc")
        if acc is not None and acc >= target:
            return total
    return None


def energy_summary(records: Sequence[Mapping[str, Any]],
                   targets: Sequence[float] | None = None) -> dict[str, Any]:
    """Summary entries: total energy (training, communication), mean per round, and the
    energy to reach each target accuracy (`energy_to_acc_pj`: {"0.8": pJ or None}; targets
    default to `EnergyModel().target_acc`). Empty when no record has round energy."""
    targets = EnergyModel().target_acc if targets is None else targets
    rounds = [r for r in records if r.get("energy_round_pj") is not None]
    if not rounds:
        return {}
    total = sum(r["energy_round_pj"] for r in rounds)
    return {
        "energy_total_pj": total,
        "energy_train_total_pj": _sum_or_none(r.get("energy_train_pj") for r in rounds),
        "energy_comm_total_pj": sum(r["energy_comm_up_pj"] + r["energy_comm_down_pj"]
                                    for r in rounds),
        "energy_per_round_pj": total / len(rounds),
        "energy_to_acc_pj": {str(t): energy_to_target(records, t) for t in targets},
    }
