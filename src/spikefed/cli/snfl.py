"""`spikefed reproduce snfl`: the SNFL paper's experiments (see docs/snfl.md)."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from spikefed.cli.common import progress_bar, user_errors
from spikefed.cli.report import write_results_page


def reproduce_snfl(
    scale: str = typer.Option("small", "--scale", help="small (CPU, mnist-mini) or full "
                              "(ResNet-20, CIFAR-10, T=256; needs a GPU and --data-root)"),
    experiments: str = typer.Option("table,stragglers,clients,T,bias,backdoor", "--experiments",
                                    help="comma-separated subset of "
                                         "table,stragglers,clients,T,bias,backdoor"),
    out: Path = typer.Option(Path("runs/snfl"), "--out", help="output folder"),
    data_root: Path | None = typer.Option(None, "--data-root", envvar="SPIKEFED_DATA",
                                          help="folder holding the data sets (full scale)"),
    workers: int = typer.Option(2, "--workers", min=1, help="runs in parallel (processes)"),
    boost: float | None = typer.Option(
        None, "--boost", help="backdoor: boost of the scaled model replacement run, compared "
        "with data poisoning only (default clients/attackers; 1: no boosted run)"),
) -> None:
    """Reproduce SNFL (ANN clients, SNN server): accuracy tables, stragglers, number of
    clients, simulation length T, bias ablation and inference, backdoor detection."""
    from spikefed.experiments.snfl import reproduce

    names = [e.strip() for e in experiments.split(",") if e.strip()]
    start = time.perf_counter()
    with user_errors(), progress_bar() as bar:
        task = bar.add_task("snfl runs", total=None, info=scale)

        def on_progress(event: str, n: int) -> None:
            if event == "total":
                bar.update(task, total=n)
            else:
                bar.advance(task, n)

        reproduce(scale, names, out, str(data_root) if data_root else None, workers,
                  on_progress, boost=boost)
    typer.echo(f"results in {out} ({time.perf_counter() - start:.0f} s)")
    for name in names:
        typer.echo(f"  {out / name / 'results.md'}")
    typer.echo(write_results_page(out))


def register(app: typer.Typer, reproduce: typer.Typer) -> None:
    reproduce.command("snfl")(reproduce_snfl)
