"""`spikefed run` and `spikefed config`."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer

from spikefed.cli.common import console, fail, progress_bar, user_errors
from spikefed.config import ConfigError, ExperimentConfig, dump_config, load_config


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


def _resume_config(run_dir: Path, device: str | None, seed: int | None,
                   data_root: Path | None) -> ExperimentConfig:
    """The saved config of `run_dir`, with the run's place (device, data root) updated."""
    path = run_dir / "config.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"--resume {run_dir}: {path} is missing, so {run_dir} holds no "
                                "run to continue; start one with `spikefed run --out DIR`")
    try:
        saved = load_config(path)
    except ConfigError as exc:
        raise ConfigError(f"{exc}\n{path} is the saved config of the run in {run_dir}: restore "
                          "it, or start the run again with --overwrite") from None
    if seed is not None and seed != saved.seed:
        raise ValueError(f"--seed {seed} differs from seed {saved.seed} of the run in {run_dir}; "
                         "a resumed run keeps its seed: drop --seed, or start a new run with --out")
    return _resolve(path, [], device, None, data_root)


def run_command(
    config: Path | None = typer.Argument(None, help="YAML experiment config (default: built-in)"),
    overrides: list[str] = typer.Option([], "--set", help="override a key: --set train.rounds=5"),
    out: Path | None = typer.Option(None, "--out", help="run directory (default: runs/<name>, "
                                    "or runs/<name>-2, -3, ... when that holds a run)"),
    resume: Path | None = typer.Option(None, "--resume", help="continue the run in this dir"),
    overwrite: bool = typer.Option(False, "--overwrite",
                                   help="replace the run already in --out"),
    device: str | None = typer.Option(None, "--device", help="cpu, cuda or auto"),
    seed: int | None = typer.Option(None, "--seed", help="experiment seed"),
    data_root: Path | None = typer.Option(None, "--data-root", envvar="SPIKEFED_DATA",
                                          help="folder holding the data sets"),
    quiet: bool = typer.Option(False, "--quiet", "-q",
                               help="no progress display; print only the run directory"),
) -> None:
    """Run a federated experiment in process and write its run directory."""
    from spikefed.sim.asynchronous import simulation_for
    from spikefed.sim.rundir import fresh_run_dir

    with user_errors(), _write_errors():
        if resume is not None:
            if config is not None or overrides or overwrite:
                raise ValueError("--resume continues a run with its saved config.yaml; "
                                 "drop CONFIG, --set and --overwrite")
            cfg = _resume_config(resume, device, seed, data_root)
            out = resume
        else:
            cfg = _resolve(config, overrides, device, seed, data_root)
            default = Path("runs") / cfg.name
            out = out or (default if overwrite else fresh_run_dir(default))
        sim = simulation_for(cfg, out)
        if quiet:
            sim.run(resume=resume is not None, overwrite=overwrite)
            typer.echo(str(out))
            return
        # progress in rounds, or in client updates for asynchronous runs (docs/async.md)
        unit, total = (("updates", cfg.asynchronous.updates) if cfg.asynchronous
                       else ("round", cfg.train.rounds))
        with progress_bar(eta=True) as bar:
            rounds = bar.add_task("rounds" if unit == "round" else "updates", total=total,
                                  info="")
            clients = bar.add_task("clients", total=None, info="")
            before: list[int] = []

            def on_event(kind: str, rec: dict[str, Any]) -> None:
                if kind == "client":
                    bar.update(clients, advance=1, info=f"client {rec['client']}")
                elif kind == "eval":  # server evaluation, batch by batch
                    bar.update(clients, completed=rec["done"], total=rec["total"],
                               info="server evaluation (test images)")
                else:
                    acc = rec.get("server_acc")
                    info = f"acc {acc:.3f}" if acc is not None else ""
                    if not before:  # rounds done before this process (a resumed run)
                        before.append(rec[unit] - (1 if unit == "round" else len(rec["arrived"])))
                    bar.update(rounds, completed=rec[unit], info=info, at=bar.get_time(),
                               base=before[0])
                    bar.reset(clients, total=None, info="")

            bar.update(rounds, completed=0)
            summary = sim.run(resume=resume is not None, progress=on_event, overwrite=overwrite)
            bar.remove_task(clients)  # no leftover "clients 0/?" line
    acc = summary.get("final_server_acc")
    client = summary.get("final_client_acc_mean")
    if acc is not None:
        typer.echo(f"final server accuracy: {acc:.4f}")
    if client is not None:
        typer.echo(f"final client accuracy: {client:.4f} ± {summary['final_client_acc_std']:.4f}")
    typer.echo(f"run directory: {out}")


@contextmanager
def _write_errors() -> Iterator[None]:
    """Disk full and other I/O errors while writing the run: a message, exit 2."""
    try:
        yield
    except OSError as exc:
        raise fail(str(exc)) from None


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
