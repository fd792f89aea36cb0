"""Update codecs: compress a client's update (upload - broadcast) with exact bytes on the wire.

A codec turns a dict of tensors into an :class:`Encoded` payload whose ``nbytes`` is exactly the
data a client would send: values at their dtype width, indices at the smallest unsigned integer
width that holds the largest index (``numel - 1``), bit-packed codes (``ceil(bits * n / 8)``
bytes) and per-tensor scales (float32, 4 bytes). Names, shapes and dtypes are not counted: both
ends know the model's architecture. Tensors that are not floating point (BatchNorm's
``num_batches_tracked``) are sent as they are and counted.

Lossy codecs can keep an error-feedback residual: what they did not send is returned as
``new_residual`` for the client to keep and is added to its next update, so over rounds the sum
of decoded updates plus the final residual equals the sum of the raw updates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from spikefed.config import CodecConfig

Tensors = dict[str, torch.Tensor]
SCALE_DTYPE = np.float32
SCALE_BYTES = 4


def index_dtype(numel: int) -> np.dtype:
    """Smallest unsigned integer dtype that holds every index of a tensor of ``numel`` entries."""
    for dtype in (np.uint8, np.uint16, np.uint32):
        if numel - 1 <= np.iinfo(dtype).max:
            return np.dtype(dtype)
    return np.dtype(np.uint64)


def pack_codes(codes: np.ndarray, bits: int) -> np.ndarray:
    """Pack unsigned integer codes below ``2**bits`` into ``ceil(bits * n / 8)`` bytes.

    numpy.packbits packs a 0/1 array into bytes; each code is first split into its ``bits``
    binary digits (most significant first), so no bit twiddling is written by hand.
    """
    shifts = np.arange(bits - 1, -1, -1, dtype=np.uint32)
    digits = (codes.astype(np.uint32)[:, None] >> shifts) & 1
    return np.packbits(digits.astype(np.uint8).ravel())


def unpack_codes(packed: np.ndarray, bits: int, n: int) -> np.ndarray:
    """Inverse of :func:`pack_codes`: ``n`` codes of ``bits`` bits each (int64)."""
    digits = np.unpackbits(packed, count=bits * n).reshape(n, bits).astype(np.int64)
    return digits @ (1 << np.arange(bits - 1, -1, -1, dtype=np.int64))


def _wire_bytes(part: torch.Tensor | np.ndarray) -> int:
    if isinstance(part, torch.Tensor):
        return part.numel() * part.element_size()
    return int(part.nbytes)


@dataclass(frozen=True)
class EncodedTensor:
    """One tensor on the wire: ``kind`` says how ``parts`` decode (raw, sparse, quantised, sign)."""

    kind: str
    shape: tuple[int, ...]
    dtype: torch.dtype
    parts: dict[str, torch.Tensor | np.ndarray]

    @property
    def nbytes(self) -> int:
        """Exact bytes of the parts (values, indices, packed codes, scale)."""
        return sum(_wire_bytes(p) for p in self.parts.values())


@dataclass(frozen=True)
class Encoded:
    """A compressed update: one :class:`EncodedTensor` per name, and the codec's name."""

    codec: str
    tensors: dict[str, EncodedTensor] = field(default_factory=dict)

    @property
    def nbytes(self) -> int:
        """Exact bytes on the wire (sum over tensors; no names, shapes or Python overhead)."""
        return sum(t.nbytes for t in self.tensors.values())


def _raw(t: torch.Tensor) -> EncodedTensor:
    return EncodedTensor("raw", tuple(t.shape), t.dtype, {"values": t.detach().cpu().clone()})


def _scale_of(value: float) -> np.ndarray:
    """A float32 scale no smaller than ``value`` (rounded up where float32 cannot hold it)."""
    scale = np.float32(value)
    if float(scale) < value:
        scale = np.nextafter(scale, np.float32(np.inf))
    return np.array([scale], dtype=SCALE_DTYPE)


