"""Real event-camera recordings as attack victims: ``[N, T, P, H, W]`` binary frames.

Sources (``domain.events_source`` of an attack config):

- ``nmnist``: N-MNIST test recordings of the subset archive
  (``<root>/nmnist_small/NMNISTsmall.tar.gz``), 30 ms bins, 2 polarities, OR-pooled to 17x17;
- ``nmnist-bundled``: the N-MNIST '1'/'7' test recordings bundled with the package
  (``assets/nmnist_1_7_frames.npz``: 10 ms bins x 30, polarities merged, 17x17), OR-merged
  over groups of bins to ``n_steps`` bins; labels are the digits (1, 7);
- ``dvs-gesture``: the ten DVS128 Gesture clips (``<root>/dvs_gesture_10/dvs_gesture_10.tar.gz``,
  clip ``k.bs2`` = class ``k - 1``), the 1.45 s clip cut into ``n_steps`` bins, 2 polarities,
  OR-pooled by 4 to 32x32;
- ``auto``: ``nmnist`` when the root holds the archive, else ``nmnist-bundled``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

EVENT_SOURCES = ("nmnist", "nmnist-bundled", "dvs-gesture", "auto")
NMNIST_ARCHIVE = Path("nmnist_small") / "NMNISTsmall.tar.gz"
DVS_GESTURE_ARCHIVE = Path("dvs_gesture_10") / "dvs_gesture_10.tar.gz"
DVS_GESTURE_US = 1_450_000
DVS_GESTURE_POOL = 4


def resolve_source(source: str, root: Path | None) -> str:
    """The concrete source for ``source`` (``auto``: the archive under ``root`` or bundled)."""
    if source not in EVENT_SOURCES:
        raise ValueError(f"domain.events_source={source!r} is unknown; choose one of "
                         f"{list(EVENT_SOURCES)}")
    if source != "auto":
        return source
    return "nmnist" if root is not None and (Path(root) / NMNIST_ARCHIVE).is_file() \
        else "nmnist-bundled"


def _window(x: np.ndarray, y: np.ndarray, count: int, start: int, what: str
            ) -> tuple[Tensor, Tensor]:
    if start + count > len(y):
        raise ValueError(f"data.start + data.samples = {start + count} exceeds the {len(y)} "
                         f"{what}; lower data.samples or data.start")
    return (torch.as_tensor(np.ascontiguousarray(x[start:start + count])).float(),
            torch.as_tensor(y[start:start + count]).long())


def bundled_nmnist(count: int, start: int, n_steps: int) -> tuple[Tensor, Tensor]:
    """The bundled N-MNIST '1'/'7' test frames as ``[N, n_steps, 1, 17, 17]`` and digit labels."""
    from spikefed.experiments.fl_snn import CLASSES, load_data

    _, test = load_data(None)
    x = test.x.numpy()
    steps = x.shape[1]
    if steps % n_steps:
        raise ValueError(f"domain.event_steps={n_steps} must divide the {steps} bundled "
                         "N-MNIST bins (e.g. 10, 15 or 30)")
    x = x.reshape(len(x), n_steps, steps // n_steps, 1, 17, 17).max(axis=2)
    return _window(x, np.asarray(CLASSES)[test.y.numpy()], count, start,
                   "bundled N-MNIST test recordings")


def dvs_gesture(root: Path, count: int, start: int, n_steps: int) -> tuple[Tensor, Tensor]:
    """The DVS Gesture clips as ``[N, n_steps, 2, 32, 32]`` and labels 0..9, clip order 1..10."""
    from spikefed.data.events import bin_events, iter_bs2_tar, pool_frames

    archive = Path(root) / DVS_GESTURE_ARCHIVE
    if not archive.is_file():
        raise FileNotFoundError(f"domain.events_source='dvs-gesture' reads {archive}, which does "
                                "not exist; set data.root to the folder holding dvs_gesture_10/")
    clips = sorted((int(Path(name).stem), ev) for name, ev in iter_bs2_tar(archive))
    frames = np.stack([
        pool_frames(bin_events(ev, (128, 128), DVS_GESTURE_US // n_steps, n_steps, t0=0),
                    DVS_GESTURE_POOL)
        for _, ev in clips
    ])
    return _window(frames, np.array([k - 1 for k, _ in clips]), count, start,
                   "DVS Gesture clips")


def event_victims(source: str, root: Path | None, count: int, start: int, n_steps: int
                  ) -> tuple[Tensor, Tensor]:
    """CPU frames ``[N, T, P, H, W]`` and labels of ``source`` (see the module docstring)."""
    from spikefed.privacy.clients import nmnist_samples

    source = resolve_source(source, root)
    if source == "nmnist-bundled":
        return bundled_nmnist(count, start, n_steps)
    if root is None:
        raise ValueError(f"domain.events_source={source!r} reads the data root: set data.root "
                         "(or $SPIKEFED_DATA), or use events_source: auto / nmnist-bundled")
    if source == "dvs-gesture":
        return dvs_gesture(Path(root), count, start, n_steps)
    return nmnist_samples(Path(root), count, start, n_steps)
