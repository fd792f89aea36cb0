"""Spike-event compression on the real recordings: lossless codec vs raw AER and dense rasters,
and what the lossy reductions drop and save.

Run: ``OMP_NUM_THREADS=1 python benchmarks/bench_event_compression.py --data-root DIR``.
Prints markdown tables (docs/communication.md, section "Event compression", quotes them).

Every recording is compressed on its own (as a client would send it) and the bytes are summed
per data set. Raw AER is each set's native format: ``.bs2`` 5 bytes per event (N-MNIST, DVS
Gesture), AER-DAT 2.0 8 bytes per event (MNIST-DVS; header lines not counted). The dense raster
is ``[T, 2, H, W]`` with 1 ms bins from the first to the last event, at 1 bit per cell (and 1
byte per cell), and compressed by the raster codec. The bundled ``nmnist-mini`` holds event
counts ``[N, 10, 2, 34, 34]`` (uint8); it is compressed per sample by the raster codec.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from spikefed.comm.event_stats import Recording, StreamStats, read_event_file, stream_stats
from spikefed.comm.events import encode_raster
from spikefed.data.event_sets import nmnist_mini_path
from spikefed.data.events import load_nmnist_subset


def recordings(root: Path) -> dict[str, list[Recording]]:
    """The real recordings per data set, read from the data root."""
    _, train, _ = load_nmnist_subset(root / "nmnist_small" / "NMNISTsmall.tar.gz", "train")
    _, test, _ = load_nmnist_subset(root / "nmnist_small" / "NMNISTsmall.tar.gz", "test")
    dvs = sorted((root / "mnist_dvs_digit0").glob("*.aedat"))
    return {
        "N-MNIST subset (1,100 rec.)": [Recording(str(i), e, 5) for i, e in
                                        enumerate(train + test)],
        "DVS Gesture (10 clips)": read_event_file(root / "dvs_gesture_10" /
                                                  "dvs_gesture_10.tar.gz"),
        "MNIST-DVS digit 0 (50 rec.)": [r for f in dvs for r in read_event_file(f)],
    }


def _total(stats: list[StreamStats]) -> StreamStats:
    total = stats[0]
    for s in stats[1:]:
        total = total + s
    return total


def lossless_table(sets: dict[str, list[Recording]], level: int) -> str:
    lines = ["| data set | events | raw AER B (B/event) | codec B (B/event) | raw / codec | "
             "codec, addresses delta-coded: raw / codec | dense raster 1 ms: bits (B at 1 bit; "
             "B at 1 byte/cell) | raster / codec | raster codec B | codec + raster s |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, recs in sets.items():
        t0 = time.perf_counter()
        s = _total([stream_stats(r, level=level) for r in recs])
        seconds = time.perf_counter() - t0
        delta = _total([stream_stats(r, level=level, address_delta=True, with_raster=False)
                        for r in recs])
        n = s.events_in
        lines.append(
            f"| {name} | {n:,} | {s.raw_bytes:,} ({s.raw_bytes / n:g}) | {s.codec_bytes:,} "
            f"({s.codec_bytes / n:.3f}) | {s.ratio_vs_raw:.2f} | {delta.ratio_vs_raw:.2f} | "
            f"{s.raster_cells:,} ({s.raster_bytes_packed:,}; {s.raster_cells:,}) | "
            f"{s.raster_bytes_packed / s.codec_bytes:.1f} | {s.raster_codec_bytes:,} | "
            f"{seconds:.1f} |")
    return "\n".join(lines)


def lossy_table(sets: dict[str, list[Recording]], level: int) -> str:
    lines = ["| data set | reduction | events dropped | codec B | raw / codec |",
             "|---|---|---|---|---|"]
    variants = [("rebin 1 ms", {"rebin_us": 1000}), ("rebin 10 ms", {"rebin_us": 10_000}),
                ("refractory 1 ms", {"refractory_us": 1000}),
                ("refractory 5 ms", {"refractory_us": 5000}),
                ("refractory 5 ms + rebin 1 ms", {"refractory_us": 5000, "rebin_us": 1000})]
    for name, recs in sets.items():
        for label, options in variants:
            s = _total([stream_stats(r, level=level, with_raster=False, **options)
                        for r in recs])
            dropped = s.dropped_rebin + s.dropped_refractory
            lines.append(f"| {name} | {label} | {dropped:,} ({100 * dropped / s.events_in:.1f} "
                         f"%) | {s.codec_bytes:,} | {s.ratio_vs_raw:.2f} |")
    return "\n".join(lines)


def nmnist_mini_table(level: int) -> str:
    with np.load(nmnist_mini_path()) as z:
        counts = np.concatenate([z["x_train"], z["x_test"]])
    t0 = time.perf_counter()
    per_sample = sum(len(encode_raster(c, level=level)) for c in counts)
    binary = sum(len(encode_raster(c > 0, level=level)) for c in counts)
    seconds = time.perf_counter() - t0
    cells = counts.size
    return "\n".join([
        "| data set | samples | dense counts B (uint8) | raster codec B | dense / codec | "
        "binary (count > 0): bits as bytes | binary codec B | bits / codec | encode s |",
        "|---|---|---|---|---|---|---|---|---|",
        f"| nmnist-mini (bundled, 10 x 30 ms, 2x34x34) | {len(counts):,} | {cells:,} | "
        f"{per_sample:,} | {cells / per_sample:.2f} | {-(-cells // 8):,} | {binary:,} | "
        f"{cells / 8 / binary:.2f} | {seconds:.1f} |"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", type=Path, required=True,
                        help="folder holding nmnist_small/, dvs_gesture_10/, mnist_dvs_digit0/")
    parser.add_argument("--level", type=int, default=19, help="Zstandard level")
    args = parser.parse_args()
    sets = recordings(args.data_root)
    print(f"Zstandard level {args.level}\n")
    print(lossless_table(sets, args.level), end="\n\n")
    print(nmnist_mini_table(args.level), end="\n\n")
    print(lossy_table(sets, args.level))


if __name__ == "__main__":
    main()
