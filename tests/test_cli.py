"""The command line: config errors name the key, overrides work, a tiny run completes."""

from __future__ import annotations

import yaml
from typer.testing import CliRunner

from spikefed.cli import app

runner = CliRunner()


def test_config_prints_defaults_and_applies_overrides() -> None:
    res = runner.invoke(app, ["config", "--set", "train.rounds=7", "--set", "model.T=12"])
    assert res.exit_code == 0, res.output
    cfg = yaml.safe_load(res.output)
    assert cfg["train"]["rounds"] == 7 and cfg["model"]["T"] == 12


def test_bad_config_key_is_named(tmp_path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  roundz: 3\n")
    res = runner.invoke(app, ["run", str(bad), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2
    assert "train.roundz" in res.output


def test_bad_value_names_key_value_and_choices(tmp_path) -> None:
    res = runner.invoke(app, ["config", "--set", "data.partition.scheme=zipf"])
    assert res.exit_code == 2
    assert "data.partition.scheme" in res.output and "zipf" in res.output
    assert "dirichlet" in res.output
    res = runner.invoke(app, ["config", "--set", "algorithm.name=fedx"])
    assert "fedx" in res.output and "fedavg" in res.output


def test_run_with_overrides_writes_run_dir(tmp_path) -> None:
    out = tmp_path / "run"
    res = runner.invoke(app, ["run", "--out", str(out), "--set", "train.rounds=1",
                              "--set", "data.num_clients=2", "--set", "data.test_subset=200",
                              "--set", "model.kwargs.hidden=[32]", "--set", "model.T=2",
                              "--set", "train.eval_clients=false"])
    assert res.exit_code == 0, res.output
    assert "final server accuracy" in res.output
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["train"]["rounds"] == 1 and saved["data"]["num_clients"] == 2
    res = runner.invoke(app, ["run", "--resume", str(out), "--set", "train.rounds=2"])
    assert res.exit_code == 2 and "--resume" in res.output
