"""Event data sets for `spikefed run`: N-MNIST, DVS Gesture, MNIST-DVS and emulated sets.

Every loader returns an :class:`~spikefed.data.dataset.ArrayDataset` of uint8 event frames
``[N, T, C, H, W]`` binned by an :class:`~spikefed.data.binning.EventBinning`. Frames built
from files under the data root are cached in the user cache folder (``$SPIKEFED_CACHE`` or
``~/.cache/spikefed``), keyed by the source file's path, size and mtime, the binning, the
emulator settings and the sample limit.
"""

from __future__ import annotations

import hashlib
import os
import re
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from .binning import EventBinning, count_events, finish_frames
from .bundled import content_sha256
from .dataset import ArrayDataset
from .emulate import EmulatorConfig, emulate_frames, sensor_size, to_grey
from .events import (
    DVS_GESTURE_SIZE,
    NMNIST_SIZE,
    crop_events,
    decode_bs2,
    load_nmnist_subset,
    read_aedat,
)
from .files import cache_dir, candidate_dirs, resolve_root

_CACHE_VERSION = 1
NMNIST_MINI_ASSET = "nmnist_mini.npz"
NMNIST_MINI_T = 10
NMNIST_MINI_SHA256 = "ad3dd4a377e2662f62a1b4a2a3111be7542ac8838e70eec95e9d5d693675e3ac"
NMNIST_WINDOW_US = 300_000
DIGITS = tuple(str(d) for d in range(10))
# DVS128 Gesture class names (Amir et al. 2017); the 10 offline clips are classes 1..10.
GESTURES = ("hand clap", "right hand wave", "left hand wave", "right arm clockwise",
            "right arm counter-clockwise", "left arm clockwise", "left arm counter-clockwise",
            "arm roll", "air drums", "air guitar")
MNIST_DVS_CROP = 26

Frames = tuple[np.ndarray, np.ndarray]
"""uint8 frames ``[N, T, C, H, W]`` and int64 labels ``[N]``."""


@dataclass(frozen=True)
class EventSet:
    """One event data set: what it is, where its files go, and how to bin it."""

    name: str
    description: str
    sensor: tuple[int, int]
    classes: tuple[str, ...]
    window_us: int
    folder: str
    files: str
    citation: str
    licence: str
    locate: Callable[[Path], Path | None]
    build: Callable[[Path, str, EventBinning, int | None, EmulatorConfig], Frames]
    bundled: bool = False
    emulated: bool = False


def _first(root: Path, folders: tuple[str, ...], pattern: str) -> Path | None:
    for d in candidate_dirs(root, folders):
        found = sorted(d.glob(pattern))
        if found:
            return found[0]
    return None


def _stack(frames: list[np.ndarray], binning: EventBinning, sensor: tuple[int, int]
           ) -> np.ndarray:
    if frames:
        return np.stack(frames)
    h, w = binning.out_size(sensor, "events")
    return np.zeros((0, binning.T, binning.channels, h, w), dtype=np.uint8)


# N-MNIST ------------------------------------------------------------------------------------
def _build_nmnist(archive: Path, split: str, b: EventBinning, limit: int | None,
                  _: EmulatorConfig) -> Frames:
    ids, events, labels = load_nmnist_subset(archive, split)
    n = len(ids) if limit is None else min(limit, len(ids))
    frames = [finish_frames(count_events(e, NMNIST_SIZE, b), b, "nmnist-small")
              for e in events[:n]]
    return _stack(frames, b, NMNIST_SIZE), labels[:n]


def nmnist_mini_path() -> Path:
    """Path of the bundled binned N-MNIST subset (error when missing)."""
    ref = resources.files("spikefed.assets").joinpath(NMNIST_MINI_ASSET)
    if not ref.is_file():
        raise FileNotFoundError(f"bundled {NMNIST_MINI_ASSET} is missing from spikefed/assets; "
                                "reinstall spikefed or rebuild it with "
                                "scripts/make_nmnist_mini.py")
    return Path(str(ref))


