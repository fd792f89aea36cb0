"""Regenerate src/spikefed/assets/mnist_mini.npz from the official MNIST IDX files.

Usage: python scripts/make_bundled_data.py [MNIST_DIR]   (default: ../shared/data/mnist)

Takes the first 10,000 training and the first 2,000 test images (original order), verifies the
source checksums and writes a byte-reproducible compressed .npz (fixed zip timestamps). It then
checks the content SHA-256 against spikefed.data.bundled.CONTENT_SHA256 and prints it.
"""

from __future__ import annotations

import io
import sys
import zipfile
from pathlib import Path

import numpy as np

from spikefed.data.bundled import ASSET, CONTENT_SHA256, TEST_SIZE, TRAIN_SIZE, content_sha256
from spikefed.data.mnist import MNIST, read_idx_split

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SOURCE = REPO.parent / "shared" / "data" / "mnist"
TARGET = REPO / "src" / "spikefed" / "assets" / ASSET


def build(source: Path) -> dict[str, np.ndarray]:
    """The subset arrays, read from checksum-verified IDX files in `source`."""
    arrays = {}
    for split, n in (("train", TRAIN_SIZE), ("test", TEST_SIZE)):
        images, labels = read_idx_split(MNIST, source, split, verify=True)
        arrays[f"x_{split}"] = np.ascontiguousarray(images[:n])
        arrays[f"y_{split}"] = labels[:n].astype(np.uint8)
    return arrays


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write a compressed .npz whose bytes depend only on `arrays`."""
    with zipfile.ZipFile(path, "w") as zf:
        for key in sorted(arrays):
            buf = io.BytesIO()
            np.lib.format.write_array(buf, arrays[key], allow_pickle=False)
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, buf.getvalue(), compresslevel=9)


def main() -> int:
    source = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_SOURCE
    arrays = build(source)
    write_npz(TARGET, arrays)
    digest = content_sha256(arrays)
    print(f"wrote {TARGET} ({TARGET.stat().st_size} bytes), content SHA-256 {digest}")
    if digest != CONTENT_SHA256:
        print(f"content differs from CONTENT_SHA256={CONTENT_SHA256} in spikefed/data/bundled.py; "
              f"update it if the change is intended", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
