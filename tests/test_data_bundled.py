"""The bundled mnist-mini subset and the real data sets in ../shared/data (skipped when absent)."""

from __future__ import annotations

import csv
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from spikefed.data import DATASETS, bundled, load_dataset
from spikefed.data.cifar import CIFAR10_CLASSES, decode_images
from spikefed.data.mnist import MNIST, read_idx_split


@pytest.mark.parametrize(("split", "n"), [("train", 10_000), ("test", 2_000)])
def test_mnist_mini_loads(split: str, n: int) -> None:
    ds = load_dataset("mnist-mini", split)
    assert ds.x.shape == (n, 1, 28, 28) and ds.x.dtype == torch.float32
    assert ds.y.dtype == torch.long and ds.in_shape == DATASETS["mnist-mini"].in_shape
    assert 0.0 <= float(ds.x.min()) and float(ds.x.max()) <= 1.0
    assert float(ds.x.max()) == 1.0  # real 8-bit images reach full intensity
    assert sorted(ds.y.unique().tolist()) == list(range(10))
    assert int(ds.y.bincount().min()) > n // 20  # no class nearly absent


def test_mnist_mini_integrity_check(monkeypatch: pytest.MonkeyPatch) -> None:
    assert bundled.asset_path() is not None and bundled.asset_path().stat().st_size < 4_000_000
    monkeypatch.setattr(bundled, "CONTENT_SHA256", "0" * 64)
    with pytest.raises(ValueError, match="damaged"):
        load_dataset("mnist-mini")


def test_mnist_mini_is_prefix_of_real_mnist(shared_data: Path) -> None:
    images, labels = read_idx_split(MNIST, shared_data / "mnist", "test")
    mini = bundled.read_mini_arrays()
    assert np.array_equal(mini["x_test"], images[: bundled.TEST_SIZE])
    assert np.array_equal(mini["y_test"], labels[: bundled.TEST_SIZE])


@pytest.mark.parametrize(("name", "train_counts"), [("mnist", None), ("fashion-mnist", 6000)])
def test_real_mnist_family(shared_data: Path, name: str, train_counts: int | None) -> None:
    train = load_dataset(name, "train", shared_data)  # verify=True: checksums must match
    test = load_dataset(name, "test", shared_data)
    assert train.x.shape == (60000, 1, 28, 28) and test.x.shape == (10000, 1, 28, 28)
    counts = train.y.bincount(minlength=10)
    assert len(counts) == 10
    if train_counts is not None:  # Fashion-MNIST is exactly balanced
        assert counts.tolist() == [train_counts] * 10


def test_cifar10_jpeg_decoding_matches_exact_pngs(shared_data: Path, tmp_path: Path) -> None:
    """The first 50 training images, decoded from the real JPEGs, against the bit-exact PNGs.

    JPEG is lossy (~30 dB PSNR); a wrong channel layout or image order gives far less.
    """
    folder = shared_data / "cifar10" / "exact_png200"
    with open(folder / "trainLabels.csv") as f:
        rows = sorted(csv.reader(f), key=lambda r: int(r[0].split(".")[0]))[:50]
    ranks: dict[str, int] = {}
    members = []
    for _, cls in rows:
        members.append(f"train/{cls}/{ranks.get(cls, 0):04d}.jpg")
        ranks[cls] = ranks.get(cls, 0) + 1
    small = tmp_path / "cifar10_jpeg.zip"
    with zipfile.ZipFile(shared_data / "cifar10" / "cifar10_jpeg.zip") as src, \
            zipfile.ZipFile(small, "w") as dst:
        for m in members:
            dst.writestr(m, src.read(m))
    x, y, classes = decode_images(small, "train", CIFAR10_CLASSES)
    order = sorted(range(len(members)), key=lambda i: (classes.index(rows[i][1]), members[i]))
    errs = []
    for pos, i in enumerate(order):
        exact = np.asarray(Image.open(folder / "train" / rows[i][0]).convert("RGB"), np.float32)
        ours = x[pos].transpose(1, 2, 0).astype(np.float32)
        assert classes[y[pos]] == rows[i][1]
        errs.append(((exact - ours) ** 2).mean())
    psnr = 10 * np.log10(255.0**2 / np.mean(errs))
    assert psnr > 25.0


def test_cifar10_zip_test_split_and_cache(shared_data: Path, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPIKEFED_CACHE", str(tmp_path))
    ds = load_dataset("cifar10", "test", shared_data)
    assert ds.x.shape == (10000, 3, 32, 32)
    assert ds.y.bincount().tolist() == [1000] * 10
    again = load_dataset("cifar10", "test", shared_data)
    assert torch.equal(again.x, ds.x)
    assert len(list(tmp_path.glob("cifar10-test-*.npz"))) == 1
