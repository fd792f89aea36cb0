"""`mnist-mini`: a real MNIST subset shipped inside the package (see assets/ATTRIBUTION.md)."""

from __future__ import annotations

import hashlib
from importlib import resources
from pathlib import Path

import numpy as np

from .dataset import ArrayDataset, from_uint8

ASSET = "mnist_mini.npz"
TRAIN_SIZE = 10_000  # the first 10,000 images of MNIST train-images-idx3-ubyte
TEST_SIZE = 2_000  # the first 2,000 images of MNIST t10k-images-idx3-ubyte
# SHA-256 of the arrays (see content_sha256); scripts/make_bundled_data.py reproduces it.
CONTENT_SHA256 = "cfa6e28520fa4f75f103d7d64a68fbc715e2c182e53599b8d152d78dea4062e5"


def content_sha256(arrays: dict[str, np.ndarray]) -> str:
    """SHA-256 over names, dtypes, shapes and bytes of `arrays`, in name order."""
    h = hashlib.sha256()
    for key in sorted(arrays):
        a = np.ascontiguousarray(arrays[key])
        h.update(f"{key}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def asset_path() -> Path | None:
    """Filesystem path of the bundled .npz, or None when it is missing."""
    ref = resources.files("spikefed.assets").joinpath(ASSET)
    return Path(str(ref)) if ref.is_file() else None


def read_mini_arrays() -> dict[str, np.ndarray]:
    """The bundled uint8 arrays `x_train, y_train, x_test, y_test`, integrity-checked."""
    ref = resources.files("spikefed.assets").joinpath(ASSET)
    if not ref.is_file():
        raise FileNotFoundError(f"bundled data set {ASSET} is missing from spikefed/assets; "
                                f"reinstall spikefed or run scripts/make_bundled_data.py")
    with ref.open("rb") as f, np.load(f) as z:
        arrays = {k: z[k] for k in z.files}
    digest = content_sha256(arrays)
    if digest != CONTENT_SHA256:
        raise ValueError(f"bundled {ASSET} is damaged (content SHA-256 {digest}, expected "
                         f"{CONTENT_SHA256}); reinstall spikefed or run "
                         f"scripts/make_bundled_data.py")
    return arrays


def load_mnist_mini(split: str) -> ArrayDataset:
    """The bundled MNIST subset: 10,000 train / 2,000 test images, 1x28x28."""
    arrays = read_mini_arrays()
    return from_uint8(arrays[f"x_{split}"], arrays[f"y_{split}"],
                      [str(d) for d in range(10)], "mnist-mini")
