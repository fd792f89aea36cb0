"""Spike-event compression: lossless codecs for address-event streams and spike rasters, and
two lossy reductions (temporal re-binning, refractory subsampling) that say what they drop.

Event streams are :data:`spikefed.data.events.EVENT_DTYPE` arrays (``t`` µs, ``x``, ``y``,
``p``). The stream codec stores the timestamps as differences to the previous event and the
addresses as they are (or, with ``address_delta=True``, as differences too), each column zigzag
mapped to unsigned integers of the smallest width that fits, split into byte planes, and the
whole compressed with Zstandard. The raster codec bit-packs binary rasters (numpy.packbits) and
stores count rasters at their dtype width, then compresses with Zstandard. Both decoders
reproduce the input exactly (``np.array_equal``) and the payload carries a small header, counted
in every size this module reports.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np
import zstandard

from spikefed.data.events import EVENT_DTYPE, make_events

STREAM_MAGIC = b"SFEV"
RASTER_MAGIC = b"SFRS"
FORMAT_VERSION = 1
DEFAULT_LEVEL = 19
_FIELDS = ("t", "x", "y", "p")
_STREAM_HEADER = struct.Struct("<4sBBQ4B")     # magic, version, flags, n, width per field
_RASTER_HEADER = struct.Struct("<4sBBB")       # magic, version, packed flag, ndim
_ADDRESS_DELTA = 1


def _zigzag(v: np.ndarray) -> np.ndarray:
    """Signed int64 to unsigned: 0, -1, 1, -2, ... -> 0, 1, 2, 3, ..."""
    return ((v << 1) ^ (v >> 63)).view(np.uint64)


def _unzigzag(u: np.ndarray) -> np.ndarray:
    return (u >> np.uint64(1)).view(np.int64) ^ -(u & np.uint64(1)).view(np.int64)


def _width(u: np.ndarray) -> int:
    top = int(u.max()) if len(u) else 0
    return next(w for w in (1, 2, 4, 8) if top < 1 << (8 * w))


def _planes(u: np.ndarray, width: int) -> bytes:
    """Byte planes of little-endian ``width``-byte integers: all low bytes, then the next..."""
    return u.astype(f"<u{width}").view(np.uint8).reshape(-1, width).T.tobytes()


def _from_planes(raw: bytes, width: int, n: int) -> np.ndarray:
    planes = np.frombuffer(raw, dtype=np.uint8).reshape(width, n)
    return np.ascontiguousarray(planes.T).view(f"<u{width}").reshape(n).astype(np.uint64)


def _check_events(events: np.ndarray) -> None:
    if events.dtype != EVENT_DTYPE:
        raise ValueError(f"events have dtype {events.dtype}; expected spikefed's EVENT_DTYPE "
                         f"{EVENT_DTYPE} (build one with spikefed.data.events.make_events)")


def encode_events(events: np.ndarray, *, address_delta: bool = False,
                  level: int = DEFAULT_LEVEL) -> bytes:
    """Losslessly compress an event stream (any order; sorted streams compress best)."""
    _check_events(events)
    n = len(events)
    columns = []
    for name in _FIELDS:
        v = events[name].astype(np.int64)
        if name == "t" or (address_delta and name in ("x", "y")):
            v = np.diff(v, prepend=np.int64(0))
        columns.append(_zigzag(v))
    widths = [_width(u) for u in columns]
    flags = _ADDRESS_DELTA if address_delta else 0
    header = _STREAM_HEADER.pack(STREAM_MAGIC, FORMAT_VERSION, flags, n, *widths)
    body = b"".join(_planes(u, w) for u, w in zip(columns, widths, strict=True))
    return header + zstandard.ZstdCompressor(level=level).compress(body)


def decode_events(payload: bytes) -> np.ndarray:
    """Inverse of :func:`encode_events` (an ``EVENT_DTYPE`` array)."""
    if len(payload) < _STREAM_HEADER.size or not payload.startswith(STREAM_MAGIC):
        raise ValueError("not a spikefed event stream (it does not start with b'SFEV'); was it "
                         "written by spikefed.comm.encode_events?")
    magic, version, flags, n, *widths = _STREAM_HEADER.unpack_from(payload)
    if version != FORMAT_VERSION:
        raise ValueError(f"event stream format version {version}; this spikefed reads "
                         f"version {FORMAT_VERSION}")
    try:
        body = zstandard.ZstdDecompressor().decompress(payload[_STREAM_HEADER.size:])
    except zstandard.ZstdError as err:
        raise ValueError(f"event stream payload is damaged ({err})") from None
    if len(body) != n * sum(widths):
        raise ValueError(f"event stream holds {len(body)} bytes, expected {n * sum(widths)} "
                         f"for {n} events; the payload is damaged")
    fields, at = {}, 0
    for name, w in zip(_FIELDS, widths, strict=True):
        v = _unzigzag(_from_planes(body[at:at + w * n], w, n))
        at += w * n
        if name == "t" or (flags & _ADDRESS_DELTA and name in ("x", "y")):
            v = np.cumsum(v)
        fields[name] = v
    return make_events(fields["t"], fields["x"], fields["y"], fields["p"])


def encode_raster(raster: np.ndarray, *, level: int = DEFAULT_LEVEL) -> bytes:
    """Losslessly compress a spike raster (e.g. ``T x N`` or ``[N, T, C, H, W]``): bool or
    unsigned integers; 0/1 rasters are bit-packed (1 bit per cell) before Zstandard."""
    raster = np.asarray(raster)
    if raster.dtype != np.bool_ and raster.dtype.kind != "u":
        raise ValueError(f"raster dtype {raster.dtype}: expected bool or unsigned integers "
                         "(spikes or spike counts)")
    binary = raster.dtype == np.bool_ or not raster.size or int(raster.max()) <= 1
    dtype = raster.dtype.str.encode()
    header = (_RASTER_HEADER.pack(RASTER_MAGIC, FORMAT_VERSION, int(binary), raster.ndim)
              + struct.pack(f"<{raster.ndim}QB", *raster.shape, len(dtype)) + dtype)
    body = np.packbits(raster.astype(bool)).tobytes() if binary else raster.tobytes()
    return header + zstandard.ZstdCompressor(level=level).compress(body)


def decode_raster(payload: bytes) -> np.ndarray:
    """Inverse of :func:`encode_raster` (same shape, dtype and values)."""
    if len(payload) < _RASTER_HEADER.size or not payload.startswith(RASTER_MAGIC):
        raise ValueError("not a spikefed raster (it does not start with b'SFRS'); was it "
                         "written by spikefed.comm.encode_raster?")
    _, version, binary, ndim = _RASTER_HEADER.unpack_from(payload)
    if version != FORMAT_VERSION:
        raise ValueError(f"raster format version {version}; this spikefed reads "
                         f"version {FORMAT_VERSION}")
    at = _RASTER_HEADER.size
    try:
        *shape, dlen = struct.unpack_from(f"<{ndim}QB", payload, at)
        at += struct.calcsize(f"<{ndim}QB")
        dtype = np.dtype(payload[at:at + dlen].decode())
    except (struct.error, TypeError, UnicodeDecodeError) as err:
        raise ValueError(f"raster header is damaged ({err})") from None
    try:
        body = zstandard.ZstdDecompressor().decompress(payload[at + dlen:])
    except zstandard.ZstdError as err:
        raise ValueError(f"raster payload is damaged ({err})") from None
    size = int(np.prod(shape))
    if binary:
        flat = np.unpackbits(np.frombuffer(body, dtype=np.uint8), count=size)
        return flat.astype(dtype).reshape(shape)
    return np.frombuffer(body, dtype=dtype).reshape(shape).copy()


@dataclass(frozen=True)
class Reduction:
    """The outcome of a lossy reduction: the events kept and how many were dropped."""

    events: np.ndarray
    dropped: int


def rebin(events: np.ndarray, bin_us: int, *, keep_duplicates: bool = False) -> Reduction:
    """Temporal re-binning: quantise timestamps down to multiples of ``bin_us``. Events that
    become identical (same bin, address and polarity) are merged into one unless
    ``keep_duplicates``; ``dropped`` counts them. Order is kept."""
    _check_events(events)
    if bin_us < 1:
        raise ValueError(f"bin_us={bin_us} must be at least 1 µs")
    out = events.copy()
    out["t"] = (out["t"] // bin_us) * bin_us
    if keep_duplicates or not len(out):
        return Reduction(out, 0)
    _, first = np.unique(out, return_index=True)
    keep = np.sort(first)
    return Reduction(out[keep], len(out) - len(keep))


def refractory(events: np.ndarray, period_us: int, *, per_polarity: bool = False
               ) -> Reduction:
    """Refractory subsampling: drop an event when the same pixel (``per_polarity``: the same
    pixel and polarity) had a kept event less than ``period_us`` earlier. Order is kept."""
    _check_events(events)
    if period_us < 1:
        raise ValueError(f"period_us={period_us} must be at least 1 µs")
    order = np.argsort(events["t"], kind="stable")
    x, y = events["x"][order].astype(np.int64), events["y"][order].astype(np.int64)
    address = (y << 16) | (x & 0xFFFF)
    if per_polarity:
        address = (address << 1) | events["p"][order].astype(np.int64)
    keep = np.zeros(len(events), dtype=bool)
    last: dict[int, int] = {}
    for i, (a, t) in enumerate(zip(address.tolist(), events["t"][order].tolist(), strict=True)):
        previous = last.get(a)
        if previous is None or t - previous >= period_us:
            last[a] = t
            keep[order[i]] = True
    return Reduction(events[keep], int(len(events) - keep.sum()))


def dense_raster(events: np.ndarray, size: tuple[int, int], bin_us: int,
                 duration_us: int | None = None) -> np.ndarray:
    """Binary raster ``[T, 2, H, W]`` (bool) of events in bins of ``bin_us`` from ``t = 0``
    (``T = ceil(duration / bin)``, duration default: last timestamp + 1). A cell is set when
    at least one event falls in it, so several events in one cell are merged; events outside
    the sensor or the duration are left out."""
    _check_events(events)
    h, w = size
    span = int(events["t"].max()) + 1 if len(events) and duration_us is None else duration_us or 0
    steps = max(1, -(-span // bin_us))
    raster = np.zeros((steps, 2, h, w), dtype=bool)
    inside = ((events["t"] >= 0) & (events["t"] < steps * bin_us) & (events["x"] >= 0)
              & (events["x"] < w) & (events["y"] >= 0) & (events["y"] < h))
    e = events[inside]
    raster[e["t"] // bin_us, e["p"].astype(np.int64), e["y"], e["x"]] = True
    return raster
