"""Event data: binning and emulation cost, cache size, emulator vs real N-MNIST, sim-to-real.

Run: ``OMP_NUM_THREADS=1 python benchmarks/bench_events.py --data-root DIR [--emulate N]
[--sim-to-real RUN_DIR ...]``. Prints markdown tables (docs/events.md quotes them).

- binning: ``nmnist-small`` train (1,000 recordings) binned cold (no cache) and re-read from the
  cache; ``mnist-emulated`` train, ``N`` images emulated cold and re-read.
- emulator: the 1,000 real N-MNIST train recordings vs the same MNIST digits emulated, counted
  in 30 bins of 10 ms (`compare_recordings`).
- sim-to-real: the final server model of each run directory (trained on an emulated set) on the
  real N-MNIST recordings, binned as that run's config says.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from spikefed.data.binning import EventBinning, count_events
from spikefed.data.emulate import EmulatorConfig, compare_recordings, emulate_frames
from spikefed.data.event_sets import load_event_dataset
from spikefed.data.events import load_nmnist_subset
from spikefed.data.mnist import MNIST, read_idx_split


def _timed_load(name: str, root: Path, binning: EventBinning, limit: int | None
                ) -> tuple[float, float, int]:
    """Seconds cold, seconds from cache, cache bytes (in a fresh cache folder)."""
    with tempfile.TemporaryDirectory() as cache:
        os.environ["SPIKEFED_CACHE"] = cache
        t0 = time.perf_counter()
        load_event_dataset(name, "train", root, binning, limit=limit)
        cold = time.perf_counter() - t0
        t0 = time.perf_counter()
        load_event_dataset(name, "train", root, binning, limit=limit)
        warm = time.perf_counter() - t0
        size = sum(f.stat().st_size for f in Path(cache).iterdir())
    return cold, warm, size


def binning_table(root: Path, n_emulate: int) -> str:
    rows = ["| data set | samples | binning | cold (s) | from cache (s) | cache (MB) |",
            "|---|---|---|---|---|---|"]
    for name, binning, limit in (
            ("nmnist-small", EventBinning(T=10, window_us=300_000), None),
            ("nmnist-small", EventBinning(T=10, window_us=300_000, downsample=2), None),
            ("mnist-emulated", EventBinning(T=10, window_us=300_000, downsample=2), n_emulate)):
        cold, warm, size = _timed_load(name, root, binning, limit)
        n = limit or 1000
        rows.append(f"| {name} | {n} | {binning.key()} | {cold:.1f} | {warm:.2f} | "
                    f"{size / 1e6:.1f} |")
    return "\n".join(rows)


def emulator_table(root: Path) -> str:
    ids, events, _ = load_nmnist_subset(root / "nmnist_small" / "NMNISTsmall.tar.gz", "train")
    images, _ = read_idx_split(MNIST, root, "train")
    fine = EventBinning(T=30, window_us=300_000, values="counts")
    real = np.stack([count_events(e, (34, 34), fine) for e in events])
    t0 = time.perf_counter()
    emulated = emulate_frames(images[np.asarray(ids) - 1], fine, EmulatorConfig())
    seconds = time.perf_counter() - t0
    stats = compare_recordings(real, emulated)
    rows = ["| statistic | real N-MNIST | emulated |", "|---|---|---|",
            f"| events per sample (mean) | {stats['events_real']:.0f} | "
            f"{stats['events_emulated']:.0f} (ratio {stats['events_ratio']:.3f}) |",
            f"| ON fraction | {stats['on_fraction_real']:.3f} | "
            f"{stats['on_fraction_emulated']:.3f} |",
            f"| event rate over time (30 x 10 ms), correlation | - | "
            f"{stats['rate_correlation']:.3f} |",
            f"| spatial event map, per-sample correlation (mean) | - | "
            f"{stats['spatial_correlation']:.3f} |",
            f"| emulation time, {len(ids)} digits | - | {seconds:.1f} s |"]
    rate_r = real.sum((0, 2, 3, 4)) / len(real)
    rate_e = emulated.sum((0, 2, 3, 4)) / len(emulated)
    rows.append("\nevents per 10 ms bin (mean per sample), real: "
                + " ".join(f"{v:.0f}" for v in rate_r))
    rows.append("emulated: " + " ".join(f"{v:.0f}" for v in rate_e))
    return "\n".join(rows)


def sim_to_real_table(run_dirs: list[Path], root: Path) -> str:
    import torch

    from spikefed.config import load_config
    from spikefed.experiment import event_binning, model_factory
    from spikefed.rounds.evaluate import evaluate
    from spikefed.sim.checkpoint import load_checkpoint

    rows = ["| run | trained on | real N-MNIST test (100) | real N-MNIST train (1,000) |",
            "|---|---|---|---|"]
    for run in run_dirs:
        cfg = load_config(run / "config.yaml", [f"data.root={root}"])
        b = event_binning(cfg)
        c, h, w = b.channels, *b.out_size((34, 34), "nmnist-small")
        model = model_factory(cfg, (c, h, w), 10)()
        model.load_state_dict(load_checkpoint(run / "checkpoint")["server_state"]["params"])
        b = event_binning(cfg)
        accs = []
        for split in ("test", "train"):
            real = load_event_dataset("nmnist-small", split, root, b)
            accs.append(evaluate(model, real.x, real.y, 250, torch.device("cpu")).accuracy)
        rows.append(f"| {run.name} | {cfg.data.dataset} ({cfg.data.train_subset or 'all'}) | "
                    f"{accs[0]:.3f} | {accs[1]:.3f} |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", type=Path, required=True)
    parser.add_argument("--emulate", type=int, default=2000, help="images to emulate (timing)")
    parser.add_argument("--sim-to-real", type=Path, nargs="*", default=[])
    parser.add_argument("--skip", nargs="*", default=[], choices=["binning", "emulator"])
    args = parser.parse_args()
    if "binning" not in args.skip:
        print(binning_table(args.data_root, args.emulate), "\n")
    if "emulator" not in args.skip:
        print(emulator_table(args.data_root), "\n")
    if args.sim_to_real:
        print(sim_to_real_table(args.sim_to_real, args.data_root))


if __name__ == "__main__":
    main()