class Codec:
    """Base class. Subclasses implement :meth:`_encode_float` and :meth:`_decode_float`."""

    name = "none"
    stochastic = False

    def __init__(self, error_feedback: bool = False) -> None:
        self.error_feedback = error_feedback

    def encode(self, update: Tensors, residual: Tensors | None = None,
               generator: torch.Generator | None = None) -> tuple[Encoded, Tensors | None]:
        """Compress ``update`` (plus ``residual`` with error feedback); returns the payload and
        the new residual (``None`` without error feedback). Tensors are encoded in host memory
        (CPU), where a payload leaves from; decoded tensors and residuals are CPU tensors."""
        if self.stochastic and generator is None:
            raise ValueError(f"the {self.name} codec rounds stochastically: pass a seeded "
                             "torch.Generator")
        if residual is not None and not self.error_feedback:
            raise ValueError(f"a residual was passed to the {self.name} codec, which runs "
                             "without error feedback; pass residual=None")
        encoded: dict[str, EncodedTensor] = {}
        new_residual: Tensors = {}
        for key, tensor in update.items():
            if not tensor.is_floating_point():
                encoded[key] = _raw(tensor)
                continue
            target = tensor.detach().cpu()
            if residual is not None and key in residual:
                target = target + residual[key].to("cpu", target.dtype)
            enc = self._encode_float(target, generator)
            encoded[key] = enc
            if self.error_feedback:
                new_residual[key] = target - self._decode_float(enc)
        return Encoded(self.name, encoded), (new_residual if self.error_feedback else None)

    def decode(self, encoded: Encoded) -> Tensors:
        """The tensors a payload stands for (what the server aggregates)."""
        if encoded.codec != self.name:
            raise ValueError(f"payload was encoded with the {encoded.codec} codec, not "
                             f"{self.name}; decode it with the codec that wrote it")
        return {key: enc.parts["values"].clone() if enc.kind == "raw" else self._decode_float(enc)
                for key, enc in encoded.tensors.items()}

    def _encode_float(self, t: torch.Tensor, generator: torch.Generator | None) -> EncodedTensor:
        return _raw(t)

    def _decode_float(self, enc: EncodedTensor) -> torch.Tensor:
        return enc.parts["values"].clone()


class NoneCodec(Codec):
    """Lossless: every tensor as it is (``numel x element size`` bytes)."""


class TopKCodec(Codec):
    """The ``k = max(1, ceil(fraction * numel))`` entries of largest magnitude of each tensor:
    their values (at the tensor's dtype) and flat indices (ascending, smallest uint width)."""

    name = "topk"

    def __init__(self, fraction: float, error_feedback: bool = False) -> None:
        if not 0 < fraction <= 1:
            raise ValueError(f"topk fraction={fraction} must lie in (0, 1]")
        super().__init__(error_feedback)
        self.fraction = fraction

    def k_of(self, numel: int) -> int:
        """Entries kept of a tensor with ``numel`` entries (1e-9 absorbs float fuzz: 0.01 x
        1000 keeps 10)."""
        return min(numel, max(1, math.ceil(self.fraction * numel - 1e-9)))

    def _encode_float(self, t: torch.Tensor, generator: torch.Generator | None) -> EncodedTensor:
        flat = t.reshape(-1)
        if flat.numel() == 0:
            return _raw(t)
        idx = torch.topk(flat.abs(), self.k_of(flat.numel()), sorted=False).indices
        idx = torch.sort(idx).values
        indices = idx.numpy().astype(index_dtype(flat.numel()))
        return EncodedTensor("sparse", tuple(t.shape), t.dtype,
                             {"values": flat[idx].clone(), "indices": indices})

    def _decode_float(self, enc: EncodedTensor) -> torch.Tensor:
        if enc.kind == "raw":
            return enc.parts["values"].clone()
        out = torch.zeros(math.prod(enc.shape), dtype=enc.dtype)
        idx = torch.from_numpy(enc.parts["indices"].astype(np.int64))
        out[idx] = enc.parts["values"]
        return out.reshape(enc.shape)


