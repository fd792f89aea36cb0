"""Event-camera data: readers for AER-DAT 2.0 (MNIST-DVS) and ``.bs2`` (N-MNIST, DVS Gesture).

Events are numpy structured arrays with fields ``t`` (µs, int64), ``x``, ``y`` (int16) and ``p``
(polarity 0/1, int8). :func:`bin_events` turns them into frames ``[T, polarity, H, W]``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from .archives import iter_tar_members
from .integrity import verify_archive

EVENT_DTYPE = np.dtype([("t", np.int64), ("x", np.int16), ("y", np.int16), ("p", np.int8)])

NMNIST_SIZE = (34, 34)
DVS_GESTURE_SIZE = (128, 128)
MNIST_DVS_SIZE = (128, 128)


def make_events(t: np.ndarray, x: np.ndarray, y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Pack equal-length field arrays into an :data:`EVENT_DTYPE` array."""
    ev = np.empty(len(t), dtype=EVENT_DTYPE)
    ev["t"], ev["x"], ev["y"], ev["p"] = t, x, y, p
    return ev


def decode_bs2(raw: bytes) -> np.ndarray:
    """Decode ``.bs2`` bytes, 5 per event: ``x=b0, y=b1, p=b2>>7, t=(b2&127)<<16|b3<<8|b4``."""
    if len(raw) % 5:
        raise ValueError(f".bs2 payload has {len(raw)} bytes, not a multiple of 5 (5 per event); "
                         "the file is truncated or not a .bs2 event file")
    b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 5).astype(np.int64)
    t = ((b[:, 2] & 127) << 16) | (b[:, 3] << 8) | b[:, 4]
    return make_events(t, b[:, 0], b[:, 1], b[:, 2] >> 7)


def encode_bs2(events: np.ndarray) -> bytes:
    """Inverse of :func:`decode_bs2` (t < 2**23 µs, x, y < 256, p in {0, 1})."""
    t = events["t"].astype(np.int64)
    if len(events) and (t.min() < 0 or t.max() >= 1 << 23):
        raise ValueError("event times must lie in [0, 2**23) µs for the .bs2 format")
    for name, hi in (("x", 256), ("y", 256), ("p", 2)):
        v = events[name]
        if len(v) and (v.min() < 0 or v.max() >= hi):
            raise ValueError(f"event field {name!r} must lie in [0, {hi}) for the .bs2 format")
    b = np.empty((len(events), 5), dtype=np.uint8)
    b[:, 0], b[:, 1] = events["x"], events["y"]
    b[:, 2] = (events["p"].astype(np.int64) << 7) | ((t >> 16) & 127)
    b[:, 3], b[:, 4] = (t >> 8) & 255, t & 255
    return b.tobytes()


def read_bs2(path: str | Path) -> np.ndarray:
    """Read an N-MNIST / DVS Gesture ``.bs2`` file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f".bs2 event file {path} does not exist")
    try:
        return decode_bs2(path.read_bytes())
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from err


def decode_aedat2(raw: bytes) -> np.ndarray:
    """Decode AER-DAT 2.0 bytes (``#`` header lines, then big-endian uint32 address, timestamp).

    DVS128 addresses: ``x = (a>>1)&0x7f``, ``y = (a>>8)&0x7f``, ``p = a&1``.
    """
    start = 0
    while raw.startswith(b"#", start):
        nl = raw.find(b"\n", start)
        if nl < 0:
            raise ValueError("AER-DAT header line is not terminated by a newline")
        start = nl + 1
    body = raw[start:]
    if len(body) % 8:
        raise ValueError(f"AER-DAT 2.0 body has {len(body)} bytes, not a multiple of 8 "
                         "(uint32 address + uint32 timestamp per event); file truncated?")
    d = np.frombuffer(body, dtype=">u4").reshape(-1, 2).astype(np.int64)
    a = d[:, 0]
    return make_events(d[:, 1], (a >> 1) & 0x7F, (a >> 8) & 0x7F, a & 1)


def encode_aedat2(events: np.ndarray, header: str = "#!AER-DAT2.0\n") -> bytes:
    """Inverse of :func:`decode_aedat2` for DVS128 events (used to write test files)."""
    a = ((events["y"].astype(np.int64) & 0x7F) << 8) | ((events["x"].astype(np.int64) & 0x7F) << 1)
    a |= events["p"].astype(np.int64) & 1
    body = np.stack([a, events["t"].astype(np.int64)], 1).astype(">u4").tobytes()
    return header.encode() + body


def read_aedat(path: str | Path) -> np.ndarray:
    """Read an AER-DAT 2.0 ``.aedat`` file (MNIST-DVS)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f".aedat file {path} does not exist")
    raw = path.read_bytes()
    if not raw.startswith(b"#!AER-DAT2"):
        raise ValueError(f"{path} does not start with '#!AER-DAT2.0'; "
                         "only AER-DAT 2.0 is supported")
    try:
        return decode_aedat2(raw)
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from err


