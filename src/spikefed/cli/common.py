"""Helpers shared by CLI commands: error reporting and progress bars."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

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


def progress_bar() -> Progress:
    """The standard rich progress bar (hidden automatically when not on a terminal)."""
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[info]}"), TimeElapsedColumn(), console=console,
                    transient=False)
