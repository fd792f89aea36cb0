"""report.html, `spikefed report` and `spikefed compare` (without a browser)."""

from __future__ import annotations

import json
import re

import matplotlib.pyplot as plt
import pytest
import yaml
from typer.testing import CliRunner

from spikefed.cli import app
from spikefed.config import load_config
from spikefed.report.compare import differing_keys, write_comparison
from spikefed.report.html import write_report
from spikefed.report.runs import find_run_dirs, load_run
from spikefed.sim import Simulation

runner = CliRunner()
TINY = ["train.rounds=2", "data.num_clients=3", "model.T=2", "data.test_subset=100",
        "train.batch_size=64"]


def _out(res) -> str:
    """CLI output with rich's line wrapping undone."""
    return " ".join(res.output.split())


def _assert_self_contained(text: str) -> None:
    assert not re.search(r'(src|href)="(https?:)?//', text), "page loads from the network"
    assert "<link" not in text and "<script src" not in text


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "tiny"
    Simulation(load_config(None, TINY), out).run()
    return out


def test_run_writes_report_with_summary_curves_and_clients(run_dir) -> None:
    text = (run_dir / "report.html").read_text()
    summary = json.loads((run_dir / "summary.json").read_text())
    _assert_self_contained(text)
    assert f'data-summary="final_server_acc">{summary["final_server_acc"]:.4f}<' in text
    assert f'data-summary="total_bytes_up">{summary["total_bytes_up"]:,}<' in text
    assert text.count("<svg") >= 5 and "data:image/png;base64," in text  # curves + partition
    assert 'id="clients"' in text and 'id="status">complete<' in text
    assert "num_clients: 3" in text  # the resolved config


def _write_run(path, records, **cfg) -> None:
    path.mkdir(parents=True)
    config = {"name": path.name, "train": {"rounds": len(records), "lr": 0.05},
              "model": {"T": 8}}
    for key, value in cfg.items():
        section, name = key.split("__")
        config[section][name] = value
    (path / "config.yaml").write_text(yaml.safe_dump(config))
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))


def _records(accs, mb=1.0):
    return [{"round": i + 1, "server_acc": a, "bytes_up": int(mb * 1e6), "bytes_down": 0,
             "wall_s": 1.0, "uploads": 2, "stragglers": 0, "rejected": [],
             "train_loss_mean": 0.5} for i, a in enumerate(accs)]


def test_crashed_run_gets_a_report_from_partial_metrics(tmp_path) -> None:
    run = tmp_path / "crashed"
    _write_run(run, _records([0.3, 0.5]))
    (run / "config.yaml").write_text(yaml.safe_dump({"name": "crashed", "train": {"rounds": 9}}))
    bad = {**_records([0.1])[0], "round": 3, "uploads": 0, "server_acc": None,
           "rejected": [{"client": 4, "reason": "norm too large"}]}
    with (run / "metrics.jsonl").open("a") as fh:
        fh.write(json.dumps(bad) + "\n" + '{"round": 4, "server_a')  # torn last line
    res = runner.invoke(app, ["report", str(run)])
    assert res.exit_code == 0, res.output
    text = (run / "report.html").read_text()
    assert "stopped after 3 of 9 rounds" in text
    assert 'data-summary="best_server_acc">0.5000<' in text
    assert "norm too large" in text and 'id="rejected"' in text


def test_report_of_a_results_folder_renders_tables_and_figures(tmp_path) -> None:
    (tmp_path / "exp").mkdir()
    (tmp_path / "exp" / "results.md").write_text(
        "# Table 1\n\n| method | acc |\n|---|---:|\n| SNFL | 0.91 |\n| FedAvg | 0.88 |\n")
    (tmp_path / "results.csv").write_text("attack,psnr\ndlg,12.5\n")
    fig, ax = plt.subplots()
    ax.plot([0, 1])
    fig.savefig(tmp_path / "exp" / "strip.png")
    plt.close(fig)
    out = write_report(tmp_path)
    text = out.read_text()
    _assert_self_contained(text)
    assert "<h4>Table 1</h4>" not in text and "Table 1" in text
    assert "<td>0.91</td>" in text and "<td>12.5</td>" in text
    assert "<td>dlg</td>" in text and "data:image/png;base64," in text


def test_broken_config_is_a_clean_error_and_torn_summary_is_recomputed(tmp_path) -> None:
    run = tmp_path / "r"
    _write_run(run, _records([0.4, 0.6]))
    (run / "summary.json").write_text('{"rounds": 2, "final_ser')
    assert runner.invoke(app, ["report", str(run)]).exit_code == 0
    assert 'data-summary="final_server_acc">0.6000<' in (run / "report.html").read_text()
    (run / "config.yaml").write_text("train: [unclosed")
    res = runner.invoke(app, ["report", str(run)])
    assert res.exit_code == 2 and "config.yaml is not valid YAML" in _out(res)


def test_report_cli_errors_are_clean(tmp_path) -> None:
    res = runner.invoke(app, ["report", str(tmp_path / "nope")])
    assert res.exit_code == 2 and "not a directory" in _out(res)
    res = runner.invoke(app, ["report", str(tmp_path)])  # empty folder: nothing to report
    assert res.exit_code == 2 and "no run" in _out(res)


def test_compare_finds_runs_and_explains_the_best(tmp_path) -> None:
    sweep = tmp_path / "sweep"
    _write_run(sweep / "a", _records([0.5, 0.6]), train__lr=0.01)
    _write_run(sweep / "b", _records([0.6, 0.8], mb=2.0), train__lr=0.1)
    _write_run(sweep / "c", _records([0.7, 0.7]), train__lr=0.05, model__T=4)
    assert find_run_dirs([sweep]) == [sweep / "a", sweep / "b", sweep / "c"]
    assert find_run_dirs([str(sweep / "[ab]")]) == [sweep / "a", sweep / "b"]
    assert differing_keys([load_run(p) for p in find_run_dirs([sweep])]) == [
        "model.T", "train.lr"]
    res = runner.invoke(app, ["compare", str(sweep), "--out", str(tmp_path / "cmp")])
    assert res.exit_code == 0, res.output
    md = (tmp_path / "cmp" / "compare.md").read_text()
    assert md.splitlines()[2].startswith("Best: b with final server accuracy 0.8000")
    assert "train.lr=0.1 (runner-up 0.05)" in md and "model.T=8 (runner-up 4)" in md
    # target 0.6 = lowest final accuracy; c reaches it first (round 1, 1 MB)
    assert "Cheapest to reach 0.6000" in md and ": c at round 1 after 1.0 MB" in md
    assert "| b | all 2 rounds recorded, no summary.json | 0.8000 |" in md
    assert "Not finished, compare with care: a (all 2 rounds recorded, no summary.json)" in md
    html = (tmp_path / "cmp" / "compare.html").read_text()
    _assert_self_contained(html)
    assert html.count("<svg") == 3 and '<tr class="best"><td>b</td>' in html


def test_compare_cli_errors_are_clean(tmp_path) -> None:
    res = runner.invoke(app, ["compare", str(tmp_path / "x*")])
    assert res.exit_code == 2 and "no path matches" in _out(res)
    res = runner.invoke(app, ["compare", str(tmp_path)])
    assert res.exit_code == 2 and "no run directory" in _out(res)


def test_write_comparison_returns_both_files(tmp_path) -> None:
    _write_run(tmp_path / "r" / "one", _records([0.5]))
    html_path, md_path = write_comparison([tmp_path / "r" / "one"], tmp_path / "o")
    assert html_path.is_file() and md_path.is_file()
    assert "Best: one" in md_path.read_text()
