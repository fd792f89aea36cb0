"""The round's metrics record (one line of metrics.jsonl), built the same way by both engines."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from spikefed.energy import EnergyModel, add_client_energy, round_energy
from spikefed.fl.base import Algorithm
from spikefed.rounds.pipeline import RoundIntake, UploadPipeline


def mean_or_none(values: list[float | None]) -> float | None:
    """The mean of the values that are not None (None if there are none)."""
    vals = [v for v in values if v is not None]
    return float(np.mean(vals)) if vals else None


def round_record(round_idx: int, lr: float, chosen: list[int], stragglers: list[int],
                 intake: RoundIntake, bytes_down: int, aggregated: bool, algorithm: Algorithm,
                 server_state: dict[str, Any], pipeline: UploadPipeline) -> dict[str, Any]:
    """The record of a round before its evaluation part (`RoundEvaluator.record`) and wall time.

    From `pipeline`: when its aggregator filters uploads, what it left out
    (`aggregator_rejected`); when a codec compresses them, their size uncompressed
    (`bytes_up_raw`).
    """
    record: dict[str, Any] = {
        "round": round_idx, "lr": lr, "participants": len(chosen),
        "uploads": len(intake.uploads), "stragglers": len(stragglers), "aggregated": aggregated,
        "bytes_up": intake.bytes_up, "bytes_down": bytes_down,
        "train_loss_mean": mean_or_none([u.metrics.get("train_loss") for u in intake.uploads]),
        "rejected": [bad.as_record() for bad in intake.rejected],
        "clipped": [clip.as_record() for clip in intake.clipped],
    }
    if pipeline.aggregator.select is not None:
        record["aggregator_rejected"] = [d.as_record() for d in intake.dropped]
    record.update(algorithm.round_metrics(server_state))
    if pipeline.uplink is not None and pipeline.uplink.active:
        record["bytes_up_raw"] = intake.bytes_up_raw
    return record


def add_round_energy(record: dict[str, Any], intake: RoundIntake, down_bytes: Mapping[int, int],
                     model: EnergyModel) -> None:
    """Add the round's energy (training counts, radio bits; `spikefed.energy`) to `record`,
    per client too when it lists clients. Call after the evaluation part is in."""
    add_client_energy(record, round_energy(intake.uploads, intake.wire_bytes, down_bytes, model))
