"""`spikefed reproduce snfl`: the SNFL paper's experiments (see docs/snfl.md)."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from spikefed.cli.common import progress_bar, user_errors
from spikefed.cli.report import write_results_page


def reproduce_snfl(
    scale: str = typer.Option("small", "--scale", help="small (CPU, mnist-mini), gpu (Table 1 "
                              "cut to ~10 min on one H100/H200: ResNet-20, CIFAR-10, needs "
                              "CUDA and --data-root) or full (the paper's setting)"),
    experiments: str = typer.Option("table,stragglers,clients,T,bias,backdoor", "--experiments",
                                    help="comma-separated subset of "
                                         "table,stragglers,clients,T,bias,backdoor"),
    out: Path = typer.Option(Path("runs/snfl"), "--out", help="output folder"),
    data_root: Path | None = typer.Option(None, "--data-root", envvar="SPIKEFED_DATA",
                                          help="folder holding the data sets (full scale)"),
    workers: int | None = typer.Option(None, "--workers", min=1,
                                       help="runs in parallel (processes; default 4 at "
                                            "--scale gpu, else 2)"),
    boost: float | None = typer.Option(
        None, "--boost", help="backdoor: boost of the scaled model replacement run, compared "
        "with data poisoning only (default clients/attackers; 1: no boosted run)"),
    dry_run: bool = typer.Option(False, "--dry-run", help="print the jobs and the estimated "
                                 "cost, run nothing"),
) -> None:
    """Reproduce SNFL (ANN clients, SNN server): accuracy tables, stragglers, number of
    clients, simulation length T, bias ablation and inference, backdoor detection."""
    from spikefed.experiments.snfl import describe_plan, reproduce

    names = [e.strip() for e in experiments.split(",") if e.strip()]
    root = str(data_root) if data_root else None
    with user_errors():
        described = describe_plan(scale, names, out, root, workers, boost=boost)
    cost = described["cost"]
    line = (f"plan: {cost['jobs']} runs at --scale {scale} on {described['device']}, "
            f"{cost['workers']} at a time")
    if described["device"] != "cpu":
        line += (f"; estimated {cost['seconds'] / 60:.1f} min on one H100/H200 (an estimate "
                 "from issue 9's throughputs, not a measurement)")
    typer.echo(line)
    if dry_run:
        for row in cost["per_job"]:
            units = sum(v for k, v in row.items() if k != "name")
            typer.echo(f"  {row['name']}: {units / 1e6:.2f} M training-image equivalents")
        return
    start = time.perf_counter()
    with user_errors(), progress_bar() as bar:
        task = bar.add_task("snfl runs", total=None, info=scale)

        def on_progress(event: str, n: int) -> None:
            if event == "total":
                bar.update(task, total=n)
            else:
                bar.advance(task, n)

        reproduce(scale, names, out, root, workers, on_progress, boost=boost)
    typer.echo(f"results in {out} ({time.perf_counter() - start:.0f} s)")
    if "table" in names:
        typer.echo((out / "table" / "results.md").read_text())
    for name in names:
        typer.echo(f"  {out / name / 'results.md'}")
    typer.echo(write_results_page(out))


def register(app: typer.Typer, reproduce: typer.Typer) -> None:
    reproduce.command("snfl")(reproduce_snfl)
