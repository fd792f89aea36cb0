"""``report.html``: one self-contained page showing a run (complete, stopped or crashed),
or the tables and figures a reproduction/attack/conversion wrote into its folder."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import yaml

from spikefed.report.figures import RUN_FIGURES
from spikefed.report.page import artifact_sections, esc, figure, image, page, table
from spikefed.report.runs import RunData, load_run

# (summary key, label, unit) in the order shown.
SUMMARY_ROWS = (
    ("final_server_acc", "final server accuracy", ""),
    ("best_server_acc", "best server accuracy", ""),
    ("final_server_loss", "final server loss", ""),
    ("final_client_acc_mean", "final client accuracy (mean)", ""),
    ("final_client_acc_std", "final client accuracy (std)", ""),
    ("rounds", "rounds done", ""),
    ("total_bytes_up", "bytes up (total)", "B"),
    ("total_bytes_down", "bytes down (total)", "B"),
    ("spikes_per_sample", "spikes per test sample", ""),
    ("synops_per_sample", "SynOps per test sample", ""),
    ("energy_per_sample_pj", "inference energy per test sample", "pJ"),
    ("wall_s", "wall time", "s"),
)

FIGURE_CAPTIONS = {
    "accuracy": "Test accuracy of the aggregated server model and of the clients' local models.",
    "loss": "Test loss (server, clients) and the clients' mean training loss.",
    "bytes": "Payload bytes per round (exact tensor bytes) and the cumulative total.",
    "energy": "Estimated inference energy and spikes per test sample of the server model.",
    "participation": "Valid uploads, rejected uploads and stragglers per round.",
    "wall": "Wall-clock time per round.",
}


def summary_table(summary: dict[str, Any]) -> str:
    """The summary as a two-column table; each value carries ``data-summary=<key>``."""
    rows = []
    for key, label, unit in SUMMARY_ROWS:
        value = summary.get(key)
        if value is None:
            continue
        text = _summary_text(value)
        rows.append(f'<tr><th>{esc(label)}</th><td class="num" data-summary="{esc(key)}">'
                    f"{esc(text)}</td><td>{esc(unit)}</td></tr>")
    return f'<table id="summary"><tbody>{"".join(rows)}</tbody></table>'


def _summary_text(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 1e4 else f"{value:,.1f}"
    return str(value)


def _rejections(records: list[dict[str, Any]]) -> str:
    rows = [(r["round"], bad.get("client"), bad.get("reason"))
            for r in records for bad in (r.get("rejected") or [])]
    stragglers = sum(r.get("stragglers", 0) for r in records)
    skipped = [r["round"] for r in records if r.get("aggregated") is False]
    parts = [f"<p>{len(rows)} rejected upload(s), {stragglers} straggler(s) over "
             f"{len(records)} round(s).</p>"]
    if skipped:
        parts.append(f'<p class="warn">rounds without aggregation (too few valid uploads): '
                     f"{esc(', '.join(map(str, skipped)))}</p>")
    if rows:
        parts.append(table(("round", "client", "reason"), rows, sortable=True,
                           table_id="rejected"))
    return "".join(parts)


def _client_table(records: list[dict[str, Any]]) -> str | None:
    """The last recorded per-client metrics (``clients`` field of an evaluated round)."""
    last = next((r for r in reversed(records) if r.get("clients")), None)
    if last is None:
        return None
    rows = last["clients"]
    keys = [k for k in ("client", "num_samples", "acc", "loss", "train_loss")
            if any(k in row for row in rows)]
    body = [[row.get(k) for k in keys] for row in rows]
    return (f"<p>Local models of the clients that uploaded in round {last['round']} "
            "(click a header to sort).</p>" + table(keys, body, sortable=True,
                                                     table_id="clients"))


def run_body(run: RunData) -> str:
    """The body of a run's report."""
    generated = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    cfg = run.config
    what = ", ".join(str(x) for x in (
        cfg.get("algorithm", {}).get("name"), cfg.get("model", {}).get("name"),
        cfg.get("data", {}).get("dataset")) if x)
    parts = [f"<h1>{esc(run.name)}</h1>",
             f'<p class="sub">{esc(what)} — <span id="status">{esc(run.status)}</span> — '
             f"{esc(run.path)} — generated {generated}</p>"]
    if run.status != "complete":
        parts.append(f'<p class="warn">This run is not complete ({esc(run.status)}); '
                     "the page shows the rounds recorded so far.</p>")
    parts.append("<h2>Summary</h2>")
    parts.append(summary_table(run.summary) if run.summary else "<p>no rounds recorded</p>")
    figs = []
    for name, make in RUN_FIGURES:
        svg = make(run.records)
        if svg is not None:
            figs.append(figure(svg, FIGURE_CAPTIONS[name], name))
    partition = run.path / "partition.png"
    if partition.is_file():
        figs.append(figure(image(partition, "partition"),
                           "Label distribution of the clients' training data.", "partition"))
    if figs:
        parts.append(f'<h2>Curves</h2><div class="figs">{"".join(figs)}</div>')
    if run.records:
        parts.append("<h2>Rejected uploads and stragglers</h2>" + _rejections(run.records))
    clients = _client_table(run.records)
    if clients:
        parts.append("<h2>Per-client final metrics</h2>" + clients)
    artifacts = artifact_sections(run.path)
    if artifacts:
        parts.append("<h2>Tables and figures in the run directory</h2>" + artifacts)
    if cfg:
        parts.append("<h2>Resolved configuration</h2><pre id=\"config\">"
                     f"{esc(yaml.safe_dump(cfg, sort_keys=False))}</pre>")
    return "\n".join(parts)


def artifacts_body(path: Path) -> str:
    """The body of a report for a folder without ``metrics.jsonl`` (reproductions, attacks)."""
    generated = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    body = artifact_sections(path)
    if not body:
        raise FileNotFoundError(f"{path} holds no run (metrics.jsonl) and no tables or figures "
                                "(*.md, *.csv, *.png) to report")
    config = path / "config.yaml"
    extra = (f"<h2>Configuration</h2><pre id=\"config\">{esc(config.read_text())}</pre>"
             if config.is_file() else "")
    return (f"<h1>{esc(path.name)}</h1><p class=\"sub\">{esc(path)} — generated {generated}</p>"
            f"<h2>Tables and figures</h2>{body}{extra}")


def write_report(path: str | Path, out: str | Path | None = None) -> Path:
    """Write ``report.html`` for the run (or results folder) at ``path``; returns its path."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{path} is not a directory; pass a run directory such as "
                                "runs/default")
    if (path / "metrics.jsonl").is_file():
        run = load_run(path)
        text = page(f"spikefed run: {run.name}", run_body(run))
    else:
        text = page(f"spikefed results: {path.name}", artifacts_body(path))
    target = Path(out) if out is not None else path / "report.html"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")
    return target
