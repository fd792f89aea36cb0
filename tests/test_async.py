"""Asynchronous FL on a virtual clock: ordering, staleness weights, FedBuff vs sync FedAvg,
exact resume, slow devices, upload validation, config errors."""

from __future__ import annotations

import math

import pytest
import torch
from typer.testing import CliRunner

from spikefed.cli import app
from spikefed.config import ConfigError, load_config
from spikefed.report import read_metrics
from spikefed.rounds.asynchronous import mix, staleness_weight
from spikefed.sim import Simulation
from spikefed.sim.asynchronous import AsyncSimulation, simulation_for
from spikefed.sim.checkpoint import load_checkpoint
from spikefed.sim.clock import draw_devices, update_duration

TINY = ["data.num_clients=4", "data.test_subset=100", "model.T=2", "model.kwargs.hidden=[16]",
        "data.partition.scheme=iid", "train.eval_clients=false", "train.eval_every=100"]
EQUAL = ["asynchronous.clock.speed_sigma=0", "asynchronous.clock.latency_sigma=0"]


@pytest.fixture
def no_reports(monkeypatch):
    """Skip curves.png and report.html (matplotlib, most of a tiny run's time); the CLI test
    keeps them."""
    monkeypatch.setattr("spikefed.sim.engine.plot_curves", lambda *a, **k: None)
    monkeypatch.setattr("spikefed.sim.engine.publish_run", lambda *a, **k: None)


def _cfg(*extra: str):
    return load_config(overrides=[*TINY, *extra])


def _trim(sim, n: int = 48):
    """Give every client the same small number of samples (equal work per update)."""
    for c in sim.fed.clients:
        c.x, c.y = c.x[:n], c.y[:n]
    return sim


def _async(cfg, out, federation=None):
    """An asynchronous simulation; pass the first one's `fed` to skip rebuilding the data."""
    sim = AsyncSimulation(cfg, out, federation)
    return sim if federation is not None else _trim(sim)


def _model(path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path / "checkpoint")["broadcast"]


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _events(path) -> list[tuple]:
    return [(r["round"], r["model_version"], r["virtual_time_s"], tuple(r["arrived"]),
             r["staleness_max"]) for r in read_metrics(path / "metrics.jsonl")]


@pytest.mark.usefixtures("no_reports")
def test_event_order_and_model_are_deterministic_for_a_seed(tmp_path) -> None:
    cfg = _cfg("asynchronous.updates=8", "asynchronous.concurrency=3",
               "asynchronous.clock.slow_fraction=0.25")
    first = _async(cfg, tmp_path / "a")
    first.run()
    _async(cfg, tmp_path / "b", first.fed).run()
    assert _events(tmp_path / "a") == _events(tmp_path / "b")
    assert _same(_model(tmp_path / "a"), _model(tmp_path / "b"))
    times = [e[2] for e in _events(tmp_path / "a")]
    assert times == sorted(times) and len(times) == 8  # one record per FedAsync update
    _async(_cfg("asynchronous.updates=8", "asynchronous.concurrency=3",
                "asynchronous.clock.slow_fraction=0.25", "seed=1"), tmp_path / "c").run()
    assert _events(tmp_path / "c") != _events(tmp_path / "a")


@pytest.mark.usefixtures("no_reports")
def test_simultaneous_arrivals_are_taken_in_client_id_order(tmp_path) -> None:
    cfg = _cfg("asynchronous.updates=4", "asynchronous.concurrency=4", *EQUAL)
    _async(cfg, tmp_path).run()
    records = read_metrics(tmp_path / "metrics.jsonl")
    assert [r["arrived"] for r in records] == [[0], [1], [2], [3]]
    assert len({r["virtual_time_s"] for r in records}) == 1  # all at the same instant
    assert [r["staleness_max"] for r in records] == [0, 1, 2, 3]


