"""Readers on tiny files written by the tests: IDX (raw/.gz), CIFAR pickles, image folders/zips."""

from __future__ import annotations

import gzip
import io
import pickle
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from spikefed.data import ArrayDataset, load_dataset
from spikefed.data.cifar import decode_images, load_image_folder
from spikefed.data.idx import parse_idx

RNG = np.random.default_rng(0)


def idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_mnist(folder: Path, n: int = 12, gz: bool = False) -> tuple[np.ndarray, np.ndarray]:
    folder.mkdir(parents=True, exist_ok=True)
    images = RNG.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = np.arange(n, dtype=np.uint8) % 10
    for prefix in ("train", "t10k"):
        for kind, arr in (("images-idx3", images), ("labels-idx1", labels)):
            name = f"{prefix}-{kind}-ubyte"
            data = idx_bytes(arr)
            if gz:
                (folder / f"{name}.gz").write_bytes(gzip.compress(data))
            else:
                (folder / name).write_bytes(data)
    return images, labels


@pytest.mark.parametrize("gz", [False, True])
def test_idx_mnist_layout_roundtrip(tmp_path: Path, gz: bool) -> None:
    images, labels = write_mnist(tmp_path / "mnist", gz=gz)
    ds = load_dataset("mnist", "train", tmp_path, verify=False)
    assert ds.x.shape == (12, 1, 28, 28) and ds.x.dtype == torch.float32
    assert torch.equal((ds.x[:, 0] * 255).round().to(torch.uint8), torch.from_numpy(images))
    assert ds.y.tolist() == labels.tolist()


def test_idx_flat_layout_and_env_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_mnist(tmp_path / "fashion_mnist")
    monkeypatch.setenv("SPIKEFED_DATA", str(tmp_path / "fashion_mnist"))  # files directly in root
    ds = load_dataset("fashion_mnist", "test", verify=False)
    assert len(ds) == 12 and ds.classes[0] == "T-shirt/top"


def test_checksum_mismatch_is_reported(tmp_path: Path) -> None:
    write_mnist(tmp_path / "mnist", gz=True)
    with pytest.raises(ValueError, match="checksum mismatch.*train-images-idx3-ubyte"):
        load_dataset("mnist", "train", tmp_path)


def test_bad_magic_and_truncation() -> None:
    with pytest.raises(ValueError, match="bad magic"):
        parse_idx(b"\x12\x34\x08\x01\x00\x00\x00\x01\x00", "f.idx")
    good = idx_bytes(np.zeros((3, 2), np.uint8))
    assert parse_idx(good).shape == (3, 2)
    with pytest.raises(ValueError, match="truncated or damaged"):
        parse_idx(good[:-1], "f.idx")


def test_corrupt_gzip(tmp_path: Path) -> None:
    write_mnist(tmp_path)
    (tmp_path / "train-images-idx3-ubyte").unlink()
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(b"not gzip at all")
    with pytest.raises(ValueError, match="not a valid gzip"):
        load_dataset("mnist", "train", tmp_path, verify=False)


def test_missing_files_name_expected_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(FileNotFoundError, match=r"train-images-idx3-ubyte.*mnist"):
        load_dataset("mnist", "train", tmp_path)
    with pytest.raises(FileNotFoundError, match="cifar-10-batches-py"):
        load_dataset("cifar10", "train", tmp_path)
    monkeypatch.delenv("SPIKEFED_DATA", raising=False)
    with pytest.raises(FileNotFoundError, match="SPIKEFED_DATA.*train-images-idx3-ubyte"):
        load_dataset("mnist", "train")


def test_bad_name_and_split() -> None:
    with pytest.raises(ValueError, match="unknown dataset 'imagenet'.*mnist-mini"):
        load_dataset("imagenet")
    with pytest.raises(ValueError, match="split must be one of"):
        load_dataset("mnist-mini", "val")


def write_cifar_pickles(folder: Path, n: int, num_classes: int,
                        hundred: bool = False) -> np.ndarray:
    folder.mkdir(parents=True)
    data = RNG.integers(0, 256, size=(n, 3072), dtype=np.uint8)
    labels = [i % num_classes for i in range(n)]
    label_key = b"fine_labels" if hundred else b"labels"
    names = [f"class{i}".encode() for i in range(num_classes)]
    if hundred:
        batches = {"train": data, "test": data[:4]}
        meta = {b"fine_label_names": names}
        meta_name = "meta"
    else:
        batches = {f"data_batch_{i}": data for i in range(1, 6)} | {"test_batch": data[:4]}
        meta = {b"label_names": names}
        meta_name = "batches.meta"
    for name, arr in batches.items():
        payload = {b"data": arr, label_key: labels[: len(arr)]}
        (folder / name).write_bytes(pickle.dumps(payload, protocol=2))
    (folder / meta_name).write_bytes(pickle.dumps(meta, protocol=2))
    return data


def test_cifar10_pickles(tmp_path: Path) -> None:
    data = write_cifar_pickles(tmp_path / "cifar10" / "cifar-10-batches-py", 6, 10)
    train = load_dataset("cifar10", "train", tmp_path, verify=False)
    assert train.x.shape == (30, 3, 32, 32) and train.num_classes == 10
    expected = torch.from_numpy(data.reshape(6, 3, 32, 32)).float() / 255
    assert torch.equal(train.x[:6], expected)  # channel-major layout of the batches
    assert load_dataset("cifar10", "test", tmp_path, verify=False).x.shape == (4, 3, 32, 32)
    with pytest.raises(ValueError, match="checksum mismatch.*data_batch_1"):
        load_dataset("cifar10", "train", tmp_path)


