"""Config hardening: real numbers only, round sizes that can aggregate, empty and binary files
rejected, and every error naming the file."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from spikefed.cli import app
from spikefed.config import ConfigError, load_config


@pytest.mark.parametrize("override, phrase", [
    ("train.lr=.inf", "train.lr=inf: Input should be a finite number"),
    ("train.lr=nan", "train.lr='nan': Input should be a finite number"),
    ("train.momentum=-.inf", "train.momentum=-inf"),
    ("energy.e_mac_pj=.nan", "energy.e_mac_pj=nan"),
    ("data.partition.beta=.inf", "data.partition.beta=inf"),
    ("train.rounds=true", "train.rounds=True: expected a number, got a boolean"),
    ("train.lr=false", "train.lr=False: expected a number, got a boolean"),
    ("data.test_subset=true", "data.test_subset=True: expected a number"),
    ("train.min_clients=11", "train.min_clients=11 exceeds the 10 participant(s)"),
    ("train.clients_per_round=12", "train.clients_per_round=12 exceeds the 10 client(s)"),
])
def test_bad_numbers_and_round_sizes_are_rejected(tmp_path, override, phrase) -> None:
    path = tmp_path / "exp.yaml"
    path.write_text("name: exp\n")
    with pytest.raises(ConfigError) as err:
        load_config(path, [override])
    assert phrase in str(err.value)
    assert str(path) in str(err.value)  # every config error names the file


@pytest.mark.parametrize("extra, phrase", [
    (["algorithm.name=fedprox", "algorithm.params.mu=.inf"], "algorithm.params.mu=inf"),
    (["algorithm.name=scaffold", "algorithm.params.server_lr=true"],
     "algorithm.params.server_lr=True: expected a number"),
    (["train.clients_per_round=3", "train.min_clients=4"], "exceeds the 3 participant(s)"),
    (["train.fraction=0.2", "train.min_clients=3"], "exceeds the 2 participant(s)"),
])
def test_algorithm_params_and_sampling_are_checked(extra, phrase) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(overrides=extra)
    assert phrase in str(err.value)


def test_valid_numbers_still_pass() -> None:
    cfg = load_config(overrides=["train.lr=1e-3", "model.neuron.learn_beta=true",
                                 "train.clients_per_round=10", "train.min_clients=10",
                                 "train.vectorize=off"])
    assert cfg.train.lr == 0.001 and cfg.model.neuron.learn_beta is True
    assert load_config(overrides=["algorithm.name=centralized", "train.clients_per_round=4"])


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n"])
def test_empty_config_file_is_an_error_but_braces_run_defaults(tmp_path, text) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match="is empty") as err:
        load_config(path)
    assert str(path) in str(err.value) and "{}" in str(err.value)
    path.write_text("{}\n")
    assert load_config(path) == load_config()


def test_binary_config_file_is_a_clear_cli_error(tmp_path) -> None:
    path = tmp_path / "model.yaml"
    path.write_bytes(b"PK\x03\x04\x14\x00\x00\x00\x08\x00\xb7\x9c\xff\xfe")
    result = CliRunner().invoke(app, ["run", str(path), "--out", str(tmp_path / "r")])
    assert result.exit_code == 2
    text = "".join(result.output.split())
    assert "notUTF-8text" in text and "".join(str(path).split()) in text
    assert "Traceback" not in result.output
    assert not (tmp_path / "r").exists()
