"""Shared test fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

SHARED_DATA = Path(os.environ.get("SPIKEFED_SHARED_DATA",
                                  Path(__file__).resolve().parents[2] / "shared" / "data"))


@pytest.fixture(autouse=True)
def _deterministic(monkeypatch) -> None:
    torch.manual_seed(0)
    torch.set_num_threads(1)
    monkeypatch.setenv("FLWR_TELEMETRY_ENABLED", "0")  # Flower tests never phone home


@pytest.fixture
def shared_data() -> Path:
    """Path to ../shared/data, or skip the test when it is absent (fresh clone without it)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data set folder {SHARED_DATA} is absent "
                    "(it sits beside the repository in CI)")
    return SHARED_DATA
