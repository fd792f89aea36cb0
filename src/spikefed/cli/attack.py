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
    setting: str = typer.Option(
        "lenet5-mnist", "--setting",
        help="lenet5-mnist (max-pooled LeNet-5 on bundled MNIST), dlg-cifar (DLG's own "
        "LeNet on CIFAR-10 from --data-root; arms ann-sigmoid, ann-relu, snfl), "
        "protocol-mnist (MLP, bundled MNIST), protocol-cifar (DLG LeNet with ReLU, CIFAR-10) "
        "or protocol-cifar-mlp (MLP, CIFAR-10): "
        "the server inverts the ANN weight update it recovers from SNFL uploads, vs FedAvg"),
    out: Path | None = typer.Option(None, "--out", help="output folder (default "
                                    "runs/snfl-attack, or runs/snfl-attack-<setting>)"),
    iterations: int | None = typer.Option(
        None, "--iterations", help="DLG optimiser steps (default 40; dlg-cifar: 300); "
        "protocol-*: Inverting Gradients steps (default 300)"),
    samples: int = typer.Option(2, "--samples", help="test images attacked (dlg-cifar: one "
                                "per class, at most 10)"),
    seeds: str = typer.Option("0,1", "--seeds", help="dlg-cifar, protocol-*: comma-separated "
                              "seeds"),
    data_root: Path | None = typer.Option(None, "--data-root", envvar="SPIKEFED_DATA",
                                          help="dlg-cifar, protocol-cifar*: folder holding "
                                          "cifar10/"),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda or auto (lenet5-mnist only; "
                               "the other settings run on the CPU)"),
) -> None:
    """SNFL paper: DLG on LeNet, batch 1 - iterations to recover the image, FedAvg vs SNFL;
    and the attack the SNFL protocol exposes (protocol-*)."""
    with user_errors():
        if setting not in SETTINGS:
            raise ValueError(f"--setting={setting!r} is unknown; choose one of {list(SETTINGS)}")
        if (iterations is not None and iterations < 1) or samples < 1:
            raise ValueError(f"--iterations={iterations} and --samples={samples} must be >= 1")
        if setting != "lenet5-mnist":
            if device != "cpu":
                raise ValueError(f"--device={device!r} applies to --setting lenet5-mnist only; "
                                 f"--setting {setting} runs on the CPU: drop --device")
            seed_list = _seeds(seeds)
            run = _dlg_cifar if setting == "dlg-cifar" else _protocol
            run(setting, out or Path(f"runs/snfl-attack-{setting}"), iterations, samples,
                seed_list, data_root)
            return
        from spikefed.experiments.privacy import (
            attack_device,
            count_runs,
            run_attack_benchmark,
            snfl_attack_config,
        )

        out = out or Path("runs/snfl-attack")
        cfg = snfl_attack_config(iterations or 40, samples, device)
        attack_device(cfg)
        with progress_bar() as bar:
            task = bar.add_task("snfl-attack", total=count_runs(cfg), info="")
            run_attack_benchmark(cfg, out, progress=lambda s: bar.update(task, advance=1, info=s))
    console.print((out / "summary.md").read_text())
    console.print(write_results_page(out))


SETTINGS = ("lenet5-mnist", "dlg-cifar", "protocol-mnist", "protocol-cifar",
            "protocol-cifar-mlp")


def _seeds(seeds: str) -> tuple[int, ...]:
    try:
        out = tuple(int(s) for s in seeds.split(",") if s.strip())
    except ValueError:
        out = ()
    if not out:
        raise ValueError(f"--seeds={seeds!r} must be comma-separated integers, e.g. 0,1")
    return out


def _need_root(setting: str, data_root: Path | None) -> Path:
    if data_root is None:
        raise ValueError(f"--setting {setting} reads CIFAR-10: pass --data-root (or set "
                         "SPIKEFED_DATA) to the folder holding cifar10/")
    return data_root


def _dlg_cifar(setting: str, out: Path, iterations: int | None, samples: int,
               seeds: tuple[int, ...], data_root: Path | None) -> None:
    """`--setting dlg-cifar`: DLG's LeNet on CIFAR-10 (see spikefed.experiments.privacy_dlg)."""
    from spikefed.experiments.privacy_dlg import DLGCifarSetting, load_cifar_victims, run_dlg_cifar

    cfg = DLGCifarSetting(iterations=iterations or 300, seeds=seeds)
    x, y, calib, ids = load_cifar_victims(_need_root(setting, data_root), samples)
    with progress_bar() as bar:
        task = bar.add_task(setting, total=len(x) * len(seeds) * len(cfg.arms), info="")
        run_dlg_cifar(x, y, calib, cfg, out, ids,
                      progress=lambda s: bar.update(task, advance=1, info=s))
    console.print((out / "summary.md").read_text())
    console.print(f"wrote {out}/results.csv, summary.md, strips.png")


def _protocol(setting: str, out: Path, iterations: int | None, samples: int,
              seeds: tuple[int, ...], data_root: Path | None) -> None:
    """`--setting protocol-*`: see spikefed.experiments.privacy_protocol."""
    from spikefed.experiments.privacy_protocol import (
        ARMS,
        load_protocol_victims,
        protocol_setting,
        run_protocol_attack,
    )

    root = _need_root(setting, data_root) if setting != "protocol-mnist" else None
    cfg = protocol_setting(setting, seeds, iterations)
    x, y, peer_x, peer_y = load_protocol_victims(setting, samples, root)
    total = len(seeds) * len(cfg.local_steps) * len(x) * len(ARMS) * len(cfg.attacks)
    with progress_bar() as bar:
        task = bar.add_task(setting, total=total, info="")
        run_protocol_attack(x, y, peer_x, peer_y, cfg, out,
                            progress=lambda s: bar.update(task, advance=1, info=s))
    console.print((out / "summary.md").read_text())
    console.print(f"wrote {out}/results.csv, summary.md")


def register(app: typer.Typer, reproduce: typer.Typer) -> None:
    """Add `attack` and `reproduce snfl-attack`."""
    app.command("attack")(attack_command)
    reproduce.command("snfl-attack")(snfl_attack_command)
