"""`metrics.jsonl`: one JSON object per round, appended and flushed as the run goes."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """All records of a metrics file (empty list if it does not exist)."""
    path = Path(path)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class MetricsLog:
    """Append-only JSONL log; `truncate_after(r)` drops rounds a resumed run will redo."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def append(self, record: dict[str, Any]) -> None:
        with self.path.open("a") as fh:
            fh.write(json.dumps({k: _clean(v) for k, v in record.items()}) + "\n")
            fh.flush()

    def truncate_after(self, last_round: int) -> None:
        """Keep only records with round <= last_round (rewritten atomically)."""
        kept = [r for r in read_metrics(self.path) if r.get("round", 0) <= last_round]
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in kept))
        tmp.replace(self.path)

    def records(self) -> list[dict[str, Any]]:
        return read_metrics(self.path)