@pytest.mark.parametrize("schedule,a,b,expected", [
    ("constant", 0.5, 4, [1.0, 1.0, 1.0, 1.0]),
    ("polynomial", 0.5, 4, [1.0, 2 ** -0.5, 3 ** -0.5, 10 ** -0.5]),
    ("polynomial", 1.0, 4, [1.0, 0.5, 1 / 3, 0.1]),
    ("hinge", 0.5, 1, [1.0, 1.0, 1 / 1.5, 1 / 5.0]),
])
def test_staleness_weights_follow_the_schedule_exactly(schedule, a, b, expected) -> None:
    cfg = _cfg("asynchronous.concurrency=2", f"asynchronous.staleness={schedule}",
               f"asynchronous.staleness_a={a}", f"asynchronous.staleness_b={b}").asynchronous
    got = [staleness_weight(cfg, s) for s in (0, 1, 2, 9)]
    assert got == pytest.approx(expected, rel=0, abs=1e-15)
    with pytest.raises(ValueError, match="future"):
        staleness_weight(cfg, -1)


@pytest.mark.usefixtures("no_reports")
def test_fedasync_step_mixes_the_client_model_with_alpha(tmp_path) -> None:
    """First update (staleness 0): w1 = (1 - alpha) w0 + alpha w_client, exactly."""
    cfg = _cfg("asynchronous.updates=3", "asynchronous.concurrency=1", "asynchronous.alpha=0.3")
    sim = _async(cfg, tmp_path)
    w0 = sim._fresh_state().broadcast
    sim.run(stop_after=1)
    first = read_metrics(tmp_path / "metrics.jsonl")[0]["arrived"][0]
    sim.ctx.round = 1  # the client's first dispatch
    upload, _, _ = sim.fed.algorithm.client_update(first, w0, {}, sim.fed.clients[first], sim.ctx)
    expected = mix(w0, upload.tensors, 0.3)
    assert _same(_model(tmp_path), expected)
    assert not _same(expected, w0)


@pytest.mark.usefixtures("no_reports")
def test_fedbuff_with_everyone_in_one_buffer_is_a_fedavg_round(tmp_path) -> None:
    """K = concurrency = all clients, equal devices (no stragglers), constant staleness,
    server_lr 1: the first server step is sync FedAvg's round 1. FedBuff adds the sample-
    weighted mean delta to w0 while FedAvg averages the models, so equal up to float64
    rounding before the cast to float32 (at most one float32 ulp)."""
    cfg = _cfg("asynchronous.mode=fedbuff", "asynchronous.buffer_size=4",
               "asynchronous.concurrency=4", "asynchronous.updates=4",
               "asynchronous.staleness=constant", *EQUAL)
    _async(cfg, tmp_path / "buff").run()
    sync = _trim(Simulation(_cfg("train.rounds=1"), tmp_path / "sync"))
    sync.run()
    buff, avg = _model(tmp_path / "buff"), _model(tmp_path / "sync")
    for key in avg:
        torch.testing.assert_close(buff[key], avg[key], rtol=0,
                                   atol=float(avg[key].abs().max()) * 2 ** -23)
    records = read_metrics(tmp_path / "buff" / "metrics.jsonl")
    assert [(r["model_version"], r["uploads"], r["staleness_max"]) for r in records] == [
        (1, 4, 0)]


@pytest.mark.usefixtures("no_reports")
@pytest.mark.parametrize("mode", ["fedasync", "fedbuff"])
def test_resume_reproduces_the_uninterrupted_async_run(tmp_path, mode) -> None:
    cfg = _cfg(f"asynchronous.mode={mode}", "asynchronous.updates=9",
               "asynchronous.concurrency=3", "asynchronous.buffer_size=2",
               "asynchronous.clock.slow_fraction=0.25", "train.eval_every=2")
    full = _async(cfg, tmp_path / "full")
    full.run()
    _async(cfg, tmp_path / "split", full.fed).run(stop_after=2)
    ckpt = load_checkpoint(tmp_path / "split" / "checkpoint")
    assert ckpt["round"] == 2 and len(ckpt["async"]["in_flight"]) == 3
    assert ckpt["async"]["models"]  # the versions in-flight clients were dispatched with
    _async(cfg, tmp_path / "split", full.fed).run(resume=True)
    assert _same(_model(tmp_path / "full"), _model(tmp_path / "split"))

    def strip(path):
        return [{k: v for k, v in r.items() if k != "wall_s"}
                for r in read_metrics(path / "metrics.jsonl")]

    assert strip(tmp_path / "full") == strip(tmp_path / "split")
    assert strip(tmp_path / "full")[-1]["updates"] == 9


