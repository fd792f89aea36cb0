"""`metrics.jsonl`: one JSON object per round, appended and flushed as the run goes.

JSON has no NaN or infinity: a non-finite number is written as `null` and its key is listed in
the record's `nonfinite` field (absent when every number was finite), so a summary can tell a
diverged value from a missing one.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from spikefed.rounds.files import atomic_write_bytes


class MetricsError(ValueError):
    """A metrics file that cannot be read (phrased for the user, naming the file and line)."""


def _is_nonfinite(value: Any) -> bool:
    return isinstance(value, float) and not math.isfinite(value)


def _clean(value: Any) -> Any:
    return None if _is_nonfinite(value) else value


def _parse(path: Path, text: str) -> list[dict[str, Any]]:
    lines = text.splitlines()
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise MetricsError(
                f"{path} line {number} is damaged ({exc.msg}); the file no longer matches the "
                "run: restore it from a backup, or start the run again with --overwrite") from None
        if not isinstance(record, dict):
            raise MetricsError(f"{path} line {number} is not a JSON object; restore the file "
                               "from a backup, or start the run again with --overwrite")
        records.append(record)
    return records


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """All records of a metrics file (empty list if it does not exist).

    Raises `MetricsError` naming the file and line when a line is not valid JSON.
    """
    path = Path(path)
    if not path.exists():
        return []
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise MetricsError(f"cannot read {path} ({exc}); restore it from a backup, or start "
                           "the run again with --overwrite") from None
    return _parse(path, text)


class MetricsLog:
    """Append-only JSONL log; `truncate_after(r)` drops rounds a resumed run will redo."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def append(self, record: dict[str, Any]) -> None:
        """Append one record; on a write error the file is cut back to its previous length."""
        nonfinite = [k for k, v in record.items() if _is_nonfinite(v)]
        line = {k: _clean(v) for k, v in record.items()}
        if nonfinite:
            line["nonfinite"] = nonfinite
        data = (json.dumps(line) + "\n").encode()
        with self.path.open("ab") as fh:
            size = fh.tell()
            try:
                fh.write(data)
                fh.flush()
            except OSError:
                fh.truncate(size)
                raise

    def truncate_after(self, last_round: int) -> list[dict[str, Any]]:
        """Keep only records with round <= last_round (rewritten atomically); return them.

        A last line without its newline is an append a crash cut short: it is dropped.
        Damaged complete lines raise `MetricsError`.
        """
        if not self.path.exists():
            return []
        try:
            text = self.path.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise MetricsError(f"cannot read {self.path} ({exc}); restore it from a backup, or "
                               "start the run again with --overwrite") from None
        if text and not text.endswith("\n"):
            text = text[: text.rfind("\n") + 1]
        kept = [r for r in _parse(self.path, text) if r.get("round", 0) <= last_round]
        atomic_write_bytes(self.path, "".join(json.dumps(r) + "\n" for r in kept).encode())
        return kept

    def records(self) -> list[dict[str, Any]]:
        return read_metrics(self.path)
