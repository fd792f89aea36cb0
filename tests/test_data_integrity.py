"""Archive checksums, cached verification, and damaged archives named with their member."""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
from archives import write_tar

from spikefed.data import integrity
from spikefed.data.archives import DamagedArchiveError
from spikefed.data.events import encode_bs2, iter_bs2_tar, load_nmnist_subset, make_events
from spikefed.data.integrity import ArchiveDigest, sha256_file, verify_archive


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("SPIKEFED_CACHE", str(tmp_path / "cache"))


def _events(n: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    return encode_bs2(make_events(np.sort(rng.integers(0, 300_000, n)), rng.integers(0, 34, n),
                                  rng.integers(0, 34, n), rng.integers(0, 2, n)))


def _nmnist(path: Path, **replace: bytes) -> Path:
    members = {"NMNISTsmall/train1K.txt": b"#sample #class\n1 3\n2 7\n",
               "NMNISTsmall/test100.txt": b"60001 1\n",
               "NMNISTsmall/1.bs2": _events(40, 1), "NMNISTsmall/2.bs2": _events(50, 2),
               "NMNISTsmall/60001.bs2": _events(30, 3)}
    return write_tar(path, {**members, **replace})


def _table(path: Path) -> dict[str, ArchiveDigest]:
    return {path.name: ArchiveDigest(path.stat().st_size, sha256_file(path))}


def test_verified_once_then_remembered(tmp_path, monkeypatch) -> None:
    good = _nmnist(tmp_path / "NMNISTsmall.tar.gz")
    table = _table(good)
    calls = []
    real = integrity.sha256_file
    monkeypatch.setattr(integrity, "sha256_file", lambda p: calls.append(p) or real(p))
    assert verify_archive(good, table) and verify_archive(good, table)
    assert len(calls) == 1  # the second check used the stamp
    os.utime(good, ns=(1, 1))  # touched: hashed again
    assert verify_archive(good, table) and len(calls) == 2
    assert verify_archive(tmp_path / "unlisted.zip", table) is False


def test_member_replaced_by_random_bytes_is_caught_by_the_hash(tmp_path, monkeypatch) -> None:
    good = _nmnist(tmp_path / "NMNISTsmall.tar.gz")
    monkeypatch.setitem(integrity.KNOWN_ARCHIVES, good.name, _table(good)[good.name])
    ids, events, labels = load_nmnist_subset(good, "train")
    assert ids == [1, 2] and [len(e) for e in events] == [40, 50] and labels.tolist() == [3, 7]
    digest = integrity.KNOWN_ARCHIVES[good.name]
    forged = tmp_path / "forged" / good.name
    forged.parent.mkdir()
    _nmnist(forged, **{"NMNISTsmall/1.bs2": os.urandom(200)})
    # a forged copy of the documented size passes every structural check: only the hash tells
    monkeypatch.setitem(integrity.KNOWN_ARCHIVES, good.name,
                        ArchiveDigest(forged.stat().st_size, digest.sha256))
    unlisted = tmp_path / "forged" / "unlisted.tar.gz"  # a name without a documented hash
    unlisted.write_bytes(forged.read_bytes())
    assert len(load_nmnist_subset(unlisted, "train")[1][0]) == 40  # structure alone: "fine"
    with pytest.raises(ValueError, match="SHA-256"):
        load_nmnist_subset(forged, "train")
    with pytest.raises(ValueError, match=f"{forged}.*SHA-256.*documented archive has "
                                         f"{digest.sha256}") as err:
        verify_archive(forged, None)
    assert "replace it" in str(err.value)
    with pytest.raises(ValueError, match="SHA-256"):
        list(iter_bs2_tar(forged))
    wrong_size = {good.name: ArchiveDigest(digest.size + 1, digest.sha256)}
    with pytest.raises(ValueError, match=f"is {digest.size} bytes, the documented archive is"):
        verify_archive(good, wrong_size)


def test_structure_errors_name_archive_and_member(tmp_path) -> None:
    short = _nmnist(tmp_path / "short.tar.gz", **{"NMNISTsmall/2.bs2": _events(5, 4)[:-3]})
    with pytest.raises(ValueError, match=r"short.tar.gz, member NMNISTsmall/2.bs2: .bs2 payload "
                                         r"has 22 bytes"):
        load_nmnist_subset(short, "train")
    with pytest.raises(ValueError, match="short.tar.gz, member NMNISTsmall/2.bs2"):
        list(iter_bs2_tar(short))
    whole = _nmnist(tmp_path / "whole.tar.gz").read_bytes()
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(DamagedArchiveError, match=r"cut.tar.gz.*damaged or truncated"):
        load_nmnist_subset(cut, "train")


def _jpeg(seed: int) -> bytes:
    from PIL import Image

    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


def _zip(path: Path, damage: str | None = None) -> Path:
    members = {f"{split}/{cls}/{i:04d}.jpg": _jpeg(i + 7 * j)
               for split in ("train", "test") for j, cls in enumerate(("cat", "dog"))
               for i in range(2)}
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    if damage is not None:  # flip bytes inside the member's compressed data
        with zipfile.ZipFile(path) as zf:
            info = zf.getinfo(damage)
        raw = bytearray(path.read_bytes())
        start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
        for k in range(start + 20, start + 40):
            raw[k] ^= 0xFF
        path.write_bytes(bytes(raw))
    return path


def test_damaged_zip_member_names_archive_and_member(tmp_path) -> None:
    from spikefed.data.cifar import decode_images, load_image_folder

    good = _zip(tmp_path / "images.zip")
    x, y, classes = decode_images(good, "train")
    assert x.shape == (4, 3, 8, 8) and classes == ["cat", "dog"]
    bad = _zip(tmp_path / "bad.zip", damage="train/dog/0001.jpg")
    with pytest.raises(ValueError, match=r"bad.zip, member train/dog/0001.jpg: "):
        load_image_folder(bad, "train", "cifar10", use_cache=False)
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"not a zip at all")
    with pytest.raises(ValueError, match=r"junk.zip: not a readable zip"):
        decode_images(junk, "train")


def test_cifar_zip_is_verified_before_decoding(tmp_path, monkeypatch) -> None:
    from spikefed.data.cifar import load_image_folder

    good = _zip(tmp_path / "cifar10_jpeg.zip")
    monkeypatch.setitem(integrity.KNOWN_ARCHIVES, good.name,
                        ArchiveDigest(good.stat().st_size, "0" * 64))
    with pytest.raises(ValueError, match="cifar10_jpeg.zip has SHA-256"):
        load_image_folder(good, "train", "cifar10")
    monkeypatch.setitem(integrity.KNOWN_ARCHIVES, good.name, _table(good)[good.name])
    assert len(load_image_folder(good, "train", "cifar10")) == 4


@pytest.mark.parametrize("relpath", ["cifar10/cifar10_jpeg.zip", "nmnist_small/NMNISTsmall.tar.gz",
                                     "dvs_gesture_10/dvs_gesture_10.tar.gz"])
def test_real_archives_match_the_documented_hashes(shared_data, relpath) -> None:
    path = shared_data / relpath
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    assert verify_archive(path)
