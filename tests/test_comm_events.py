"""Spike-event compression (spikefed.comm.events, `spikefed events`)."""

from __future__ import annotations

import tarfile
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from spikefed.cli import app
from spikefed.comm import (
    decode_events,
    decode_raster,
    dense_raster,
    encode_events,
    encode_raster,
    read_event_file,
    rebin,
    refractory,
    stream_stats,
)
from spikefed.data.event_sets import nmnist_mini_path
from spikefed.data.events import encode_aedat2, encode_bs2, make_events, read_bs2

ASSETS = Path(__file__).resolve().parents[1] / "src" / "spikefed" / "assets"
BS2 = ASSETS / "nmnist_train_4_digit1.bs2"


def _stream(n: int = 5000, seed: int = 0, size: int = 34) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.cumsum(rng.exponential(60, n)).astype(np.int64)
    return make_events(t, rng.integers(0, size, n), rng.integers(0, size, n),
                       rng.integers(0, 2, n))


@pytest.mark.parametrize("address_delta", [False, True])
def test_stream_round_trip_exact(address_delta: bool) -> None:
    for events in (_stream(), _stream(0), _stream(3, seed=1)[::-1].copy(),
                   make_events(np.array([-5, 2**40]), np.array([-3, 300]), np.array([0, 9]),
                               np.array([1, 0]))):
        back = decode_events(encode_events(events, address_delta=address_delta))
        assert back.dtype == events.dtype and np.array_equal(back, events)


def test_stream_rejects_wrong_input() -> None:
    with pytest.raises(ValueError, match="EVENT_DTYPE"):
        encode_events(np.zeros(3))
    with pytest.raises(ValueError, match="SFEV"):
        decode_events(b"nope")
    with pytest.raises(ValueError, match="damaged"):
        decode_events(encode_events(_stream())[:-20])


def test_real_recording_round_trip_and_ratio() -> None:
    events = read_bs2(BS2)
    payload = encode_events(events)
    assert np.array_equal(decode_events(payload), events)
    assert len(events) * 5 / len(payload) > 1.5          # .bs2: 5 bytes per event


@pytest.mark.parametrize("shape", [(30, 100), (0, 5), (4, 2, 3, 3)])
def test_binary_raster_round_trip(shape: tuple[int, ...]) -> None:
    raster = np.random.default_rng(0).random(shape) < 0.05
    payload = encode_raster(raster)
    back = decode_raster(payload)
    assert back.dtype == raster.dtype and np.array_equal(back, raster)
    if raster.size > 1000:                              # (the header outweighs tiny rasters)
        assert len(payload) < raster.size / 8          # beats 1 bit per cell at 5 % density


def test_raster_rejects_damaged_payloads() -> None:
    payload = encode_raster(np.zeros((3, 4), dtype=np.uint8))
    for bad in (b"SFRS", payload[:8], payload[:-3]):
        with pytest.raises(ValueError, match="damaged|SFRS"):
            decode_raster(bad)
    with pytest.raises(ValueError, match="unsigned"):
        encode_raster(np.zeros(3, dtype=np.float32))


def test_bundled_nmnist_mini_round_trip() -> None:
    with np.load(nmnist_mini_path()) as z:
        counts = z["x_test"]
    payload = encode_raster(counts)
    back = decode_raster(payload)
    assert back.dtype == np.uint8 and np.array_equal(back, counts)
    assert counts.nbytes / len(payload) > 3
    binary = counts[:10] > 0
    assert np.array_equal(decode_raster(encode_raster(binary)), binary)


def test_rebin_quantises_and_counts_merged_events() -> None:
    events = make_events(np.array([0, 3, 7, 12, 15]), np.array([1, 1, 1, 2, 1]),
                         np.zeros(5), np.zeros(5))
    kept = rebin(events, 10)
    assert kept.dropped == 2 and len(kept.events) == 3
    assert kept.events["t"].tolist() == [0, 10, 10]
    assert kept.events["x"].tolist() == [1, 2, 1]
    whole = rebin(events, 10, keep_duplicates=True)
    assert whole.dropped == 0 and whole.events["t"].tolist() == [0, 0, 0, 10, 10]


def test_refractory_drops_events_within_the_period() -> None:
    t = np.array([0, 400, 999, 1000, 1500, 2100, 50])
    x = np.array([0, 0, 0, 0, 0, 0, 1])
    p = np.array([0, 1, 0, 0, 1, 0, 0])
    events = make_events(t, x, np.zeros(7), p)
    kept = refractory(events, 1000)
    assert kept.dropped == 3
    assert kept.events["t"].tolist() == [0, 1000, 2100, 50]
    per_pol = refractory(events, 1000, per_polarity=True)
    assert per_pol.events["t"].tolist() == [0, 400, 1000, 1500, 2100, 50]
    stream = _stream(20000)
    reduced = refractory(stream, 2000).events
    for a in set(zip(reduced["x"].tolist(), reduced["y"].tolist(), strict=True)):
        ts = reduced["t"][(reduced["x"] == a[0]) & (reduced["y"] == a[1])]
        assert np.all(np.diff(np.sort(ts)) >= 2000)


