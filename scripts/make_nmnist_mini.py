"""Regenerate src/spikefed/assets/nmnist_mini.npz from the N-MNIST subset archive.

Usage: python scripts/make_nmnist_mini.py [NMNISTsmall.tar.gz]
(default: ../shared/data/nmnist_small/NMNISTsmall.tar.gz)

Bins every recording (1,000 train / 100 test) into 10 x 30 ms event counts, 2x34x34, uint8,
writes a compressed .npz and prints its content SHA-256
(spikefed.data.event_sets.NMNIST_MINI_SHA256).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from spikefed.data.bundled import content_sha256
from spikefed.data.event_sets import NMNIST_MINI_ASSET, NMNIST_MINI_SHA256, nmnist_mini_arrays

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SOURCE = REPO.parent / "shared" / "data" / "nmnist_small" / "NMNISTsmall.tar.gz"
TARGET = REPO / "src" / "spikefed" / "assets" / NMNIST_MINI_ASSET


def main() -> int:
    source = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_SOURCE
    arrays = nmnist_mini_arrays(source)
    np.savez_compressed(TARGET, **arrays)
    digest = content_sha256(arrays)
    print(f"wrote {TARGET} ({TARGET.stat().st_size} bytes), content SHA-256 {digest}")
    if digest != NMNIST_MINI_SHA256:
        print(f"note: differs from NMNIST_MINI_SHA256 = {NMNIST_MINI_SHA256}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
