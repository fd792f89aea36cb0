"""`spikefed report` and `spikefed compare`: HTML pages of runs."""

from __future__ import annotations

from pathlib import Path

import typer

from spikefed.cli.common import console, user_errors


def write_results_page(out: Path) -> str:
    """Write ``out/report.html`` for a results folder; the line telling the user where."""
    from spikefed.report.html import write_report

    return f"report: {write_report(out)}"


def report_command(
    run_dir: Path = typer.Argument(..., help="a run directory (also a stopped or crashed run), "
                                   "or a reproduction/attack output folder"),
    out: Path | None = typer.Option(None, "--out", help="HTML file (default RUN_DIR/report.html)"),
) -> None:
    """Write a self-contained report.html for an existing run or results folder."""
    from spikefed.report.html import write_report

    with user_errors():
        path = write_report(run_dir, out)
    typer.echo(f"wrote {path}")


def compare_command(
    runs: list[str] = typer.Argument(..., help="run directories, globs ('runs/sweep/*') or a "
                                     "sweep's parent folder"),
    out: Path = typer.Option(Path("runs/compare"), "--out", help="folder for compare.html/.md"),
) -> None:
    """Compare runs: overlaid curves and a table of accuracy, bytes, energy and time, with the
    config keys that differ between the runs."""
    from spikefed.report.compare import write_comparison

    with user_errors():
        html_path, md_path = write_comparison(runs, out)
    console.print(md_path.read_text().split("\n\n")[1], highlight=False)
    typer.echo(f"wrote {html_path} and {md_path}")


def register(app: typer.Typer, reproduce: typer.Typer) -> None:
    app.command("report")(report_command)
    app.command("compare")(compare_command)
