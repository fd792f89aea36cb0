"""Overhead of counting spikes/SynOps/MACs during local training (`energy.count_training`).

Run: ``OMP_NUM_THREADS=1 python benchmarks/bench_energy.py [--repeats R]``.
Trains the default run's first client (default config: SNN MLP 784-256-10, T=8, one local
epoch) with counting off and on, alternating, and prints the median and minimum wall time of
each and the relative overhead. Also checks that both give the same weights bit for bit.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from spikefed.config import load_config
from spikefed.experiment import build_federation
from spikefed.fl.local import local_train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    fed = build_federation(load_config())
    data = fed.clients[0]
    start = fed.initial_model().state_dict()
    times: dict[bool, list[float]] = {False: [], True: []}
    weights: dict[bool, dict[str, torch.Tensor]] = {}
    for _ in range(args.repeats):
        for count in (False, True):
            ctx = fed.train_context(1)
            ctx.count_activity = count
            model = ctx.local_model(start)
            t0 = time.perf_counter()
            local_train(model, data, ctx, client_id=0)
            times[count].append(time.perf_counter() - t0)
            weights[count] = {k: v.clone() for k, v in model.state_dict().items()}
    same = all(torch.equal(weights[True][k], weights[False][k]) for k in weights[True])
    off, on = statistics.median(times[False]), statistics.median(times[True])
    print(f"client 0: {len(data)} samples, {args.repeats} repeats, torch {torch.__version__}, "
          f"{torch.get_num_threads()} thread(s); weights identical: {same}")
    print("| counting | median s | min s |\n|---|---|---|")
    for count in (False, True):
        print(f"| {'on' if count else 'off'} | {statistics.median(times[count]):.3f} "
              f"| {min(times[count]):.3f} |")
    print(f"overhead (median): {100 * (on - off) / off:+.1f} %, "
          f"(min): {100 * (min(times[True]) - min(times[False])) / min(times[False]):+.1f} %")


if __name__ == "__main__":
    main()
