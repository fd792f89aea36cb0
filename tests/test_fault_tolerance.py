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
from spikefed.sim.checkpoint import load_checkpoint, save_checkpoint

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

    def client_update(self, client_id, broadcast, client_state, data, ctx):
        calls[ctx.round] = calls.get(ctx.round, 0) + 1
        if point == "mid-round" and ctx.round == at_round and calls[ctx.round] == 2:
            die()
        return update(self, client_id, broadcast, client_state, data, ctx)

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



# ----- verified state, run-directory guard, divergence (fast fault injection) ---------------
TINY = """\
name: tiny
seed: 1
data: {num_clients: 20, test_subset: 50, partition: {scheme: iid}}
model: {T: 2, kwargs: {hidden: [8]}}
train: {rounds: 2, clients_per_round: 2, batch_size: 64}
"""


def _tiny_run(tmp_path, *args: str, rounds: int = 2) -> tuple[object, object]:
    """A finished (or `rounds`-long) tiny CLI run in tmp_path/run: (result, run dir)."""
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(TINY.replace("rounds: 2", f"rounds: {rounds}"))
    run = tmp_path / "run"
    return CliRunner().invoke(app, ["run", str(cfg), "--out", str(run), *args]), run


def _tiny_cfg(tmp_path, rounds: int = 2):
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY.replace("rounds: 2", f"rounds: {rounds}"))
    return load_config(path)


def _half_run(tmp_path):
    """A 2-round tiny run stopped after round 1 (checkpoint and metrics at round 1)."""
    run = tmp_path / "run"
    Simulation(_tiny_cfg(tmp_path), run).run(stop_after=1)
    return run


def _resume(run, *args: str):
    return CliRunner().invoke(app, ["run", "--resume", str(run), *args])


def _assert_clean_error(result, *phrases: str) -> None:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and "Aborted" not in result.output
    text = "".join(result.output.split())  # rich wraps long lines anywhere
    for phrase in phrases:
        assert "".join(phrase.split()) in text, (phrase, result.output)


class _Payload:
    """Unpickling this runs a shell command that creates a marker file."""

    def __init__(self, marker) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _plant_payload(run, marker, forge_checksum: bool) -> None:
    import hashlib
    import io
    import json

    import torch

    buf = io.BytesIO()
    torch.save({"round": 1, "config": _Payload(marker)}, buf)
    data = buf.getvalue()
    (run / "checkpoint" / "state.pt").write_bytes(data)
    if forge_checksum:  # an attacker who can write the file can also rewrite its checksum
        (run / "checkpoint" / "state.pt.sha256.json").write_text(json.dumps(
            {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}))


@pytest.mark.parametrize("forge_checksum", [True, False])
def test_pickle_payload_checkpoint_is_refused_without_running(tmp_path, forge_checksum) -> None:
    import torch

    result, run = _tiny_run(tmp_path, rounds=1)
    assert result.exit_code == 0, result.output
    marker = tmp_path / "pwned"
    _plant_payload(run, marker, forge_checksum)
    result = _resume(run)
    why = "holds Python objects other than tensors" if forge_checksum else "damaged"
    _assert_clean_error(result, str(run / "checkpoint" / "state.pt"), why)
    assert not marker.exists()
    torch.load(run / "checkpoint" / "state.pt", weights_only=False)  # the payload is live
    assert marker.exists()


