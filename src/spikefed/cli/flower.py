"""`spikefed flower-app`: write a Flower app that runs a spikefed experiment."""

from __future__ import annotations

from pathlib import Path

import typer

from spikefed.cli.common import user_errors


def flower_app_command(
    dest: Path = typer.Argument(..., help="folder to create the app in"),
    config: Path | None = typer.Option(None, "--config", help="experiment YAML to package "
                                       "(default: a small mnist-mini FedAvg SNN)"),
    overrides: list[str] = typer.Option([], "--set", help="override a key of --config"),
    force: bool = typer.Option(False, "--force", help="overwrite existing files"),
) -> None:
    """Create a Flower app (ServerApp + ClientApp) for `flwr run`; see docs/deploy.md."""
    from spikefed.config import dump_config, load_config
    from spikefed.flower.support import require_flower_support
    from spikefed.flower.template import write_app

    with user_errors():
        experiment = (dump_config(require_flower_support(load_config(config, overrides)))
                      if config or overrides else None)
        try:
            written = write_app(dest, experiment, overwrite=force)
        except FileExistsError as exc:
            raise ValueError(str(exc)) from None
    for path in written:
        typer.echo(str(path))
    typer.echo(f"next: flwr run {dest} <connection>   (one SuperNode per client; "
               "--node-config 'partition-id=K num-partitions=N')")


def register(app: typer.Typer, reproduce: typer.Typer) -> None:
    app.command("flower-app")(flower_app_command)
