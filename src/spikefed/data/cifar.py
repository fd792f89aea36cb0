"""CIFAR-10/100 from the python pickle batches, and CIFAR-10 from a JPEG/PNG image folder or zip."""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .archives import open_zip, read_zip_member
from .dataset import ArrayDataset, from_uint8
from .files import cache_dir, candidate_dirs, md5
from .integrity import verify_archive

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                   "truck"]
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
IMAGE_ZIPS = ("cifar10_jpeg.zip", "cifar10_images.zip")
_CACHE_VERSION = 1


@dataclass(frozen=True)
class PickleLayout:
    """Published file names and MD5s of a CIFAR python-pickle release."""

    name: str
    folders: tuple[str, ...]
    subdir: str
    tarball: str
    train: tuple[tuple[str, str], ...]
    test: tuple[tuple[str, str], ...]
    meta: tuple[str, str]
    label_key: str
    names_key: str
    size: dict[str, int]

    @property
    def file_names(self) -> list[str]:
        return [n for n, _ in (*self.train, *self.test, self.meta)]


CIFAR10 = PickleLayout(
    name="cifar10", folders=("cifar10", "cifar-10", "CIFAR10"), subdir="cifar-10-batches-py",
    tarball="cifar-10-python.tar.gz",
    train=(("data_batch_1", "c99cafc152244af753f735de768cd75f"),
           ("data_batch_2", "d4bba439e000b95fd0a9bffe97cbabec"),
           ("data_batch_3", "54ebc095f3ab1f0389bbae665268c751"),
           ("data_batch_4", "634d18415352ddfa80567beed471001a"),
           ("data_batch_5", "482c414d41f54cd18b22e5b47cb7c3cb")),
    test=(("test_batch", "40351d587109b95175f43aff81a1287e"),),
    meta=("batches.meta", "5ff9c542aee3614f3951f8cda6e48888"),
    label_key="labels", names_key="label_names", size={"train": 50000, "test": 10000},
)

CIFAR100 = PickleLayout(
    name="cifar100", folders=("cifar100", "cifar-100", "CIFAR100"), subdir="cifar-100-python",
    tarball="cifar-100-python.tar.gz",
    train=(("train", "16019d7e3df5f24257cddd939b257f8d"),),
    test=(("test", "f0ef6b0ae62326f3e7ffdfab6717acfc"),),
    meta=("meta", "7973b15100ade9c7d40fb424638fde48"),
    label_key="fine_labels", names_key="fine_label_names", size={"train": 50000, "test": 10000},
)


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickler that only rebuilds numpy arrays, so a data file cannot run code."""

    _ALLOWED = {"_reconstruct", "ndarray", "dtype", "_frombuffer", "scalar"}

    def find_class(self, module: str, name: str) -> object:
        numpy_array = module.split(".")[0] == "numpy" and name in self._ALLOWED
        if numpy_array or (module, name) == ("_codecs", "encode"):  # Py3 protocol-2 bytes
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a CIFAR pickle")


def parse_pickle(data: bytes, source: str) -> dict[str, object]:
    """Decode one CIFAR pickle (Python 2 or 3) into a dict with str keys."""
    try:
        obj = _ArrayUnpickler(io.BytesIO(data), encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as err:
        raise ValueError(f"{source} is not a CIFAR python pickle ({err}); replace it") from err
    if not isinstance(obj, dict):
        raise ValueError(f"{source}: expected a pickled dict, got {type(obj).__name__}")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in obj.items()}


def _batch_arrays(batch: dict[str, object], label_key: str,
                  source: str) -> tuple[np.ndarray, np.ndarray]:
    if "data" not in batch or label_key not in batch:
        raise ValueError(f"{source}: pickle lacks 'data' or '{label_key}' (keys: {sorted(batch)})")
    data = np.asarray(batch["data"], dtype=np.uint8)
    labels = np.asarray(batch[label_key], dtype=np.int64)
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(data) != len(labels):
        raise ValueError(f"{source}: expected data [N, 3072] and N labels, got {data.shape} and "
                         f"{labels.shape}")
    return data.reshape(-1, 3, 32, 32), labels


def _decode_names(names: object) -> list[str]:
    return [n.decode() if isinstance(n, bytes) else str(n) for n in names]  # type: ignore[union-attr]


class _PickleSource:
    """Reads members of a pickle release from a folder or from the official tarball."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self, name: str) -> bytes:
        if self.path.is_dir():
            return (self.path / name).read_bytes()
        with tarfile.open(self.path, "r:gz") as tar:
            for member in tar.getmembers():
                if member.isfile() and Path(member.name).name == name:
                    handle = tar.extractfile(member)
                    assert handle is not None
                    return handle.read()
        raise FileNotFoundError(f"{self.path} has no member named {name}")


def locate_pickles(layout: PickleLayout, root: Path) -> Path | None:
    """Folder or tarball under `root` holding the pickle release, or None."""
    for d in candidate_dirs(root, layout.folders):
        for folder in (d / layout.subdir, d):
            if all((folder / n).is_file() for n in layout.file_names):
                return folder
        if (d / layout.tarball).is_file():
            return d / layout.tarball
    return None


