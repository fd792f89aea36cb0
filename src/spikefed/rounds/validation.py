"""Screen client uploads before aggregation: structure and substance.

Structure: keys, shapes, dtypes, plain dense tensors (no sparse, meta, quantized or nested
tensors, no tensor subclasses, no `None`), finite values, size. Substance: `num_samples` must
equal the size of the client's partition as the server knows it (aggregation weights by it),
no float value may exceed `train.max_upload_abs` in magnitude, and the update's L2 norm
(upload - broadcast, `spikefed.rounds.update_norm`) may be bounded by `train.update_norm_bound`
(policy `reject` or `clip`). A bad upload never reaches `Algorithm.aggregate`: it is rejected
with a reason that names the client and the tensor. A round goes on while at least
`train.min_clients` valid uploads remain; below that quorum, a round that lost uploads to
rejections or client failures raises `RoundFailedError` before any state is written. Both
engines (in-process and Flower) use this. See docs/security.md.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import nn

from spikefed.fl.base import Algorithm, Tensors, Upload
from spikefed.rounds.update_norm import clip_update, update_norm

if TYPE_CHECKING:
    from spikefed.config import TrainConfig

NormPolicy = Literal["reject", "clip"]


@dataclass(frozen=True)
class Rejection:
    """One upload the server refused (or one client that failed), and why."""

    client: int
    reason: str

    def as_record(self) -> dict[str, Any]:
        """The JSON form written to `metrics.jsonl` (`rejected: [{client, reason}]`)."""
        return {"client": self.client, "reason": self.reason}


@dataclass(frozen=True)
class Clip:
    """One upload whose update norm was scaled down to the bound (`train.update_norm_policy`)."""

    client: int
    norm: float
    bound: float

    def as_record(self) -> dict[str, Any]:
        """The JSON form written to `metrics.jsonl` (`clipped: [{client, norm, bound}]`)."""
        return {"client": self.client, "norm": self.norm, "bound": self.bound}


@dataclass(frozen=True)
class Verdict:
    """The server's decision on one upload: the upload to aggregate (maybe clipped), or why not."""

    upload: Upload | None
    rejection: Rejection | None = None
    clip: Clip | None = None


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
                 max_bytes: int | None = None, *, max_abs: float | None = None,
                 norm_bound: float | None = None, norm_policy: NormPolicy = "reject") -> None:
        self.expected = dict(expected)
        self.max_bytes = max_bytes
        self.max_abs = max_abs
        self.norm_bound = norm_bound
        self.norm_policy = norm_policy

    @classmethod
    def for_model(cls, algorithm: Algorithm, model: nn.Module,
                  max_bytes: int | None = None, **bounds: Any) -> UploadValidator:
        """The validator for uploads of `algorithm` on `model` (`bounds`: `max_abs`,
        `norm_bound`, `norm_policy`)."""
        keys = algorithm.upload_keys(model) if algorithm.communicates else set()
        state = model.state_dict()
        expected = {k: TensorSpec(tuple(state[k].shape), state[k].dtype) if k in state else None
                    for k in sorted(keys)}
        return cls(expected, max_bytes, **bounds)

    @classmethod
    def for_config(cls, algorithm: Algorithm, model: nn.Module,
                   train: TrainConfig) -> UploadValidator:
        """The validator a run's `train` config section asks for."""
        return cls.for_model(algorithm, model, train.max_upload_bytes,
                             max_abs=train.max_upload_abs, norm_bound=train.update_norm_bound,
                             norm_policy=train.update_norm_policy)

    def judge(self, upload: Any, client_id: int, *, partition_size: int | None = None,
              broadcast: Tensors | None = None) -> Verdict:
        """Accept (maybe clipped) or reject what client `client_id` sent; never raises.

        `partition_size` is the number of training samples the server knows the client holds;
        `broadcast` is what the client was sent (the reference of the update norm).
        """
        if not isinstance(upload, Upload):
            return Verdict(None, Rejection(client_id, f"client sent a {type(upload).__name__}, "
                                                      "not an Upload"))
        upload.client_id = client_id
        try:
            reason = self.check(upload, partition_size=partition_size, broadcast=broadcast)
            if reason is None and self.norm_policy == "clip" and self.norm_bound is not None:
                norm = update_norm(upload.tensors, broadcast or {})
                if norm > self.norm_bound:
                    tensors = clip_update(upload.tensors, broadcast or {}, self.norm_bound)
                    clipped = Upload(client_id, tensors, upload.num_samples, upload.metrics)
                    return Verdict(clipped, clip=Clip(client_id, norm, self.norm_bound))
        except Exception as exc:  # noqa: BLE001 - a crafted upload must not end the round
            reason = f"upload could not be checked ({type(exc).__name__}: {exc})"
        if reason is not None:
            return Verdict(None, Rejection(client_id, reason))
        return Verdict(upload)

    def check(self, upload: Upload, *, partition_size: int | None = None,
              broadcast: Tensors | None = None) -> str | None:
        """Why `upload` must be rejected, or None when it is valid (see `judge`)."""
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
        if partition_size is not None and n != partition_size:
            return (f"num_samples={n} but the client's partition holds {partition_size} "
                    "samples (the server weights uploads by the size it knows)")
        if self.max_bytes is not None and upload.nbytes > self.max_bytes:
            return (f"upload is {upload.nbytes} bytes > train.max_upload_bytes={self.max_bytes}")
        if self.norm_bound is not None and self.norm_policy == "reject":
            norm = update_norm(tensors, broadcast or {})
            if norm > self.norm_bound:
                return (f"update norm {norm:.4g} > train.update_norm_bound={self.norm_bound:g} "
                        "(train.update_norm_policy=reject)")
        return None

    def _check_tensor(self, key: str, value: Any) -> str | None:
        if not isinstance(value, torch.Tensor):
            return f"tensor '{key}' is a {type(value).__name__}, not a torch.Tensor"
        odd = _odd_tensor(value)
        if odd is not None:
            return f"tensor '{key}' {odd}; send plain dense tensors"
        spec = self.expected[key]
        if spec is not None and tuple(value.shape) != spec.shape:
            return f"tensor '{key}' has shape {tuple(value.shape)}, expected {spec.shape}"
        if spec is not None and value.dtype != spec.dtype:
            return f"tensor '{key}' has dtype {value.dtype}, expected {spec.dtype}"
        if (value.is_floating_point() or value.is_complex()) and not bool(
                torch.isfinite(value).all()):
            bad = int((~torch.isfinite(value)).sum())
            return f"tensor '{key}' has {bad} non-finite value(s) (NaN or inf)"
        if self.max_abs is not None and value.is_floating_point() and value.numel():
            biggest = float(value.detach().abs().max())
            if biggest > self.max_abs:
                return (f"tensor '{key}' holds a value of magnitude {biggest:.4g} > "
                        f"train.max_upload_abs={self.max_abs:g}")
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


def _odd_tensor(value: torch.Tensor) -> str | None:
    """What makes `value` unfit for aggregation (not a plain dense tensor with data), or None."""
    if type(value) not in (torch.Tensor, nn.Parameter):
        return f"is a {type(value).__name__} (a tensor subclass)"
    if value.is_meta:
        return "is a meta tensor (it holds no data)"
    if value.layout != torch.strided:
        return f"has layout {value.layout} (not dense)"
    if value.is_quantized:
        return "is quantized"
    if value.is_nested:
        return "is a nested tensor"
    return None


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
