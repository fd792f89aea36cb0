"""Read a run directory (complete, stopped or crashed) and find run directories."""

from __future__ import annotations

import glob
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from spikefed.report.metrics import MetricsError, read_metrics
from spikefed.rounds.summary import summarize

METRICS_FILE = "metrics.jsonl"


@dataclass
class RunData:
    """What a run directory holds: resolved config, per-round records and the summary."""

    path: Path
    config: dict[str, Any] = field(default_factory=dict)
    records: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    summary_from_file: bool = False

    @property
    def name(self) -> str:
        """The config's name, else the folder's name."""
        return str(self.config.get("name") or self.path.name)

    @property
    def planned_rounds(self) -> int | None:
        """``train.rounds`` of the config, if known."""
        rounds = self.config.get("train", {}).get("rounds")
        return int(rounds) if isinstance(rounds, int) else None

    @property
    def status(self) -> str:
        """"complete", or how far a stopped/crashed run got."""
        done = self.records[-1]["round"] if self.records else 0
        planned = self.planned_rounds
        if planned is None:
            return f"{done} round(s) recorded"
        if done >= planned:
            return "complete" if self.summary_from_file else (
                f"all {planned} rounds recorded, no summary.json")
        return f"stopped after {done} of {planned} rounds"


def _read_metrics_lenient(path: Path) -> list[dict[str, Any]]:
    """Records of a metrics file; a torn last line (a crash mid-write) is dropped."""
    try:
        return read_metrics(path)
    except MetricsError:
        records = []
        for line in path.read_text().splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                break
        return records


def load_run(path: str | Path) -> RunData:
    """Load ``path``; missing pieces are left empty and a missing summary is recomputed."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"run directory {path} does not exist")
    run = RunData(path)
    cfg_file = path / "config.yaml"
    if cfg_file.is_file():
        try:
            loaded = yaml.safe_load(cfg_file.read_text())
        except yaml.YAMLError as err:
            raise ValueError(f"{cfg_file} is not valid YAML ({err}); restore the run's "
                             "config.yaml or delete it to report without the config") from None
        run.config = loaded if isinstance(loaded, dict) else {}
    metrics = path / METRICS_FILE
    if metrics.is_file():
        run.records = _read_metrics_lenient(metrics)
    summary_file = path / "summary.json"
    if summary_file.is_file():
        try:
            run.summary = json.loads(summary_file.read_text())
        except json.JSONDecodeError:  # torn by a crash: recomputed from the metrics below
            run.summary = {}
        run.summary_from_file = True
        last = run.records[-1]["round"] if run.records else 0
        if run.summary.get("rounds") != last:  # a resumed run that stopped again: stale summary
            run.summary, run.summary_from_file = {}, False
    if not run.summary and run.records:
        run.summary = summarize(run.records)
    return run


def find_run_dirs(patterns: list[str | Path]) -> list[Path]:
    """Run directories (folders holding ``metrics.jsonl``) named by paths, globs or parents.

    A folder that is not itself a run is searched recursively (a sweep's parent folder).
    Order: as given, then sorted within each pattern; duplicates dropped.
    """
    found: list[Path] = []
    for pattern in patterns:
        text = str(pattern)
        matches = sorted(Path(p) for p in glob.glob(text)) if glob.has_magic(text) else [
            Path(text)]
        if not matches:
            raise FileNotFoundError(f"no path matches {text!r}")
        for match in matches:
            if (match / METRICS_FILE).is_file():
                candidates = [match]
            elif match.is_dir():
                candidates = sorted(p.parent for p in match.rglob(METRICS_FILE))
            elif glob.has_magic(text):  # a glob may also match files beside the runs
                candidates = []
            else:
                raise FileNotFoundError(f"{match} is not a directory")
            for c in candidates:
                if c not in found:
                    found.append(c)
    if not found:
        raise FileNotFoundError(f"no run directory (a folder holding {METRICS_FILE}) under "
                                f"{[str(p) for p in patterns]}")
    return found


def flatten_config(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"train": {"lr": 0.1}}`` -> ``{"train.lr": 0.1}`` (lists and scalars are leaves)."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten_config(value, name + "."))
        else:
            flat[name] = value
    return flat
