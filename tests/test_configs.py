"""Every config shipped in configs/ validates (run configs and attack configs)."""

from __future__ import annotations

from pathlib import Path

import pytest

from spikefed.config import load_config
from spikefed.experiments.privacy import load_attack_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("run_*.yaml")), ids=lambda p: p.name)
def test_run_configs_validate(path: Path) -> None:
    cfg = load_config(path)
    assert cfg.name and cfg.train.rounds >= 1


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("attack_*.yaml")), ids=lambda p: p.name)
def test_attack_configs_validate(path: Path) -> None:
    assert load_attack_config(path).attacks


def test_configs_folder_is_not_empty() -> None:
    assert len(list(CONFIGS.glob("*.yaml"))) >= 6