def test_lossy_options_shrink_the_payload() -> None:
    events = read_bs2(BS2)
    lossless = len(encode_events(events))
    assert len(encode_events(rebin(events, 1000).events)) < lossless
    reduced = refractory(events, 5000)
    assert reduced.dropped > 0 and len(encode_events(reduced.events)) < lossless


def test_dense_raster_sets_a_cell_per_event() -> None:
    events = make_events(np.array([0, 5, 1500]), np.array([1, 1, 2]), np.array([0, 0, 3]),
                         np.array([1, 1, 0]))
    r = dense_raster(events, (4, 4), 1000)
    assert r.shape == (2, 2, 4, 4) and r.sum() == 2 and r[0, 1, 0, 1] and r[1, 0, 3, 2]


def test_stream_stats_counts_bytes() -> None:
    [rec] = read_event_file(BS2)
    s = stream_stats(rec, raster_bin_us=1000)
    assert s.raw_bytes == len(rec.events) * 5 == BS2.stat().st_size
    assert s.codec_bytes == len(encode_events(rec.events))
    span = int(rec.events["t"].max() - rec.events["t"].min()) + 1
    assert s.raster_cells == -(-span // 1000) * 2 * 34 * 34
    assert s.ratio_vs_raw > 1.5 and s.dropped_rebin == s.dropped_refractory == 0
    lossy = stream_stats(rec, refractory_us=5000, rebin_us=1000)
    assert lossy.events_out == lossy.events_in - lossy.dropped_refractory - lossy.dropped_rebin
    assert lossy.codec_bytes < s.codec_bytes


def test_read_event_file_kinds(tmp_path: Path) -> None:
    events = _stream(50, size=100)
    (tmp_path / "a.aedat").write_bytes(encode_aedat2(events))
    [rec] = read_event_file(tmp_path / "a.aedat")
    assert rec.raw_bytes_per_event == 8 and np.array_equal(rec.events, events)
    with pytest.raises(ValueError, match="unknown event file type"):
        (tmp_path / "a.txt").write_text("x")
        read_event_file(tmp_path / "a.txt")


def test_real_data_sets_compress(shared_data: Path) -> None:
    files = [shared_data / "dvs_gesture_10" / "dvs_gesture_10.tar.gz",
             shared_data / "mnist_dvs_digit0" / "mnist_0_scale04_0001.aedat"]
    for f in files:
        rec = read_event_file(f)[0]
        payload = encode_events(rec.events)
        assert np.array_equal(decode_events(payload), rec.events)
        assert len(rec.events) * rec.raw_bytes_per_event / len(payload) > 1.5


def test_cli_events(tmp_path: Path) -> None:
    runner = CliRunner()
    out = runner.invoke(app, ["events", "stats", str(BS2), "--refractory-us", "1000"],
                        env={"COLUMNS": "200"})
    assert out.exit_code == 0, out.output
    assert str(len(read_bs2(BS2))) in out.output and BS2.name in out.output
    packed, restored = tmp_path / "a.sfev", tmp_path / "b.bs2"
    assert runner.invoke(app, ["events", "compress", str(BS2), "-o", str(packed)]).exit_code == 0
    assert runner.invoke(app, ["events", "decompress", str(packed), "-o",
                               str(restored)]).exit_code == 0
    assert restored.read_bytes() == BS2.read_bytes()
    bad = runner.invoke(app, ["events", "decompress", str(BS2), "-o", str(tmp_path / "c.bs2")])
    assert bad.exit_code == 2 and "SFEV" in bad.output
    missing = runner.invoke(app, ["events", "stats", str(tmp_path / "none.bs2")])
    assert missing.exit_code == 2 and "does not exist" in " ".join(missing.output.split())
    suffix = runner.invoke(app, ["events", "decompress", str(packed), "-o", str(tmp_path / "x")])
    assert suffix.exit_code == 2 and ".bs2, .aedat or .npy" in suffix.output
    assert encode_bs2(read_bs2(BS2)) == BS2.read_bytes()
    lossy = runner.invoke(app, ["events", "compress", str(BS2), "-o", str(tmp_path / "l.sfev"),
                                "--refractory-us", "5000"])
    dropped = refractory(read_bs2(BS2), 5000).dropped
    assert lossy.exit_code == 0 and f"refractory 5000 µs dropped {dropped}" in lossy.output
    archive = tmp_path / "two.tar"
    with tarfile.open(archive, "w") as tar:
        for name in ("a.bs2", "b.bs2"):
            tar.add(BS2, arcname=name)
    many = runner.invoke(app, ["events", "compress", str(archive), "-o", str(packed)])
    assert many.exit_code == 2 and "holds 2 recordings" in " ".join(many.output.split())
