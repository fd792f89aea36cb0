"""Screen client uploads before aggregation: keys, shapes, dtypes, finite values, size.

A bad upload never reaches `Algorithm.aggregate`: it is rejected with a reason that names the
client and the tensor. A round goes on while at least `train.min_clients` valid uploads remain;
below that quorum, a round that lost uploads to rejections or client failures raises
`RoundFailedError` before any state is written. Both engines (in-process and Flower) use this.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from spikefed.fl.base import Algorithm, Upload


@dataclass(frozen=True)
class Rejection:
    """One upload the server refused (or one client that failed), and why."""

    client: int
    reason: str

    def as_record(self) -> dict[str, Any]:
        """The JSON form written to `metrics.jsonl` (`rejected: [{client, reason}]`)."""
        return {"client": self.client, "reason": self.reason}


class RoundFailedError(ValueError):
    """Too few valid uploads remain for a round to aggregate (`train.min_clients`)."""

    def __init__(self, round_idx: int, valid: int, required: int,
                 rejections: Iterable[Rejection]) -> None:
        self.round = round_idx
        self.valid = valid
        self.required = required
        self.rejections = list(rejections)
        reasons = "\n".join(f"  - client {r.client}: {r.reason}" for r in self.rejections)
        super().__init__(
            f"round {round_idx} failed: {valid} valid upload(s) < train.min_clients={required}; "
            f"rejected:\n{reasons}\nthe last checkpoint and metrics.jsonl are unchanged; fix the "
            "clients (or lower train.min_clients) and continue with `spikefed run --resume DIR`")


@dataclass(frozen=True)
class TensorSpec:
    """Expected shape and dtype of one uploaded tensor."""

    shape: tuple[int, ...]
    dtype: torch.dtype


class UploadValidator:
    """Checks uploads against the keys, shapes and dtypes an algorithm's model implies.

    Keys come from `algorithm.upload_keys(model)` (nothing for algorithms that do not
    communicate); shapes and dtypes from the model's `state_dict` where a key is found there
    (keys outside it, e.g. compressed payloads, are checked for presence and finiteness only).
    """

    def __init__(self, expected: Mapping[str, TensorSpec | None],
                 max_bytes: int | None = None) -> None:
        self.expected = dict(expected)
        self.max_bytes = max_bytes

    @classmethod
    def for_model(cls, algorithm: Algorithm, model: nn.Module,
                  max_bytes: int | None = None) -> UploadValidator:
        """The validator for uploads of `algorithm` on `model`."""
        keys = algorithm.upload_keys(model) if algorithm.communicates else set()
        state = model.state_dict()
        expected = {k: TensorSpec(tuple(state[k].shape), state[k].dtype) if k in state else None
                    for k in sorted(keys)}
        return cls(expected, max_bytes)

    def check(self, upload: Upload) -> str | None:
        """Why `upload` must be rejected, or None when it is valid."""
        tensors = upload.tensors
        if not isinstance(tensors, Mapping):
            return f"upload is a {type(tensors).__name__}, expected a dict of tensors"
        missing = sorted(set(self.expected) - set(tensors))
        if missing:
            return f"missing tensor(s) {_names(missing)}"
        extra = sorted(set(tensors) - set(self.expected))
        if extra:
            return f"unexpected tensor(s) {_names(extra)}"
        for key in self.expected:
            reason = self._check_tensor(key, tensors[key])
            if reason is not None:
                return reason
        n = upload.num_samples
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            return f"num_samples={n!r} must be a non-negative integer"
        if self.max_bytes is not None and upload.nbytes > self.max_bytes:
            return (f"upload is {upload.nbytes} bytes > train.max_upload_bytes={self.max_bytes}")
        return None

    def _check_tensor(self, key: str, value: Any) -> str | None:
        if not isinstance(value, torch.Tensor):
            return f"tensor '{key}' is a {type(value).__name__}, not a torch.Tensor"
        spec = self.expected[key]
        if spec is not None and tuple(value.shape) != spec.shape:
            return f"tensor '{key}' has shape {tuple(value.shape)}, expected {spec.shape}"
        if spec is not None and value.dtype != spec.dtype:
            return f"tensor '{key}' has dtype {value.dtype}, expected {spec.dtype}"
        if (value.is_floating_point() or value.is_complex()) and not bool(
                torch.isfinite(value).all()):
            bad = int((~torch.isfinite(value)).sum())
            return f"tensor '{key}' has {bad} non-finite value(s) (NaN or inf)"
        return None

    def screen(self, uploads: Iterable[Upload]) -> tuple[list[Upload], list[Rejection]]:
        """Split uploads into (valid, rejections)."""
        valid: list[Upload] = []
        rejected: list[Rejection] = []
        for upload in uploads:
            reason = self.check(upload)
            if reason is None:
                valid.append(upload)
            else:
                rejected.append(Rejection(upload.client_id, reason))
        return valid, rejected


def require_quorum(round_idx: int, valid: int, min_clients: int,
                   rejections: list[Rejection]) -> None:
    """Raise `RoundFailedError` when rejections left fewer than `min_clients` valid uploads.

    A round that is short only because of simulated stragglers is not a failure (the server
    model simply stays unchanged), so without rejections this never raises.
    """
    if rejections and valid < min_clients:
        raise RoundFailedError(round_idx, valid, min_clients, rejections)


def _names(keys: list[str], limit: int = 5) -> str:
    shown = ", ".join(f"'{k}'" for k in keys[:limit])
    return shown + (f" and {len(keys) - limit} more" if len(keys) > limit else "")
