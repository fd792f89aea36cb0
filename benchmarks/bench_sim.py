"""Cost of the in-process engine: overhead per client, vectorised clients, Flower.

Run: ``OMP_NUM_THREADS=1 python benchmarks/bench_sim.py [--repeats R] [--quick]``.
Prints three markdown tables (median wall times over ``--repeats`` runs):

(a) engine overhead: one `Simulation.run_round` (FedAvg, no evaluation) against a plain
    Python loop doing the same local training (load weights, SGD over the same minibatches,
    copy the weights, average) on a tiny SNN, so the difference is the engine's own cost;
(b) vectorised (`train.vectorize=on`) against serial clients on the SNN MLP 784-256-10, T=4;
(c) one round of the same experiment as (a) through the Flower adapter (Message API, driven
    in-process by `spikefed.flower.run_local`), skipped when `flwr` is not importable.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
from collections.abc import Callable
from functools import partial

import torch
import torch.nn.functional as F
from bench_neurons import time_step as median_ms  # same median-of-repeats timer

from spikefed.config import load_config
from spikefed.fl.base import ClientData, TrainContext
from spikefed.fl.fedavg import FedAvg
from spikefed.models import build_model
from spikefed.sim import Simulation
from spikefed.sim.engine import RunState
from spikefed.sim.vectorized import CPU_GROUP, client_updates, train_vectorized

TINY = ["model.T=2", "model.kwargs.hidden=[8]", "data.partition.scheme=iid",
        "train.batch_size=16", "train.eval_clients=false", "train.rounds=1000",
        "train.eval_every=1000", "data.test_subset=100", "train.momentum=0.0"]


def tiny_simulation(num_clients: int, samples: int, out: str, *extra: str) -> Simulation:
    """A Simulation of the tiny experiment with `samples` training samples per client."""
    cfg = load_config(overrides=[*TINY, f"data.num_clients={num_clients}", *extra])
    sim = Simulation(cfg, out)
    for c in sim.fed.clients:
        c.x, c.y = c.x[:samples], c.y[:samples]
    return sim


def plain_loop(sim: Simulation, lr: float, batch_size: int) -> Callable[[], None]:
    """The same local training as a FedAvg round, written as a bare Python loop."""
    model = sim.fed.initial_model()
    global_state = {k: v.clone() for k, v in model.state_dict().items()}

    def run() -> None:
        states = []
        for cid, data in enumerate(sim.fed.clients):
            model.load_state_dict(global_state)
            opt = torch.optim.SGD(model.parameters(), lr=lr)
            order = torch.randperm(len(data), generator=torch.Generator().manual_seed(cid))
            for idx in order.split(batch_size):
                opt.zero_grad()
                F.cross_entropy(model(data.x[idx]), data.y[idx]).backward()
                opt.step()
            states.append({k: v.detach().clone() for k, v in model.state_dict().items()})
        for k in global_state:
            global_state[k] = torch.stack([s[k] for s in states]).mean(0)

    return run


def bench_overhead(repeats: int, client_counts: list[int]) -> list[str]:
    """(a) ms per client the engine adds to a plain loop (1 local step per client).

    The loop and the two engine modes are timed in turn within every repeat
    (`interleaved_medians`), so load drift on a shared machine hits them alike.
    """
    rows = ["| clients | plain loop (ms/round) | engine, serial (ms/round) | "
            "overhead, serial (ms/client) | engine, vectorize=on (ms/round) | "
            "overhead, vectorised (ms/client) |", "|---|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        for n in client_counts:
            plain_sim = tiny_simulation(n, 16, tmp)
            fns: list[Callable[[], object]] = [plain_loop(plain_sim, plain_sim.cfg.train.lr, 16)]
            for mode in ("off", "on"):
                sim = tiny_simulation(n, 16, tmp, f"train.vectorize={mode}")
                state = sim._fresh_state()

                def engine_round(sim: Simulation = sim, state: RunState = state) -> None:
                    state.round = 0
                    sim.run_round(state)

                fns.append(engine_round)
            plain, serial, vectorised = interleaved_medians(fns, repeats)
            rows.append(f"| {n} | {plain:.1f} | {serial:.1f} | {(serial - plain) / n:.2f} | "
                        f"{vectorised:.1f} | {(vectorised - plain) / n:.2f} |")
    return rows


def mlp_fn() -> torch.nn.Module:
    return build_model("mlp", spiking=True, in_shape=(1, 28, 28), num_classes=10, T=4,
                       norm="none", hidden=(256,))


def interleaved_medians(fns: list[Callable[[], object]], repeats: int) -> list[float]:
    """Median ms of each of ``fns``, timed in turn every repeat (load drift hits all alike)."""
    for fn in fns:
        fn()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, ts in zip(fns, times, strict=True):
            t0 = time.perf_counter()
            fn()
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            ts.append((time.perf_counter() - t0) * 1e3)
    return [statistics.median(ts) for ts in times]


def run_serial(alg: FedAvg, broadcast: dict, datas: list[ClientData], ctx: TrainContext
               ) -> None:
    """Every client's `client_update`, one after another."""
    for cid, d in enumerate(datas):
        alg.client_update(cid, broadcast, {}, d, ctx)