def test_cifar100_pickles_and_tarball(tmp_path: Path) -> None:
    folder = tmp_path / "src" / "cifar-100-python"
    write_cifar_pickles(folder, 8, 100, hundred=True)
    ds = load_dataset("cifar100", "train", tmp_path / "src", verify=False)
    assert len(ds) == 8 and ds.num_classes == 100 and ds.classes[99] == "class99"
    (tmp_path / "cifar100").mkdir()
    with tarfile.open(tmp_path / "cifar100" / "cifar-100-python.tar.gz", "w:gz") as tar:
        tar.add(folder, arcname="cifar-100-python")
    from_tar = load_dataset("cifar100", "train", tmp_path, verify=False)
    assert torch.equal(from_tar.x, ds.x) and torch.equal(from_tar.y, ds.y)


def test_pickle_with_code_is_refused(tmp_path: Path) -> None:
    folder = write_cifar_pickles(tmp_path / "cifar-10-batches-py", 2, 10) is not None
    assert folder
    (tmp_path / "cifar-10-batches-py" / "data_batch_1").write_bytes(
        pickle.dumps({b"data": Path("x"), b"labels": [0]}))
    with pytest.raises(ValueError, match="not a CIFAR python pickle"):
        load_dataset("cifar10", "train", tmp_path, verify=False)


def write_image_zip(path: Path, per_class: int = 2) -> dict[str, np.ndarray]:
    """PNG (lossless) images of constant colour per class in train/<class>/NNNN.png."""
    colours = {"airplane": (255, 0, 0), "truck": (0, 0, 255)}
    with zipfile.ZipFile(path, "w") as zf:
        for split in ("train", "test"):
            for cls, rgb in colours.items():
                for i in range(per_class):
                    buf = io.BytesIO()
                    Image.new("RGB", (32, 32), rgb).save(buf, format="PNG")
                    zf.writestr(f"{split}/{cls}/{i:04d}.png", buf.getvalue())
    return {c: np.array(rgb, dtype=np.float32) / 255 for c, rgb in colours.items()}


def test_image_zip_and_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPIKEFED_CACHE", str(tmp_path / "cache"))
    (tmp_path / "cifar10").mkdir()
    colours = write_image_zip(tmp_path / "cifar10" / "cifar10_jpeg.zip")
    ds = load_dataset("cifar10", "train", tmp_path, verify=False)
    assert ds.x.shape == (4, 3, 32, 32)
    assert ds.y.tolist() == [0, 0, 9, 9]  # canonical CIFAR-10 class order
    assert torch.allclose(ds.x[0, :, 5, 5], torch.from_numpy(colours["airplane"]))
    assert torch.allclose(ds.x[3, :, 5, 5], torch.from_numpy(colours["truck"]))
    assert len(list((tmp_path / "cache").glob("cifar10-train-*.npz"))) == 1
    again = load_dataset("cifar10", "train", tmp_path, verify=False)
    assert torch.equal(again.x, ds.x) and torch.equal(again.y, ds.y)
    with pytest.raises(ValueError, match=r"cifar10_jpeg.zip is \d+ bytes, the documented "
                                         r"archive is 53067488 bytes"):
        load_dataset("cifar10", "train", tmp_path)  # checked before decoding (docs/data.md)
    (tmp_path / "cifar10" / "cifar10_jpeg.zip").rename(tmp_path / "cifar10" / "cifar10_images.zip")
    with pytest.raises(ValueError, match="found 4 train images, expected 50000"):
        load_dataset("cifar10", "train", tmp_path)  # a zip without a documented hash


def test_image_folder_generic(tmp_path: Path) -> None:
    with zipfile.ZipFile(tmp_path / "z.zip", "w") as zf:
        zf.writestr("readme.txt", "ignored")
    write_image_zip(tmp_path / "imgs.zip")
    with zipfile.ZipFile(tmp_path / "imgs.zip") as zf:
        zf.extractall(tmp_path / "folder")
    x, y, classes = decode_images(tmp_path / "folder", "test")
    assert classes == ["airplane", "truck"] and y.tolist() == [0, 0, 1, 1]
    assert x.shape == (4, 3, 32, 32) and x.dtype == np.uint8
    with pytest.raises(FileNotFoundError, match="no images under train"):
        load_image_folder(tmp_path / "z.zip", "train", "x", use_cache=False)


def test_array_dataset_contract() -> None:
    ds = ArrayDataset(torch.rand(5, 1, 4, 4), torch.tensor([0, 1, 2, 1, 0]), ["a", "b", "c"], "t")
    sub = ds.subset(np.array([4, 1]))
    assert len(sub) == 2 and sub.y.tolist() == [0, 1] and torch.equal(sub.x[0], ds.x[4])
    assert ds.in_shape == (1, 4, 4) and ds.num_classes == 3
    x0, y0 = ds[2]
    assert x0.shape == (1, 4, 4) and int(y0) == 2
    with pytest.raises(ValueError, match="labels must lie in 0..2"):
        ArrayDataset(torch.rand(2, 1, 4, 4), torch.tensor([0, 3]), ["a", "b", "c"], "t")
    with pytest.raises(ValueError, match="float32"):
        ArrayDataset(torch.rand(2, 1, 4, 4).double(), torch.tensor([0, 1]), ["a", "b"], "t")
