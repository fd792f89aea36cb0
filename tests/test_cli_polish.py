"""`spikefed run` output: no leftover client line, an ETA, and --quiet for scripts."""

from __future__ import annotations

from typer.testing import CliRunner

from spikefed.cli import app
from spikefed.cli.common import EtaColumn, progress_bar

TINY = ["--set", "train.rounds=2", "--set", "data.num_clients=3", "--set", "model.T=2",
        "--set", "data.test_subset=100", "--set", "train.batch_size=64"]


def test_run_leaves_no_clients_line_and_quiet_prints_only_the_run_dir(tmp_path) -> None:
    runner = CliRunner()
    res = runner.invoke(app, ["run", *TINY, "--out", str(tmp_path / "a")],
                        env={"COLUMNS": "120"})
    assert res.exit_code == 0, res.output
    assert "rounds" in res.output and "2/2" in res.output
    assert not any(line.startswith("clients") for line in res.output.splitlines())
    assert "0/?" not in res.output
    res = runner.invoke(app, ["run", *TINY, "--quiet", "--out", str(tmp_path / "b")])
    assert res.exit_code == 0, res.output
    assert res.output == f"{tmp_path / 'b'}\n"
    assert (tmp_path / "b" / "report.html").is_file()


def test_eta_counts_down_from_the_mean_round_time() -> None:
    now = [0.0]
    bar = progress_bar(eta=True)
    bar.get_time = lambda: now[0]
    task_id = bar.add_task("rounds", total=10, info="")
    bar.start_task(task_id)
    task = bar.tasks[0]
    column = EtaColumn()
    assert column.render(task).plain == ""  # nothing done yet: no estimate
    now[0] = 20.0
    bar.update(task_id, completed=2, at=now[0])  # 10 s per round, 8 rounds left
    assert column.render(task).plain == "ETA 0:01:20"
    now[0] = 25.0
    assert column.render(task).plain == "ETA 0:01:15"
    resumed = bar.add_task("resumed", total=10, info="", base=6)  # rounds 1-6 done earlier
    now[0] = 30.0
    bar.update(resumed, completed=7, at=now[0])  # 5 s for the one round of this process
    assert column.render(bar.tasks[resumed]).plain == "ETA 0:00:15"
    unknown = bar.add_task("clients", total=None, info="")
    assert column.render(bar.tasks[unknown]).plain == ""
