"""MNIST and Fashion-MNIST from local IDX files (raw or .gz), checksum-verified."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .dataset import ArrayDataset, from_uint8
from .files import candidate_dirs, find_file, md5, read_bytes
from .idx import parse_idx


@dataclass(frozen=True)
class IdxFile:
    """One IDX file with the MD5 of its uncompressed bytes and of the official .gz."""

    name: str
    md5: str
    gz_md5: str


@dataclass(frozen=True)
class IdxFileSet:
    """The four files of an MNIST-style data set and the folders they may sit in."""

    name: str
    folders: tuple[str, ...]
    classes: tuple[str, ...]
    train: tuple[IdxFile, IdxFile]
    test: tuple[IdxFile, IdxFile]

    @property
    def file_names(self) -> list[str]:
        return [f.name for f in (*self.train, *self.test)]


MNIST = IdxFileSet(
    name="mnist",
    folders=("mnist", "MNIST", "MNIST/raw"),
    classes=tuple(str(d) for d in range(10)),
    train=(IdxFile("train-images-idx3-ubyte", "6bbc9ace898e44ae57da46a324031adb",
                   "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
           IdxFile("train-labels-idx1-ubyte", "a25bea736e30d166cdddb491f175f624",
                   "d53e105ee54ea40749a09fcbcd1e9432")),
    test=(IdxFile("t10k-images-idx3-ubyte", "2646ac647ad5339dbf082846283269ea",
                  "9fb629c4189551a2d022fa330f9573f3"),
          IdxFile("t10k-labels-idx1-ubyte", "27ae3e4e09519cfbb04c329615203637",
                  "ec29112dd5afa0611ce80d1b7f02629c")),
)

FASHION_MNIST = IdxFileSet(
    name="fashion-mnist",
    folders=("fashion-mnist", "fashion_mnist", "FashionMNIST", "FashionMNIST/raw"),
    classes=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
             "Bag", "Ankle boot"),
    train=(IdxFile("train-images-idx3-ubyte", "f4a8712d7a061bf5bd6d2ca38dc4d50a",
                   "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
           IdxFile("train-labels-idx1-ubyte", "9018921c3c673c538a1fc5bad174d6f9",
                   "25c81989df183df01b3e8a0aad5dffbe")),
    test=(IdxFile("t10k-images-idx3-ubyte", "8181f5470baa50b63fa0f6fddb340f0a",
                  "bef4ecab320f06d8554ea6380940ec79"),
          IdxFile("t10k-labels-idx1-ubyte", "15d484375f8d13e6eb1aabb0c3f46965",
                  "bb300cfdad3c16e7a12a480ee83cd310")),
)


def _where(fs: IdxFileSet, root: Path) -> str:
    names = ", ".join(f"{n}(.gz)" for n in fs.file_names)
    return f"put {names} in {root / fs.folders[0]}/ (or directly in {root}/) or pass --data-root"


def _read_verified(path: Path, spec: IdxFile, verify: bool) -> bytes:
    raw = path.read_bytes()
    data = read_bytes(path)
    if verify and md5(data) != spec.md5 and not (path.suffix == ".gz" and md5(raw) == spec.gz_md5):
        raise ValueError(f"checksum mismatch for {path}: MD5 of its contents is {md5(data)}, the "
                         f"published value is {spec.md5}; the file is damaged or not the official "
                         f"{spec.name}: replace it")
    return data


def locate_idx(fs: IdxFileSet, root: Path) -> Path | None:
    """Folder under `root` holding all four files of `fs`, or None."""
    for d in candidate_dirs(root, fs.folders):
        if all(find_file([d], n) for n in fs.file_names):
            return d
    return None


def read_idx_split(fs: IdxFileSet, root: Path, split: str,
                   verify: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images `[N, H, W]` and labels `[N]` of `split` from `root`, checksum-verified."""
    image_spec, label_spec = fs.train if split == "train" else fs.test
    dirs = candidate_dirs(root, fs.folders)
    specs = (image_spec, label_spec)
    paths = [find_file(dirs, spec.name) for spec in specs]
    missing = [spec.name for spec, p in zip(specs, paths, strict=True) if p is None]
    if missing:
        raise FileNotFoundError(f"{fs.name} {split}: missing {', '.join(missing)} "
                                f"(searched {', '.join(map(str, dirs))}); {_where(fs, root)}")
    images = parse_idx(_read_verified(paths[0], image_spec, verify), str(paths[0]))
    labels = parse_idx(_read_verified(paths[1], label_spec, verify), str(paths[1]))
    if images.ndim != 3 or images.dtype.kind != "u" or labels.ndim != 1:
        raise ValueError(f"{paths[0]} / {paths[1]}: expected uint8 images [N, H, W] and labels "
                         f"[N], "
                         f"got {images.dtype} {images.shape} and {labels.shape}")
    if len(images) != len(labels):
        raise ValueError(f"{fs.name} {split}: {len(images)} images in {paths[0]} but {len(labels)} "
                         f"labels in {paths[1]}; the files do not belong together")
    return images, labels


def load_idx_dataset(fs: IdxFileSet, root: Path, split: str, verify: bool = True) -> ArrayDataset:
    """Load the `split` of an MNIST-style file set from `root`."""
    images, labels = read_idx_split(fs, root, split, verify)
    return from_uint8(images, labels, list(fs.classes), fs.name)
