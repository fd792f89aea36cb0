"""Compression statistics of event recordings: raw AER bytes vs the lossless stream codec vs
dense rasters, optionally after the lossy reductions (``spikefed events stats``)."""

from __future__ import annotations

import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from spikefed.data.events import iter_bs2_tar, read_aedat, read_bs2

from .events import DEFAULT_LEVEL, dense_raster, encode_events, encode_raster, rebin, refractory

#: Native AER bytes per event: ``.bs2`` (N-MNIST, DVS Gesture) packs 40 bits, AER-DAT 2.0
#: (MNIST-DVS) a big-endian uint32 address and uint32 timestamp (header lines not counted).
RAW_BYTES_PER_EVENT = {".bs2": 5, ".aedat": 8}
#: Sensors a recording's size is inferred from: the smallest holding every event.
KNOWN_SENSORS = ((34, 34), (128, 128), (240, 180), (346, 260), (640, 480))


@dataclass(frozen=True)
class Recording:
    """One event recording read from a file: its name, events and native bytes per event."""

    name: str
    events: np.ndarray
    raw_bytes_per_event: int


def read_event_file(path: str | Path) -> list[Recording]:
    """The recordings in a ``.bs2`` or ``.aedat`` file, or in a ``.tar``/``.tar.gz`` of
    ``.bs2`` files (one per member)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"event file {path} does not exist")
    name = path.name.lower()
    if name.endswith(".bs2"):
        return [Recording(path.name, read_bs2(path), 5)]
    if name.endswith(".aedat"):
        return [Recording(path.name, read_aedat(path), 8)]
    if name.endswith((".tar", ".tar.gz", ".tgz")):
        try:
            found = [Recording(m, e, 5) for m, e in iter_bs2_tar(path)]
        except (tarfile.TarError, EOFError) as err:
            raise ValueError(f"{path} is not a readable tar archive ({err})") from None
        if not found:
            raise ValueError(f"{path} holds no .bs2 recordings")
        return found
    raise ValueError(f"{path}: unknown event file type; expected .bs2, .aedat, or a .tar/.tar.gz "
                     "of .bs2 files")


def infer_sensor(events: np.ndarray) -> tuple[int, int]:
    """``(H, W)`` of the smallest known sensor (N-MNIST 34x34, DVS128, ...) holding all events."""
    if not len(events):
        return KNOWN_SENSORS[0]
    h, w = int(events["y"].max()) + 1, int(events["x"].max()) + 1
    for sh, sw in KNOWN_SENSORS:
        if h <= sh and w <= sw:
            return sh, sw
    return h, w


@dataclass(frozen=True)
class StreamStats:
    """Sizes of one recording (or a sum over several): events before and after the lossy
    reductions, raw AER bytes, lossless codec bytes, dense binary raster bits and its codec."""

    events_in: int
    events_out: int
    dropped_rebin: int
    dropped_refractory: int
    raw_bytes: int
    codec_bytes: int
    raster_cells: int
    raster_codec_bytes: int

    @property
    def ratio_vs_raw(self) -> float:
        """Raw AER bytes of the input over the codec's bytes."""
        return self.raw_bytes / self.codec_bytes

    @property
    def raster_bytes_packed(self) -> int:
        """The dense raster at 1 bit per cell."""
        return -(-self.raster_cells // 8)

    def __add__(self, other: StreamStats) -> StreamStats:
        return StreamStats(*(a + b for a, b in zip(self._values(), other._values(), strict=True)))

    def _values(self) -> tuple[int, ...]:
        return (self.events_in, self.events_out, self.dropped_rebin, self.dropped_refractory,
                self.raw_bytes, self.codec_bytes, self.raster_cells, self.raster_codec_bytes)


def stream_stats(recording: Recording, *, raster_bin_us: int = 1000,
                 sensor: tuple[int, int] | None = None, rebin_us: int | None = None,
                 refractory_us: int | None = None, address_delta: bool = False,
                 level: int = DEFAULT_LEVEL, with_raster: bool = True) -> StreamStats:
    """Compress one recording and count bytes. The lossy reductions run first (refractory,
    then re-binning) when given; raw bytes are the input's native AER size; the dense raster
    ``[T, 2, H, W]`` has bins of ``raster_bin_us`` from the recording's first event to its last
    (``with_raster=False`` skips it: raster sizes 0)."""
    events = recording.events
    dropped_ref = dropped_bin = 0
    if refractory_us is not None:
        reduced = refractory(events, refractory_us)
        events, dropped_ref = reduced.events, reduced.dropped
    if rebin_us is not None:
        reduced = rebin(events, rebin_us)
        events, dropped_bin = reduced.events, reduced.dropped
    cells = raster_bytes = 0
    if with_raster:
        t0 = int(recording.events["t"].min()) if len(recording.events) else 0
        shifted = events.copy()
        shifted["t"] -= t0
        span = int(recording.events["t"].max()) - t0 + 1 if len(recording.events) else 0
        raster = dense_raster(shifted, sensor or infer_sensor(recording.events), raster_bin_us,
                              span)
        cells, raster_bytes = raster.size, len(encode_raster(raster, level=level))
    return StreamStats(
        events_in=len(recording.events), events_out=len(events), dropped_rebin=dropped_bin,
        dropped_refractory=dropped_ref,
        raw_bytes=len(recording.events) * recording.raw_bytes_per_event,
        codec_bytes=len(encode_events(events, address_delta=address_delta, level=level)),
        raster_cells=cells, raster_codec_bytes=raster_bytes)
