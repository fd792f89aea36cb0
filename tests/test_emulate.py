"""Event-camera emulator: determinism, internal consistency, and agreement with real N-MNIST.

The real recordings of N-MNIST train samples 1..1000 are MNIST train images 0..999, so the
emulator can record the *same* digits. Bands (measured on the current defaults, see
docs/events.md): events per sample within 0.8-1.25x the real ones, ON fraction within 0.05
of the real one, event rate over time correlated > 0.75 and per-sample spatial maps > 0.8.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from spikefed.data.binning import EventBinning, count_events
from spikefed.data.bundled import read_mini_arrays
from spikefed.data.emulate import (
    EmulatorConfig,
    compare_recordings,
    emulate_events,
    emulate_frames,
    saccade_path,
    to_grey,
)
from spikefed.data.event_sets import load_event_dataset

COUNTS = EventBinning(T=10, window_us=300_000, values="counts")


def _digits(n: int) -> np.ndarray:
    return read_mini_arrays()["x_train"][:n]


def _check_bands(stats: dict[str, float]) -> None:
    assert 0.8 < stats["events_ratio"] < 1.25, stats
    assert abs(stats["on_fraction_emulated"] - stats["on_fraction_real"]) < 0.05, stats
    assert stats["rate_correlation"] > 0.75, stats
    assert stats["spatial_correlation"] > 0.8, stats


def test_emulator_is_deterministic_by_seed() -> None:
    x = _digits(6)
    a, b = emulate_events(x, EmulatorConfig(seed=3)), emulate_events(x, EmulatorConfig(seed=3))
    c = emulate_events(x, EmulatorConfig(seed=4))
    assert all(np.array_equal(u, v) for u, v in zip(a, b, strict=True))
    assert not all(len(u) == len(v) and np.array_equal(u, v) for u, v in zip(a, c, strict=True))
    assert all(len(u) > 500 for u in a)


def test_frames_equal_binned_events_and_events_are_well_formed() -> None:
    x = _digits(5)
    cfg = EmulatorConfig()
    events = emulate_events(x, cfg)
    frames = emulate_frames(x, COUNTS, cfg)
    assert frames.shape == (5, 10, 2, 34, 34)
    for ev, fr in zip(events, frames, strict=True):
        assert np.all(np.diff(ev["t"]) >= 0) and ev["t"].max() < cfg.duration_us
        assert ev["x"].max() < 34 and ev["y"].max() < 34 and set(np.unique(ev["p"])) == {0, 1}
        np.testing.assert_array_equal(fr, count_events(ev, (34, 34), COUNTS))


def test_emulator_physics_knobs_move_the_statistics_the_right_way() -> None:
    x = _digits(8)

    def total(**kw: float) -> int:
        return int(emulate_frames(x, COUNTS, EmulatorConfig(**kw)).sum())

    base = total()
    assert total(threshold=0.8) < 0.7 * base                   # higher threshold: fewer events
    assert total(noise_hz=0.0) < base < total(noise_hz=50.0)   # background noise adds events
    assert total(refractory_us=2000, step_us=2000) <= total(refractory_us=500, step_us=2000)
    still = emulate_frames(x, COUNTS, EmulatorConfig(amplitude_px=0.0, noise_hz=0.0))
    assert still.sum() == 0                                    # no motion, no noise: silence
    path = saccade_path(EmulatorConfig())
    assert path.shape == (150, 2) and np.allclose(path[-1], [-3, -1.5])   # triangle closes
    blank = emulate_frames(np.zeros((2, 28, 28)), COUNTS, EmulatorConfig(noise_hz=0.0))
    assert blank.sum() == 0
    with pytest.raises(ValueError, match="grey images"):
        emulate_frames(torch.rand(2, 3, 8, 8), COUNTS)
    assert to_grey(torch.ones(1, 3, 4, 4)).shape == (1, 4, 4)


def test_emulated_digits_match_the_bundled_real_recordings() -> None:
    """Always runs: the bundled N-MNIST counts vs the bundled MNIST images of the same digits."""
    real = load_event_dataset("nmnist-mini", "train", binning=EventBinning(10, values="counts"),
                              limit=120)
    emulated = emulate_frames(_digits(120), COUNTS)
    stats = compare_recordings(real.x.numpy(), emulated)
    _check_bands(stats)


def test_emulated_digits_match_real_recordings_at_10ms(shared_data: Path) -> None:
    """Real N-MNIST archive, finer time bins (30 x 10 ms): the saccade rhythm must match."""
    from spikefed.data.events import load_nmnist_subset
    from spikefed.data.mnist import MNIST, read_idx_split

    ids, events, _ = load_nmnist_subset(shared_data / "nmnist_small" / "NMNISTsmall.tar.gz",
                                        "train")
    images, _ = read_idx_split(MNIST, shared_data, "train")
    n = 200
    fine = EventBinning(T=30, window_us=300_000, values="counts")
    real = np.stack([count_events(e, (34, 34), fine) for e in events[:n]])
    emulated = emulate_frames(images[np.asarray(ids[:n]) - 1], fine)
    _check_bands(compare_recordings(real, emulated))


@pytest.mark.parametrize("name", ["mnist-emulated", "fashion-mnist-emulated"])
def test_emulated_data_sets_load_and_cache(shared_data: Path, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.setenv("SPIKEFED_CACHE", str(tmp_path))
    b = EventBinning(T=5, downsample=2)
    ds = load_event_dataset(name, "test", shared_data, b, limit=30)
    assert ds.x.shape == (30, 5, 2, 17, 17) and ds.x.dtype == torch.uint8 and len(ds.classes) == 10
    assert ds.x.float().mean() > 0.01
    assert len(list(tmp_path.glob(f"events-{name}-test-*.npz"))) == 1
    again = load_event_dataset(name, "test", shared_data, b, limit=30)
    assert torch.equal(again.x, ds.x) and torch.equal(again.y, ds.y)
    other = load_event_dataset(name, "test", shared_data, b, limit=30,
                               emulator=EmulatorConfig(seed=1))
    assert not torch.equal(other.x, ds.x)                       # seed is part of the cache key
