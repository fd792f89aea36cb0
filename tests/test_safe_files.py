"""Bad files given to the CLI: code-carrying pickles are refused, junk gives exit 2 and a name."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from spikefed.cli import app
from spikefed.tensorfile import UnsafeFileError, load_tensor_file
from spikefed.yamlfile import read_yaml_mapping


class _Payload:
    """Unpickling this creates `marker` (a stand-in for any code an attacker would run)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def _crafted(path: Path, marker: Path) -> Path:
    torch.save({"fc.weight": torch.zeros(2, 2), "fc.bias": _Payload(marker)}, path)
    return path


def test_crafted_payload_is_live_without_weights_only(tmp_path) -> None:
    """The control: the same file does run code when loaded the unsafe way."""
    marker = tmp_path / "control-marker"
    torch.load(_crafted(tmp_path / "evil.pt", marker), weights_only=False)
    assert marker.exists()


def test_convert_refuses_crafted_pickle_without_running_it(tmp_path) -> None:
    marker = tmp_path / "marker"
    evil = _crafted(tmp_path / "evil.pt", marker)
    res = CliRunner().invoke(app, ["convert", str(evil), "--model", "mlp", "--dataset",
                                   "mnist-mini", "--out", str(tmp_path / "out")])
    assert res.exit_code == 2, res.output
    assert not marker.exists()
    assert "refused to load" in res.output and "evil.pt" in res.output
    assert "could run code" in res.output and "Traceback" not in res.output
    with pytest.raises(UnsafeFileError):
        load_tensor_file(evil)
    assert not marker.exists()


@pytest.mark.parametrize("name, content, expected", [
    ("notes.txt", b"hello, this is not a checkpoint\n", "not a readable torch.save file"),
    ("random.bin", os.urandom(4096), "not a readable torch.save file"),
    ("empty.pt", b"", "is empty"),
])
def test_convert_on_junk_files_names_the_file(tmp_path, name, content, expected) -> None:
    bad = tmp_path / name
    bad.write_bytes(content)
    res = CliRunner().invoke(app, ["convert", str(bad), "--model", "mlp", "--dataset",
                                   "mnist-mini", "--out", str(tmp_path / "out")])
    assert res.exit_code == 2, res.output
    flat = " ".join(res.output.split())
    assert name in flat and expected in flat, res.output
    assert "Traceback" not in res.output


def test_state_dicts_and_checkpoints_still_load(tmp_path) -> None:
    state = {"w": torch.arange(3.0), "nested": {"n": 3, "t": [torch.ones(1)]}}
    torch.save(state, tmp_path / "ok.pt")
    back = load_tensor_file(tmp_path / "ok.pt")
    assert torch.equal(back["w"], state["w"]) and back["nested"]["n"] == 3
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_tensor_file(tmp_path / "missing.pt")


@pytest.mark.parametrize("content, expected", [
    (b"name: x\n  bad: [unclosed\n", "is not valid YAML at line"),
    (b"- just\n- a list\n", "holds a list at the top level"),
    (b"\x89PNG\r\n\x1a\n\x00\xff\xfe binary", "is not UTF-8 text"),
])
def test_attack_on_bad_yaml_names_the_file(tmp_path, content, expected) -> None:
    bad = tmp_path / "attack.yaml"
    bad.write_bytes(content)
    res = CliRunner().invoke(app, ["attack", str(bad), "--out", str(tmp_path / "out")])
    assert res.exit_code == 2, res.output
    flat = " ".join(res.output.split())
    assert "attack.yaml" in flat and expected in flat, res.output
    assert "Traceback" not in res.output
    assert not (tmp_path / "out").exists()


def test_yaml_mapping_reader(tmp_path) -> None:
    (tmp_path / "a.yaml").write_text("a: 1\nb: {c: 2}\n")
    assert read_yaml_mapping(tmp_path / "a.yaml") == {"a": 1, "b": {"c": 2}}
    (tmp_path / "empty.yaml").write_text("")
    assert read_yaml_mapping(tmp_path / "empty.yaml") == {}
