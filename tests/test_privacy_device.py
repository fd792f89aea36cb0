"""The attack benchmark's `device` key: resolution, CLI overrides, no default-device tensors."""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

import spikefed.experiments.privacy as P
import spikefed.experiments.privacy.run as privacy_run
from spikefed.cli import app

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
NO_GPU = pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
TINY = [
    "data.samples=1",
    "dlg.iterations=2",
    "dlg.inner_iter=3",
    "ig.iterations=3",
    "statprior.iterations=3",
    "statprior.probe_iterations=2",
    "model.options={hidden: [16]}",
    "model.T=2",
]


def test_device_key_defaults_to_cpu_and_is_validated() -> None:
    assert P.load_attack_config(None).device == "cpu"
    with pytest.raises(ValueError, match="device='tpu'"):
        P.load_attack_config(None, ["device=tpu"])
    for name in ("attack_nmnist.yaml", "attack_cifar_resnet20.yaml"):
        assert P.load_attack_config(CONFIGS / name).device == "auto"
    assert P.snfl_attack_config(device="auto").device == "auto"
    with pytest.raises(ValueError, match="device='gpu'"):
        P.snfl_attack_config(device="gpu")


@NO_GPU
def test_cuda_without_gpu_is_a_clear_error(tmp_path) -> None:
    assert P.attack_device(P.load_attack_config(None, ["device=auto"])) == torch.device("cpu")
    cfg = P.load_attack_config(None, ["device=cuda"])
    with pytest.raises(ValueError, match=r"device='cuda'.*--device cpu or auto.*device: auto"):
        P.run_attack_benchmark(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists()  # fails before writing anything
    for args in (["attack", "--device", "cuda"], ["reproduce", "snfl-attack", "--device", "cuda"]):
        result = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "cli")])
        assert result.exit_code == 2, result.output
        assert "device='cuda'" in result.output and "no CUDA GPU" in result.output
    assert not (tmp_path / "cli").exists()


def test_cli_device_overrides_the_config(tmp_path) -> None:
    out = tmp_path / "run"
    sets = [*TINY, "attacks=[idlg]", "model.kinds=[ann]"]
    args = ["attack", "--out", str(out), "--device", "auto"]
    result = CliRunner().invoke(app, args + [a for s in sets for a in ("--set", s)])
    assert result.exit_code == 0, result.output
    assert yaml.safe_load((out / "config.yaml").read_text())["device"] == "auto"
    resolved = "cuda" if torch.cuda.is_available() else "cpu"
    assert f"device {resolved}" in (out / "summary.md").read_text()
    assert len(list(csv.DictReader((out / "results.csv").open()))) == 1


def _on_cpu(fn: Callable) -> Callable:
    """``fn`` with CPU as the default device (model construction and conversion)."""

    def wrapped(*args, **kwargs):
        with torch.device("cpu"):
            return fn(*args, **kwargs)

    return wrapped


@pytest.mark.parametrize(
    "sets",
    [
        [  # every attack and defense against the ANN, FedAvg threat
            "attacks=[dlg, idlg, ig, statprior]",
            "model.kinds=[ann]",
            "model.ann_activation=relu",
            "threat.kind=fedavg",
            "threat.local_steps=2",
            "defenses=[{kind: noise, sigma: 0.01}, {kind: prune, ratio: 0.5}, "
            "{kind: dpsgd, sigma: 1.0}, {kind: snfl}]",
            "snfl_calibration=8",
        ],
        [  # the SNN on every offline input domain, straight-through relaxation
            "attacks=[idlg, ig]",
            "domain.kinds=[image, rate, latency, raster]",
            "domain.relax=ste",
        ],
        [  # unknown batch size (the size found may differ from the true one)
            "attacks=[statprior]",
            "model.kinds=[snn]",
            "threat.batch_size=2",
            "threat.unknown_batch_size=true",
        ],
    ],
    ids=["ann-defenses", "snn-domains", "unknown-batch"],
)
def test_attack_paths_create_no_tensor_on_the_default_device(sets, tmp_path, monkeypatch) -> None:
    """With "meta" as the default device, a tensor made without ``device=`` cannot meet the
    CPU model and data (mixing raises, reading a value raises), so the run passing proves
    every tensor follows the model's device, as it must on a GPU."""
    # the benchmark loop's nn.Module constructors and the converter's modules
    monkeypatch.setattr(privacy_run, "models_for", _on_cpu(privacy_run.models_for))
    monkeypatch.setattr(privacy_run, "snfl_convert", _on_cpu(privacy_run.snfl_convert))
    cfg = P.load_attack_config(None, [*TINY, *sets])
    torch.set_default_device("meta")
    try:
        with pytest.raises(RuntimeError):  # the check is live: a leak does raise
            torch.zeros(1) + torch.ones(1, device="cpu")
        rows = P.run_attack_benchmark(cfg, tmp_path)
    finally:
        torch.set_default_device(None)
    assert len(rows) == P.count_runs(cfg)
    assert all(isinstance(r["psnr"], float) for r in rows)
    assert (tmp_path / "reconstructions.png").stat().st_size > 0
