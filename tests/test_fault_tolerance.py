"""Crash safety: SIGKILL at any point loses at most the round in progress, and
`spikefed run --resume DIR` then ends with exactly the uninterrupted run's metrics.

One run is killed five times in a row (each kill in a fresh subprocess, each later start a
`--resume`): mid-round, between the metrics line and the checkpoint, half-way through writing
the checkpoint file, and right after a checkpoint. The last resume runs to the end.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest
from typer.testing import CliRunner

from spikefed.cli import app
from spikefed.config import load_config
from spikefed.report import read_metrics
from spikefed.sim import Simulation
from spikefed.sim.checkpoint import load_checkpoint

CONFIG = """\
name: crash
seed: 3
data: {num_clients: 40, test_subset: 100, partition: {scheme: iid}}
model: {T: 2, kwargs: {hidden: [16]}}
train: {rounds: 5, clients_per_round: 2, batch_size: 64}
"""

# Runs the real CLI in a subprocess and SIGKILLs it at a chosen point.
KILLER = textwrap.dedent("""
    import os, signal, sys
    import spikefed.sim.checkpoint as ck
    import spikefed.sim.engine as engine
    from spikefed.cli import app
    from spikefed.fl.fedavg import FedAvg

    point, at_round, args = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    die = lambda: os.kill(os.getpid(), signal.SIGKILL)
    save, write, update = engine.save_checkpoint, ck.atomic_write_bytes, FedAvg.client_update
    saving, calls = [0], {}

    def save_checkpoint(directory, state):
        saving[0] = state["round"]
        if point == "before-checkpoint" and state["round"] == at_round:
            die()
        path = save(directory, state)
        if point == "after-checkpoint" and state["round"] == at_round:
            die()
        return path

    def atomic_write_bytes(path, data):
        if point == "torn-checkpoint" and saving[0] == at_round:
            path.with_name(f".{path.name}.tmp-{os.getpid()}").write_bytes(data[: len(data) // 2])
            die()
        write(path, data)

    def client_update(self, broadcast, client_state, data, ctx):
        calls[ctx.round] = calls.get(ctx.round, 0) + 1
        if point == "mid-round" and ctx.round == at_round and calls[ctx.round] == 2:
            die()
        return update(self, broadcast, client_state, data, ctx)

    engine.save_checkpoint, ck.atomic_write_bytes = save_checkpoint, atomic_write_bytes
    FedAvg.client_update = client_update
    app(args)
""")


KILLS = [  # (point, round, rounds the checkpoint holds afterwards)
    ("mid-round", 2, 1),
    ("before-checkpoint", 2, 1),
    ("torn-checkpoint", 3, 2),
    ("after-checkpoint", 3, 3),
    ("after-checkpoint", 4, 4),
]


def _strip(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "wall_s"} for r in records]


@pytest.mark.slow
def test_sigkill_anywhere_then_resume_matches_uninterrupted_run(tmp_path) -> None:
    cfg_path = tmp_path / "crash.yaml"
    cfg_path.write_text(CONFIG)
    reference = tmp_path / "reference"
    Simulation(load_config(cfg_path), reference).run()
    expected = _strip(read_metrics(reference / "metrics.jsonl"))

    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for i, (point, at_round, kept) in enumerate(KILLS):
        args = ["run", str(cfg_path), "--out", str(run)] if i == 0 else ["run", "--resume",
                                                                        str(run)]
        proc = subprocess.run([sys.executable, "-c", KILLER, point, str(at_round), *args],
                              env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == -signal.SIGKILL, (point, proc.stderr[-2000:])
        assert load_checkpoint(run / "checkpoint")["round"] == kept, point
        done = _strip(read_metrics(run / "metrics.jsonl"))[:kept]
        assert done == expected[:kept], point  # finished rounds are never lost or altered

    result = CliRunner().invoke(app, ["run", "--resume", str(run)])
    assert result.exit_code == 0, result.output
    assert _strip(read_metrics(run / "metrics.jsonl")) == expected
    summary = (run / "summary.json").read_text()
    assert '"rounds": 5' in summary
    assert load_checkpoint(run / "checkpoint")["round"] == 5


def test_torn_temporary_file_never_replaces_a_checkpoint(tmp_path) -> None:
    from spikefed.sim.checkpoint import save_checkpoint

    save_checkpoint(tmp_path, {"round": 1})
    (tmp_path / f".state.pt.tmp-{os.getpid() + 1}").write_bytes(b"\x80torn")
    assert load_checkpoint(tmp_path)["round"] == 1
    save_checkpoint(tmp_path, {"round": 2})
    assert load_checkpoint(tmp_path)["round"] == 2


def test_resume_without_checkpoint_is_a_clear_error(tmp_path) -> None:
    (tmp_path / "config.yaml").write_text(CONFIG)
    result = CliRunner().invoke(app, ["run", "--resume", str(tmp_path)])
    assert result.exit_code != 0
    assert "no checkpoint at" in result.output

