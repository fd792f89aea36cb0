"""What the Flower engine runs: synchronous or asynchronous rounds on fixed client data (no
`flwr` import, so the CLI can check a config before Flower is installed)."""

from __future__ import annotations

from spikefed.config import ConfigError, ExperimentConfig


def require_flower_support(cfg: ExperimentConfig) -> ExperimentConfig:
    """`cfg` unchanged, or a `ConfigError` naming the section only the in-process engine runs:
    `drift:` (docs/edge.md). (`asynchronous:` runs on both: docs/async.md.)"""
    if cfg.drift is not None:
        raise ConfigError("drift: (continual learning under a task schedule) runs only in the "
                          "in-process engine, which gives clients each round's task data; run "
                          "it with `spikefed run`, or remove the drift section for Flower")
    return cfg
