"""The `spikefed` command. Wiring only: each command family lives in its own module."""

from __future__ import annotations

import importlib

import typer

app = typer.Typer(
    name="spikefed",
    help="Federated learning with spiking neural networks.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)
reproduce_app = typer.Typer(help="Reproduce the experiments of the papers spikefed is built from.",
                            no_args_is_help=True)
app.add_typer(reproduce_app, name="reproduce")

# Each module defines `register(app, reproduce)`.
COMMAND_MODULES = ["run", "convert", "data", "attack", "flsnn", "snfl", "flower", "report",
                   "events"]

for _name in COMMAND_MODULES:
    importlib.import_module(f"{__name__}.{_name}").register(app, reproduce_app)


def main() -> None:
    """Console-script entry point."""
    app()