def _decode_member(archive: Path, name: str, raw: bytes) -> np.ndarray:
    """:func:`decode_bs2` of one archive member; errors name the archive and the member."""
    try:
        return decode_bs2(raw)
    except ValueError as err:
        raise ValueError(f"{archive}, member {name}: {err}") from None


def iter_bs2_tar(path: str | Path) -> Iterator[tuple[str, np.ndarray]]:
    """Yield ``(member name, events)`` for every ``.bs2`` file in a (gzipped) tar archive.

    An archive with a documented SHA-256 (``spikefed.data.integrity``) is verified first.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"event archive {path} does not exist")
    verify_archive(path)
    for name, raw in iter_tar_members(path, lambda n: n.endswith(".bs2")):
        yield name, _decode_member(path, name, raw)


def crop_events(events: np.ndarray, x0: int, y0: int, width: int, height: int) -> np.ndarray:
    """Keep events inside ``[x0, x0+width) x [y0, y0+height)`` and shift them to the origin."""
    keep = ((events["x"] >= x0) & (events["x"] < x0 + width)
            & (events["y"] >= y0) & (events["y"] < y0 + height))
    out = events[keep].copy()
    out["x"] -= x0
    out["y"] -= y0
    return out


def bin_events(events: np.ndarray, size: tuple[int, int], dt_us: int, n_steps: int, *,
               t0: int | None = None, binary: bool = True) -> np.ndarray:
    """Bin events into frames ``[n_steps, 2, H, W]`` of ``dt_us`` each, starting at ``t0``.

    ``size`` is ``(H, W)``; events outside the frame or the time span are dropped. ``binary``
    gives 0/1 frames (uint8), else event counts (int32). ``t0`` defaults to the first event time.
    """
    if dt_us <= 0:
        raise ValueError(f"dt_us={dt_us} must be > 0")
    if n_steps <= 0:
        raise ValueError(f"n_steps={n_steps} must be > 0")
    h, w = size
    if t0 is None:
        t0 = int(events["t"][0]) if len(events) else 0
    k = (events["t"].astype(np.int64) - t0) // dt_us
    x, y, p = (events[f].astype(np.int64) for f in ("x", "y", "p"))
    keep = (k >= 0) & (k < n_steps) & (x >= 0) & (x < w) & (y >= 0) & (y < h)
    flat = ((k[keep] * 2 + p[keep]) * h + y[keep]) * w + x[keep]
    counts = np.bincount(flat, minlength=n_steps * 2 * h * w).reshape(n_steps, 2, h, w)
    return (counts > 0).astype(np.uint8) if binary else counts.astype(np.int32)


def pool_frames(frames: np.ndarray, factor: int) -> np.ndarray:
    """Binary OR-pooling (max) of ``[..., H, W]`` frames by ``factor`` (H, W divisible)."""
    h, w = frames.shape[-2:]
    if h % factor or w % factor:
        raise ValueError(f"frame size {h}x{w} is not divisible by pooling factor {factor}")
    f = frames.reshape(*frames.shape[:-2], h // factor, factor, w // factor, factor)
    return f.max(axis=(-3, -1))


def mnist_dvs_frames(events: np.ndarray, *, crop: int = 26, dt_us: int = 25_000,
                     n_steps: int = 80, centre: tuple[int, int] | None = None,
                     merge_polarity: bool = False) -> np.ndarray:
    """MNIST-DVS preprocessing of FL-SNN: ``crop x crop`` window, 25 ms binary bins, 80 steps (2 s).

    The window is centred on ``centre`` ``(x, y)`` or, by default, on the median event position
    (the digit). Returns ``[n_steps, 2, crop, crop]`` (or ``[n_steps, crop, crop]`` merged).
    """
    if len(events) == 0:
        raise ValueError("cannot preprocess an empty MNIST-DVS recording")
    cx, cy = centre if centre is not None else (int(np.median(events["x"])),
                                                int(np.median(events["y"])))
    x0 = min(max(cx - crop // 2, 0), MNIST_DVS_SIZE[1] - crop)
    y0 = min(max(cy - crop // 2, 0), MNIST_DVS_SIZE[0] - crop)
    cropped = crop_events(events, x0, y0, crop, crop)
    frames = bin_events(cropped, (crop, crop), dt_us, n_steps, t0=int(events["t"][0]))
    return frames.max(axis=1) if merge_polarity else frames


def nmnist_frames(events: np.ndarray, *, dt_us: int = 10_000, n_steps: int = 30,
                  pool: int = 2, merge_polarity: bool = True) -> np.ndarray:
    """N-MNIST preprocessing used by the FL-SNN reproduction (substitute for MNIST-DVS).

    34x34 binary frames of ``dt_us`` (default 10 ms x 30 = the 300 ms recording), OR-pooled by
    ``pool`` and polarities merged: ``[n_steps, 34/pool, 34/pool]`` (else ``[n_steps, 2, ...]``).
    """
    frames = bin_events(events, NMNIST_SIZE, dt_us, n_steps, t0=0)
    if pool > 1:
        frames = pool_frames(frames, pool)
    return frames.max(axis=1) if merge_polarity else frames


def read_labels(text: str) -> dict[int, int]:
    """Parse an N-MNIST ``#sample #class`` label file into ``{sample id: class}``."""
    out: dict[int, int] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        sample, label = line.split()[:2]
        out[int(sample)] = int(label)
    return out


