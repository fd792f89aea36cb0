"""HTML building blocks shared by the run report and the comparison: page shell, tables,
markdown/CSV/image artifacts. Everything inline; nothing is fetched from the network."""

from __future__ import annotations

import csv
import html
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from spikefed.report.svg import png_data_uri

STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0 auto;
max-width:1100px;padding:1rem 1.5rem;color:#1d2430;line-height:1.4}
h1{font-size:1.6rem;margin-bottom:.2rem}h2{border-bottom:1px solid #d0d7de;padding-bottom:.2rem;
margin-top:2rem}h3{margin-bottom:.3rem}.sub{color:#57606a;margin-top:0}
table{border-collapse:collapse;margin:.5rem 0 1rem;font-size:.9rem}
th,td{border:1px solid #d0d7de;padding:.25rem .55rem;text-align:left;vertical-align:top}
th{background:#f6f8fa}td.num{text-align:right;font-variant-numeric:tabular-nums}
table.sortable th{cursor:pointer;user-select:none}table.sortable th:after{content:" ⇅";color:#999}
tr.best td{background:#dafbe1}
.figs{display:flex;flex-wrap:wrap;gap:1rem}.fig{margin:0;flex:1 1 480px;max-width:100%}
.fig svg,.fig img{max-width:100%;height:auto;display:block}
figcaption{font-size:.85rem;color:#57606a}
pre{background:#f6f8fa;padding:.6rem;overflow:auto;font-size:.8rem;max-height:30rem}
.warn{background:#fff8c5;border:1px solid #d4a72c;padding:.4rem .7rem}
.answer{background:#ddf4ff;border:1px solid #54aeff;padding:.5rem .8rem}
code{background:#f6f8fa;padding:0 .2rem}.scroll{overflow-x:auto;max-width:100%}
"""

# Click a header of a table.sortable to sort by that column (numbers numerically).
SORT_SCRIPT = """
document.querySelectorAll("table.sortable").forEach(function (table) {
  table.querySelectorAll("th").forEach(function (th, col) {
    th.addEventListener("click", function () {
      var body = table.tBodies[0], rows = Array.from(body.rows);
      var asc = th.dataset.order !== "asc"; th.dataset.order = asc ? "asc" : "desc";
      function key(row) {
        var cell = row.cells[col], v = cell.dataset.value !== undefined ? cell.dataset.value
          : cell.textContent.trim(); var n = parseFloat(v.replace(/,/g, ""));
        return isNaN(n) ? v : n;
      }
      rows.sort(function (a, b) {
        var x = key(a), y = key(b), c = (typeof x === typeof y) ? (x < y ? -1 : x > y ? 1 : 0)
          : (typeof x === "number" ? -1 : 1); return asc ? c : -c;
      });
      rows.forEach(function (row) { body.appendChild(row); });
    });
  });
});
"""

MAX_CSV_ROWS = 200
MAX_IMAGE_BYTES = 8 * 1024 * 1024


def esc(value: Any) -> str:
    """HTML-escaped text of a value."""
    return html.escape(str(value), quote=True)


def fmt(value: Any, digits: int = 4) -> str:
    """Readable text of a metric value (integers with thousands separators)."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        if value != 0 and (abs(value) >= 1e6 or abs(value) < 10 ** -digits):
            return f"{value:.{digits}g}"
        return f"{value:.{digits}f}"
    return str(value)


def _cell(value: Any) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f'<td class="num" data-value="{esc(value)}">{esc(fmt(value))}</td>'
    return f"<td>{esc(fmt(value))}</td>"


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], sortable: bool = False,
          row_classes: Sequence[str] | None = None, table_id: str | None = None) -> str:
    """An HTML table; numbers right-aligned with their exact value in ``data-value``."""
    cls = ' class="sortable"' if sortable else ""
    ident = f' id="{esc(table_id)}"' if table_id else ""
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = []
    for i, row in enumerate(rows):
        rc = f' class="{esc(row_classes[i])}"' if row_classes and row_classes[i] else ""
        body.append(f"<tr{rc}>" + "".join(_cell(v) for v in row) + "</tr>")
    return (f"<table{cls}{ident}><thead><tr>{head}</tr></thead><tbody>{''.join(body)}"
            "</tbody></table>")


def figure(svg_or_img: str, caption: str, name: str) -> str:
    """A ``<figure>`` holding inline SVG (or an ``<img>``) and a caption."""
    return (f'<figure class="fig" data-figure="{esc(name)}">{svg_or_img}'
            f"<figcaption>{esc(caption)}</figcaption></figure>")


def image(path: Path, alt: str) -> str:
    """An ``<img>`` with the PNG/SVG file inlined as a data URI."""
    if path.suffix.lower() == ".svg":
        import base64

        uri = "data:image/svg+xml;base64," + base64.b64encode(path.read_bytes()).decode("ascii")
    else:
        uri = png_data_uri(path)
    return f'<img src="{uri}" alt="{esc(alt)}">'


def page(title: str, body: str) -> str:
    """A whole self-contained HTML document."""
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{esc(title)}</title><style>{STYLE}</style></head><body>{body}"
            f"<script>{SORT_SCRIPT}</script></body></html>\n")


# ----- artifacts written by reproductions, attacks and conversions ---------------------------
_TABLE_SEP = re.compile(r"^\|?\s*:?-{2,}:?\s*(\|\s*:?-{2,}:?\s*)*\|?\s*$")


def _split_row(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def markdown_html(text: str) -> str:
    """The subset of markdown our result files use: headings, pipe tables, paragraphs,
    bullet lists and fenced code; everything else is shown as text."""
    out: list[str] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("```"):
            j = i + 1
            while j < len(lines) and not lines[j].startswith("```"):
                j += 1
            out.append(f"<pre>{esc(chr(10).join(lines[i + 1:j]))}</pre>")
            i = j + 1
            continue
        heading = re.match(r"^(#{1,6})\s+(.*)", line)
        if heading:
            level = min(6, len(heading.group(1)) + 2)
            out.append(f"<h{level}>{esc(heading.group(2))}</h{level}>")
        elif line.lstrip().startswith("|") and i + 1 < len(lines) and _TABLE_SEP.match(
                lines[i + 1].strip()):
            headers = _split_row(line)
            rows, i = [], i + 2
            while i < len(lines) and lines[i].lstrip().startswith("|"):
                rows.append(_split_row(lines[i]))
                i += 1
            out.append(f'<div class="scroll">{table(headers, rows, sortable=True)}</div>')
            continue
        elif line.lstrip().startswith(("- ", "* ")):
            items = []
            while i < len(lines) and lines[i].lstrip().startswith(("- ", "* ")):
                items.append(f"<li>{esc(lines[i].lstrip()[2:])}</li>")
                i += 1
            out.append(f"<ul>{''.join(items)}</ul>")
            continue
        elif line.strip():
            out.append(f"<p>{esc(line)}</p>")
        i += 1
    return "\n".join(out)


def csv_html(path: Path) -> str:
    """A CSV file as a sortable table (first ``MAX_CSV_ROWS`` rows; cells as written)."""
    with path.open(newline="") as fh:
        rows = list(csv.reader(fh))
    if not rows:
        return "<p>(empty)</p>"
    headers, body = rows[0], rows[1:]
    note = ""
    if len(body) > MAX_CSV_ROWS:
        note = f"<p>showing the first {MAX_CSV_ROWS} of {len(body)} rows</p>"
        body = body[:MAX_CSV_ROWS]
    return f'<div class="scroll">{table(headers, body, sortable=True)}</div>{note}'


SKIP_FILES = {"metrics.jsonl", "summary.json", "config.yaml", "report.html", "compare.html",
              "compare.md", "curves.png", "partition.png"}
SKIP_DIRS = {"checkpoint", "tensorboard", "mlruns", "__pycache__"}


def artifact_sections(root: Path, max_depth: int = 3) -> str:
    """Tables (``*.md``, ``*.csv``) and figures (``*.png``, ``*.svg``) found under ``root``,
    one subsection per folder; the run's own files are skipped."""
    sections = []
    folders = [root] + sorted(p for p in root.rglob("*") if p.is_dir()
                              and len(p.relative_to(root).parts) <= max_depth
                              and not SKIP_DIRS & set(p.relative_to(root).parts))
    for folder in folders:
        files = sorted(f for f in folder.iterdir() if f.is_file() and f.name not in SKIP_FILES
                       and not f.name.startswith("."))
        texts, figs, csvs = [], [], []  # shown in this order: summaries, figures, raw tables
        for f in files:
            rel = f.relative_to(root).as_posix()
            suffix = f.suffix.lower()
            if suffix == ".md":
                texts.append(f"<h4>{esc(rel)}</h4>{markdown_html(f.read_text(errors='replace'))}")
            elif suffix == ".csv":
                csvs.append(f"<h4>{esc(rel)}</h4>{csv_html(f)}")
            elif suffix in (".png", ".svg") and f.stat().st_size <= MAX_IMAGE_BYTES:
                figs.append(figure(image(f, rel), rel, rel))
        parts = texts + ([f'<div class="figs">{"".join(figs)}</div>'] if figs else []) + csvs
        if parts:
            title = folder.relative_to(root).as_posix() if folder != root else root.name
            sections.append(f"<h3>{esc(title)}</h3>" + "".join(parts))
    return "\n".join(sections)
