"""Event-camera emulator: static images to event streams, recorded the way N-MNIST was.

N-MNIST (Orchard et al. 2015) was made by moving an ATIS sensor in three saccades, ~100 ms
each, in front of MNIST digits shown on a monitor. This module replays that recording
synthetically and in bulk:

- **Motion**: the image moves across a sensor ``margin`` pixels larger on every side, along a
  triangle ``A -> B -> C -> A`` (one leg per saccade) with vertices ``(-a, -a/2)``,
  ``(0, a)``, ``(a, -a/2)`` (x, y; ``a = amplitude_px``), eased by ``(1 - cos(pi*tau)) / 2``
  so speed peaks mid-saccade (as the event rate of the real recordings does). Sub-pixel
  positions use bilinear interpolation.
- **Pixels**: each pixel compares its log intensity ``log(dark + I)`` with the level at its
  last event; every full contrast threshold crossed emits one event (ON, ``p = 1``, when
  brighter; OFF, ``p = 0``, when darker) and moves the reference by one threshold. Thresholds
  differ per pixel and polarity (Gaussian mismatch, drawn once per sensor from ``seed``); a
  refractory period caps events per pixel per time step (``step_us // refractory_us``, at
  least 1), and the reference then lags, so the pixel keeps firing in later steps; background
  (shot) noise adds events at ``noise_hz`` per pixel, polarity at random.
- **Time**: the scene is sampled every ``step_us``; an event's time stamp is the centre of its
  step (the emulator's time resolution).

Everything is vectorised over images and pixels with torch; the only Python loop runs over
the time steps (150 for the default 300 ms at 2 ms). Results depend only on the images and
``seed`` (images are processed in fixed chunks of :data:`CHUNK`, each with its own seeded
noise generator).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass

import numpy as np
import torch

from .binning import EventBinning, finish_frames
from .events import make_events

CHUNK = 256


@dataclass(frozen=True)
class EmulatorConfig:
    """Parameters of the emulated sensor and its motion (defaults: fitted to N-MNIST)."""

    threshold: float = 0.4
    mismatch: float = 0.03
    refractory_us: int = 1000
    noise_hz: float = 0.1
    dark: float = 0.1
    amplitude_px: float = 3.0
    saccade_us: int = 100_000
    step_us: int = 2000
    margin: int = 3
    seed: int = 0

    def __post_init__(self) -> None:
        checks = (("threshold", self.threshold > 0), ("mismatch", self.mismatch >= 0),
                  ("refractory_us", self.refractory_us >= 1), ("noise_hz", self.noise_hz >= 0),
                  ("dark", self.dark > 0), ("amplitude_px", self.amplitude_px >= 0),
                  ("saccade_us", self.saccade_us >= 1), ("step_us", self.step_us >= 1),
                  ("margin", self.margin >= 0), ("seed", self.seed >= 0))
        bad = [name for name, ok in checks if not ok]
        if bad:
            values = ", ".join(f"{b}={getattr(self, b)!r}" for b in bad)
            raise ValueError(f"events.emulator: {values} out of range"
                             " (thresholds, dark, durations > 0; others >= 0)")
        if self.saccade_us % self.step_us:
            raise ValueError(f"events.emulator.step_us={self.step_us} must divide "
                             f"saccade_us={self.saccade_us}")

    @property
    def duration_us(self) -> int:
        """Length of one recording: three saccades."""
        return 3 * self.saccade_us

    def key(self) -> str:
        """A stable text key (for cache file names)."""
        return "-".join(f"{k}{v}" for k, v in asdict(self).items())


def sensor_size(image_hw: tuple[int, int], cfg: EmulatorConfig) -> tuple[int, int]:
    """Sensor ``(H, W)``: the image plus ``margin`` on every side (28x28 -> 34x34 = N-MNIST)."""
    return image_hw[0] + 2 * cfg.margin, image_hw[1] + 2 * cfg.margin


def _vertices(cfg: EmulatorConfig) -> np.ndarray:
    a = cfg.amplitude_px
    return np.array([[-a, -a / 2], [0.0, a], [a, -a / 2], [-a, -a / 2]])


def saccade_path(cfg: EmulatorConfig) -> np.ndarray:
    """Image offset ``(dx, dy)`` in pixels at the end of each time step: ``[steps, 2]``."""
    vertices = _vertices(cfg)
    t = (np.arange(cfg.duration_us // cfg.step_us) + 1) * cfg.step_us
    leg = np.minimum(t // cfg.saccade_us, 2)
    tau = (t - leg * cfg.saccade_us) / cfg.saccade_us
    s = (1 - np.cos(np.pi * tau)) / 2
    return vertices[leg] + s[:, None] * (vertices[leg + 1] - vertices[leg])


class _Sensor:
    """Per-pixel state of one chunk of images; ``step`` returns ON/OFF counts per pixel."""

    def __init__(self, images: torch.Tensor, cfg: EmulatorConfig, thresholds: torch.Tensor,
                 generator: torch.Generator, origin: tuple[float, float]) -> None:
        self.cfg = cfg
        self.pad = cfg.margin + math.ceil(cfg.amplitude_px) + 1
        self.canvas = torch.nn.functional.pad(images, (self.pad,) * 4)
        self.size = sensor_size(tuple(images.shape[-2:]), cfg)
        self.c_on, self.c_off = thresholds
        self.generator = generator
        self.max_events = max(1, cfg.step_us // cfg.refractory_us)
        self.p_noise = min(cfg.noise_hz * cfg.step_us * 1e-6 / 2, 1.0)
        self.ref = self.log_intensity(*origin)

    def log_intensity(self, dx: float, dy: float) -> torch.Tensor:
        """``log(dark + I)`` seen by the sensor with the image moved by ``(dx, dy)``."""
        h, w = self.size
        ux, uy = self.pad - self.cfg.margin - dx, self.pad - self.cfg.margin - dy
        bx, by = math.floor(ux), math.floor(uy)
        fx, fy = ux - bx, uy - by
        c = self.canvas
        top = (1 - fx) * c[:, by:by + h, bx:bx + w] + fx * c[:, by:by + h, bx + 1:bx + 1 + w]
        bot = (1 - fx) * c[:, by + 1:by + 1 + h, bx:bx + w] + fx * c[:, by + 1:by + 1 + h,
                                                                    bx + 1:bx + 1 + w]
        return torch.log(self.cfg.dark + (1 - fy) * top + fy * bot)

    def step(self, dx: float, dy: float) -> torch.Tensor:
        """Events of one time step: counts ``[B, 2, H, W]`` (channel 0 OFF, 1 ON)."""
        diff = self.log_intensity(dx, dy) - self.ref
        n_on = torch.floor(diff / self.c_on).clamp_(0, self.max_events)
        n_off = torch.floor(-diff / self.c_off).clamp_(0, self.max_events)
        self.ref += n_on * self.c_on - n_off * self.c_off
        counts = torch.stack([n_off, n_on], 1)
        if self.p_noise > 0:
            noise = torch.rand(counts.shape, generator=self.generator) < self.p_noise
            counts += noise
        return counts.to(torch.int32)


def pixel_thresholds(size: tuple[int, int], cfg: EmulatorConfig) -> torch.Tensor:
    """ON and OFF contrast thresholds per pixel ``[2, H, W]``: one fixed draw per ``seed``."""
    g = torch.Generator().manual_seed(cfg.seed)
    c = cfg.threshold + cfg.mismatch * torch.randn((2, *size), generator=g)
    return c.clamp_(min=0.01 * cfg.threshold)


def _as_images(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    x = torch.as_tensor(images)
    if x.dim() == 4 and x.shape[1] == 1:
        x = x[:, 0]
    if x.dim() != 3:
        raise ValueError(f"emulator input must be grey images [N, H, W] (or [N, 1, H, W]), got "
                         f"shape {tuple(x.shape)}; convert colour images with to_grey first")
    if not x.is_floating_point():
        x = x.float() / 255.0
    if len(x) and (float(x.min()) < 0 or float(x.max()) > 1):
        raise ValueError("emulator input intensities must lie in [0, 1] (or be uint8 0..255)")
    return x.float()


def _chunks(images: torch.Tensor, cfg: EmulatorConfig
            ) -> Iterator[tuple[int, Iterator[tuple[int, torch.Tensor]]]]:
    """For each chunk of ``CHUNK`` images: (start index, iterator of (step, counts))."""
    thresholds = pixel_thresholds(sensor_size(tuple(images.shape[-2:]), cfg), cfg)
    path = saccade_path(cfg)
    for start in range(0, len(images), CHUNK):
        g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + start + 1)
        origin = tuple(float(v) for v in _vertices(cfg)[0])
        sensor = _Sensor(images[start:start + CHUNK], cfg, thresholds, g, origin)
        yield start, ((k, sensor.step(float(dx), float(dy))) for k, (dx, dy) in enumerate(path))


def emulate_frames(images: np.ndarray | torch.Tensor, binning: EventBinning,
                   cfg: EmulatorConfig = EmulatorConfig(), name: str = "emulated") -> np.ndarray:
    """Emulate recordings of ``images`` and bin them: uint8 frames ``[N, T, C, H, W]``.

    Equivalent to :func:`emulate_events` followed by ``count_events`` and ``finish_frames``
    for each recording, without materialising the events.
    """
    x = _as_images(images)
    b = binning.with_window(cfg.duration_us)
    size = sensor_size(tuple(x.shape[-2:]), cfg)
    h, w = b.out_size(size, name)
    out = np.empty((len(x), b.T, b.channels, h, w), dtype=np.uint8)
    centres = (np.arange(cfg.duration_us // cfg.step_us) + 0.5) * cfg.step_us
    bins = np.floor((centres - b.start_us) / b.bin_us).astype(np.int64)
    for start, steps in _chunks(x, cfg):
        n = min(CHUNK, len(x) - start)
        counts = torch.zeros((n, b.T, 2, *size), dtype=torch.int32)
        for k, c in steps:
            if 0 <= bins[k] < b.T:
                counts[:, bins[k]] += c
        out[start:start + n] = finish_frames(counts.numpy(), b, name)
    return out


def emulate_events(images: np.ndarray | torch.Tensor,
                   cfg: EmulatorConfig = EmulatorConfig()) -> list[np.ndarray]:
    """Emulated event streams of ``images`` (one :data:`~spikefed.data.events.EVENT_DTYPE`
    array per image, sorted by time; ``t`` in µs from 0, ``p = 1`` ON)."""
    x = _as_images(images)
    out: list[np.ndarray] = []
    for start, steps in _chunks(x, cfg):
        n = min(CHUNK, len(x) - start)
        parts = []
        for k, c in steps:
            idx = c.nonzero()
            reps = c[tuple(idx.T)].to(torch.int64)
            idx = idx.repeat_interleave(reps, dim=0)
            t = torch.full((len(idx), 1), k * cfg.step_us + cfg.step_us // 2, dtype=torch.int64)
            parts.append(torch.cat([idx.to(torch.int64), t], 1))
        allev = torch.cat(parts).numpy()                       # rows: b, p, y, x, t
        allev = allev[np.argsort(allev[:, 0], kind="stable")]
        split = np.searchsorted(allev[:, 0], np.arange(1, n))
        for rows in np.split(allev, split):
            out.append(make_events(rows[:, 4], rows[:, 3], rows[:, 2], rows[:, 1]))
    return out


def to_grey(images: torch.Tensor) -> torch.Tensor:
    """Float images ``[N, 3, H, W]`` in [0, 1] to luminance ``[N, H, W]`` (ITU-R BT.601)."""
    w = torch.tensor([0.299, 0.587, 0.114], dtype=images.dtype).view(1, 3, 1, 1)
    return (images * w).sum(1)


def _corr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation of matching rows of ``a`` and ``b`` ``[N, D]``."""
    a = a - a.mean(1, keepdims=True)
    b = b - b.mean(1, keepdims=True)
    den = np.sqrt((a * a).sum(1) * (b * b).sum(1))
    return (a * b).sum(1) / np.where(den > 0, den, 1.0)