def nmnist_mini_arrays(archive: Path) -> dict[str, np.ndarray]:
    """The arrays of the bundled ``nmnist_mini.npz``, built from ``NMNISTsmall.tar.gz``:
    every recording's event counts in 10 bins of 30 ms (0-300 ms), 2x34x34, uint8."""
    b = EventBinning(NMNIST_MINI_T, NMNIST_WINDOW_US, values="counts")
    arrays = {}
    for split in ("train", "test"):
        ids, events, labels = load_nmnist_subset(archive, split)
        counts = np.stack([count_events(e, NMNIST_SIZE, b) for e in events])
        if counts.max() > 255:
            raise ValueError("an N-MNIST bin holds more than 255 events; uint8 cannot store it")
        arrays[f"x_{split}"] = counts.astype(np.uint8)
        arrays[f"y_{split}"] = labels.astype(np.uint8)
        arrays[f"ids_{split}"] = np.asarray(ids, dtype=np.int32)
    return arrays


def _read_nmnist_mini(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    digest = content_sha256(arrays)
    if digest != NMNIST_MINI_SHA256:
        raise ValueError(f"bundled {path} is damaged (content SHA-256 {digest}, expected "
                         f"{NMNIST_MINI_SHA256}); reinstall spikefed or rebuild it with "
                         "scripts/make_nmnist_mini.py")
    return arrays


def _build_nmnist_mini(path: Path, split: str, b: EventBinning, limit: int | None,
                       _: EmulatorConfig) -> Frames:
    if b.start_us != 0 or b.window_us != NMNIST_WINDOW_US or NMNIST_MINI_T % b.T:
        raise ValueError(
            f"nmnist-mini is stored pre-binned ({NMNIST_MINI_T} bins of 30 ms over 0-300 ms), so "
            f"it supports events.T in (1, 2, 5, 10) with the default window and start; got "
            f"T={b.T}, window={b.window_us / 1000} ms, start={b.start_us / 1000} ms. For other "
            "binnings use data.dataset=nmnist-small with a data root")
    arrays = _read_nmnist_mini(path)
    counts, labels = arrays[f"x_{split}"], arrays[f"y_{split}"].astype(np.int64)
    if limit is not None:
        counts, labels = counts[:limit], labels[:limit]
    n, t, c, h, w = counts.shape
    counts = counts.reshape(n, b.T, t // b.T, c, h, w).sum(2, dtype=np.int64)
    return finish_frames(counts, b, "nmnist-mini"), labels


# DVS Gesture --------------------------------------------------------------------------------
def read_gesture_clips(archive: Path) -> list[tuple[int, np.ndarray]]:
    """``(class index, events)`` of every ``<k>.bs2`` clip in the archive (class = k - 1)."""
    clips = []
    try:
        with tarfile.open(archive) as tar:
            for member in tar:
                name = Path(member.name).name
                m = re.fullmatch(r"(\d+)\.bs2", name)
                if not (member.isfile() and m):
                    continue
                label = int(m.group(1)) - 1
                if not 0 <= label < len(GESTURES):
                    raise ValueError(f"{archive}: clip {name} names class {label + 1}, outside "
                                     f"1..{len(GESTURES)}")
                try:
                    clips.append((label, decode_bs2(tar.extractfile(member).read())))
                except ValueError as err:
                    raise ValueError(f"{archive}: member {member.name}: {err}") from err
    except (tarfile.TarError, EOFError, OSError) as err:
        raise ValueError(f"{archive} is not a readable tar.gz archive ({err}); it is truncated "
                         "or damaged: replace it") from err
    if not clips:
        raise FileNotFoundError(f"{archive} holds no <class>.bs2 clips")
    return sorted(clips, key=lambda c: c[0])


def _build_gesture(archive: Path, split: str, b: EventBinning, limit: int | None,
                   _: EmulatorConfig) -> Frames:
    frames, labels = [], []
    for label, events in read_gesture_clips(archive):
        span = int(events["t"].max()) + 1 if len(events) else 0
        n_win = (span - b.start_us) // b.window_us
        if n_win < 2:
            raise ValueError(f"dvs-gesture: a clip lasts {span / 1000:.0f} ms, room for {n_win} "
                             f"window(s) of {b.window_us / 1000:.0f} ms from "
                             f"{b.start_us / 1000:.0f} ms; each clip needs >= 2 (train + test): "
                             "shorten events.window_ms")
        wins = range(n_win - 1) if split == "train" else [n_win - 1]
        for k in wins:
            shifted = EventBinning(b.T, b.window_us, b.start_us + k * b.window_us, b.polarity,
                                   b.downsample, b.values)
            frames.append(finish_frames(count_events(events, DVS_GESTURE_SIZE, shifted), b,
                                        "dvs-gesture"))
            labels.append(label)
    x, y = _stack(frames, b, DVS_GESTURE_SIZE), np.array(labels, dtype=np.int64)
    return (x, y) if limit is None else (x[:limit], y[:limit])


# MNIST-DVS ----------------------------------------------------------------------------------
_MNIST_DVS_NAME = re.compile(r"mnist_(\d)_scale(\d+)_(\d+)\.aedat")
_MNIST_DVS_FOLDERS = ("mnist_dvs", "mnist-dvs", "MNIST_DVS", "mnist_dvs_digit0")


def mnist_dvs_split(files: list[Path], split: str) -> list[tuple[Path, int]]:
    """``(file, digit)`` of ``split``: per (digit, scale), the last 10% of recordings by number
    (at least one when there are two or more) are the test split, the rest train."""
    groups: dict[tuple[int, int], list[tuple[int, Path]]] = {}
    for f in files:
        m = _MNIST_DVS_NAME.fullmatch(f.name)
        if m:
            digit, scale, num = (int(g) for g in m.groups())
            groups.setdefault((digit, scale), []).append((num, f))
    out = []
    for (digit, _), items in sorted(groups.items()):
        items.sort()
        n_test = max(len(items) // 10, 1) if len(items) > 1 else 0
        chosen = items[:len(items) - n_test] if split == "train" else items[len(items) - n_test:]
        out += [(f, digit) for _, f in chosen]
    return out


def _build_mnist_dvs(folder: Path, split: str, b: EventBinning, limit: int | None,
                     _: EmulatorConfig) -> Frames:
    files = sorted(folder.glob("mnist_*_scale*_*.aedat"))
    chosen = mnist_dvs_split(files, split)
    digits = sorted({d for _, d in mnist_dvs_split(files, "train")})
    if len(digits) < 2:
        raise ValueError(f"mnist-dvs: the recordings in {folder} cover {len(digits)} digit(s) "
                         f"{digits}; training a classifier needs at least 2. The full MNIST-DVS "
                         "is not available offline: use nmnist-small or mnist-emulated instead")
    chosen = chosen if limit is None else chosen[:limit]
    frames, labels = [], []
    for path, digit in chosen:
        events = read_aedat(path)
        if len(events) == 0:
            raise ValueError(f"{path} holds no events; replace it")
        cx, cy = int(np.median(events["x"])), int(np.median(events["y"]))
        half = MNIST_DVS_CROP // 2
        x0, y0 = min(max(cx - half, 0), 128 - MNIST_DVS_CROP), min(max(cy - half, 0),
                                                                  128 - MNIST_DVS_CROP)
        cropped = crop_events(events, x0, y0, MNIST_DVS_CROP, MNIST_DVS_CROP)
        cropped["t"] -= int(events["t"][0])
        frames.append(finish_frames(count_events(cropped, (MNIST_DVS_CROP,) * 2, b), b,
                                    "mnist-dvs"))
        labels.append(digit)
    return _stack(frames, b, (MNIST_DVS_CROP,) * 2), np.array(labels, dtype=np.int64)


def _locate_mnist_dvs(root: Path) -> Path | None:
    hit = _first(root, _MNIST_DVS_FOLDERS, "mnist_*_scale*_*.aedat")
    return hit.parent if hit else None


# emulated sets ------------------------------------------------------------------------------
def _emulated(source: str, grey: bool) -> Callable[..., Frames]:
    def build(root: Path, split: str, b: EventBinning, limit: int | None,
              cfg: EmulatorConfig) -> Frames:
        from .registry import load_dataset

        images = load_dataset(source, split, root)
        if limit is not None:
            images = images.subset(leading_samples(images.y.numpy(), limit))
        x = to_grey(images.x) if grey else images.x[:, 0]
        return emulate_frames(x, b, cfg, f"{source}-emulated"), images.y.numpy()
    return build


def leading_samples(labels: np.ndarray, n: int) -> np.ndarray:
    """Indices of the first ``n`` samples; when the labels are sorted by class (an image
    folder such as the CIFAR-10 JPEGs), the first samples of every class in turn instead, so
    a subset keeps all classes."""
    labels = np.asarray(labels)
    if n >= len(labels) or not np.all(np.diff(labels) >= 0):
        return np.arange(min(n, len(labels)))
    rank = np.arange(len(labels)) - np.searchsorted(labels, labels)   # position within class
    return np.lexsort((labels, rank))[:n]


def _locate_source(source: str) -> Callable[[Path], Path | None]:
    def locate(root: Path) -> Path | None:
        from .registry import dataset_info

        return dataset_info(source).locate(root)
    return locate


_EMU_SIZE = {"mnist": (28, 28), "fashion-mnist": (28, 28), "cifar10": (32, 32)}


def _emulated_set(source: str, description: str, classes: tuple[str, ...], citation: str,
                  licence: str) -> EventSet:
    from .registry import DATASETS

    info = DATASETS[source]
    cfg = EmulatorConfig()
    return EventSet(
        name=f"{source}-emulated", description=description,
        sensor=sensor_size(_EMU_SIZE[source], cfg), classes=classes, window_us=cfg.duration_us,
        folder=info.folder, files=f"the {source} files: {info.files}", citation=citation,
        licence=licence, locate=_locate_source(source),
        build=_emulated(source, grey=source == "cifar10"), emulated=True)


_NMNIST_CITE = ("Orchard, Jayawant, Cohen, Thakor: Converting static image datasets to spiking "
                "neuromorphic datasets using saccades, Front. Neurosci. 9:437 (2015)")
_EMU_CITE = ("spikefed.data.emulate (saccade protocol of Orchard et al. 2015) applied to {}; "
             "cite the source images")


def _event_sets() -> dict[str, EventSet]:
    sets = [
        EventSet("nmnist-mini", "Bundled real N-MNIST subset (1,000 train / 100 test), pre-binned "
                 "10 x 30 ms, 2x34x34 counts", NMNIST_SIZE, DIGITS, NMNIST_WINDOW_US, "",
                 f"(inside the package: spikefed/assets/{NMNIST_MINI_ASSET})", _NMNIST_CITE,
                 "CC BY-SA 4.0", lambda root: nmnist_mini_path(), _build_nmnist_mini,
                 bundled=True),
        EventSet("nmnist-small", "Real N-MNIST subset (1,000 train / 100 test recordings, "
                 "ATIS 34x34, ~300 ms)", NMNIST_SIZE, DIGITS, NMNIST_WINDOW_US, "nmnist_small",
                 "NMNISTsmall.tar.gz", _NMNIST_CITE, "CC BY-SA 4.0",
                 lambda root: _first(root, ("nmnist_small", "nmnist-small"),
                                     "NMNISTsmall.tar.gz"), _build_nmnist),
        EventSet("dvs-gesture", "DVS128 Gesture clips (10 offline: one per class 1..10); "
                 "demo only: windows 0..n-2 of a clip train, the last window tests",
                 DVS_GESTURE_SIZE, GESTURES, 300_000, "dvs_gesture_10", "<name>.tar.gz of "
                 "<class>.bs2 clips", "Amir et al.: A low power, fully event-based gesture "
                 "recognition system, CVPR 2017", "CC BY 4.0",
                 lambda root: _first(root, ("dvs_gesture_10", "dvs-gesture"), "*.tar.gz"),
                 _build_gesture),
        EventSet("mnist-dvs", f"MNIST-DVS recordings (AER-DAT 2.0), {MNIST_DVS_CROP}x"
                 f"{MNIST_DVS_CROP} crop around the digit; last 10% per digit/scale test",
                 (MNIST_DVS_CROP, MNIST_DVS_CROP), DIGITS, 2_000_000, "mnist_dvs",
                 "mnist_<digit>_scale<ss>_<nnnn>.aedat", "Serrano-Gotarredona, Linares-Barranco: "
                 "Poker-DVS and MNIST-DVS, Front. Neurosci. 9:481 (2015)", "not stated",
                 _locate_mnist_dvs, _build_mnist_dvs),
        _emulated_set("mnist", "MNIST (60k/10k) through the event-camera emulator", DIGITS,
                      _EMU_CITE.format("MNIST (LeCun et al. 1998)"),
                      "as MNIST (commonly CC BY-SA 3.0)"),
        _emulated_set("fashion-mnist", "Fashion-MNIST (60k/10k) through the emulator",
                      ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                       "Sneaker", "Bag", "Ankle boot"),
                      _EMU_CITE.format("Fashion-MNIST (Xiao et al. 2017)"), "MIT"),
        _emulated_set("cifar10", "CIFAR-10 (50k/10k) in grey through the emulator",
                      ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                       "ship", "truck"),
                      _EMU_CITE.format("CIFAR-10 (Krizhevsky 2009)"), "as CIFAR-10"),
    ]
    return {s.name: s for s in sets}


EVENT_SETS: dict[str, EventSet] = _event_sets()


def is_event_dataset(name: str) -> bool:
    """Whether ``name`` (case-insensitive, ``_`` for ``-``) is an event data set."""
    return name.strip().lower().replace("_", "-") in EVENT_SETS


def event_set(name: str) -> EventSet:
    """The :data:`EVENT_SETS` entry for ``name``."""
    key = name.strip().lower().replace("_", "-")
    if key not in EVENT_SETS:
        raise ValueError(f"unknown event data set {name!r}; choose one of {', '.join(EVENT_SETS)}")
    return EVENT_SETS[key]


def frame_size(info: EventSet, cfg: EmulatorConfig | None = None) -> tuple[int, int]:
    """Sensor ``(H, W)`` of a data set before down-sampling (emulated: per ``cfg.margin``)."""
    if info.emulated:
        return sensor_size(_EMU_SIZE[info.name.removesuffix("-emulated")],
                           cfg or EmulatorConfig())
    return info.sensor


def _cache_path(info: EventSet, source: Path, split: str, b: EventBinning, limit: int | None,
                cfg: EmulatorConfig) -> Path:
    stat = source.stat()
    emu = cfg.key() if info.emulated else "-"
    key = (f"{_CACHE_VERSION}|{info.name}|{source.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|"
           f"{split}|{b.key()}|{limit}|{emu}")
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return cache_dir() / f"events-{info.name}-{split}-{digest}.npz"


def load_event_dataset(name: str, split: str = "train", root: str | Path | None = None,
                       binning: EventBinning | None = None, *, limit: int | None = None,
                       emulator: EmulatorConfig | None = None, use_cache: bool = True
                       ) -> ArrayDataset:
    """Event frames ``[N, T, C, H, W]`` (uint8) of event data set ``name`` and its labels.

    ``binning`` defaults to ``EventBinning()`` with the set's recording length as window;
    ``limit`` keeps the first N samples (emulated sets only emulate those); ``emulator``
    configures the ``*-emulated`` sets. Files found under ``root`` (default
    ``$SPIKEFED_DATA``) are binned once and cached (see the module docstring).
    """
    info = event_set(name)
    cfg = emulator or EmulatorConfig()
    b = (binning or EventBinning()).with_window(cfg.duration_us if info.emulated
                                                else info.window_us)
    b.out_size(frame_size(info, cfg), info.name)           # fail early on a bad downsample
    if info.bundled:
        source = info.locate(Path("."))
        x, y = info.build(source, split, b, limit, cfg)
        return _dataset(x, y, info)
    where = f"{info.name} expects {info.files} in <root>/{info.folder}/ or <root>/"
    base = resolve_root(root, where)
    source = info.locate(base)
    if source is None:
        raise FileNotFoundError(f"{info.name}: nothing found under {base}; {where} "
                                "(`spikefed datasets` shows what is found)")
    data_root = base if info.emulated else source
    cache = _cache_path(info, source, split, b, limit, cfg) if use_cache else None
    if cache is not None and cache.is_file():
        with np.load(cache) as z:
            return _dataset(z["x"], z["y"], info)
    x, y = info.build(data_root, split, b, limit, cfg)
    if cache is not None:
        tmp = cache.with_name(f"{cache.stem}.tmp{os.getpid()}.npz")
        np.savez(tmp, x=x, y=y)
        os.replace(tmp, cache)
    return _dataset(x, y, info)


def _dataset(x: np.ndarray, y: np.ndarray, info: EventSet) -> ArrayDataset:
    return ArrayDataset(torch.from_numpy(np.ascontiguousarray(x)),
                        torch.from_numpy(y.astype(np.int64)), list(info.classes), info.name)
