"""Every config shipped in configs/ validates (run configs and attack configs)."""

from __future__ import annotations

from pathlib import Path

import pytest

from spikefed.config import load_config
from spikefed.data.augment import resolve_augment
from spikefed.experiment import round_lr
from spikefed.experiments.privacy import load_attack_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


RUN_CONFIGS = sorted(p for p in CONFIGS.glob("*.yaml") if not p.name.startswith("attack_"))


@pytest.mark.parametrize("path", RUN_CONFIGS, ids=lambda p: p.name)
def test_run_configs_validate(path: Path) -> None:
    cfg = load_config(path)
    assert cfg.name and cfg.train.rounds >= 1


def test_resnet20_ann_recipe_is_the_documented_one() -> None:
    """configs/cifar10_resnet20_ann.yaml: centralised ResNet-20 ANN, batch 128, SGD 0.1/0.9/5e-4,
    crop+flip, cosine schedule over 30-60 epochs (one round = one epoch)."""
    cfg = load_config(CONFIGS / "cifar10_resnet20_ann.yaml")
    t = cfg.train
    assert (cfg.data.dataset, cfg.model.name, cfg.model.spiking, cfg.model.norm) == \
        ("cifar10", "resnet20", False, "bn")
    assert cfg.algorithm.name == "centralized" and t.local_epochs == 1
    assert resolve_augment(cfg.data.augment, cfg.data.dataset) == "crop_flip"
    assert (t.batch_size, t.optimizer, t.lr, t.momentum, t.weight_decay) == \
        (128, "sgd", 0.1, 0.9, 5e-4)
    assert t.lr_schedule in ("cosine", "step") and 30 <= t.rounds <= 60
    cfg = cfg.model_copy(update={"device": "cpu"})
    rates = [round_lr(cfg, r) for r in range(1, t.rounds + 1)]
    assert max(rates) == pytest.approx(0.1) and rates[-1] < 0.01


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("attack_*.yaml")), ids=lambda p: p.name)
def test_attack_configs_validate(path: Path) -> None:
    assert load_attack_config(path).attacks


def test_configs_folder_is_not_empty() -> None:
    assert len(list(CONFIGS.glob("*.yaml"))) >= 6 and len(RUN_CONFIGS) >= 4