def load_pickles(layout: PickleLayout, path: Path, split: str, verify: bool = True) -> ArrayDataset:
    """Load `split` from a pickle folder or tarball found by `locate_pickles`."""
    source = _PickleSource(path)
    images, labels = [], []
    for name, digest in layout.train if split == "train" else layout.test:
        data = source.read(name)
        where = f"{path}/{name}"
        if verify and md5(data) != digest:
            raise ValueError(f"checksum mismatch for {where}: MD5 {md5(data)}, published {digest}; "
                             f"the file is damaged or not the official {layout.name}: replace it")
        x, y = _batch_arrays(parse_pickle(data, where), layout.label_key, where)
        images.append(x)
        labels.append(y)
    meta = parse_pickle(source.read(layout.meta[0]), f"{path}/{layout.meta[0]}")
    classes = _decode_names(meta.get(layout.names_key, []))
    return from_uint8(np.concatenate(images), np.concatenate(labels), classes, layout.name)


def _image_entries(path: Path, split: str) -> Iterator[tuple[str, str, bytes]]:
    """Yield `(class, file name, bytes)` for `<split>/<class>/<file>` in a folder or zip."""
    if path.is_dir():
        for class_dir in sorted(p for p in (path / split).iterdir() if p.is_dir()):
            for f in sorted(class_dir.iterdir()):
                if f.suffix.lower() in IMAGE_SUFFIXES:
                    yield class_dir.name, f.name, f.read_bytes()
        return
    with open_zip(path) as zf:
        names = []
        for info in zf.infolist():
            parts = Path(info.filename).parts
            if info.is_dir() or len(parts) < 3 or parts[-3] != split:
                continue
            if Path(parts[-1]).suffix.lower() in IMAGE_SUFFIXES:
                names.append((parts[-2], parts[-1], info.filename))
        for cls, fname, member in sorted(names):
            yield cls, fname, read_zip_member(zf, path, member)


def decode_images(path: Path, split: str,
                  classes: list[str] | None = None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Decode `<split>/<class>/*.jpg|png` (folder or zip) to uint8 `[N, 3, H, W]`, labels, classes.

    Samples are ordered by class, then by file name. `classes` fixes the label order
    (default: sorted folder names); a folder not in `classes` is an error.
    """
    from PIL import Image

    images: list[np.ndarray] = []
    class_names: list[str] = []
    for cls, fname, data in _image_entries(path, split):
        try:
            with Image.open(io.BytesIO(data)) as img:
                images.append(np.asarray(img.convert("RGB"), dtype=np.uint8))
        except (OSError, ValueError, SyntaxError) as err:  # PIL's errors for a broken image
            raise ValueError(f"{path}: {split}/{cls}/{fname} is not a readable image "
                             f"({type(err).__name__}: {err}); replace the damaged file") from None
        class_names.append(cls)
        if images[-1].shape != images[0].shape:
            raise ValueError(f"{path}: {split}/{cls}/{fname} is {images[-1].shape[:2]}, the first "
                             f"image is {images[0].shape[:2]}; all images must have one size")
    if not images:
        raise FileNotFoundError(f"{path} holds no images under {split}/<class>/ "
                                f"(expected {split}/<class>/NNNN.jpg)")
    found = sorted(set(class_names))
    classes = list(classes) if classes is not None else found
    unknown = [c for c in found if c not in classes]
    if unknown:
        raise ValueError(f"{path}: class folders {unknown} are not among the classes {classes}")
    index = {c: i for i, c in enumerate(classes)}
    labels = np.array([index[c] for c in class_names], dtype=np.int64)
    return np.stack(images).transpose(0, 3, 1, 2), labels, classes


def locate_image_folder(root: Path, folders: tuple[str, ...] = CIFAR10.folders) -> Path | None:
    """A CIFAR-10 image zip, or a folder with `train/` and `test/` class folders, under `root`."""
    for d in candidate_dirs(root, folders):
        for zname in IMAGE_ZIPS:
            if (d / zname).is_file():
                return d / zname
        if (d / "train").is_dir() and (d / "test").is_dir():
            return d
    return None


def _cache_path(path: Path, split: str, name: str) -> Path:
    stat = path.stat()
    key = f"{_CACHE_VERSION}|{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{split}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return cache_dir() / f"{name}-{split}-{digest}.npz"


def load_image_folder(path: Path, split: str, name: str, classes: list[str] | None = None,
                      expected_size: int | None = None, use_cache: bool = True,
                      verify: bool = True) -> ArrayDataset:
    """Decode an image folder/zip (see `decode_images`) into an ArrayDataset.

    A zip whose name has a documented SHA-256 (`spikefed.data.integrity`) is verified first
    (`verify=False` skips it, for re-encoded copies).
    Decoded arrays of a zip are cached in the user cache dir (`$SPIKEFED_CACHE` or
    `~/.cache/spikefed`), keyed by the zip's path, size and mtime. `expected_size`, when
    given, is checked against the number of images found.
    """
    if verify and path.is_file():
        verify_archive(path)
    cache = _cache_path(path, split, name) if use_cache and path.is_file() else None
    if cache is not None and cache.is_file():
        with np.load(cache) as z:
            x, y, classes = z["x"], z["y"], [str(c) for c in z["classes"]]
    else:
        x, y, classes = decode_images(path, split, classes)
        if cache is not None:
            tmp = cache.with_name(f"{cache.stem}.tmp{os.getpid()}.npz")
            np.savez(tmp, x=x, y=y, classes=np.array(classes))
            os.replace(tmp, cache)
    if expected_size is not None and len(y) != expected_size:
        raise ValueError(f"{path}: found {len(y)} {split} images, expected {expected_size}; "
                         f"the archive is incomplete or damaged: replace it")
    return from_uint8(x, y, classes, name)
