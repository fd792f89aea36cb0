"""``spikefed compare``: several runs on one page (``compare.html``) and in ``compare.md``.

Overlaid accuracy curves against round, cumulative bytes and cumulative wall time (and
virtual time when the records carry ``virtual_time``), a table of final/best accuracy, bytes,
energy and time per run with the config keys that differ between runs as columns, and a
sentence naming the best run and what set it apart.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from spikefed.report.page import esc, figure, fmt, page, table
from spikefed.report.runs import RunData, find_run_dirs, flatten_config, load_run
from spikefed.report.svg import figure_svg, new_figure
from spikefed.report.tables import markdown_table

IGNORED_KEYS = {"name"}  # differs by construction; the run label already shows it


def differing_keys(runs: Sequence[RunData]) -> list[str]:
    """Flattened config keys whose values are not the same in every run (sorted)."""
    flats = [flatten_config(r.config) for r in runs]
    keys = sorted(set().union(*flats) - IGNORED_KEYS) if flats else []
    return [k for k in keys if len({repr(f.get(k)) for f in flats}) > 1]


def run_labels(runs: Sequence[RunData]) -> list[str]:
    """Short unique labels: folder names, or paths relative to the common parent."""
    names = [r.path.name for r in runs]
    if len(set(names)) == len(names):
        return names
    parts = [r.path.resolve().parts for r in runs]
    shared = 0
    while all(len(p) > shared + 1 for p in parts) and len({p[shared] for p in parts}) == 1:
        shared += 1
    return ["/".join(p[shared:]) for p in parts]


def _cumulative(records: list[dict[str, Any]], key: str, scale: float = 1.0) -> list[float]:
    total, out = 0.0, []
    for r in records:
        total += (r.get(key) or 0) * scale
        out.append(total)
    return out


def _acc_key(runs: Sequence[RunData]) -> str:
    """Server accuracy when any run has it, else client mean accuracy (SOLO-style runs)."""
    if any(r.get("server_acc") is not None for run in runs for r in run.records):
        return "server_acc"
    return "client_acc_mean"


def _curve(run: RunData, xs: list[float], key: str) -> tuple[list[float], list[float]]:
    pts = [(x, r[key]) for x, r in zip(xs, run.records, strict=True) if r.get(key) is not None]
    return [p[0] for p in pts], [p[1] for p in pts]


def overlay_figures(runs: Sequence[RunData], labels: Sequence[str]) -> list[tuple[str, str, str]]:
    """(name, svg, caption) of the overlaid accuracy curves."""
    key = _acc_key(runs)
    what = "server" if key == "server_acc" else "client mean"
    axes = [("round", "round", lambda run: [float(r["round"]) for r in run.records], False),
            ("bytes", "cumulative MB (up + down)", lambda run: [
                a + b for a, b in zip(_cumulative(run.records, "bytes_up", 1e-6),
                                      _cumulative(run.records, "bytes_down", 1e-6),
                                      strict=True)], True),
            ("wall", "cumulative wall time (s)",
             lambda run: _cumulative(run.records, "wall_s"), True)]
    if any(r.get("virtual_time") is not None for run in runs for r in run.records):
        axes.append(("virtual", "virtual time (s)", lambda run: [
            float(r.get("virtual_time") or 0.0) for r in run.records], True))
    out = []
    for name, xlabel, xs_of, continuous in axes:
        fig, ax = new_figure()
        if continuous:
            ax.xaxis.get_major_locator().set_params(integer=False)
        for i, (run, label) in enumerate(zip(runs, labels, strict=True)):
            xs, ys = _curve(run, xs_of(run), key)
            if xs:
                ax.plot(xs, ys, marker="o", ms=3, label=label, color=f"C{i % 10}")
        ax.set(xlabel=xlabel, ylabel=f"{what} test accuracy", title=f"Accuracy vs {xlabel}")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize="small")
        out.append((name, figure_svg(fig), f"{what} test accuracy against {xlabel}"))
    return out


def _best(run: RunData, key: str) -> tuple[float | None, int | None]:
    pts = [(r[key], r["round"]) for r in run.records if r.get(key) is not None]
    if not pts:
        return None, None
    value, rnd = max(pts, key=lambda p: (p[0], -p[1]))
    return value, rnd


def _final(run: RunData, key: str) -> float | None:
    vals = [r[key] for r in run.records if r.get(key) is not None]
    return vals[-1] if vals else None


def _reach(run: RunData, key: str, target: float) -> tuple[int | None, float | None]:
    """First round at which accuracy >= target and the cumulative MB spent by then."""
    up, down = _cumulative(run.records, "bytes_up", 1e-6), _cumulative(run.records,
                                                                      "bytes_down", 1e-6)
    for i, r in enumerate(run.records):
        if r.get(key) is not None and r[key] >= target:
            return r["round"], up[i] + down[i]
    return None, None


COLUMNS = ("run", "status", "final acc", "best acc", "best round", "rounds to target",
           "MB to target", "total MB", "energy/sample (µJ)", "wall s")


def comparison_rows(runs: Sequence[RunData], labels: Sequence[str]
                    ) -> tuple[list[str], list[list[Any]], int | None, float | None, list[str]]:
    """(headers, rows, index of the best run, target accuracy, differing keys)."""
    key = _acc_key(runs)
    finals = [_final(run, key) for run in runs]
    known = [f for f in finals if f is not None]
    target = min(known) if known else None
    diff = differing_keys(runs)
    rows = []
    for run, label, final in zip(runs, labels, finals, strict=True):
        best, best_round = _best(run, key)
        reach_round, reach_mb = _reach(run, key, target) if target is not None else (None, None)
        total_mb = sum((r.get("bytes_up") or 0) + (r.get("bytes_down") or 0)
                       for r in run.records) / 1e6
        energy = run.summary.get("energy_per_sample_pj")
        flat = flatten_config(run.config)
        rows.append([label, run.status, final, best, best_round, reach_round, reach_mb, total_mb,
                     energy / 1e6 if energy is not None else None,
                     run.summary.get("wall_s")] + [_value(flat.get(k)) for k in diff])
    best_idx = max((i for i, f in enumerate(finals) if f is not None),
                   key=lambda i: finals[i], default=None)
    return list(COLUMNS) + diff, rows, best_idx, target, diff


def _value(value: Any) -> str | None:
    """A config value as written in YAML (``0.1`` stays ``0.1``)."""
    return None if value is None else str(value)


def verdict(runs: Sequence[RunData], labels: Sequence[str], rows: list[list[Any]],
            best: int | None, target: float | None, diff: list[str]) -> str:
    """One paragraph answering "which run was best and what set it apart" (plain text)."""
    if best is None:
        return "No run has an evaluated round yet."
    key = "server" if _acc_key(runs) == "server_acc" else "client mean"
    b = rows[best]
    text = (f"Best: {labels[best]} with final {key} accuracy {fmt(b[2])} "
            f"(best {fmt(b[3])} at round {b[4]}), {fmt(b[7], 1)} MB exchanged, "
            f"{fmt(b[9], 1)} s wall time.")
    others = [i for i in range(len(runs)) if i != best and rows[i][2] is not None]
    if others:
        second = max(others, key=lambda i: rows[i][2])
        s = rows[second]
        text += (f" Runner-up: {labels[second]} at {fmt(s[2])} "
                 f"({fmt(b[2] - s[2], 4)} lower).")
        base = len(COLUMNS)
        changed = [f"{k}={fmt(b[base + j])} (runner-up {fmt(s[base + j])})"
                   for j, k in enumerate(diff) if repr(b[base + j]) != repr(s[base + j])]
        if changed:
            text += " What sets the best run apart from the runner-up: " + "; ".join(
                changed) + "."
    if target is not None and len(runs) > 1:
        reached = [(labels[i], rows[i][5], rows[i][6], rows[i][2]) for i in range(len(runs))
                   if rows[i][5] is not None]
        fastest = min(reached, key=lambda t: (t[2], t[1], -t[3]))
        text += (f" Cheapest to reach {fmt(target)} (the lowest final accuracy of all runs): "
                 f"{fastest[0]} at round {fastest[1]} after {fmt(fastest[2], 1)} MB.")
    unfinished = [f"{label} ({run.status})" for run, label in zip(runs, labels, strict=True)
                  if run.status != "complete"]
    if unfinished:
        text += " Not finished, compare with care: " + ", ".join(unfinished) + "."
    return text


def markdown(headers: Sequence[str], rows: Sequence[Sequence[Any]], answer: str,
             paths: Sequence[Path]) -> str:
    """compare.md: the verdict and the table."""
    lines = ["# spikefed compare", "", answer, "", markdown_table(headers, rows, fmt=fmt),
             "", "Runs: " + ", ".join(f"`{p}`" for p in paths), ""]
    return "\n".join(lines)


def write_comparison(patterns: Sequence[str | Path], out: str | Path) -> tuple[Path, Path]:
    """Compare the run directories named by ``patterns``; write compare.html and compare.md
    into ``out`` and return their paths."""
    paths = find_run_dirs(list(patterns))
    runs = [load_run(p) for p in paths]
    labels = run_labels(runs)
    headers, rows, best, target, diff = comparison_rows(runs, labels)
    answer = verdict(runs, labels, rows, best, target, diff)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    md = out / "compare.md"
    md.write_text(markdown(headers, rows, answer, paths))
    generated = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    figs = "".join(figure(svg, caption, name) for name, svg, caption in
                   overlay_figures(runs, labels))
    classes = ["best" if i == best else "" for i in range(len(rows))]
    body = (f"<h1>Comparison of {len(runs)} runs</h1><p class=\"sub\">generated {generated}</p>"
            f'<p class="answer" id="verdict">{esc(answer)}</p>'
            "<h2>Runs</h2><p>Accuracy columns use the "
            f"{'server' if _acc_key(runs) == 'server_acc' else 'client mean'} test accuracy; "
            "“target” is the lowest final accuracy among the runs. Columns after "
            "“wall s” are the config keys that differ between runs. Click a header to sort; "
            "the best run is highlighted.</p>"
            + table(headers, rows, sortable=True, row_classes=classes, table_id="runs")
            + f'<h2>Curves</h2><div class="figs">{figs}</div>'
            + "<h2>Run directories</h2><ul>" + "".join(
                f"<li>{esc(label)}: <code>{esc(p)}</code>"
                + (f' — <a href="{esc((p / "report.html").resolve().as_uri())}">report</a>'
                   if (p / "report.html").is_file() else "") + "</li>"
                for label, p in zip(labels, paths, strict=True)) + "</ul>")
    html_path = out / "compare.html"
    html_path.write_text(page(f"spikefed compare ({len(runs)} runs)", body), encoding="utf-8")
    return html_path, md
