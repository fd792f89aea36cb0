"""`spikefed attack`: config validation and a tiny end-to-end run."""

from __future__ import annotations

import csv

import pytest
from typer.testing import CliRunner

from spikefed.cli import app
from spikefed.experiments.privacy import load_attack_config

TINY = [
    "data.samples=1",
    "dlg.iterations=2",
    "dlg.inner_iter=3",
    "ig.iterations=4",
    "model.options={hidden: [16]}",
    "model.T=2",
]


def test_config_rejects_unknown_keys_and_bad_values() -> None:
    with pytest.raises(ValueError, match="unknown key 'threat.bogus'"):
        load_attack_config(None, ["threat.bogus=1"])
    with pytest.raises(ValueError, match="batch_size"):
        load_attack_config(None, ["threat.batch_size=0"])
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_attack_config("/nonexistent.yaml")


def test_attack_command_writes_outputs(tmp_path) -> None:
    out = tmp_path / "run"
    args = ["attack", "--out", str(out)] + [a for s in TINY for a in ("--set", s)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert len(rows) == 3 * 2  # attacks x models
    assert {r["model"] for r in rows} == {"ann", "snn"}
    assert {r["attack"] for r in rows} == {"dlg", "idlg", "ig"}
    assert all(r["psnr"] != "" and int(r["grad_evals"]) >= int(r["steps"]) for r in rows)
    for name in ("summary.md", "reconstructions.png", "psnr_curves.png", "config.yaml"):
        assert (out / name).stat().st_size > 0
    page = (out / "report.html").read_text()  # the results as one self-contained page
    assert "reconstructions.png" in page and "data:image/png;base64," in page
    assert "<td>dlg</td>" in page
    table = [ln for ln in (out / "summary.md").read_text().splitlines() if ln.startswith("| ")]
    assert "| PSNR dB (ann) | PSNR dB (snn) | SSIM (ann) | SSIM (snn) |" in table[0]
    assert [ln.split(" | ")[2] for ln in table[1:]] == ["dlg", "idlg", "ig"]  # one row each
    assert all(len(ln.split(" | ")) == len(table[0].split(" | ")) for ln in table[1:])


def test_attack_command_reports_config_errors(tmp_path) -> None:
    result = CliRunner().invoke(app, ["attack", "--out", str(tmp_path), "--set", "attacks=[nope]"])
    assert result.exit_code == 2
    assert "attacks" in result.output
