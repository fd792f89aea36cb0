"""Helpers shared by CLI commands: error reporting and progress bars."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

console = Console(stderr=True)


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print a user-facing error and return the Exit to raise."""
    console.print(f"[bold red]error:[/] {message}")
    return typer.Exit(code)


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn ValueError/FileNotFoundError (bad input) into a clean message and exit code 2."""
    try:
        yield
    except (ValueError, FileNotFoundError) as exc:
        raise fail(str(exc)) from None


class EtaColumn(ProgressColumn):
    """``ETA h:mm:ss`` from the mean time per completed step, counted down between updates;
    blank without a total. Pass ``at=progress.get_time()`` with each update for the count-down
    and ``base=`` the steps already done before this process started (a resumed run).
    """

    def render(self, task: Task) -> Text:
        done = task.completed - task.fields.get("base", 0)
        if (task.total is None or task.finished or done <= 0 or not task.elapsed
                or task.start_time is None):
            return Text("")
        at = task.fields.get("at", task.start_time + task.elapsed)
        per_step = (at - task.start_time) / done
        since = task.start_time + task.elapsed - at
        left = max(0.0, per_step * (task.total - task.completed) - since)
        return Text(f"ETA {dt.timedelta(seconds=round(left))}", style="progress.remaining")


def progress_bar(eta: bool = False) -> Progress:
    """The standard rich progress bar (hidden automatically when not on a terminal);
    ``eta=True`` adds the estimated time left (shown for tasks with a known total)."""
    columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[info]}"), TimeElapsedColumn()]
    if eta:
        columns.append(EtaColumn())
    return Progress(*columns, console=console, transient=False)
