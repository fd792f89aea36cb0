"""`spikefed reproduce fl-snn`: the FL-SNN τ sweep (Fig. 4) and partial-exchange sweep."""

from __future__ import annotations

import ctypes
import time
from pathlib import Path

import typer

from spikefed.cli.common import console, progress_bar, user_errors
from spikefed.cli.report import write_results_page


def _parse_taus(text: str) -> tuple[int, ...]:
    try:
        taus = tuple(int(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise ValueError(f"--taus={text!r} must be comma-separated integers, "
                         "e.g. 1,2,4,8,16") from None
    return taus


def _mmap_large_buffers() -> None:
    """Serve buffers >= 1 MiB by mmap on glibc: its adaptive threshold otherwise lets the heap
    fragment under the many same-sized temporaries of a long run (RSS grew to 2 GB)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    m_mmap_threshold = -3
    libc.mallopt(m_mmap_threshold, 1 << 20)


def flsnn_command(
    out: Path = typer.Option(Path("runs/fl-snn"), "--out", help="output folder"),
    taus: str = typer.Option("1,2,4,8,16", "--taus", help="communication periods τ (comma list)"),
    trials: int = typer.Option(3, "--trials", help="independent trials per setting"),
    examples: int = typer.Option(200, "--examples", help="D: training examples per device"),
    data_root: Path | None = typer.Option(
        None, "--data-root", help="folder with nmnist_small/ (default: bundled subset)"),
    seed: int = typer.Option(0, "--seed", help="experiment seed"),
    threads: int = typer.Option(1, "--threads", help="torch CPU threads"),
) -> None:
    """FL-SNN (ICASSP 2020): two devices, disjoint classes '1'/'7' (N-MNIST substitute)."""
    import torch

    from spikefed.experiments.fl_snn import FLSNNConfig, load_data, run_experiment, write_outputs

    with user_errors():
        if threads < 1:
            raise ValueError(f"--threads={threads} must be >= 1")
        torch.set_num_threads(threads)
        _mmap_large_buffers()
        cfg = FLSNNConfig(taus=_parse_taus(taus), trials=trials, n_examples=examples, seed=seed)
        train, test = load_data(data_root)
        start = time.perf_counter()
        with progress_bar() as bar:
            info = f"{len(cfg.settings())} runs x 2 devices"
            task = bar.add_task("fl-snn", total=None, info=info)

            def advance(done: int, total: int) -> None:
                bar.update(task, completed=done, total=total)

            res = run_experiment(cfg, train, test, progress=advance)
        files = write_outputs(res, out, runtime_s=time.perf_counter() - start)
    console.print((out / "summary.md").read_text())
    console.print(f"wrote {', '.join(str(f) for f in files)}")
    console.print(write_results_page(out))


def register(app: typer.Typer, reproduce: typer.Typer) -> None:
    """Add `reproduce fl-snn`."""
    reproduce.command("fl-snn")(flsnn_command)
