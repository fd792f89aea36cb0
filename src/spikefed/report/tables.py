"""CSV tables of result rows (one writer for the experiments' `results.csv` files)."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def write_rows_csv(rows: Sequence[dict[str, Any]], path: Path, fields: Sequence[str]) -> Path:
    """Write ``rows`` to ``path`` with columns ``fields`` (missing or None values empty,
    other keys ignored); return ``path``."""
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(fields), extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if row.get(k) is None else row[k]) for k in fields})
    return path
