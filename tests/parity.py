"""Compare two engines' metrics.jsonl records (tests/ is on sys.path)."""

from __future__ import annotations

import pytest


def assert_same_records(sim: list[dict], flw: list[dict]) -> None:
    """Every key of every round's record agrees, except the wall time (floats to 1e-6)."""
    assert len(sim) == len(flw)
    for a, b in zip(sim, flw, strict=True):
        a, b = ({k: v for k, v in r.items() if k != "wall_s"} for r in (a, b))
        _assert_same(a, b, f"round {a['round']}")


def _assert_same(a, b, where: str) -> None:
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for k in a:
            _assert_same(a[k], b[k], f"{where}: {k}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, float):
        assert b == pytest.approx(a, rel=1e-6, abs=1e-9), where
    else:
        assert a == b, where
