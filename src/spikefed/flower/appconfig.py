"""Which experiment a Flower app runs, and which client a SuperNode is.

The run config (`[tool.flwr.app.config]` in the app's pyproject, or `flwr run --run-config`)
names a spikefed YAML config (`config`, relative to the app package) and optional overrides
(`set`, `;`-separated `key=value`). Each SuperNode's `--node-config` says which client it is
(`partition-id`, `num-partitions`) and, optionally, where its data lives (`data-root`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

from spikefed.config import ExperimentConfig, load_config, validate_config
from spikefed.experiment import Federation, build_federation
from spikefed.flower.records import NUM_PARTITIONS, PARTITION_ID
from spikefed.flower.support import require_flower_support


def experiment_config(run_config: Mapping[str, Any], app_dir: Path | None,
                      node_config: Mapping[str, Any] | None = None) -> ExperimentConfig:
    """The spikefed config of a run: `config` file + `set` overrides (+ a node's data root)."""
    path = run_config.get("config")
    if path:
        path = Path(str(path))
        if not path.is_absolute() and app_dir is not None:
            path = app_dir / path
    overrides = [s.strip() for s in str(run_config.get("set", "")).split(";") if s.strip()]
    if node_config and node_config.get("data-root"):
        overrides.append(f"data.root={node_config['data-root']}")
    return require_flower_support(load_config(path, overrides))


@lru_cache(maxsize=4)
def _federation(cfg_json: str) -> Federation:
    return build_federation(validate_config(json.loads(cfg_json), "flower run config"))


def cached_federation(cfg: ExperimentConfig) -> Federation:
    """`build_federation(cfg)`, built once per process (ClientApps are called once a round)."""
    return _federation(json.dumps(cfg.model_dump(mode="json"), sort_keys=True))


def client_count(cfg: ExperimentConfig) -> int:
    """How many clients (SuperNodes) an experiment has, without loading any data."""
    return 1 if cfg.algorithm.name == "centralized" else cfg.data.num_clients


def partition_of(node_config: Mapping[str, Any], num_clients: int) -> int:
    """The client (partition) a node plays, checked against the experiment's client count."""
    if PARTITION_ID not in node_config:
        raise ValueError(f"this SuperNode has no '{PARTITION_ID}' in its node config; start it "
                         f"with --node-config 'partition-id=K num-partitions={num_clients}'")
    pid = node_config[PARTITION_ID]
    if isinstance(pid, bool) or not isinstance(pid, int) or not 0 <= pid < num_clients:
        raise ValueError(f"node config {PARTITION_ID}={pid!r} must be an integer in "
                         f"[0, {num_clients}) (data.num_clients={num_clients})")
    parts = node_config.get(NUM_PARTITIONS, num_clients)
    if parts != num_clients:
        raise ValueError(f"node config {NUM_PARTITIONS}={parts!r} but the experiment has "
                         f"data.num_clients={num_clients}; start one SuperNode per client and "
                         "make them agree")
    return pid
