"""Named image data sets: `DATASETS` (what and where) and `load_dataset`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .bundled import asset_path, load_mnist_mini
from .cifar import (
    CIFAR10,
    CIFAR10_CLASSES,
    CIFAR100,
    PickleLayout,
    load_image_folder,
    load_pickles,
    locate_image_folder,
    locate_pickles,
)
from .dataset import ArrayDataset
from .files import resolve_root
from .mnist import FASHION_MNIST, MNIST, IdxFileSet, load_idx_dataset, locate_idx

SPLITS = ("train", "test")


@dataclass(frozen=True)
class DatasetInfo:
    """What a data set is, which files it needs, and how to find and load them."""

    name: str
    description: str
    files: str
    folder: str
    in_shape: tuple[int, int, int]
    num_classes: int
    citation: str
    licence: str
    locate: Callable[[Path], Path | None]
    load: Callable[[Path, str, bool], ArrayDataset]
    bundled: bool = False


Locator = Callable[[Path], "Path | None"]
Loader = Callable[[Path, str, bool], ArrayDataset]


def _idx(fs: IdxFileSet) -> tuple[Locator, Loader]:
    return (lambda root: locate_idx(fs, root),
            lambda root, split, verify: load_idx_dataset(fs, root, split, verify))


def _pickles(layout: PickleLayout, files: str) -> Callable[[Path, str, bool], ArrayDataset]:
    def load(root: Path, split: str, verify: bool) -> ArrayDataset:
        path = locate_pickles(layout, root)
        if path is None:
            raise FileNotFoundError(f"{layout.name}: no pickle batches under {root}; put {files} "
                                    f"in {root / layout.folders[0]}/ or pass --data-root")
        return load_pickles(layout, path, split, verify)
    return load


def _locate_cifar10(root: Path) -> Path | None:
    return locate_pickles(CIFAR10, root) or locate_image_folder(root)


def _load_cifar10(root: Path, split: str, verify: bool) -> ArrayDataset:
    if locate_pickles(CIFAR10, root) is not None:
        return _pickles(CIFAR10, _CIFAR10_FILES)(root, split, verify)
    path = locate_image_folder(root)
    if path is None:
        raise FileNotFoundError(f"cifar10: nothing found under {root}; put {_CIFAR10_FILES} in "
                                f"{root / 'cifar10'}/ or pass --data-root")
    return load_image_folder(path, split, "cifar10", CIFAR10_CLASSES,
                             expected_size=CIFAR10.size[split] if verify else None,
                             verify=verify)


def _mnist_names(fs: IdxFileSet) -> str:
    return ", ".join(f"{n}(.gz)" for n in fs.file_names)


_CIFAR10_FILES = ("cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta} or "
                  "cifar-10-python.tar.gz, or cifar10_jpeg.zip / an image folder with "
                  "train/<class>/*.jpg and test/<class>/*.jpg")
_CIFAR100_FILES = "cifar-100-python/{train, test, meta} or cifar-100-python.tar.gz"
_MNIST_CITE = "LeCun, Cortes, Burges: The MNIST database of handwritten digits (1998)"

DATASETS: dict[str, DatasetInfo] = {
    "mnist-mini": DatasetInfo(
        name="mnist-mini",
        description="Bundled real MNIST subset: first 10,000 train / 2,000 test images",
        files="(inside the package: spikefed/assets/mnist_mini.npz)", folder="",
        in_shape=(1, 28, 28), num_classes=10, citation=_MNIST_CITE,
        licence="no explicit licence; commonly redistributed (CC BY-SA 3.0 on several hubs)",
        locate=lambda root: asset_path(),
        load=lambda root, split, verify: load_mnist_mini(split), bundled=True,
    ),
    "mnist": DatasetInfo(
        name="mnist", description="MNIST handwritten digits, 60k train / 10k test",
        files=_mnist_names(MNIST), folder="mnist", in_shape=(1, 28, 28), num_classes=10,
        citation=_MNIST_CITE,
        licence="no explicit licence; commonly redistributed (CC BY-SA 3.0 on several hubs)",
        locate=_idx(MNIST)[0], load=_idx(MNIST)[1],
    ),
    "fashion-mnist": DatasetInfo(
        name="fashion-mnist", description="Fashion-MNIST clothing images, 60k train / 10k test",
        files=_mnist_names(FASHION_MNIST), folder="fashion-mnist", in_shape=(1, 28, 28),
        num_classes=10,
        citation="Xiao, Rasul, Vollgraf: Fashion-MNIST, arXiv:1708.07747 (2017)",
        licence="MIT (Zalando Research)",
        locate=_idx(FASHION_MNIST)[0], load=_idx(FASHION_MNIST)[1],
    ),
    "cifar10": DatasetInfo(
        name="cifar10",
        description="CIFAR-10, 50k train / 10k test (pickles exact; JPEG zip is lossy)",
        files=_CIFAR10_FILES, folder="cifar10", in_shape=(3, 32, 32), num_classes=10,
        citation="Krizhevsky: Learning multiple layers of features from tiny images (2009)",
        licence="no explicit licence; distributed by the authors for research",
        locate=_locate_cifar10, load=_load_cifar10,
    ),
    "cifar100": DatasetInfo(
        name="cifar100", description="CIFAR-100 (fine labels), 50k train / 10k test",
        files=_CIFAR100_FILES, folder="cifar100", in_shape=(3, 32, 32), num_classes=100,
        citation="Krizhevsky: Learning multiple layers of features from tiny images (2009)",
        licence="no explicit licence; distributed by the authors for research",
        locate=lambda root: locate_pickles(CIFAR100, root),
        load=_pickles(CIFAR100, _CIFAR100_FILES),
    ),
}


def dataset_info(name: str) -> DatasetInfo:
    """The `DATASETS` entry for `name` (case-insensitive, `_` accepted for `-`)."""
    key = name.strip().lower().replace("_", "-")
    if key not in DATASETS:
        from .event_sets import EVENT_SETS

        kind = "an event data set (load it with load_event_dataset)" if key in EVENT_SETS else ""
        raise ValueError(f"dataset {name!r} is {kind}" if kind else
                         f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)} "
                         f"(images) or {', '.join(EVENT_SETS)} (events)")
    return DATASETS[key]


def load_dataset(name: str, split: str = "train", root: str | Path | None = None, *,
                 verify: bool = True) -> ArrayDataset:
    """Load data set `name` (see `DATASETS`) from local files; nothing is downloaded.

    `root` defaults to `$SPIKEFED_DATA`; files may sit in `<root>/<name>/` or in `<root>/`.
    `verify=False` skips checksum and size checks (for trimmed or re-encoded copies).
    Event data sets (`data.event_sets.EVENT_SETS`) load with their default binning; use
    `load_event_dataset` to choose it.
    """
    from .event_sets import is_event_dataset, load_event_dataset

    if is_event_dataset(name):
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        return load_event_dataset(name, split, root)
    info = dataset_info(name)
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if info.bundled:
        return info.load(Path("."), split, verify)
    where = f"{info.name} expects {info.files} in <root>/{info.folder}/ or <root>/"
    return info.load(resolve_root(root, where), split, verify)
