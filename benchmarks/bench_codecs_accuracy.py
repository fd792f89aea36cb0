"""Accuracy vs cumulative uplink bytes for the update codecs (docs/communication.md).

Run: ``OMP_NUM_THREADS=1 python benchmarks/bench_codecs_accuracy.py --data-root DIR
[--rounds N] [--test-subset N] [--out DIR]``. Full MNIST from the data root, 100 clients,
Dir(0.5), 10 % participation, the default model (SNN MLP) and recipe; one run per codec
(none, top-k 1 % and 10 % with and without error feedback, qsgd 4 and 8 bits, sign + error
feedback), same seed. Prints a markdown table (final accuracy, cumulative uplink bytes, raw
bytes, ratio, uplink energy) and writes a PNG of server accuracy vs cumulative uplink bytes.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt

from spikefed.config import validate_config
from spikefed.report.figures import save_png
from spikefed.report.metrics import read_metrics
from spikefed.sim import Simulation

CODECS: dict[str, dict[str, Any]] = {
    "none": {"name": "none"},
    "topk 1%": {"name": "topk", "fraction": 0.01, "error_feedback": False},
    "topk 1% + EF": {"name": "topk", "fraction": 0.01, "error_feedback": True},
    "topk 10%": {"name": "topk", "fraction": 0.1, "error_feedback": False},
    "topk 10% + EF": {"name": "topk", "fraction": 0.1, "error_feedback": True},
    "qsgd 4 bits": {"name": "qsgd", "bits": 4},
    "qsgd 8 bits": {"name": "qsgd", "bits": 8},
    "sign + EF": {"name": "sign", "error_feedback": True},
}


def config(args: argparse.Namespace, codec: dict[str, Any]) -> dict[str, Any]:
    """The raw config of one run (only `train.codec` differs between runs)."""
    return {
        "seed": args.seed,
        "data": {"dataset": "mnist", "root": args.data_root, "num_clients": 100,
                 "partition": {"scheme": "dirichlet", "beta": 0.5},
                 "test_subset": args.test_subset},
        "train": {"rounds": args.rounds, "fraction": 0.1, "eval_clients": False,
                  "codec": codec},
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-root", required=True)
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--test-subset", type=int, default=2000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/bench_codecs_accuracy")
    p.add_argument("--plot", default="docs/img/codecs_accuracy.png")
    p.add_argument("--only", nargs="*", help="run only these labels")
    args = p.parse_args()
    out = Path(args.out)
    lines, rows = {}, []
    for label, codec in CODECS.items():
        run_dir = out / label.replace(" ", "_").replace("%", "pc").replace("+", "")
        if not args.only or label in args.only:
            start = time.perf_counter()
            Simulation(validate_config(config(args, codec)), run_dir).run(overwrite=True)
            print(f"{label}: {time.perf_counter() - start:.0f} s", flush=True)
        if not (run_dir / "metrics.jsonl").exists():
            continue
        recs = read_metrics(run_dir / "metrics.jsonl")
        cum, xs, ys = 0, [], []
        for r in recs:
            cum += r["bytes_up"]
            if "server_acc" in r:
                xs.append(cum / 1e6)
                ys.append(r["server_acc"])
        raw = sum(r.get("bytes_up_raw", r["bytes_up"]) for r in recs)
        energy = [sum(r.get(k) or 0.0 for r in recs) / 1e12 for k in  # pJ -> J
                  ("energy_train_pj", "energy_comm_up_pj", "energy_comm_down_pj")]
        lines[label] = (xs, ys)
        rows.append((label, recs[-1]["server_acc"], max(ys), cum, raw, raw / cum, *energy))
    print("| codec | final acc | best acc | uplink bytes | uncompressed | ratio | "
          "training J | uplink J | downlink J | total J |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for label, acc, best, cum, raw, ratio, train, up, down in rows:
        print(f"| {label} | {acc:.4f} | {best:.4f} | {cum:,} | {raw:,} | {ratio:.1f} | "
              f"{train:.3f} | {up:.2f} | {down:.2f} | {train + up + down:.2f} |")
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, (xs, ys) in lines.items():
        ax.plot(xs, ys, marker=".", label=label)
    ax.set_xscale("log")  # 50x between the extremes
    ax.set(xlabel="cumulative uplink MB (log scale)", ylabel="server accuracy",
           title=f"MNIST, 100 clients, Dir(0.5), 10 %/round, {args.rounds} rounds")
    ax.legend(fontsize=8)
    save_png(fig, args.plot)
    print(json.dumps({"plot": args.plot}))


if __name__ == "__main__":
    main()
