"""`spikefed datasets`: which data sets exist, whether they are found, where files go."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.padding import Padding
from rich.table import Table

from spikefed.data import DATASETS
from spikefed.data.event_sets import EVENT_SETS, frame_size
from spikefed.data.files import DATA_ENV


def datasets_table(root: Path | None) -> Table:
    """Rich table of `DATASETS` with their status under `root`."""
    table = Table(title=f"spikefed image data sets (data root: {root or 'not set'})")
    columns = ("name", "shape", "classes", "status", "files (in <root>/<folder>/ or <root>/)",
               "licence")
    for column in columns:
        table.add_column(column, overflow="fold")
    for info in DATASETS.values():
        if info.bundled:
            status = "[green]bundled[/green]"
        elif root is None or not root.is_dir():
            status = "[yellow]no data root[/yellow]"
        else:
            found = info.locate(root)
            status = f"[green]found[/green] {found}" if found else "[red]missing[/red]"
        where = info.files if info.bundled else f"{info.folder}/: {info.files}"
        shape = "x".join(map(str, info.in_shape))
        table.add_row(info.name, shape, str(info.num_classes), status, where, info.licence)
    return table


def event_datasets_table(root: Path | None) -> Table:
    """Rich table of the event data sets (`spikefed run`, `data.dataset=NAME`) and their status."""
    table = Table(title="event data sets for spikefed run (data.dataset=NAME, options under "
                  "data.events; docs/events.md)")
    for column in ("name", "sensor", "classes", "status", "files (in <root>/<folder>/ or <root>/)",
                   "licence"):
        table.add_column(column, overflow="fold")
    for info in EVENT_SETS.values():
        if info.bundled:
            status = "[green]bundled[/green]"
        elif root is None or not root.is_dir():
            status = "[yellow]no data root[/yellow]"
        else:
            found = info.locate(root)
            kind = "source images " if info.emulated else ""
            status = f"[green]found[/green] {kind}{found}" if found else "[red]missing[/red]"
        where = info.files if info.bundled else f"{info.folder}/: {info.files}"
        h, w = frame_size(info)
        table.add_row(info.name, f"2x{h}x{w}", str(len(info.classes)), status, where,
                      info.licence)
    return table


WIDE = 120  # below this many columns `spikefed datasets` uses the compact layout


def _short_status(found: bool | None, bundled: bool = False) -> str:
    if bundled:
        return "[green]bundled[/green]"
    if found is None:
        return "[yellow]no root[/yellow]"
    return "[green]found[/green]" if found else "[red]missing[/red]"


def print_compact(console: Console, root: Path | None) -> None:
    """The data set lists for a narrow terminal (80 columns): short tables whose cells never
    wrap, then one wrapped paragraph per data set with its files, licence and citation."""
    has_root = root is not None and root.is_dir()
    table = Table(title=f"image data sets (data root: {root or 'not set'})", title_justify="left")
    for column in ("name", "shape", "classes", "status", "folder"):
        table.add_column(column, no_wrap=True)
    details = []
    for info in DATASETS.values():
        found = info.locate(root) if has_root and not info.bundled else None
        status = _short_status(bool(found) if has_root else None, info.bundled)
        table.add_row(info.name, "x".join(map(str, info.in_shape)), str(info.num_classes),
                      status, "(bundled)" if info.bundled else f"{info.folder}/")
        where = f"found {found}; " if found else ""
        details.append(f"[bold]{info.name}[/bold]: {where}files {info.files}; "
                       f"licence: {info.licence}")
    console.print(table)
    for line in details:
        console.print(Padding(line, (0, 0, 0, 2)))
    events = Table(title="event data sets (data.dataset=NAME)", title_justify="left")
    for column in ("name", "sensor", "classes", "status", "folder"):
        events.add_column(column, no_wrap=True)
    details = []
    for info in EVENT_SETS.values():
        found = info.locate(root) if has_root and not info.bundled else None
        status = _short_status(bool(found) if has_root else None, info.bundled)
        h, w = frame_size(info)
        events.add_row(info.name, f"2x{h}x{w}", str(len(info.classes)), status,
                       "(bundled)" if info.bundled else f"{info.folder}/")
        details.append(f"[bold]{info.name}[/bold]: files {info.files}; licence: {info.licence}")
    console.print(events)
    for line in details:
        console.print(Padding(line, (0, 0, 0, 2)))


def register(app: typer.Typer, reproduce: typer.Typer) -> None:
    """Add the `datasets` command to `app`."""

    @app.command("datasets")
    def datasets(
        data_root: Path | None = typer.Option(
            None, "--data-root", envvar=DATA_ENV,
            help=f"Folder holding the data sets (default: ${DATA_ENV})."),
    ) -> None:
        """List the data sets, whether each is found under the data root, and where its files
        go. Nothing is downloaded."""
        console = Console()
        if console.width < WIDE:
            print_compact(console, data_root)
        else:
            console.print(datasets_table(data_root))
            console.print(event_datasets_table(data_root))
        if data_root is None:
            console.print(f"Set {DATA_ENV}=DIR or pass --data-root DIR to use the full data sets.")
        console.print("Citations: " + "; ".join(
            f"{i.name}: {i.citation}" for i in DATASETS.values() if not i.bundled))
        console.print("Event data: " + "; ".join(
            f"{i.name}: {i.citation}" for i in EVENT_SETS.values() if not i.emulated))
