"""`spikefed run` and `spikefed config`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from spikefed.cli.common import console, progress_bar, user_errors
from spikefed.config import ExperimentConfig, dump_config, load_config


def _resolve(config: Path | None, overrides: list[str], device: str | None, seed: int | None,
             data_root: Path | None) -> ExperimentConfig:
    extra = list(overrides)
    if device is not None:
        extra.append(f"device={device}")
    if seed is not None:
        extra.append(f"seed={seed}")
    if data_root is not None:
        extra.append(f"data.root={data_root}")
    return load_config(config, extra)


def run_command(
    config: Path | None = typer.Argument(None, help="YAML experiment config (default: built-in)"),
    overrides: list[str] = typer.Option([], "--set", help="override a key: --set train.rounds=5"),
    out: Path | None = typer.Option(None, "--out", help="run directory (default runs/<name>)"),
    resume: Path | None = typer.Option(None, "--resume", help="continue the run in this dir"),
    device: str | None = typer.Option(None, "--device", help="cpu, cuda or auto"),
    seed: int | None = typer.Option(None, "--seed", help="experiment seed"),
    data_root: Path | None = typer.Option(None, "--data-root", envvar="SPIKEFED_DATA",
                                          help="folder holding the data sets"),
) -> None:
    """Run a federated experiment in process and write its run directory."""
    from spikefed.sim import Simulation

    with user_errors():
        if resume is not None:
            if config is not None or overrides:
                raise ValueError("--resume continues a run with its saved config.yaml; "
                                 "drop CONFIG and --set")
            cfg = load_config(resume / "config.yaml")
            out = resume
        else:
            cfg = _resolve(config, overrides, device, seed, data_root)
            out = out or Path("runs") / cfg.name
        sim = Simulation(cfg, out)
        total = cfg.train.rounds
        with progress_bar() as bar:
            rounds = bar.add_task("rounds", total=total, info="")
            clients = bar.add_task("clients", total=None, info="")

            def on_event(kind: str, rec: dict[str, Any]) -> None:
                if kind == "client":
                    bar.update(clients, advance=1, info=f"client {rec['client']}")
                elif kind == "eval":  # server evaluation, batch by batch
                    bar.update(clients, completed=rec["done"], total=rec["total"],
                               info="server evaluation (test images)")
                else:
                    acc = rec.get("server_acc")
                    info = f"acc {acc:.3f}" if acc is not None else ""
                    bar.update(rounds, completed=rec["round"], info=info)
                    bar.reset(clients, total=None, info="")

            bar.update(rounds, completed=0)
            summary = sim.run(resume=resume is not None, progress=on_event)
    acc = summary.get("final_server_acc")
    client = summary.get("final_client_acc_mean")
    if acc is not None:
        typer.echo(f"final server accuracy: {acc:.4f}")
    if client is not None:
        typer.echo(f"final client accuracy: {client:.4f} ± {summary['final_client_acc_std']:.4f}")
    typer.echo(f"run directory: {out}")


def config_command(
    config: Path | None = typer.Argument(None, help="validate and print this config instead"),
    overrides: list[str] = typer.Option([], "--set", help="override a key"),
) -> None:
    """Print the default (or a validated, resolved) experiment config as YAML."""
    with user_errors():
        typer.echo(dump_config(load_config(config, overrides)), nl=False)


def algorithms_command() -> None:
    """List the federated algorithms and their parameters."""
    from rich.table import Table

    from spikefed.fl.registry import ALGORITHMS

    table = Table("name", "parameters", "description")
    for name, spec in sorted(ALGORITHMS.items()):
        params = ", ".join(f"{k}={f.default}" for k, f in spec.params.model_fields.items())
        table.add_row(name, params or "-", spec.description)
    console.print(table)


def register(app: typer.Typer, reproduce: typer.Typer) -> None:
    app.command("run")(run_command)
    app.command("config")(config_command)
    app.command("algorithms")(algorithms_command)
