"""Tables of result rows: the one CSV and markdown writer of every experiment, `spikefed convert`
and `spikefed attack`.

Rows are dicts. A CSV writes missing or None values as empty cells; a markdown table formats
each cell with ``fmt`` (``str`` by default) and escapes ``|`` inside cells.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

#: Column alignment letters of :func:`markdown_table`: markdown's default, right, centre.
_RULES = {"l": "---", "r": "---:", "c": ":---:"}


def columns_of(rows: Iterable[dict[str, Any]], skip: Iterable[str] = ()) -> list[str]:
    """Every key of ``rows`` in first-seen order, without those in ``skip``."""
    skipped = set(skip)
    return [k for k in dict.fromkeys(k for r in rows for k in r) if k not in skipped]


def write_rows_csv(rows: Sequence[dict[str, Any]], path: str | Path,
                   fields: Sequence[str] | None = None) -> Path:
    """Write ``rows`` to ``path`` with columns ``fields`` (default: every key, first-seen order;
    missing or None values empty, other keys ignored); return ``path``."""
    path = Path(path)
    fields = list(fields) if fields is not None else columns_of(rows)
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if row.get(k) is None else row[k]) for k in fields})
    return path


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]], align: str = "",
                   fmt: Callable[[Any], str] = str) -> str:
    """A markdown table (no trailing newline) of ``rows`` (sequences of cells) under ``header``.

    ``align``: one letter per column, ``l`` (markdown's default), ``r`` or ``c``; columns past
    its end get ``l``. Every cell goes through ``fmt``.
    """
    align = align.ljust(len(header), "l")
    if len(align) != len(header) or set(align) - set(_RULES):
        raise ValueError(f"align={align!r} must have one of l, r, c per column "
                         f"({len(header)} columns)")

    def line(cells: Iterable[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    lines = [line(header), "|" + "".join(_RULES[a] + "|" for a in align)]
    lines += [line(fmt(c) for c in row) for row in rows]
    return "\n".join(lines)


def rows_markdown(rows: Iterable[dict[str, Any]], columns: Sequence[str], align: str = "",
                  fmt: Callable[[Any], str] = str) -> str:
    """:func:`markdown_table` of dict rows, one column per key in ``columns`` (missing: None)."""
    return markdown_table(columns, ([r.get(c) for c in columns] for r in rows), align, fmt)

