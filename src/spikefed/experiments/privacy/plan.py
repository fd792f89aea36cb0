"""Plan of the privacy benchmark: which models each domain attacks and which (model, defense)
pairs run, so the run loop and the run count agree."""

from __future__ import annotations

from spikefed.experiments.privacy.config import AttackConfig


def model_kinds(cfg: AttackConfig, domain: str) -> list[str]:
    """The model kinds attacked on ``domain`` (raster and spike codings: the SNN only)."""
    return list(cfg.model.kinds) if domain in ("image", "events") else ["snn"]


def runs_defense(domain: str, kind: str, defense: str) -> bool:
    """Whether ``defense`` applies to a ``kind`` model on ``domain`` (SNFL converts the ANN of
    the image domain only)."""
    return defense != "snfl" or (kind == "ann" and domain == "image")


def count_runs(cfg: AttackConfig) -> int:
    """Number of attack runs the benchmark will do (for progress bars)."""
    pairs = sum(runs_defense(dom, k, d.kind) for dom in cfg.domain.kinds
                for k in model_kinds(cfg, dom) for d in cfg.defenses)
    return len(cfg.seeds) * pairs * cfg.data.samples * len(cfg.attacks)
