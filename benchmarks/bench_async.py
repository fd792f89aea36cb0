"""Sync FedAvg vs FedAsync vs FedBuff on a virtual clock with slow devices (docs/async.md).

Run: ``OMP_NUM_THREADS=1 python benchmarks/bench_async.py [--out DIR] [--updates N]``.
The default run's data and model (mnist-mini, 10 clients, Dir(0.5), SNN MLP), the same
devices for all three (asynchronous.clock with `--slow-fraction` of them `--slowdown` times
slower) and the same number of client updates (sync: rounds x 10 clients). The synchronous
run is the ordinary engine; its virtual time is the sum over rounds of the slowest
participant's update (`spikefed.sim.clock.sync_round_time`), its results do not depend on
the clock. Prints a markdown table and writes a PNG of server accuracy vs virtual time.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from spikefed.config import ClockConfig, validate_config
from spikefed.report.figures import line_png
from spikefed.report.metrics import read_metrics
from spikefed.sim import Simulation, sample_clients
from spikefed.sim.asynchronous import AsyncSimulation
from spikefed.sim.clock import draw_devices, sync_round_time


def configs(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """The three raw configs compared (same data, model, seed, clock, client updates)."""
    clock = {"slow_fraction": args.slow_fraction, "slowdown": args.slowdown}
    base = {"seed": args.seed, "train": {"eval_clients": False}}
    rounds = args.updates // 10
    common = {"updates": args.updates, "concurrency": args.concurrency, "clock": clock}
    return {
        "sync FedAvg": {**base, "train": {**base["train"], "rounds": rounds}},
        "FedAsync": {**base, "train": {**base["train"], "eval_every": 10},
                     "asynchronous": {**common, "mode": "fedasync", "alpha": args.alpha,
                                      "staleness": "polynomial", "staleness_a": 0.5}},
        "FedBuff": {**base, "train": {**base["train"], "eval_every": 10 // args.buffer},
                    "asynchronous": {**common, "mode": "fedbuff", "buffer_size": args.buffer,
                                     "staleness": "polynomial", "staleness_a": 0.5}},
    }


def sync_times(clock: ClockConfig, sim: Simulation, records: list[dict[str, Any]]
               ) -> list[float]:
    """Virtual end time of each synchronous round on the asynchronous runs' devices."""
    n = len(sim.fed.clients)
    devices = draw_devices(clock, n, sim.cfg.seed)
    sizes = [len(c) for c in sim.fed.clients]
    now, times = 0.0, []
    for rec in records:
        chosen, stragglers = sample_clients(n, sim.cfg, rec["round"])
        active = [c for c in chosen if c not in stragglers]
        now += sync_round_time(clock, devices, active, sizes, sim.cfg.train.local_epochs)
        times.append(now)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="runs/bench_async")
    parser.add_argument("--updates", type=int, default=150)
    parser.add_argument("--concurrency", type=int, default=5)
    parser.add_argument("--buffer", type=int, default=5)
    parser.add_argument("--alpha", type=float, default=0.6)
    parser.add_argument("--slow-fraction", type=float, default=0.2)
    parser.add_argument("--slowdown", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--png", default="docs/img/async_accuracy_vs_time.png")
    args = parser.parse_args()
    curves, rows = {}, []
    for name, raw in configs(args).items():
        cfg = validate_config(raw)
        out = Path(args.out) / name.split()[-1].lower()
        sim = AsyncSimulation(cfg, out) if cfg.asynchronous else Simulation(cfg, out)
        start = time.perf_counter()
        sim.run(overwrite=True)
        wall = time.perf_counter() - start
        records = read_metrics(out / "metrics.jsonl")
        if cfg.asynchronous:
            times = [r["virtual_time_s"] for r in records]
            updates = [r["updates"] for r in records]
        else:
            clock = ClockConfig(slow_fraction=args.slow_fraction, slowdown=args.slowdown)
            times = sync_times(clock, sim, records)
            updates = [10 * r["round"] for r in records]
        evals = [(t, u, r["server_acc"]) for t, u, r in zip(times, updates, records, strict=True)
                 if r.get("server_acc") is not None]
        curves[name] = ([t for t, _, _ in evals], [a for _, _, a in evals])
        stale = [r["staleness_max"] for r in records if r.get("staleness_max") is not None]
        rows.append({"run": name, "evals": evals, "final_acc": evals[-1][2],
                     "virtual_time_s": times[-1], "updates": updates[-1],
                     "server_steps": len(records), "staleness_max": max(stale, default=0),
                     "wall_s": wall})
    budget = min(row["virtual_time_s"] for row in rows)
    print(f"| run | client updates | server steps | virtual time (s) | final acc | acc at "
          f"t={budget:.0f} s | max staleness | wall (s) |")
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        at_budget = max((e for e in row["evals"] if e[0] <= budget), default=(0, 0, None),
                        key=lambda e: e[0])[2]
        row["acc_at_budget"] = at_budget
        print(f"| {row['run']} | {row['updates']} | {row['server_steps']} | "
              f"{row['virtual_time_s']:.1f} | {row['final_acc']:.4f} | {at_budget} | "
              f"{row['staleness_max']} | {row['wall_s']:.0f} |")
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "results.json").write_text(json.dumps(rows, indent=2))
    line_png(curves, args.png, xlabel="virtual time (s)", ylabel="server accuracy (2000 test)",
             title=f"{int(args.slow_fraction * 100)} % of devices {args.slowdown:g}x slower",
             size=(6, 3.8))
    print(f"wrote {args.png}")


if __name__ == "__main__":
    main()
