"""Checks a resumed run must pass before it continues.

The checkpoint must have the expected structure and come from the same experiment (the config
minus `device` and `data.root`, which say where the run executes, not what it computes), and
`metrics.jsonl` must hold every round the checkpoint has.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from spikefed.config import ConfigError, validate_config
from spikefed.sim.checkpoint import CheckpointError

# (section, key) pairs that may change between a run and its resumption.
RUN_PLACE_KEYS = (("device",), ("data", "root"))
CHECKPOINT_KEYS = {"round": int, "server_state": dict, "broadcast": dict, "client_states": dict,
                   "config": dict}


def experiment_part(config: dict[str, Any]) -> dict[str, Any]:
    """A dumped config without the keys that only say where the run executes."""
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in config.items()}
    for path in RUN_PLACE_KEYS:
        node = out
        for part in path[:-1]:
            node = node.get(part, {})
        node.pop(path[-1], None)
    return out


def with_current_defaults(config: dict[str, Any]) -> dict[str, Any]:
    """`config` as this spikefed dumps it: sections and keys added since the run was written
    take their defaults (which reproduce the old behaviour), so they are not differences.
    A config this spikefed cannot read is returned as it is."""
    try:
        return validate_config(config, "checkpoint config").model_dump(mode="json")
    except ConfigError:
        return config


def _differences(old: Any, new: Any, prefix: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        diffs = []
        for key in sorted(set(old) | set(new), key=str):
            diffs += _differences(old.get(key), new.get(key), f"{prefix}{key}.")
        return diffs
    return [] if old == new else [f"{prefix.rstrip('.')}: {old!r} -> {new!r}"]


def check_checkpoint(ckpt: dict[str, Any], config: dict[str, Any], path: Path) -> None:
    """Raise CheckpointError when `ckpt` is malformed or from a different experiment."""
    for key, kind in CHECKPOINT_KEYS.items():
        if not isinstance(ckpt.get(key), kind):
            raise CheckpointError(f"checkpoint {path} lacks a valid '{key}' entry; it was not "
                                  "written by this spikefed: restart the run with --overwrite")
    diffs = _differences(experiment_part(with_current_defaults(ckpt["config"])),
                         experiment_part(config))
    if diffs:
        raise CheckpointError(
            f"the checkpoint {path} was written with a different config ({'; '.join(diffs[:5])}); "
            "resume with the run's own config.yaml (only --device and --data-root may change)")


def check_metrics_complete(records: list[dict[str, Any]], last_round: int, path: Path) -> None:
    """Raise CheckpointError unless `records` hold rounds 1..last_round, each once, in order."""
    rounds = [r.get("round") for r in records]
    if rounds != list(range(1, last_round + 1)):
        missing = sorted(set(range(1, last_round + 1)) - set(rounds))
        what = (f"is missing round(s) {_span(missing)}" if missing
                else f"holds rounds {rounds[:10]}{'...' if len(rounds) > 10 else ''}")
        raise CheckpointError(
            f"{path} {what} but the checkpoint is at round {last_round}; resuming would leave a "
            "gap in the run's record: restore metrics.jsonl from a backup, or start the run "
            "again with --overwrite")


def _span(rounds: list[int]) -> str:
    return (f"{rounds[0]}-{rounds[-1]}" if len(rounds) > 1 and rounds[-1] - rounds[0] ==
            len(rounds) - 1 else ", ".join(map(str, rounds[:10])))