def compare_recordings(real: np.ndarray, emulated: np.ndarray) -> dict[str, float]:
    """Agreement of emulated with real recordings of the *same* images, from event counts
    ``[N, T, 2, H, W]`` (channel 1 = ON) binned alike.

    Returns mean events per sample of each, the emulated/real ratio, the ON fraction of each,
    the correlation of the mean event rate over time (``T`` bins), and the mean per-sample
    correlation of the spatial event maps (both polarities summed over time).
    """
    if real.shape != emulated.shape or real.ndim != 5 or real.shape[2] != 2:
        raise ValueError(f"real {real.shape} and emulated {emulated.shape} must both be "
                         "counts [N, T, 2, H, W]")
    r, e = real.astype(np.float64), emulated.astype(np.float64)
    n_r, n_e = r.sum((1, 2, 3, 4)), e.sum((1, 2, 3, 4))
    rate_r, rate_e = r.sum((0, 2, 3, 4)), e.sum((0, 2, 3, 4))
    space_r, space_e = r.sum((1, 2)).reshape(len(r), -1), e.sum((1, 2)).reshape(len(e), -1)
    return {
        "events_real": float(n_r.mean()), "events_emulated": float(n_e.mean()),
        "events_ratio": float(n_e.mean() / max(n_r.mean(), 1e-12)),
        "on_fraction_real": float(r[:, :, 1].sum() / max(r.sum(), 1e-12)),
        "on_fraction_emulated": float(e[:, :, 1].sum() / max(e.sum(), 1e-12)),
        "rate_correlation": float(_corr(rate_r[None], rate_e[None])[0]),
        "spatial_correlation": float(_corr(space_r, space_e).mean()),
    }
