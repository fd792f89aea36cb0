"""Event-camera readers: .bs2 (N-MNIST, DVS Gesture) and AER-DAT 2.0 (MNIST-DVS), binning."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from spikefed.data.events import (
    bin_events,
    decode_bs2,
    encode_aedat2,
    encode_bs2,
    iter_bs2_tar,
    load_nmnist_subset,
    make_events,
    mnist_dvs_frames,
    nmnist_frames,
    pool_frames,
    read_aedat,
    read_bs2,
)

ASSETS = Path(__file__).resolve().parents[1] / "src" / "spikefed" / "assets"
BS2_ASSET = ASSETS / "nmnist_train_4_digit1.bs2"
AEDAT_ASSET = ASSETS / "mnist_dvs_0_scale04_0003.aedat"


def test_bs2_decodes_hand_written_bytes_exactly(tmp_path: Path) -> None:
    raw = bytes([3, 5, 0x81, 0x02, 0x03,   # x=3 y=5 p=1 t=(1<<16)|(2<<8)|3
                 33, 0, 0x7F, 0xFF, 0xFF,  # x=33 y=0 p=0 t=2**23-1
                 0, 33, 0x80, 0x00, 0x00])  # x=0 y=33 p=1 t=0
    path = tmp_path / "tiny.bs2"
    path.write_bytes(raw)
    ev = read_bs2(path)
    assert ev["x"].tolist() == [3, 33, 0]
    assert ev["y"].tolist() == [5, 0, 33]
    assert ev["p"].tolist() == [1, 0, 1]
    assert ev["t"].tolist() == [(1 << 16) | (2 << 8) | 3, (1 << 23) - 1, 0]
    assert encode_bs2(ev) == raw
    with pytest.raises(ValueError, match="multiple of 5"):
        decode_bs2(raw[:-1])
    with pytest.raises(FileNotFoundError):
        read_bs2(tmp_path / "missing.bs2")


def test_bs2_bundled_nmnist_sample() -> None:
    raw = BS2_ASSET.read_bytes()
    assert hashlib.md5(raw).hexdigest() == "edc46fe9e9490a778a7f3f7190b55387"
    ev = read_bs2(BS2_ASSET)
    assert len(ev) == len(raw) // 5
    assert ev["x"].max() < 34 and ev["y"].max() < 34 and set(np.unique(ev["p"])) == {0, 1}
    assert np.all(np.diff(ev["t"]) >= 0) and 250_000 < ev["t"].max() < 400_000
    frames = nmnist_frames(ev)
    assert frames.shape == (30, 17, 17) and frames.dtype == np.uint8
    assert set(np.unique(frames)) == {0, 1}
    assert nmnist_frames(ev, pool=1, merge_polarity=False).shape == (30, 2, 34, 34)


def test_aedat_decodes_hand_written_file(tmp_path: Path) -> None:
    ev = make_events(np.array([0, 10, 25_000, 1_999_999]), np.array([0, 127, 5, 64]),
                     np.array([0, 3, 127, 64]), np.array([1, 0, 1, 0]))
    path = tmp_path / "tiny.aedat"
    path.write_bytes(encode_aedat2(ev, "#!AER-DAT2.0\n# comment line\n"))
    got = read_aedat(path)
    for f in ("t", "x", "y", "p"):
        assert got[f].tolist() == ev[f].tolist()
    raw = path.read_bytes()
    assert raw.endswith(np.array([(64 << 8) | (64 << 1), 1_999_999], dtype=">u4").tobytes())
    path.write_bytes(raw[:-3])
    with pytest.raises(ValueError, match="multiple of 8"):
        read_aedat(path)
    path.write_bytes(b"not an aedat file")
    with pytest.raises(ValueError, match="AER-DAT2.0"):
        read_aedat(path)


def test_mnist_dvs_preprocessing_on_real_recording() -> None:
    ev = read_aedat(AEDAT_ASSET)
    assert ev["x"].max() < 128 and ev["y"].max() < 128 and np.all(np.diff(ev["t"]) >= 0)
    frames = mnist_dvs_frames(ev)
    assert frames.shape == (80, 2, 26, 26) and set(np.unique(frames)) == {0, 1}
    assert frames.sum(axis=(1, 2, 3)).min() > 0        # the digit is in the crop at every bin
    merged = mnist_dvs_frames(ev, merge_polarity=True)
    assert merged.shape == (80, 26, 26) and np.array_equal(merged, frames.max(axis=1))


def test_mnist_dvs_reader_on_shared_digit0(shared_data: Path) -> None:
    files = sorted((shared_data / "mnist_dvs_digit0").glob("*.aedat"))
    assert len(files) == 50
    for f in files[:5]:
        frames = mnist_dvs_frames(read_aedat(f))
        assert frames.shape == (80, 2, 26, 26) and frames.max() == 1
        assert frames.mean() > 0.01                    # crop follows the digit


def test_bin_events_counts_and_drops_out_of_range() -> None:
    ev = make_events(np.array([0, 5, 9, 10, 35, 40]), np.array([1, 1, 1, 0, 2, 0]),
                     np.array([0, 0, 0, 1, 1, 0]), np.array([0, 0, 1, 1, 0, 0]))
    counts = bin_events(ev, (2, 3), dt_us=10, n_steps=4, t0=0, binary=False)
    assert counts.shape == (4, 2, 2, 3) and counts.sum() == 5          # t=40 is past the end
    assert counts[0, 0, 0, 1] == 2 and counts[0, 1, 0, 1] == 1
    assert counts[1, 1, 1, 0] == 1 and counts[3, 0, 1, 2] == 1
    assert bin_events(ev, (2, 3), 10, 4, t0=0).max() == 1
    assert pool_frames(counts, 1).shape == counts.shape
    with pytest.raises(ValueError, match="divisible"):
        pool_frames(counts, 2)
    with pytest.raises(ValueError, match="dt_us"):
        bin_events(ev, (2, 3), 0, 4)


def test_dvs_gesture_reader(shared_data: Path) -> None:
    clips = list(iter_bs2_tar(shared_data / "dvs_gesture_10" / "dvs_gesture_10.tar.gz"))
    assert len(clips) == 10
    for _, ev in clips:
        assert ev["x"].max() < 128 and ev["y"].max() < 128 and len(ev) > 1000
        assert np.all(np.diff(ev["t"]) >= 0) and 1_000_000 < ev["t"].max() < 2_000_000
    frames = bin_events(clips[0][1], (128, 128), 50_000, 29)
    assert frames.shape == (29, 2, 128, 128) and frames.max() == 1


def test_nmnist_archive_matches_bundled_files(shared_data: Path) -> None:
    archive = shared_data / "nmnist_small" / "NMNISTsmall.tar.gz"
    ids, events, labels = load_nmnist_subset(archive, "train", (1,))
    assert np.all(labels == 1) and 4 in ids
    ev = events[ids.index(4)]
    assert encode_bs2(ev) == BS2_ASSET.read_bytes()
    with pytest.raises(ValueError, match="split"):
        load_nmnist_subset(archive, "valid")
