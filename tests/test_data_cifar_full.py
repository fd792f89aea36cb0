"""Full CIFAR-10 training split from the real JPEG zip (slow: ~25 s to decode 50,000 JPEGs)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch

from spikefed.data import load_dataset


@pytest.mark.slow
def test_cifar10_zip_train_split_and_cache(shared_data: Path, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPIKEFED_CACHE", str(tmp_path))
    start = time.perf_counter()
    train = load_dataset("cifar10", "train", shared_data)
    first = time.perf_counter() - start
    assert train.x.shape == (50000, 3, 32, 32)
    assert train.y.bincount().tolist() == [5000] * 10
    start = time.perf_counter()
    again = load_dataset("cifar10", "train", shared_data)
    assert time.perf_counter() - start < first / 3  # served from the cache, not re-decoded
    assert torch.equal(again.y, train.y) and torch.equal(again.x[::997], train.x[::997])
