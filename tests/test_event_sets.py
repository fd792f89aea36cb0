"""Event data sets in `spikefed run`: binning, loaders, cache, bad files, config, models, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from archives import write_tar
from typer.testing import CliRunner

from spikefed.cli import app
from spikefed.config import ConfigError, load_config
from spikefed.data import integrity
from spikefed.data.binning import EventBinning, count_events, finish_frames
from spikefed.data.event_sets import load_event_dataset
from spikefed.data.events import encode_aedat2, encode_bs2, make_events, read_bs2
from spikefed.experiment import build_federation
from spikefed.models import build_model
from spikefed.sim import Simulation

ASSETS = Path(__file__).resolve().parents[1] / "src" / "spikefed" / "assets"
BS2_ASSET = ASSETS / "nmnist_train_4_digit1.bs2"


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "cache"
    monkeypatch.setenv("SPIKEFED_CACHE", str(cache))
    # the fake archives these tests write carry the real names but not the documented SHA-256s
    monkeypatch.setattr(integrity, "KNOWN_ARCHIVES", {})
    return cache


# binning on a real recording ----------------------------------------------------------------
def test_counts_of_a_real_recording_add_up_to_its_events() -> None:
    ev = read_bs2(BS2_ASSET)
    b = EventBinning(T=10, window_us=300_000)
    counts = count_events(ev, (34, 34), b)
    assert counts.shape == (10, 2, 34, 34)
    inside = ev[(ev["t"] >= 0) & (ev["t"] < 300_000)]
    assert counts.sum() == len(inside) > 1000
    assert counts[:, 1].sum() == int(inside["p"].sum())           # channel 1 = ON (p = 1)
    first_bin = inside[inside["t"] < 30_000]
    assert counts[0].sum() == len(first_bin)
    late = EventBinning(T=5, window_us=100_000, start_us=200_000)
    assert count_events(ev, (34, 34), late).sum() == int(((ev["t"] >= 200_000)
                                                          & (ev["t"] < 300_000)).sum())


def test_finish_frames_pools_merges_and_clips() -> None:
    counts = count_events(read_bs2(BS2_ASSET), (34, 34), EventBinning(10, 300_000))
    summed = finish_frames(counts, EventBinning(10, 300_000, polarity="merge", downsample=2,
                                                values="counts"))
    assert summed.shape == (10, 1, 17, 17) and summed.dtype == np.uint8
    assert summed.sum(dtype=np.int64) == counts.sum()             # no count lost (max < 255)
    binary = finish_frames(counts, EventBinning(10, 300_000, downsample=2))
    assert binary.shape == (10, 2, 17, 17) and set(np.unique(binary)) == {0, 1}
    pooled = counts.reshape(10, 2, 17, 2, 17, 2).sum((3, 5))
    np.testing.assert_array_equal(binary, pooled > 0)
    big = np.full((1, 2, 2, 2), 300)
    assert finish_frames(big, EventBinning(1, 10, values="counts")).max() == 255
    with pytest.raises(ValueError, match="downsample=3 does not divide the 34x34.*1, 2, 17"):
        finish_frames(counts, EventBinning(10, 300_000, downsample=3))


# bundled N-MNIST ----------------------------------------------------------------------------
def test_bundled_nmnist_mini_holds_the_real_recordings() -> None:
    train = load_event_dataset("nmnist-mini", "train", binning=EventBinning(10, values="counts"))
    test = load_event_dataset("nmnist-mini", "test")
    assert train.x.shape == (1000, 10, 2, 34, 34) and train.x.dtype == torch.uint8
    assert len(test) == 100 and train.temporal and train.in_shape == (2, 34, 34)
    assert np.bincount(train.y.numpy(), minlength=10).min() > 80      # all ten digits
    # N-MNIST train sample 4 (the bundled .bs2) is row 3: its counts are that recording binned
    expected = count_events(read_bs2(BS2_ASSET), (34, 34), EventBinning(10, 300_000))
    np.testing.assert_array_equal(train.x[3].numpy(), expected)
    assert int(train.y[3]) == 1
    coarse = load_event_dataset("nmnist-mini", "train", binning=EventBinning(5, values="counts"),
                                limit=4)
    np.testing.assert_array_equal(coarse.x[3].numpy(), np.minimum(
        expected.reshape(5, 2, 2, 34, 34).sum(1), 255))


def test_bundled_nmnist_mini_rejects_binnings_it_cannot_give() -> None:
    with pytest.raises(ValueError, match="T in \\(1, 2, 5, 10\\).*nmnist-small"):
        load_event_dataset("nmnist-mini", "train", binning=EventBinning(T=8))
    with pytest.raises(ValueError, match="window=200.0 ms"):
        load_event_dataset("nmnist-mini", "train", binning=EventBinning(T=10, window_us=200_000))


# files under a data root: N-MNIST archive, DVS Gesture, MNIST-DVS ---------------------------
def _fake_nmnist(root: Path, bad_member: bytes | None = None) -> Path:
    folder = root / "nmnist_small"
    folder.mkdir(parents=True)
    real = BS2_ASSET.read_bytes()
    members = {"NMNISTsmall/train1K.txt": b"#sample #class\n1 1\n2 7\n",
               "NMNISTsmall/test100.txt": b"#sample #class\n60001 1\n",
               "NMNISTsmall/1.bs2": real, "NMNISTsmall/2.bs2": bad_member or real,
               "NMNISTsmall/60001.bs2": real}
    return write_tar(folder / "NMNISTsmall.tar.gz", members)


def test_nmnist_small_bins_the_archive_and_caches_it(tmp_path: Path, _cache: Path) -> None:
    _fake_nmnist(tmp_path / "data")
    b = EventBinning(T=6, polarity="merge", values="counts")
    ds = load_event_dataset("nmnist-small", "train", tmp_path / "data", b)
    assert ds.x.shape == (2, 6, 1, 34, 34) and ds.y.tolist() == [1, 7]
    ev = read_bs2(BS2_ASSET)
    assert int(ds.x[0].sum()) == int((ev["t"] < 300_000).sum())
    cached = list(_cache.glob("events-nmnist-small-train-*.npz"))
    assert len(cached) == 1
    again = load_event_dataset("nmnist-small", "train", tmp_path / "data", b)
    assert torch.equal(again.x, ds.x)
    other = load_event_dataset("nmnist-small", "train", tmp_path / "data", EventBinning(T=3))
    assert other.x.shape[1] == 3 and len(list(_cache.glob("events-nmnist-small-*"))) == 2


def test_corrupt_or_truncated_event_files_are_named(tmp_path: Path) -> None:
    _fake_nmnist(tmp_path / "a", bad_member=BS2_ASSET.read_bytes()[:-3])
    with pytest.raises(ValueError, match=r"member \S*2\.bs2.*not a multiple of 5"):
        load_event_dataset("nmnist-small", "train", tmp_path / "a")
    archive = _fake_nmnist(tmp_path / "b")
    archive.write_bytes(archive.read_bytes()[:200])
    with pytest.raises(ValueError, match=f"{archive}.*damaged or truncated"):
        load_event_dataset("nmnist-small", "train", tmp_path / "b")
    folder = tmp_path / "c" / "mnist_dvs"
    folder.mkdir(parents=True)
    good = _aedat_recording(0)
    for digit in (0, 1):
        for k in (1, 2):
            (folder / f"mnist_{digit}_scale04_{k:04d}.aedat").write_bytes(good)
    bad = folder / "mnist_1_scale04_0001.aedat"
    bad.write_bytes(good[:-3])
    with pytest.raises(ValueError, match=f"{bad}.*not a multiple of 8"):
        load_event_dataset("mnist-dvs", "train", tmp_path / "c")


def _aedat_recording(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    n = 400
    ev = make_events(np.sort(rng.integers(0, 2_000_000, n)), rng.integers(50, 76, n),
                     rng.integers(50, 76, n), rng.integers(0, 2, n))
    return encode_aedat2(ev)


def test_mnist_dvs_split_labels_and_one_digit_error(tmp_path: Path) -> None:
    folder = tmp_path / "mnist_dvs"
    folder.mkdir()
    for digit in (0, 3):
        for k in range(1, 11):
            (folder / f"mnist_{digit}_scale04_{k:04d}.aedat").write_bytes(_aedat_recording(k))
    train = load_event_dataset("mnist-dvs", "train", tmp_path, EventBinning(T=4))
    test = load_event_dataset("mnist-dvs", "test", tmp_path, EventBinning(T=4))
    assert train.x.shape == (18, 4, 2, 26, 26) and test.y.tolist() == [0, 3]
    assert int(train.x.sum()) > 0
    for f in folder.glob("mnist_3_*"):
        f.unlink()
    with pytest.raises(ValueError, match="cover 1 digit.*at least 2"):
        load_event_dataset("mnist-dvs", "train", tmp_path, use_cache=False)


def test_dvs_gesture_windows_split_each_clip(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    clips = {}
    for k in (1, 2):
        n = 3000
        ev = make_events(np.sort(rng.integers(0, 1_000_000, n)), rng.integers(0, 128, n),
                         rng.integers(0, 128, n), rng.integers(0, 2, n))
        clips[f"{k}.bs2"] = encode_bs2(ev)
    (tmp_path / "dvs_gesture_10").mkdir()
    write_tar(tmp_path / "dvs_gesture_10" / "clips.tar.gz", clips)
    b = EventBinning(T=5, window_us=300_000, downsample=4)
    train = load_event_dataset("dvs-gesture", "train", tmp_path, b)
    test = load_event_dataset("dvs-gesture", "test", tmp_path, b)
    assert train.x.shape == (4, 5, 2, 32, 32) and train.y.tolist() == [0, 0, 1, 1]
    assert test.y.tolist() == [0, 1]
    with pytest.raises(ValueError, match="needs >= 2.*shorten events.window_ms"):
        load_event_dataset("dvs-gesture", "train", tmp_path, EventBinning(T=5, window_us=600_000))


# config and models --------------------------------------------------------------------------
@pytest.mark.parametrize(("overrides", "message"), [
    (["data.events.T=5", "model.T=8"], "data.events.T=5 but model.T=8"),
    (["model.encoder=rate"], "model.encoder='rate' with event data set"),
    (["data.feature_skew.kind=noise"], "data.feature_skew applies to images"),
    (["data.events.window_ms=300", "data.events.bin_ms=30"], "window_ms .* or bin_ms"),
    (["data.events.polarity=both"], "data.events.polarity='both'"),
])
def test_event_config_errors_name_the_keys(overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(overrides=["data.dataset=nmnist-mini", *overrides])


def test_ann_with_events_takes_events_t_freely() -> None:
    cfg = load_config(overrides=["data.dataset=nmnist-mini", "model.spiking=false",
                                 "data.events.T=5"])
    assert cfg.data.events.T == 5


def test_models_consume_batch_first_event_frames() -> None:
    x = (torch.rand(3, 4, 2, 8, 8) < 0.2).to(torch.uint8)          # [B, T, C, H, W]
    kw = {"in_shape": (2, 8, 8), "num_classes": 3, "T": 4, "norm": "none"}
    torch.manual_seed(0)
    snn = build_model("convnet", spiking=True, temporal_input="batch_first", **kw)
    torch.manual_seed(0)
    ref = build_model("convnet", spiking=True, **kw)
    assert torch.allclose(snn(x), ref(x.transpose(0, 1).float()))
    torch.manual_seed(0)
    ann = build_model("mlp", spiking=False, temporal_input="batch_first", **kw)
    assert torch.allclose(ann(x), ann(x.float().mean(1)))           # mean frame over T
    with pytest.raises(ValueError, match="temporal_input='sideways'"):
        build_model("mlp", spiking=True, temporal_input="sideways", **kw)


def _small(*extra: str) -> list[str]:
    return ["data.dataset=nmnist-mini", "data.num_clients=3", "data.train_subset=120",
            "data.test_subset=40", "data.partition.scheme=iid", "data.events.downsample=2",
            "model.T=5", "train.rounds=2", "train.batch_size=20",
            "train.eval_batch_size=40", *extra]


@pytest.mark.parametrize("extra", [
    ["train.vectorize=on"], ["model.spiking=false"], ["algorithm.name=fedprox"],
    ["algorithm.name=scaffold", "data.partition.scheme=quantity"],
    ["algorithm.name=moon", "data.partition.scheme=pathological",
     "data.partition.classes_per_client=4"], ["algorithm.name=solo"],
    ["algorithm.name=centralized"],
    ["algorithm.name=s-fedavg", "model.spiking=false", "model.norm=bn", "model.kwargs.bias=true",
     "algorithm.params.calib_size=16"]], ids=lambda e: e[0])
def test_simulation_on_event_data(tmp_path: Path, extra: list[str]) -> None:
    fed = build_federation(load_config(overrides=_small("train.rounds=1", *extra)))
    assert sum(len(c) for c in fed.clients) == 120 and len(fed.test_y) == 40
    assert fed.clients[0].x.shape[1:] == (5, 2, 17, 17) and fed.clients[0].x.dtype == torch.uint8
    Simulation(fed.cfg, tmp_path / "run", federation=fed).run()
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()]
    assert len(rows) == 1 and rows[0]["uploads"] == len(fed.clients)
    assert rows[0]["train_loss_mean"] > 0
    assert 0 <= rows[0].get("server_acc", rows[0].get("client_acc_mean")) <= 1


@pytest.mark.parametrize("algorithm", ["fedavg", "fedprox"])
def test_spikefed_run_two_rounds_on_bundled_events(tmp_path: Path, algorithm: str) -> None:
    out = tmp_path / "run"
    args = ["run", "configs/run_nmnist.yaml", "--out", str(out)]
    for item in _small(f"algorithm.name={algorithm}", "model.kwargs.channels=[4,8]",
                       "model.kwargs.fc=16", "data.partition.scheme=dirichlet",
                       "data.partition.min_size=5"):
        args += ["--set", item]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["round"] for r in rows] == [1, 2]
    assert rows[-1]["synops_per_sample"] > 0 and rows[-1]["macs_per_sample"] == 0  # spike input
    assert 0 <= rows[-1]["server_acc"] <= 1


def test_run_with_mismatched_t_exits_2_with_the_fix(tmp_path: Path) -> None:
    res = CliRunner().invoke(app, ["run", "--set", "data.dataset=nmnist-mini", "--set",
                                   "data.events.T=4", "--out", str(tmp_path / "o")])
    assert res.exit_code == 2
    assert "data.events.T=4 but model.T=8" in res.output and "Traceback" not in res.output


def test_truncated_single_files_are_named(tmp_path: Path) -> None:
    bad = tmp_path / "cut.bs2"
    bad.write_bytes(BS2_ASSET.read_bytes()[:-2])
    with pytest.raises(ValueError, match=f"{bad}: .bs2 payload has"):
        read_bs2(bad)


def test_leading_samples_keeps_every_class_of_a_class_sorted_source() -> None:
    from spikefed.data.event_sets import leading_samples

    assert leading_samples(np.array([3, 1, 2, 0]), 2).tolist() == [0, 1]      # unsorted: first N
    sorted_labels = np.repeat(np.arange(3), 4)                                 # 0000 1111 2222
    idx = leading_samples(sorted_labels, 5)
    assert idx.tolist() == [0, 4, 8, 1, 5] and sorted(set(sorted_labels[idx])) == [0, 1, 2]
    assert len(leading_samples(sorted_labels, 50)) == 12
