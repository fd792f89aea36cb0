"""Forgetting under drift: EWC and proximal consolidation vs none vs joint training.

Run: ``OMP_NUM_THREADS=1 python benchmarks/bench_drift.py [--root /work/shared/data]
[--train-subset 3000] [--test-subset 1000] [--out runs/bench_drift]``.

Trains one federation per (schedule, consolidation, lambda) with the in-process engine and
prints a markdown table of the final average task accuracy, the final forgetting (mean drop
from each finished task's best accuracy) and the mean forgetting over the evaluation rounds.
Schedules: class-incremental MNIST (5 tasks of 2 digits) and domain drift (rotated MNIST,
4 tasks at 0/45/90/135 degrees); the drift-strength rows rotate by less or more.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np

from spikefed.config import validate_config
from spikefed.rounds.validation import RoundFailedError
from spikefed.sim import Simulation

SCHEDULES: dict[str, dict[str, Any]] = {
    "class-incremental": {"kind": "class_incremental", "classes_per_task": 2},
    "domain (rotation)": {"kind": "domain", "domain": "rotation", "tasks": 4,
                          "domain_strength": 180.0},
}
#: rotation spreads for the "does forgetting rise with drift" rows (no consolidation)
DRIFT_LEVELS = [60.0]


def base_config(args: argparse.Namespace) -> dict[str, Any]:
    """The federation every run shares (only the drift section changes)."""
    return {
        "seed": args.seed,
        "data": {"dataset": "mnist", "root": args.root, "num_clients": 10,
                 "partition": {"scheme": "iid"}, "train_subset": args.train_subset,
                 "test_subset": args.test_subset},
        "train": {"rounds": args.rounds_per_task * 5, "fraction": 0.5,
                  "divergence": "skip_client"},
    }


def run_one(args: argparse.Namespace, name: str, drift: dict[str, Any]) -> dict[str, Any]:
    """Train one federation; return its final and mean drift metrics."""
    raw = base_config(args)
    tasks = drift.get("tasks") or 5
    raw["train"]["rounds"] = args.rounds_per_task * tasks
    raw["drift"] = {"rounds_per_task": args.rounds_per_task, **drift}
    cfg = validate_config(raw, name)
    out = Path(args.out) / name.replace(" ", "_").replace("(", "").replace(")", "")
    start = time.perf_counter()
    try:
        Simulation(cfg, out).run(overwrite=True)
    except RoundFailedError as exc:  # e.g. every upload of a round diverged
        return {"avg": None, "forgetting": None, "mean_forgetting": None, "task_acc": [],
                "wall_s": time.perf_counter() - start, "failed": str(exc).splitlines()[0]}
    records = [r for r in Simulation(cfg, out).metrics.records() if r.get("task_acc")]
    forgets = [r["forgetting"] for r in records if r.get("forgetting") is not None]
    last = records[-1]
    return {"avg": last["avg_task_acc"], "forgetting": last["forgetting"],
            "mean_forgetting": float(np.mean(forgets)) if forgets else None,
            "task_acc": last["task_acc"], "wall_s": time.perf_counter() - start,
            "rejected": sum(len(r["rejected"]) for r in records)}


def fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="/work/shared/data")
    parser.add_argument("--train-subset", type=int, default=3000)
    parser.add_argument("--test-subset", type=int, default=1000)
    parser.add_argument("--rounds-per-task", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/bench_drift")
    parser.add_argument("--ewc", type=float, nargs="*", default=[10.0, 100.0],
                        help="EWC strengths lambda")
    parser.add_argument("--proximal", type=float, nargs="*", default=[1.0, 10.0],
                        help="proximal strengths lambda")
    parser.add_argument("--schedules", nargs="*", default=list(SCHEDULES), choices=SCHEDULES)
    parser.add_argument("--no-baselines", action="store_true",
                        help="skip joint, no-consolidation and drift-strength runs")
    args = parser.parse_args()
    methods = [("ewc", args.ewc), ("proximal", args.proximal)]
    if not args.no_baselines:
        methods.insert(0, ("none", [0.0]))
    rows = []
    for sched in args.schedules:
        drift = SCHEDULES[sched]
        runs = [] if args.no_baselines else [("joint", 0.0, {**drift, "joint": True})]
        runs += [(method, lam, {**drift, "consolidation": method, "strength": lam})
                 for method, lams in methods for lam in lams]
        if drift["kind"] == "domain" and not args.no_baselines:
            runs += [(f"none, rotation {level:g} deg", 0.0, {**drift, "domain_strength": level})
                     for level in DRIFT_LEVELS]
        for method, lam, section in runs:
            res = run_one(args, f"{sched} {method} {lam:g}", section)
            rows.append((sched, method, lam, res))
            print(f"{sched} | {method} | {lam:g} | avg {fmt(res['avg'])} | forgetting "
                  f"{fmt(res['forgetting'])} | {res['wall_s']:.0f} s", flush=True)
    print("\n| schedule | consolidation | lambda | final avg task acc | final forgetting "
          "| mean forgetting | final task acc | rejected uploads | wall s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for sched, method, lam, res in rows:
        accs = res.get("failed") or ", ".join(f"{a:.2f}" for a in res["task_acc"])
        print(f"| {sched} | {method} | {lam:g} | {fmt(res['avg'])} | {fmt(res['forgetting'])} | "
              f"{fmt(res['mean_forgetting'])} | {accs} | {res.get('rejected', '-')} | "
              f"{res['wall_s']:.0f} |")


if __name__ == "__main__":
    main()
