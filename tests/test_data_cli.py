"""`spikefed datasets`: lists every data set and whether it is found under the data root."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from spikefed.cli import app
from spikefed.data import DATASETS
from spikefed.data.event_sets import EVENT_SETS


def test_datasets_command_reports_found_and_missing(tmp_path: Path) -> None:
    folder = tmp_path / "mnist"
    folder.mkdir()
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                 "t10k-labels-idx1-ubyte"):
        (folder / f"{name}.gz").write_bytes(b"")
    result = CliRunner().invoke(app, ["datasets", "--data-root", str(tmp_path)],
                                env={"COLUMNS": "400"})
    assert result.exit_code == 0, result.output
    lines = {line.split("│")[1].strip(): line for line in result.output.splitlines()
             if line.count("│") > 3 and line.split("│")[1].strip()}
    assert set(DATASETS) <= set(lines)
    assert "found" in lines["mnist"] and str(folder) in lines["mnist"]
    assert "missing" in lines["fashion-mnist"] and "missing" in lines["cifar100"]
    assert "bundled" in lines["mnist-mini"]
    assert "missing" in lines["nmnist-small"]
    assert "bundled" in lines["nmnist-mini"]
    assert "found" in lines["mnist-emulated"] and "missing" in lines["cifar10-emulated"]
    assert set(EVENT_SETS) <= set(lines)
    (tmp_path / "nmnist_small").mkdir()
    (tmp_path / "nmnist_small" / "NMNISTsmall.tar.gz").write_bytes(b"")
    result = CliRunner().invoke(app, ["datasets", "--data-root", str(tmp_path)],
                                env={"COLUMNS": "400"})
    assert any("nmnist-small" in line and "found" in line and "NMNISTsmall.tar.gz" in line
               for line in result.output.splitlines())


def test_datasets_command_without_root() -> None:
    result = CliRunner().invoke(app, ["datasets"], env={"SPIKEFED_DATA": "", "COLUMNS": "400"})
    assert result.exit_code == 0, result.output
    assert "no data root" in result.output and "--data-root" in result.output


def test_datasets_command_fits_80_columns(tmp_path: Path) -> None:
    """In an 80-column terminal no line is wider and no table cell wraps."""
    (tmp_path / "nmnist_small").mkdir()
    (tmp_path / "nmnist_small" / "NMNISTsmall.tar.gz").write_bytes(b"")
    result = CliRunner().invoke(app, ["datasets", "--data-root", str(tmp_path)],
                                env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert max(len(line) for line in lines) <= 80
    rows = [line.split("│")[1].strip() for line in lines if line.startswith("│")]
    assert rows == [*DATASETS, *EVENT_SETS]  # one line each
    assert any("nmnist-small" in line and "found" in line for line in lines)
    assert "train-images-idx3-ubyte(.gz)," in result.output  # file names are never broken
