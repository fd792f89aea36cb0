"""Divergence: a client whose training loss is non-finite or exploding, found each round.

A loss counts as exploding above `train.divergence_factor x ln(num_classes)`, i.e. that many
times the cross-entropy of a uniform guess (the loss an untrained classifier starts near).
`train.divergence` says what happens: `stop` ends the run with `DivergenceError` before the
round is written (the checkpoint and metrics keep the last good round); `skip_client` rejects
that client's upload like an invalid one, with the reason recorded in the round's `rejected`.
"""

from __future__ import annotations

import math
from typing import Any

from spikefed.fl.base import Upload
from spikefed.rounds.validation import Rejection


class DivergenceError(ValueError):
    """Training diverged under `train.divergence=stop` (phrased for the user)."""


def loss_limit(num_classes: int, factor: float) -> float:
    """The largest training loss still taken as sane: factor x ln(num_classes)."""
    return factor * math.log(max(num_classes, 2))


def divergence_reason(loss: float | None, limit: float) -> str | None:
    """Why `loss` means divergence, or None when it is fine (or not reported)."""
    if loss is None:
        return None
    if not math.isfinite(loss):
        return f"training loss is {loss} (not finite): local training diverged"
    if loss > limit:
        return (f"training loss {loss:.4g} exceeds the divergence limit {limit:.4g} "
                "(train.divergence_factor x ln(num_classes)): local training is exploding")
    return None


def screen_losses(round_idx: int, uploads: list[Upload], new_states: dict[int, dict[str, Any]],
                  rejected: list[Rejection], policy: str, limit: float) -> list[Upload]:
    """Apply the divergence policy to a round's uploads; return those kept.

    Under `skip_client` a diverged client's upload is dropped, its new state discarded (in
    `new_states`, in place) and a `Rejection` appended to `rejected`.
    """
    kept = []
    for upload in uploads:
        reason = divergence_reason(upload.metrics.get("train_loss"), limit)
        if reason is None:
            kept.append(upload)
        elif policy == "stop":
            written = (f"its checkpoint and metrics.jsonl keep round {round_idx - 1}"
                       if round_idx > 1 else "no round had been written")
            raise DivergenceError(
                f"round {round_idx}, client {upload.client_id}: {reason}; the run stopped and "
                f"{written}. Lower train.lr "
                "(or raise train.divergence_factor) and start again with --overwrite, or set "
                "train.divergence=skip_client to reject such uploads and go on")
        else:
            new_states.pop(upload.client_id, None)
            rejected.append(Rejection(upload.client_id, reason))
    return kept