def run_engine(alg: FedAvg, broadcast: dict, states: dict, datas: list[ClientData],
               ids: list[int], ctx: TrainContext) -> None:
    """The engine's vectorised path (`train.vectorize=on`)."""
    list(client_updates(alg, broadcast, states, datas, ids, ctx, "on"))


def bench_vectorized(repeats: int, clients: list[int], batches: list[int], steps: int,
                     device: str = "cpu") -> list[str]:
    """(b) serial `client_update` loop against vectorised clients (FedAvg, `steps` steps):
    all clients in one group (`train_vectorized`) and as the engine groups them
    (`client_updates(mode="on")`: groups of `CPU_GROUP` on CPU)."""
    rows = ["| clients | batch | serial (ms/round) | vectorised, one group (ms/round) | "
            f"vectorised, groups of <= {CPU_GROUP} on CPU (ms/round) | speed-up (engine) |",
            "|---|---|---|---|---|---|"]
    alg = FedAvg()
    broadcast = mlp_fn().state_dict()
    for B in batches:
        ctx = TrainContext(model_fn=mlp_fn, batch_size=B, lr=0.05, momentum=0.9,
                           device=torch.device(device))
        for C in clients:
            g = torch.Generator().manual_seed(C)
            datas = [ClientData(torch.rand(steps * B, 1, 28, 28, generator=g),
                                torch.randint(0, 10, (steps * B,), generator=g))
                     for _ in range(C)]
            ids, states = list(range(C)), {i: {} for i in range(C)}
            serial = partial(run_serial, alg, broadcast, datas, ctx)
            one_group = partial(train_vectorized, alg, broadcast, datas, ids, ctx)
            engine = partial(run_engine, alg, broadcast, states, datas, ids, ctx)
            t_s, t_1, t_e = interleaved_medians([serial, one_group, engine], repeats)
            rows.append(f"| {C} | {B} | {t_s:.0f} | {t_1:.0f} | {t_e:.0f} | {t_s / t_e:.2f}x |")
    return rows


def bench_flower(repeats: int, num_clients: int) -> list[str]:
    """(c) per-round time through the Flower adapter vs the in-process engine."""
    try:
        from spikefed.flower import make_client_app, make_server_app, run_local
    except ImportError:
        return ["_skipped: `flwr` is not importable (pip install 'spikefed[flower]')_"]
    logging.getLogger("flwr").setLevel(logging.WARNING)
    rows = ["| engine | rounds | total (ms) | per round (ms) |", "|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        per_round = {}
        for rounds in (1, 3):
            sim = tiny_simulation(num_clients, 16, tmp, f"train.rounds={rounds}",
                                  "train.eval_every=1")
            fed = sim.fed

            def flower(fed=fed) -> None:
                run_local(make_server_app(federation=fed), make_client_app(federation=fed),
                          len(fed.clients))

            def engine(sim: Simulation = sim, rounds: int = rounds) -> None:
                state = sim._fresh_state()
                for _ in range(rounds):
                    sim.run_round(state)

            per_round[rounds] = (median_ms(flower, repeats), median_ms(engine, repeats))
        for i, name in enumerate(("Flower adapter (run_local, no Ray)", "spikefed sim")):
            t1, t3 = per_round[1][i], per_round[3][i]
            rows.append(f"| {name} | 1 | {t1:.0f} | {t1:.0f} |")
            rows.append(f"| {name} | 3 | {t3:.0f} | {(t3 - t1) / 2:.0f} (marginal) |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=4, help="local steps per client in (b)")
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
    parser.add_argument("--only-vectorized", action="store_true", help="run (b) only")
    parser.add_argument("--device", default="cpu", help="device for (b), e.g. cuda")
    args = parser.parse_args()
    counts = [8, 32] if args.quick else [8, 32, 64]
    batches = [16] if args.quick else [16, 128]
    if args.only_vectorized:
        print("\n".join(bench_vectorized(args.repeats, counts, batches, args.steps, args.device)))
        return
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s)\n")
    print("## (a) engine overhead per client\n")
    print("\n".join(bench_overhead(args.repeats, counts)) + "\n")
    print("## (b) vectorised vs serial clients (SNN MLP 784-256-10, T=4)\n")
    print("\n".join(bench_vectorized(args.repeats, counts, batches, args.steps)) + "\n")
    print("## (c) one round through Flower\n")
    print("\n".join(bench_flower(args.repeats, 8)))


if __name__ == "__main__":
    main()