class QSGDCodec(Codec):
    """Stochastic unbiased quantisation to ``bits`` bits per entry with a per-tensor scale
    ``s = max|x|``: the ``L = 2**bits - 1`` steps split ``[-s, s]``; each entry rounds to one of
    its two neighbouring levels with the probabilities that make the mean exact. Per entry the
    error is below one step, ``2 s / L``. Bytes: ``ceil(bits * n / 8) + 4``."""

    name = "qsgd"
    stochastic = True

    def __init__(self, bits: int, error_feedback: bool = False) -> None:
        if not 1 <= bits <= 16:
            raise ValueError(f"qsgd bits={bits} must lie in 1..16")
        super().__init__(error_feedback)
        self.bits = bits
        self.levels = (1 << bits) - 1

    def _encode_float(self, t: torch.Tensor, generator: torch.Generator | None) -> EncodedTensor:
        flat = t.reshape(-1).double()
        scale = _scale_of(float(flat.abs().max())) if flat.numel() else _scale_of(0.0)
        s = float(scale[0])
        if s > 0:
            position = (flat / s + 1) * (self.levels / 2)         # in [0, L]
            low = position.floor()
            up = torch.rand(flat.shape, generator=generator, dtype=torch.float64) < position - low
            codes = (low + up.double()).clamp(0, self.levels).to(torch.int64).numpy()
        else:
            codes = np.zeros(flat.numel(), dtype=np.int64)
        return EncodedTensor("quantised", tuple(t.shape), t.dtype,
                             {"codes": pack_codes(codes, self.bits), "scale": scale})

    def _decode_float(self, enc: EncodedTensor) -> torch.Tensor:
        if enc.kind == "raw":
            return enc.parts["values"].clone()
        n = math.prod(enc.shape)
        codes = torch.from_numpy(unpack_codes(enc.parts["codes"], self.bits, n)).double()
        s = float(enc.parts["scale"][0])
        values = (codes * (2 / self.levels) - 1) * s
        return values.to(enc.dtype).reshape(enc.shape)


class SignCodec(Codec):
    """One bit per entry (its sign, zero counted positive) and a scale ``mean|x|``, so the
    decoded tensor is ``mean|x| * sign(x)`` (scaled signSGD, Karimireddy et al. 2019).
    Its error obeys ``|x - d|^2 <= (1 - 1/n) |x|^2``. Bytes: ``ceil(n / 8) + 4``."""

    name = "sign"

    def _encode_float(self, t: torch.Tensor, generator: torch.Generator | None) -> EncodedTensor:
        flat = t.reshape(-1)
        scale = np.array([flat.abs().double().mean() if flat.numel() else 0.0],
                         dtype=SCALE_DTYPE)
        bits = (flat >= 0).numpy().astype(np.uint8)
        return EncodedTensor("sign", tuple(t.shape), t.dtype,
                             {"codes": np.packbits(bits), "scale": scale})

    def _decode_float(self, enc: EncodedTensor) -> torch.Tensor:
        n = math.prod(enc.shape)
        bits = np.unpackbits(enc.parts["codes"], count=n).astype(np.float64)
        values = torch.from_numpy(2 * bits - 1) * float(enc.parts["scale"][0])
        return values.to(enc.dtype).reshape(enc.shape)


def make_codec(cfg: CodecConfig) -> Codec:
    """The codec a :class:`~spikefed.config.CodecConfig` (``train.codec``) describes."""
    ef = cfg.uses_error_feedback
    if cfg.name == "topk":
        return TopKCodec(cfg.fraction, ef)
    if cfg.name == "qsgd":
        return QSGDCodec(cfg.bits, ef)
    if cfg.name == "sign":
        return SignCodec(ef)
    return NoneCodec()


def subtract(a: Tensors, b: Tensors) -> Tensors:
    """``a - b`` per name (float tensors); other tensors are taken from ``a`` as they are."""
    return {k: a[k] - b[k] if a[k].is_floating_point() else a[k].clone() for k in a}


def apply_update(base: Tensors, delta: Tensors) -> Tensors:
    """``base + delta`` per name (float tensors); other tensors are taken from ``delta``."""
    return {k: base[k] + delta[k].to(base[k].dtype) if base[k].is_floating_point()
            else delta[k].clone() for k in base}


def compress_downlink(codec: Codec, broadcast: Tensors, client_copy: Tensors,
                      residual: Tensors | None = None, generator: torch.Generator | None = None
                      ) -> tuple[Encoded, Tensors | None]:
    """Downlink compression: encode the change from the model clients hold (``client_copy``)
    to the new ``broadcast``. Clients rebuild it with :func:`apply_downlink`; with error
    feedback the server keeps the residual (one per client copy) for the next broadcast."""
    return codec.encode(subtract(broadcast, client_copy), residual, generator)


def apply_downlink(codec: Codec, client_copy: Tensors, encoded: Encoded) -> Tensors:
    """The model a client holds after receiving a compressed broadcast ``encoded``."""
    return apply_update(client_copy, codec.decode(encoded))