def load_nmnist_subset(archive: str | Path, split: str,
                       classes: tuple[int, ...] | None = None, verify: bool = True
                       ) -> tuple[list[int], list[np.ndarray], np.ndarray]:
    """Read the N-MNIST subset archive (``NMNISTsmall.tar.gz``) without extracting it.

    ``split`` is ``"train"`` (labels ``train1K.txt``) or ``"test"`` (``test100.txt``). Returns
    sample ids, event arrays and labels, sorted by sample id, optionally filtered to ``classes``.
    The archive's SHA-256 is verified first (``spikefed.data.integrity``); a damaged member
    gives an error naming the archive and the member. ``verify=False`` skips the hash.
    """
    label_file = {"train": "train1K.txt", "test": "test100.txt"}.get(split)
    if label_file is None:
        raise ValueError(f"split={split!r} must be 'train' or 'test'")
    archive = Path(archive)
    if not archive.is_file():
        raise FileNotFoundError(f"N-MNIST archive {archive} does not exist; expected "
                                "<data-root>/nmnist_small/NMNISTsmall.tar.gz")
    if verify:
        verify_archive(archive)
    files: dict[str, bytes] = {}
    members: dict[str, str] = {}
    for member, raw in iter_tar_members(archive, lambda n: n.endswith((".bs2", ".txt"))):
        files[Path(member).name], members[Path(member).name] = raw, member
    if label_file not in files:
        raise ValueError(f"{archive} has no {label_file}; is it the N-MNIST subset archive?")
    labels = read_labels(files[label_file].decode())
    ids = sorted(i for i, c in labels.items() if classes is None or c in classes)
    missing = [f"{i}.bs2" for i in ids if f"{i}.bs2" not in files]
    if missing:
        raise FileNotFoundError(f"{archive} lacks {missing[:3]} listed in {label_file}")
    events = [_decode_member(archive, members[f"{i}.bs2"], files[f"{i}.bs2"]) for i in ids]
    return ids, events, np.array([labels[i] for i in ids], dtype=np.int64)
