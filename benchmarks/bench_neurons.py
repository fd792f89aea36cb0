"""Time forward+backward of SNNs in step vs layer order (and snnTorch if importable).

Run: ``OMP_NUM_THREADS=1 python benchmarks/bench_neurons.py [--threads N] [--repeats R]``.
Prints a markdown table: median milliseconds per training step (forward + loss + backward).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from spikefed.models import build_model


def time_step(fn: Callable[[], None], repeats: int, warmup: int = 2) -> float:
    """Median wall time of ``fn`` in milliseconds."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def train_step_fn(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> Callable[[], None]:
    """Forward + cross-entropy + backward of ``model`` on ``(x, y)``."""

    def step() -> None:
        model.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()

    return step


def snntorch_fc(T: int, x: torch.Tensor, y: torch.Tensor) -> Callable[[], None] | None:
    """The same FC 784-512-10 SNN written with snnTorch, or None when it is not installed."""
    try:
        import snntorch as snn
    except ImportError:
        return None
    fc1, fc2 = torch.nn.Linear(784, 512), torch.nn.Linear(512, 10)
    lif = snn.Leaky(beta=0.9)

    def step() -> None:
        fc1.zero_grad(set_to_none=True)
        fc2.zero_grad(set_to_none=True)
        mem = lif.init_leaky()
        out = 0
        flat = x.flatten(1)
        for _ in range(T):
            spk, mem = lif(fc1(flat), mem)
            out = out + fc2(spk)
        F.cross_entropy(out / T, y).backward()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    cases = [
        ("FC 784-512-10", "mlp", (1, 28, 28), 16, 128, {"hidden": (512,), "norm": "none"}),
        ("convnet 1x28x28", "convnet", (1, 28, 28), 8, 32, {}),
    ]
    rows = []
    for label, name, shape, T, B, kw in cases:
        x = torch.rand(B, *shape)
        y = torch.randint(0, 10, (B,))
        for order in ("step", "layer"):
            model = build_model(name, spiking=True, in_shape=shape, num_classes=10, T=T,
                                order=order, **kw)
            ms = time_step(train_step_fn(model, x, y), args.repeats)
            rows.append((label, T, B, f"spikefed {order}", ms))
        if name == "mlp":
            ref = snntorch_fc(T, x, y)
            if ref is not None:
                rows.append((label, T, B, "snnTorch Leaky", time_step(ref, args.repeats)))

    print(f"threads={args.threads}, torch {torch.__version__}, median of {args.repeats}")
    print("| model | T | B | implementation | fwd+bwd ms |")
    print("|---|---|---|---|---|")
    for label, T, B, impl, ms in rows:
        print(f"| {label} | {T} | {B} | {impl} | {ms:.1f} |")


if __name__ == "__main__":
    main()