@pytest.mark.usefixtures("no_reports")
def test_slow_devices_compute_slowdown_times_longer_and_arrive_late(tmp_path) -> None:
    clock = _cfg("asynchronous.concurrency=2",
                 "asynchronous.clock.slow_fraction=0.2").asynchronous.clock
    base = _cfg("asynchronous.concurrency=2",
                "asynchronous.clock.slow_fraction=0").asynchronous.clock
    slowed, plain = draw_devices(clock, 10, seed=3), draw_devices(base, 10, seed=3)
    assert sum(slowed.slow) == 2 and not any(plain.slow)
    for c in range(10):
        compute = [update_duration(cl, d, c, 100, 2) - 2 * d.latency_s[c]
                   for cl, d in ((clock, slowed), (base, plain))]
        assert compute[0] == pytest.approx(compute[1] * (10.0 if slowed.slow[c] else 1.0))
    cfg = _cfg("asynchronous.updates=8", "asynchronous.concurrency=4",
               "asynchronous.clock.slow_fraction=0.5", *EQUAL)
    sim = _async(cfg, tmp_path)
    slow = {c for c, s in enumerate(sim.devices.slow) if s}
    sim.run()
    arrived = [c for r in read_metrics(tmp_path / "metrics.jsonl") for c in r["arrived"]]
    assert len(slow) == 2 and set(arrived[:2]) == set(range(4)) - slow
    assert arrived.count(min(slow)) == 1  # fast clients finish several updates meanwhile
    assert sum(c not in slow for c in arrived) >= 6


@pytest.mark.usefixtures("no_reports")
def test_async_uploads_are_validated(tmp_path) -> None:
    cfg = _cfg("asynchronous.updates=3", "asynchronous.concurrency=2",
               "train.max_upload_bytes=16")
    _async(cfg, tmp_path).run()
    records = read_metrics(tmp_path / "metrics.jsonl")
    assert [r["model_version"] for r in records] == [0]  # nothing valid was applied
    assert len(records[0]["rejected"]) == 3 and records[0]["aggregated"] is False
    assert "bytes" in records[0]["rejected"][0]["reason"]
    assert records[0]["server_acc"] is not None  # evaluated at the end


@pytest.mark.parametrize("override,words", [
    ("algorithm.name=scaffold", ["algorithm.name='scaffold'", "fedavg", "fedprox"]),
    ("asynchronous.concurrency=9", ["asynchronous.concurrency=9", "data.num_clients"]),
    ("asynchronous.staleness=linear", ["asynchronous.staleness", "hinge"]),
    ("asynchronous.mode=sync", ["asynchronous.mode", "fedbuff"]),
    ("dp.level=client", ["dp.level='client'", "asynchronous"]),
    ("train.lr_schedule=cosine", ["train.lr_schedule", "constant"]),
    ("asynchronous.clock.slowdown=0.5", ["asynchronous.clock.slowdown"]),
])
def test_config_errors_name_the_field(override, words) -> None:
    with pytest.raises(ConfigError) as err:
        _cfg("asynchronous.updates=5", "asynchronous.concurrency=2", override)
    for word in words:
        assert word in str(err.value), (word, str(err.value))


def test_cli_runs_async_and_writes_an_async_flower_app(tmp_path) -> None:
    runner = CliRunner()
    out = tmp_path / "run"
    sets = [x for s in [*TINY, "asynchronous.updates=2", "asynchronous.concurrency=2",
                        "data.train_subset=200"] for x in ("--set", s)]
    result = runner.invoke(app, ["run", *sets, "--out", str(out), "-q"])
    assert result.exit_code == 0, result.output
    records = read_metrics(out / "metrics.jsonl")
    assert records[-1]["updates"] == 2 and "virtual_time_s" in records[-1]
    assert isinstance(simulation_for(load_config(out / "config.yaml"), tmp_path / "x"),
                      AsyncSimulation)
    assert math.isfinite(records[-1]["virtual_time_s"])
    # Flower runs asynchronous configs too (spikefed.flower.asynchronous)
    result = runner.invoke(app, ["flower-app", str(tmp_path / "app"), *sets])
    assert result.exit_code == 0, result.output
    written = load_config(next((tmp_path / "app").rglob("experiment.yaml")))
    assert written.asynchronous == load_config(out / "config.yaml").asynchronous
