"""`spikefed convert`: ANN -> SNN conversion accuracy against T and calibration."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import typer
from torch import nn

from spikefed.cli.common import console, progress_bar, user_errors
from spikefed.cli.report import write_results_page


def _csv_list(text: str, what: str, cast: type = str) -> list[Any]:
    try:
        items = [cast(t.strip()) for t in text.split(",") if t.strip()]
    except ValueError:
        raise ValueError(f"--{what} {text!r}: expected a comma-separated list, e.g. "
                         f"{'8,16,32' if cast is int else 'none,light'}") from None
    if not items:
        raise ValueError(f"--{what} is empty")
    return items


def _state_from_checkpoint(ckpt: dict[str, Any], where: Path) -> dict[str, torch.Tensor]:
    params = (ckpt.get("server_state") or {}).get("params")
    if params is None:
        raise ValueError(f"{where} holds no server model (server_state.params); convert a run "
                         "of an algorithm with a global model, e.g. fedavg")
    return params


def load_ann(source: Path, model: str | None, dataset: str | None, data_root: Path | None
             ) -> tuple[nn.Module, str, str | None]:
    """The trained ANN of a run directory, a run checkpoint or a plain state_dict file, plus
    the data set name and data root to evaluate it on."""
    from spikefed.config import load_config, validate_config
    from spikefed.data import dataset_info
    from spikefed.experiment import model_factory
    from spikefed.models import build_model
    from spikefed.sim.checkpoint import load_checkpoint
    from spikefed.tensorfile import load_tensor_file

    if source.is_dir():
        cfg_path, ckpt_path = source / "config.yaml", source / "checkpoint" / "state.pt"
        if not cfg_path.is_file() or not ckpt_path.is_file():
            raise FileNotFoundError(f"{source} is not a run directory: it needs config.yaml and "
                                    "checkpoint/state.pt (written by `spikefed run --out DIR`)")
        cfg = load_config(cfg_path)
        state = _state_from_checkpoint(load_checkpoint(ckpt_path.parent), ckpt_path)
    elif source.is_file():
        obj = load_tensor_file(source, "checkpoint or state_dict")
        cfg = None
        if isinstance(obj, dict) and "server_state" in obj:
            cfg = validate_config(obj["config"], str(source))
            state = _state_from_checkpoint(obj, source)
        elif isinstance(obj, dict) and all(isinstance(v, torch.Tensor) for v in obj.values()):
            state = obj
        else:
            raise ValueError(f"{source} is neither a run checkpoint nor a state_dict")
    else:
        raise FileNotFoundError(f"{source} does not exist; pass a run directory or checkpoint")
    if cfg is not None:
        if cfg.model.spiking:
            raise ValueError(f"{source} was trained with model.spiking=true; conversion needs an "
                             "ANN run (spikefed run --set model.spiking=false ...)")
        dataset = dataset or cfg.data.dataset
        root = str(data_root) if data_root is not None else cfg.data.root
        info = dataset_info(dataset)
        ann = model_factory(cfg, info.in_shape, info.num_classes)()
    else:
        if model is None or dataset is None:
            raise ValueError(f"{source} is a plain state_dict: pass --model NAME and "
                             "--dataset NAME to say what it is")
        info = dataset_info(dataset)
        root = str(data_root) if data_root is not None else None
        norm = "bn" if any(k.endswith("running_var") for k in state) else "none"
        ann = build_model(model, spiking=False, in_shape=info.in_shape,
                          num_classes=info.num_classes, norm=norm)
    try:
        ann.load_state_dict(state)
    except RuntimeError as err:
        raise ValueError(f"the weights in {source} do not fit the model: {err}") from None
    return ann.eval(), info.name, root


def convert_command(
    source: Path = typer.Argument(..., help="run directory, run checkpoint or state_dict file"),
    T: str = typer.Option("8,16,32,64,128,256", "--T", help="simulation lengths"),
    calib: str = typer.Option("none,light,advanced", "--calib",
                              help="calibrations: none, bias, light, advanced"),
    threshold: str = typer.Option("mmse", "--threshold", help="mmse, max or percentile"),
    out: Path | None = typer.Option(None, "--out",
                                    help="output folder (default runs/<name>-convert)"),
    calib_samples: int = typer.Option(128, "--calib-samples", min=1,
                                      help="training images used for thresholds/calibration"),
    test_subset: int | None = typer.Option(None, "--test-subset", min=1,
                                           help="evaluate on the first N test images"),
    model: str | None = typer.Option(None, "--model", help="model name (plain state_dict only)"),
    dataset: str | None = typer.Option(None, "--dataset", help="data set (default: the run's)"),
    data_root: Path | None = typer.Option(None, "--data-root", envvar="SPIKEFED_DATA",
                                          help="folder holding the data sets"),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda or auto"),
    seed: int = typer.Option(0, "--seed", help="seed for picking calibration images"),
    per_channel: bool = typer.Option(False, "--per-channel",
                                     help="one threshold per output channel, not per layer"),
    batch_size: int = typer.Option(500, "--batch-size", min=1,
                                   help="test images per SNN evaluation batch (memory)"),
) -> None:
    """Convert a trained ANN to SNNs for several T and calibrations; write CSV, table, plot."""
    from rich.table import Table

    from spikefed.convert import CALIBRATIONS, THRESHOLD_METHODS, accuracy_vs_T
    from spikefed.convert.outputs import plot_accuracy_vs_T, sweep_markdown, write_csv
    from spikefed.data import load_dataset
    from spikefed.experiment import resolve_device

    with user_errors():
        Ts = _csv_list(T, "T", int)
        if any(t < 1 for t in Ts):
            raise ValueError(f"--T {T!r}: every T must be >= 1")
        calibs = _csv_list(calib, "calib")
        bad = [c for c in calibs if c not in CALIBRATIONS]
        if bad:
            raise ValueError(f"--calib {bad}: choose from {list(CALIBRATIONS)}")
        if threshold not in THRESHOLD_METHODS:
            raise ValueError(f"--threshold {threshold!r}: choose from {list(THRESHOLD_METHODS)}")
        dev = resolve_device(device)
        ann, ds_name, root = load_ann(source, model, dataset, data_root)
        train = load_dataset(ds_name, "train", root)
        test = load_dataset(ds_name, "test", root)
        n_test = min(test_subset or len(test), len(test))
        g = torch.Generator().manual_seed(seed)
        calib_x = train.x[torch.randperm(len(train), generator=g)[:calib_samples]]
        out = out or Path("runs") / f"{source.resolve().stem}-convert"
        out.mkdir(parents=True, exist_ok=True)
        ann.to(dev)
        with progress_bar() as bar:
            task = bar.add_task("convert", total=len(Ts) * len(calibs), info="")
            images = bar.add_task("test images", total=n_test, info="")

            def on_row(row: dict[str, Any]) -> None:
                bar.update(task, advance=1,
                           info=f"{row['calibration']} T={row['T']}: {row['accuracy']:.4f} "
                                f"({row['seconds']:.1f} s)")

            def on_batch(done: int, total: int) -> None:
                bar.update(images, completed=done, total=total)

            rows = accuracy_vs_T(ann, calib_x, test.x[:n_test], test.y[:n_test], Ts, calibs,
                                 threshold=threshold, progress=on_row, batch_progress=on_batch,
                                 batch_size=batch_size, per_channel=per_channel)
    table = Table("T", *calibs, title=f"test accuracy (ANN {rows[0]['ann_accuracy']:.4f})")
    acc = {(r["T"], r["calibration"]): r["accuracy"] for r in rows}
    for t in sorted(set(Ts)):
        table.add_row(str(t), *(f"{acc[(t, c)]:.4f}" for c in calibs))
    console.print(table)
    write_csv(rows, out / "conversion.csv")
    header = (f"# ANN -> SNN conversion of `{source}`\n\n{ds_name}: {n_test} test images, "
              f"{len(calib_x)} calibration images (seed {seed}), "
              f"{'per-channel' if per_channel else 'per-layer'} thresholds.\n\n")
    (out / "conversion.md").write_text(header + sweep_markdown(rows))
    plot_accuracy_vs_T(rows, out / "accuracy_vs_T.png", title=f"{source.name} ({ds_name})")
    typer.echo(f"results: {out}")
    typer.echo(write_results_page(out))


def register(app: typer.Typer, reproduce: typer.Typer) -> None:
    app.command("convert")(convert_command)
