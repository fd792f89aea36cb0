"""What the Flower engine runs: synchronous rounds only (no `flwr` import, so the CLI can
check a config before Flower is installed)."""

from __future__ import annotations

from spikefed.config import ExperimentConfig


def require_synchronous(cfg: ExperimentConfig) -> ExperimentConfig:
    """`cfg` unchanged, or a ValueError when it asks for asynchronous FL, which only the
    in-process engine runs (docs/async.md)."""
    if cfg.asynchronous is not None:
        raise ValueError(f"asynchronous.mode={cfg.asynchronous.mode!r}: asynchronous FL runs "
                         "only on the in-process engine (`spikefed run`); the Flower engine "
                         "runs synchronous rounds: remove the asynchronous section to run on "
                         "Flower")
    return cfg
