"""Compressed uploads: the update codec (`train.codec`, `spikefed.comm`) on both engines.

Client side (`Uplink.encode`, after `client_update`): every upload key the algorithm names in
`Algorithm.coded_keys(received)` is compressed, as ``upload - received[ref]`` (relative keys)
or as it is (keys that already hold an update); other keys travel uncompressed. With error
feedback the residual is kept in the client's state under `RESIDUAL` (so it is checkpointed by
the in-process engine and stays on the node in Flower); `Uplink.split_state` hides it from the
algorithm. `qsgd` draws from a generator seeded by (seed, round, client).

The wire form is an ordinary `Upload` whose tensors are the codec's parts, named
``"<key>#values"`` (topk values, the tensor's dtype), ``"<key>#indices"`` (topk flat indices,
little-endian bytes at the smallest width: uint8), ``"<key>#codes"`` (packed bits: uint8) and
``"<key>#scale"`` (float32, one entry), so `Upload.nbytes` is exactly `Encoded.nbytes` plus the
uncompressed keys, and a Flower ArrayRecord carries it as it is.

Server side (`Uplink.decode`, an `UploadPipeline` decoder): checks every part's dtype and
size against the reference the client received and rebuilds the upload (received + decoded
update); anything malformed raises, which the pipeline turns into a rejection.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import numpy as np
import torch

from spikefed.comm.codecs import (
    SCALE_DTYPE,
    Codec,
    Encoded,
    EncodedTensor,
    QSGDCodec,
    TopKCodec,
    index_dtype,
    make_codec,
)
from spikefed.config import CodecConfig, ExperimentConfig
from spikefed.fl.base import Algorithm, Tensors, Upload

#: client-state key of the error-feedback residual (never seen by the algorithm)
RESIDUAL = "codec_residual"
SEP = "#"
#: the part names of each codec's payload
PARTS = {"topk": ("values", "indices"), "qsgd": ("codes", "scale"), "sign": ("codes", "scale")}
KINDS = {"topk": "sparse", "qsgd": "quantised", "sign": "sign"}
_STREAM = 0xC0DEC  # separates the codec's random stream from the minibatch stream


def codec_generator(seed: int, round_idx: int, client_id: int) -> torch.Generator:
    """The generator a stochastic codec uses for client `client_id` in round `round_idx`."""
    state = np.random.SeedSequence([seed, round_idx, client_id, _STREAM]).generate_state(1)
    return torch.Generator().manual_seed(int(state[0]))


class Uplink:
    """The configured update codec of a run, applied by clients and undone by the server."""

    def __init__(self, cfg: CodecConfig, algorithm: Algorithm, seed: int) -> None:
        self.cfg = cfg
        self.codec: Codec = make_codec(cfg)
        self.algorithm = algorithm
        self.seed = seed

    @property
    def active(self) -> bool:
        """Whether uploads are compressed (any codec but `none`)."""
        return self.cfg.name != "none"

    @staticmethod
    def split_state(state: dict[str, Any]) -> tuple[dict[str, Any], Tensors | None]:
        """(the algorithm's part of a client state, the codec's residual or None)."""
        if RESIDUAL not in state:
            return state, None
        rest = {k: v for k, v in state.items() if k != RESIDUAL}
        return rest, state[RESIDUAL]

    def _coded(self, received: Tensors) -> dict[str, tuple[str, bool]]:
        """Coded upload keys whose reference is a non-empty float tensor of `received`."""
        return {k: (ref, rel) for k, (ref, rel) in self.algorithm.coded_keys(received).items()
                if ref in received and received[ref].is_floating_point()
                and received[ref].numel() > 0}

    def send(self, upload: Upload, received: Tensors, state_before: dict[str, Any],
             state_after: dict[str, Any], round_idx: int) -> tuple[Upload, dict[str, Any]]:
        """A client's side, after `client_update`: (the wire upload, the client's new state
        with the new residual). `state_before` is the full state the round started from
        (holding the previous residual), `state_after` what the algorithm returned."""
        _, residual = self.split_state(state_before)
        wire, new_residual = self.encode(upload, received, residual, round_idx)
        if new_residual is None:
            return wire, state_after
        return wire, {**state_after, RESIDUAL: new_residual}

    def encode(self, upload: Upload, received: Tensors, residual: Tensors | None,
               round_idx: int) -> tuple[Upload, Tensors | None]:
        """The wire form of `upload` and the new residual (None without error feedback)."""
        coded = {}
        for key, (ref, relative) in self._coded(received).items():
            value, base = upload.tensors.get(key), received[ref]
            if value is None or value.shape != base.shape or value.dtype != base.dtype:
                continue  # not what the contract says: sent uncompressed
            coded[key] = value.detach().cpu() - base.cpu() if relative else value.detach().cpu()
        gen = (codec_generator(self.seed, round_idx, upload.client_id)
               if self.codec.stochastic else None)
        kept = {k: v for k, v in (residual or {}).items() if k in coded}
        encoded, new_residual = self.codec.encode(
            coded, kept if self.codec.error_feedback else None, gen)
        if new_residual is not None:  # keys not coded this round keep their residual
            new_residual = {**{k: v for k, v in (residual or {}).items() if k not in coded},
                            **new_residual}
        wire = {k: v for k, v in upload.tensors.items() if k not in coded}
        for key, enc in encoded.tensors.items():
            wire.update({f"{key}{SEP}{part}": _to_tensor(enc.parts[part])
                         for part in PARTS[self.codec.name]})
        return replace(upload, tensors=wire), new_residual

    def decode(self, wire: Upload, received: Tensors) -> Upload:
        """Rebuild the upload a client compressed against `received`; ValueError if malformed."""
        coded = self._coded(received)
        plain = {k: v for k, v in wire.tensors.items() if SEP not in k}
        parts: dict[str, dict[str, torch.Tensor]] = {}
        for name, tensor in wire.tensors.items():
            if SEP in name:
                key, part = name.rsplit(SEP, 1)
                if key not in coded or part not in PARTS[self.codec.name]:
                    raise ValueError(f"unexpected encoded part {name!r} for the "
                                     f"{self.codec.name} codec")
                parts.setdefault(key, {})[part] = tensor
        tensors = dict(plain)
        for key, got in parts.items():
            if key in plain:
                raise ValueError(f"{key!r} sent both uncompressed and encoded")
            ref, relative = coded[key]
            base = received[ref]
            enc = self._encoded_tensor(key, got, tuple(base.shape), base.dtype)
            update = self.codec.decode(Encoded(self.codec.name, {key: enc}))[key]
            tensors[key] = base.cpu() + update if relative else update
        return replace(wire, tensors=tensors)

    def _encoded_tensor(self, key: str, got: dict[str, torch.Tensor], shape: tuple[int, ...],
                        dtype: torch.dtype) -> EncodedTensor:
        """Check the parts of one encoded tensor against the shape it stands for."""
        name, n = self.codec.name, math.prod(shape)
        missing = [p for p in PARTS[name] if p not in got]
        if missing:
            raise ValueError(f"encoded {key!r} lacks part(s) {missing}")
        if isinstance(self.codec, TopKCodec):
            k, width = self.codec.k_of(n), index_dtype(n)
            _expect(key, "values", got["values"], dtype, k)
            _expect(key, "indices", got["indices"], torch.uint8, k * width.itemsize)
            indices = got["indices"].numpy().view(width.newbyteorder("<")).astype(width)
            if indices.size and int(indices.max()) >= n:
                raise ValueError(f"encoded {key!r} has an index {int(indices.max())} >= {n}")
            return EncodedTensor("sparse", shape, dtype,
                                 {"values": got["values"].clone(), "indices": indices})
        bits = self.codec.bits if isinstance(self.codec, QSGDCodec) else 1
        _expect(key, "codes", got["codes"], torch.uint8, math.ceil(bits * n / 8))
        _expect(key, "scale", got["scale"], torch.float32, 1)
        scale = got["scale"].numpy().astype(SCALE_DTYPE)
        if not np.isfinite(scale).all():
            raise ValueError(f"encoded {key!r} has a non-finite scale {float(scale[0])}")
        return EncodedTensor(KINDS[name], shape, dtype,
                             {"codes": got["codes"].numpy().copy(), "scale": scale})


def _to_tensor(part: torch.Tensor | np.ndarray) -> torch.Tensor:
    """A codec part as a wire tensor: torch tensors as they are, integer arrays as their
    little-endian bytes (uint8), scales as float32."""
    if isinstance(part, torch.Tensor):
        return part.contiguous()
    if part.dtype == SCALE_DTYPE:
        return torch.from_numpy(part.copy())
    little = part.astype(part.dtype.newbyteorder("<"), copy=False)
    return torch.from_numpy(np.ascontiguousarray(little).view(np.uint8).copy())


def _expect(key: str, part: str, tensor: torch.Tensor, dtype: torch.dtype, numel: int) -> None:
    if tensor.dtype != dtype or tensor.dim() != 1 or tensor.numel() != numel:
        raise ValueError(f"encoded {key!r} part {part!r}: expected {numel} {dtype} entries in "
                         f"one dimension, got shape {tuple(tensor.shape)} {tensor.dtype}")


def uplink_for(cfg: ExperimentConfig, algorithm: Algorithm) -> Uplink:
    """The `Uplink` of an experiment config (`train.codec`, seeded by `seed`)."""
    return Uplink(cfg.train.codec, algorithm, cfg.seed)
