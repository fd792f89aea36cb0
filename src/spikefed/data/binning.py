"""Event streams to the frames `spikefed run` trains on: `EventBinning` and its two steps.

1. :func:`count_events` counts events per ``(time bin, polarity, y, x)`` — exact, nothing
   clipped, so events in the window = sum of the counts.
2. :func:`finish_frames` turns counts into model input: spatial down-sampling (sum pooling),
   polarity as two channels or merged into one, and binary (on/off) or count values (uint8,
   saturating at 255).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .events import bin_events

POLARITIES = ("channels", "merge")
VALUES = ("binary", "counts")


@dataclass(frozen=True)
class EventBinning:
    """How events become frames ``[T, C, H, W]``.

    ``window_us`` starting at ``start_us`` (relative to the recording start, t=0) is cut into
    ``T`` bins of ``window_us // T``; events outside are dropped. ``None`` window: the data
    set's recording length.
    """

    T: int = 10
    window_us: int | None = None
    start_us: int = 0
    polarity: str = "channels"
    downsample: int = 1
    values: str = "binary"

    def __post_init__(self) -> None:
        if self.T < 1:
            raise ValueError(f"events.T={self.T} must be >= 1 time bins")
        if self.window_us is not None and self.window_us < self.T:
            raise ValueError(f"events window of {self.window_us} µs is shorter than T={self.T} "
                             "bins of 1 µs; lengthen the window or lower T")
        if self.start_us < 0:
            raise ValueError(f"events.start_ms={self.start_us / 1000} must be >= 0")
        if self.polarity not in POLARITIES:
            raise ValueError(f"events.polarity={self.polarity!r}: choose one of {POLARITIES}")
        if self.values not in VALUES:
            raise ValueError(f"events.values={self.values!r}: choose one of {VALUES}")
        if self.downsample < 1:
            raise ValueError(f"events.downsample={self.downsample} must be >= 1")

    def with_window(self, default_us: int) -> EventBinning:
        """This binning with ``window_us`` filled in from a data set's default."""
        if self.window_us is not None:
            return self
        return EventBinning(self.T, default_us, self.start_us, self.polarity, self.downsample,
                            self.values)

    @property
    def bin_us(self) -> int:
        """Width of one time bin in µs (needs ``window_us``)."""
        if self.window_us is None:
            raise ValueError("EventBinning.window_us is not set; call with_window first")
        return self.window_us // self.T

    @property
    def channels(self) -> int:
        """Input channels: 2 (ON, OFF) or 1 (merged)."""
        return 2 if self.polarity == "channels" else 1

    def out_size(self, sensor: tuple[int, int], name: str) -> tuple[int, int]:
        """Frame size after down-sampling a ``sensor`` ``(H, W)``; error when not divisible."""
        h, w = sensor
        f = self.downsample
        if h % f or w % f:
            ok = sorted({d for d in range(1, min(h, w) + 1) if h % d == 0 and w % d == 0})
            raise ValueError(f"events.downsample={f} does not divide the {h}x{w} frames of "
                             f"{name}; use one of {ok}")
        return h // f, w // f

    def key(self) -> str:
        """A stable text key (for cache file names)."""
        return (f"T{self.T}-w{self.window_us}-s{self.start_us}-{self.polarity}"
                f"-d{self.downsample}-{self.values}")


def count_events(events: np.ndarray, sensor: tuple[int, int], binning: EventBinning
                 ) -> np.ndarray:
    """Event counts ``[T, 2, H, W]`` (int32) of one recording in the binning's window."""
    b = binning
    return bin_events(events, sensor, b.bin_us, b.T, t0=b.start_us, binary=False)


def finish_frames(counts: np.ndarray, binning: EventBinning, name: str = "events"
                  ) -> np.ndarray:
    """Counts ``[..., T, 2, H, W]`` to uint8 frames ``[..., T, C, H/f, W/f]`` (see module doc)."""
    h, w = binning.out_size(counts.shape[-2:], name)
    f = binning.downsample
    x = counts.astype(np.int64, copy=False)
    if f > 1:
        x = x.reshape(*x.shape[:-2], h, f, w, f).sum(axis=(-3, -1))
    if binning.polarity == "merge":
        x = x.sum(axis=-3, keepdims=True)
    if binning.values == "binary":
        return (x > 0).astype(np.uint8)
    return np.minimum(x, 255).astype(np.uint8)