@pytest.mark.parametrize("damage", ["bitflip", "truncate", "empty", "no-checksum"])
def test_damaged_checkpoint_is_an_error_naming_the_file(tmp_path, damage) -> None:
    result, run = _tiny_run(tmp_path, rounds=1)
    assert result.exit_code == 0, result.output
    state = run / "checkpoint" / "state.pt"
    data = bytearray(state.read_bytes())
    if damage == "bitflip":
        data[len(data) // 2] ^= 0x10
        state.write_bytes(bytes(data))
    elif damage == "truncate":
        state.write_bytes(bytes(data[: len(data) // 3]))
    elif damage == "empty":
        state.write_bytes(b"")
    else:
        (run / "checkpoint" / "state.pt.sha256.json").unlink()
    expected = {"bitflip": "damaged", "truncate": "truncated", "empty": "is empty",
                "no-checksum": "no readable checksum file"}[damage]
    _assert_clean_error(_resume(run), str(state), expected, "--overwrite")


def test_checkpoint_and_checksum_swap_at_any_point_still_verifies(tmp_path) -> None:
    """A crash between replacing the checksum file and the state file keeps a loadable pair."""
    from spikefed.sim.checkpoint import CHECKPOINT_FILE, atomic_write_bytes, save_checkpoint

    save_checkpoint(tmp_path, {"round": 1})
    writes = []
    import spikefed.sim.checkpoint as ck

    def crash_after_manifest(path, data):
        writes.append(path.name)
        if path.name == CHECKPOINT_FILE:
            raise KeyboardInterrupt  # the process dies before the state file is replaced
        atomic_write_bytes(path, data)

    ck.atomic_write_bytes, original = crash_after_manifest, ck.atomic_write_bytes
    try:
        for attempt in (2, 3):  # the redone round dies at the same point again
            with pytest.raises(KeyboardInterrupt):
                save_checkpoint(tmp_path, {"round": 2, "attempt": attempt})
    finally:
        ck.atomic_write_bytes = original
    assert writes == ["state.pt.sha256.json", "state.pt"] * 2
    assert load_checkpoint(tmp_path)["round"] == 1  # the old state still verifies
    save_checkpoint(tmp_path, {"round": 2})
    assert load_checkpoint(tmp_path)["round"] == 2


def test_disk_full_ends_with_message_and_keeps_last_checkpoint(tmp_path, monkeypatch) -> None:
    import errno

    import spikefed.sim.checkpoint as ck

    run = _half_run(tmp_path)
    before = (run / "checkpoint" / "state.pt").read_bytes()
    real = ck.atomic_write_bytes

    def disk_full(path, data):
        if path.parent.name == "checkpoint":
            raise OSError(errno.ENOSPC, "No space left on device")
        real(path, data)

    monkeypatch.setattr(ck, "atomic_write_bytes", disk_full)
    result = _resume(run)
    _assert_clean_error(result, "the disk is full", "last good checkpoint is intact",
                        f"--resume {run}")
    monkeypatch.undo()
    assert (run / "checkpoint" / "state.pt").read_bytes() == before
    assert load_checkpoint(run / "checkpoint")["round"] == 1
    result = _resume(run)  # space is back: the run finishes
    assert result.exit_code == 0, result.output
    assert [r["round"] for r in read_metrics(run / "metrics.jsonl")] == [1, 2]


def test_interrupted_atomic_write_leaves_old_file_and_no_temporary(tmp_path, monkeypatch) -> None:
    import errno

    from spikefed.rounds.files import atomic_write_bytes

    target = tmp_path / "f.bin"
    atomic_write_bytes(target, b"old")

    def no_space(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(OSError):
        atomic_write_bytes(target, b"new" * 1000)
    monkeypatch.undo()
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]


def test_metrics_write_error_is_rolled_back(tmp_path, monkeypatch) -> None:
    import errno

    from spikefed.report.metrics import MetricsLog

    log = MetricsLog(tmp_path / "metrics.jsonl")
    log.append({"round": 1, "x": 1.0})
    good = log.path.read_bytes()

    class FullFile:
        def __init__(self, fh):
            self.fh = fh

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.fh.close()

        def tell(self):
            return self.fh.tell()

        def write(self, data):
            self.fh.write(data[:7])  # torn line, then the disk is full
            self.fh.flush()
            raise OSError(errno.ENOSPC, "No space left on device")

        def flush(self):
            self.fh.flush()

        def truncate(self, size):
            self.fh.truncate(size)

    real_open = type(log.path).open
    monkeypatch.setattr(type(log.path), "open", lambda self, mode="r": FullFile(
        real_open(self, mode)))
    with pytest.raises(OSError):
        log.append({"round": 2, "x": 2.0})
    monkeypatch.undo()
    assert log.path.read_bytes() == good


@pytest.mark.parametrize("damage", ["garbled", "deleted", "missing-round"])
def test_metrics_that_lack_checkpointed_rounds_refuse_resume(tmp_path, damage) -> None:
    result, run = _tiny_run(tmp_path)
    assert result.exit_code == 0, result.output
    metrics = run / "metrics.jsonl"
    lines = metrics.read_text().splitlines()
    if damage == "garbled":
        metrics.write_text(lines[0][:25] + "\n" + lines[1] + "\n")
        expected = [f"{metrics} line 1 is damaged"]
    elif damage == "deleted":
        metrics.unlink()
        expected = [str(metrics), "missing round(s) 1-2", "checkpoint is at round 2"]
    else:
        metrics.write_text(lines[1] + "\n")
        expected = [str(metrics), "missing round(s) 1", "checkpoint is at round 2"]
    _assert_clean_error(_resume(run), *expected)


def test_torn_last_metrics_line_is_dropped_on_resume(tmp_path) -> None:
    """An append cut short by a crash (no newline) is the round in progress: it is redone."""
    reference = tmp_path / "reference"
    Simulation(_tiny_cfg(tmp_path), reference).run()
    run = _half_run(tmp_path)
    with (run / "metrics.jsonl").open("a") as fh:
        fh.write('{"round": 2, "particip')
    result = _resume(run)
    assert result.exit_code == 0, result.output
    assert (_strip(read_metrics(run / "metrics.jsonl"))
            == _strip(read_metrics(reference / "metrics.jsonl")))


def test_damaged_or_binary_config_on_resume_names_the_file(tmp_path) -> None:
    result, run = _tiny_run(tmp_path, rounds=1)
    assert result.exit_code == 0, result.output
    cfg = run / "config.yaml"
    saved = cfg.read_text()
    cfg.write_text("name: tiny\ntrain: {rounds: [\n")
    _assert_clean_error(_resume(run), str(cfg), "not valid YAML", "saved config of the run")
    cfg.write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff")
    _assert_clean_error(_resume(run), str(cfg), "not UTF-8", "saved config of the run")
    cfg.write_text(saved.replace("rounds: 1", "rounds: 7"))
    _assert_clean_error(_resume(run), "different config (train.rounds: 1 -> 7)")


def test_checkpoint_from_before_a_new_config_section_resumes(tmp_path) -> None:
    """A run written before a config section existed (its saved config lacks it) resumes:
    the new section's defaults reproduce the old behaviour, so it is no difference."""
    reference = tmp_path / "reference"
    Simulation(_tiny_cfg(tmp_path), reference).run()
    run = _half_run(tmp_path)
    ckpt = load_checkpoint(run / "checkpoint")
    for section in ("aggregator", "asynchronous", "drift"):
        ckpt["config"].pop(section)
    save_checkpoint(run / "checkpoint", ckpt)
    saved = (run / "config.yaml").read_text()
    (run / "config.yaml").write_text(saved.split("aggregator:")[0])  # sections are last
    result = _resume(run)
    assert result.exit_code == 0, result.output
    assert (_strip(read_metrics(run / "metrics.jsonl"))
            == _strip(read_metrics(reference / "metrics.jsonl")))


def test_stale_temporary_files_are_cleaned_on_start_and_resume(tmp_path) -> None:
    result, run = _tiny_run(tmp_path, rounds=1)
    assert result.exit_code == 0, result.output
    stale = [run / "checkpoint" / ".state.pt.tmp-999999",
             run / "checkpoint" / ".state.pt.sha256.json.tmp-999998",
             run / ".metrics.jsonl.tmp-999997"]
    for path in stale:
        path.write_bytes(b"torn")
    keep = run / "notes.txt"
    keep.write_text("mine")
    result = _resume(run)
    assert result.exit_code == 0, result.output
    assert not any(p.exists() for p in stale) and keep.exists()


def test_resume_may_change_device_and_data_root_but_not_seed(tmp_path) -> None:
    run = _half_run(tmp_path)
    _assert_clean_error(_resume(run, "--seed", "7"), "--seed 7 differs from seed 1",
                        "drop --seed")
    moved = tmp_path / "moved-data"
    moved.mkdir()
    result = _resume(run, "--device", "auto", "--data-root", str(moved), "--seed", "1")
    assert result.exit_code == 0, result.output
    saved = load_config(run / "config.yaml")
    assert saved.device == "auto" and saved.data.root == str(moved)
    assert load_checkpoint(run / "checkpoint")["round"] == 2


def test_existing_run_is_not_overwritten_without_overwrite(tmp_path) -> None:
    result, run = _tiny_run(tmp_path, rounds=1)
    assert result.exit_code == 0, result.output
    before = (run / "metrics.jsonl").read_bytes()
    result, _ = _tiny_run(tmp_path, rounds=1)
    _assert_clean_error(result, f"{run} already holds a run", "--overwrite", "--resume")
    assert (run / "metrics.jsonl").read_bytes() == before
    result, _ = _tiny_run(tmp_path, "--overwrite", rounds=1)
    assert result.exit_code == 0, result.output
    assert len(read_metrics(run / "metrics.jsonl")) == 1
    _assert_clean_error(_resume(run, "--overwrite"), "drop CONFIG, --set and --overwrite")


def test_api_overwrite_argument(tmp_path) -> None:
    from spikefed.sim.rundir import RunDirError

    cfg_path = tmp_path / "tiny.yaml"
    cfg_path.write_text(TINY.replace("rounds: 2", "rounds: 1"))
    cfg = load_config(cfg_path)
    Simulation(cfg, tmp_path / "api").run()
    with pytest.raises(RunDirError, match="already holds a run"):
        Simulation(cfg, tmp_path / "api").run()
    summary = Simulation(cfg, tmp_path / "api").run(overwrite=True)
    assert summary["rounds"] == 1


def test_default_run_directory_is_fresh_each_time(tmp_path, monkeypatch) -> None:
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(TINY.replace("rounds: 2", "rounds: 1"))
    monkeypatch.chdir(tmp_path)
    outputs = [CliRunner().invoke(app, ["run", str(cfg)]) for _ in range(2)]
    assert [r.exit_code for r in outputs] == [0, 0], outputs[-1].output
    assert "runs/tiny\n" in outputs[0].output and "runs/tiny-2\n" in outputs[1].output
    assert (tmp_path / "runs" / "tiny" / "metrics.jsonl").is_file()
    assert (tmp_path / "runs" / "tiny-2" / "metrics.jsonl").is_file()


LOCK_HOLDER = textwrap.dedent("""
    import sys, time
    from spikefed.sim.rundir import RunDirLock
    with RunDirLock(sys.argv[1]):
        print("locked", flush=True)
        time.sleep(60)
""")


def test_locked_run_directory_refuses_a_second_writer(tmp_path) -> None:
    result, run = _tiny_run(tmp_path, rounds=1)
    assert result.exit_code == 0, result.output
    holder = subprocess.Popen([sys.executable, "-c", LOCK_HOLDER, str(run)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        before = (run / "metrics.jsonl").read_bytes()
        _assert_clean_error(_resume(run), f"run directory {run} is in use",
                            f"PID {holder.pid}")
        result, _ = _tiny_run(tmp_path, "--overwrite", rounds=1)
        _assert_clean_error(result, f"PID {holder.pid}")
        assert (run / "metrics.jsonl").read_bytes() == before
    finally:
        holder.kill()
        holder.wait()
    assert _resume(run).exit_code == 0  # the lock died with its holder


def test_divergence_stop_names_round_and_client_and_keeps_last_round(tmp_path) -> None:
    _tiny_cfg(tmp_path, rounds=1)
    cfg = tmp_path / "tiny.yaml"
    result = CliRunner().invoke(app, ["run", str(cfg), "--out", str(tmp_path / "div"),
                                      "--set", "train.lr=10000"])
    _assert_clean_error(result, "round 1, client", "train.divergence=skip_client",
                        "no round had been written")
    assert not (tmp_path / "div" / "metrics.jsonl").exists()
    assert not (tmp_path / "div" / "checkpoint" / "state.pt").exists()


def test_divergence_skip_client_records_rejections(tmp_path) -> None:
    import spikefed.rounds.divergence as div

    cfg = load_config(overrides=["data.num_clients=4", "data.test_subset=50", "model.T=2",
                                 "model.kwargs.hidden=[8]", "train.rounds=2",
                                 "train.divergence=skip_client", "data.partition.scheme=iid"])
    sim = Simulation(cfg, tmp_path / "skip")
    for c in sim.fed.clients:
        c.x, c.y = c.x[:64], c.y[:64]
    real = sim.fed.algorithm.client_update

    def client_update(client_id, broadcast, state, data, ctx):  # client 2 blows up in round 2
        upload, new_state, metrics = real(client_id, broadcast, state, data, ctx)
        if ctx.round == 2 and data is sim.fed.clients[2]:
            upload.metrics["train_loss"] = float("nan")
        return upload, new_state, metrics

    sim.fed.algorithm.client_update = client_update
    summary = sim.run()
    recs = read_metrics(tmp_path / "skip" / "metrics.jsonl")
    assert recs[0]["rejected"] == [] and recs[0]["uploads"] == 4
    assert recs[1]["uploads"] == 3
    assert recs[1]["rejected"][0]["client"] == 2
    assert "not finite" in recs[1]["rejected"][0]["reason"]
    assert summary["finite"] is True  # the bad upload never reached the model
    assert div.divergence_reason(1e9, div.loss_limit(10, 100.0)).startswith("training loss 1e+09")


def test_nonfinite_values_are_flagged_and_summary_is_not_finite(tmp_path) -> None:
    from spikefed.report.metrics import MetricsLog
    from spikefed.rounds.summary import summarize

    log = MetricsLog(tmp_path / "metrics.jsonl")
    base = {"bytes_up": 1, "bytes_down": 1, "wall_s": 0.1}
    log.append({"round": 1, "train_loss_mean": 0.5, "server_loss": 1.0, **base})
    log.append({"round": 2, "train_loss_mean": 0.4, "server_loss": float("nan"), **base})
    recs = log.records()
    assert "nonfinite" not in recs[0]
    assert recs[1]["server_loss"] is None and recs[1]["nonfinite"] == ["server_loss"]
    assert summarize(recs[:1])["finite"] is True
    assert summarize(recs)["finite"] is False
