"""`spikefed attack` and `spikefed reproduce snfl-attack`: the gradient-inversion benchmark."""

from __future__ import annotations

from pathlib import Path

import typer

from spikefed.cli.common import console, progress_bar, user_errors
from spikefed.cli.report import write_results_page


def attack_command(
    config: Path | None = typer.Argument(None, help="YAML attack config (default: built-in)"),
    overrides: list[str] = typer.Option([], "--set", help="override a key: --set data.samples=5"),
    out: Path | None = typer.Option(None, "--out", help="output folder (default runs/<name>)"),
    device: str | None = typer.Option(
        None, "--device", help="cpu, cuda or auto (overrides the config's device)"
    ),
) -> None:
    """Gradient inversion (DLG, iDLG, Inverting Gradients, ...) against ANN and SNN clients."""
    from spikefed.experiments.privacy import (
        attack_device,
        count_runs,
        load_attack_config,
        run_attack_benchmark,
    )

    with user_errors():
        extra = [f"device={device}"] if device is not None else []
        cfg = load_attack_config(config, [*overrides, *extra])
        attack_device(cfg)  # a missing GPU fails here, before the progress bar
        out = out or Path("runs") / cfg.name
        with progress_bar() as bar:
            task = bar.add_task("attack", total=count_runs(cfg), info="")
            run_attack_benchmark(cfg, out, progress=lambda s: bar.update(task, advance=1, info=s))
    console.print((out / "summary.md").read_text())
    console.print(f"wrote {out}/results.csv, summary.md, reconstructions.png, psnr_curves.png")
    console.print(write_results_page(out))


def snfl_attack_command(
    out: Path = typer.Option(Path("runs/snfl-attack"), "--out", help="output folder"),
    iterations: int = typer.Option(40, "--iterations", help="DLG optimiser steps"),
    samples: int = typer.Option(2, "--samples", help="test images attacked"),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda or auto"),
) -> None:
    """SNFL paper: DLG on LeNet, batch 1 - iterations to recover the image, FedAvg vs SNFL."""
    from spikefed.experiments.privacy import (
        attack_device,
        count_runs,
        run_attack_benchmark,
        snfl_attack_config,
    )

    with user_errors():
        if iterations < 1 or samples < 1:
            raise ValueError(f"--iterations={iterations} and --samples={samples} must be >= 1")
        cfg = snfl_attack_config(iterations, samples, device)
        attack_device(cfg)
        with progress_bar() as bar:
            task = bar.add_task("snfl-attack", total=count_runs(cfg), info="")
            run_attack_benchmark(cfg, out, progress=lambda s: bar.update(task, advance=1, info=s))
    console.print((out / "summary.md").read_text())
    console.print(write_results_page(out))


def register(app: typer.Typer, reproduce: typer.Typer) -> None:
    """Add `attack` and `reproduce snfl-attack`."""
    app.command("attack")(attack_command)
    reproduce.command("snfl-attack")(snfl_attack_command)
