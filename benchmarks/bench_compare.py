"""spikefed against snnTorch and SpikingJelly, in one run on one device.

Run: ``OMP_NUM_THREADS=1 python benchmarks/bench_compare.py [--device cpu|cuda] [--quick]``.
Prints markdown tables of medians (ms) with the device, versions, date and load:

(1) LIF forward bandwidth (no grad): bytes read + written per second by a multi-step LIF over
    ``[T, N]`` as a fraction of the device's copy bandwidth on the same tensor size;
(2) one training step of the conv SNN from issue 10 (conv 64-128-256 + BatchNorm + LIF +
    avg-pool, FC; T=8, layer order, SGD with momentum), and the same net with ReLU on the
    T x B images;
(3) one training step of the FC 784-512-10 SNN (T=16, B=128, direct input);
(4) vectorised vs serial federated rounds at 10 / 100 / 1000 clients;
(5) Spiking ResNet-20 training throughput (T=4, BatchNorm, layer order) against the ANN on
    the T x B images (by default on CUDA only).

snnTorch and SpikingJelly are optional (``pip install --no-deps snntorch spikingjelly``;
SpikingJelly also needs ``loguru``); a missing one is reported and skipped. They are never
spikefed dependencies.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import os
import platform
import statistics
import time
from collections.abc import Callable
from functools import partial

import torch
from torch import nn
from torch.nn import functional as F

from spikefed.fl.base import ClientData, TrainContext
from spikefed.fl.registry import build_algorithm
from spikefed.models import build_model
from spikefed.sim.vectorized import client_updates
from spikefed.snn.fused import use_fused
from spikefed.snn.neurons import LIF

BETA = 0.9


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def median_ms(fn: Callable[[], object], repeats: int, device: torch.device,
              warmup: int = 2) -> float:
    """Median wall time of ``fn`` in ms (synchronised on CUDA), after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def version(pkg: str) -> str | None:
    try:
        return importlib.metadata.version(pkg)
    except importlib.metadata.PackageNotFoundError:
        return None


def snntorch_leaky():
    try:
        import snntorch
    except ImportError:
        return None
    return snntorch.Leaky(beta=BETA)  # reset by subtraction, threshold 1


def spikingjelly_lif():
    """SpikingJelly's multi-step LIF set to v <- 0.9 v + x, soft reset, detached reset."""
    try:
        from spikingjelly.activation_based import functional, neuron
    except ImportError:
        return None
    node = neuron.LIFNode(tau=1.0 / (1.0 - BETA), decay_input=False, v_reset=None,
                          detach_reset=True, step_mode="m")
    return node, functional.reset_net


# (1) LIF forward bandwidth --------------------------------------------------------------
def bench_bandwidth(device: torch.device, T: int, neurons: int, repeats: int,
                    fused_cpu: bool) -> list[str]:
    x = torch.randn(T, neurons, device=device)
    nbytes = 2 * x.numel() * x.element_size()  # read the input, write the spikes
    out = torch.empty_like(x)
    copy_ms = median_ms(lambda: out.copy_(x), repeats, device)
    copy_gbs = nbytes / copy_ms / 1e6
    rows = [f"copy bandwidth on [{T}, {neurons}] fp32: {copy_gbs:.1f} GB/s", "",
            "| implementation | ms | GB/s | fraction of copy |", "|---|---|---|---|"]
    cases: list[tuple[str, Callable[[], object]]] = []
    lif = LIF(beta=BETA).to(device)

    def reference() -> None:
        with use_fused("never"):
            lif(x)

    cases.append(("spikefed LIF, reference loop", reference))
    if device.type == "cuda" or fused_cpu:
        def fused() -> None:
            with use_fused("always"):
                lif(x)
        cases.append(("spikefed LIF, fused (torch.compile)", fused))
    leaky = snntorch_leaky()
    if leaky is not None:
        def snn_torch() -> None:
            mem = torch.zeros_like(x[0])
            for x_t in x:
                _, mem = leaky(x_t, mem)
        cases.append(("snnTorch Leaky (loop over T)", snn_torch))
    sj = spikingjelly_lif()
    if sj is not None:
        node, reset_net = sj
        node = node.to(device)

        def jelly() -> None:
            node(x)
            reset_net(node)
        cases.append(("SpikingJelly LIFNode (multi-step)", jelly))
    with torch.no_grad():
        for name, fn in cases:
            ms = median_ms(fn, repeats, device)
            gbs = nbytes / ms / 1e6
            rows.append(f"| {name} | {ms:.2f} | {gbs:.1f} | {gbs / copy_gbs:.0%} |")
    return rows


# (2) conv step ---------------------------------------------------------------------------
class ConvBody(nn.Module):
    """conv3x3 64-128-256, each + BatchNorm + neuron + 2x2 avg-pool, then FC 10.

    ``neuron(h, T)`` maps ``[T*B, C, H, W]`` currents to spikes of the same shape (or is a
    ReLU for the ANN baseline).
    """

    def __init__(self, neuron: Callable[[torch.Tensor, int], torch.Tensor]) -> None:
        super().__init__()
        chans = [3, 64, 128, 256]
        self.convs = nn.ModuleList(nn.Conv2d(a, b, 3, padding=1, bias=False)
                                   for a, b in zip(chans, chans[1:], strict=False))
        self.norms = nn.ModuleList(nn.BatchNorm2d(c) for c in chans[1:])
        self.fc = nn.Linear(256 * 4 * 4, 10)
        self.neuron = neuron

    def forward(self, x: torch.Tensor, T: int) -> torch.Tensor:  # x: [T*B, 3, 32, 32]
        h = x
        for conv, norm in zip(self.convs, self.norms, strict=True):
            h = F.avg_pool2d(self.neuron(norm(conv(h)), T), 2)
        return self.fc(h.flatten(1)).unflatten(0, (T, -1)).mean(0)


def bench_conv(device: torch.device, T: int, B: int, repeats: int) -> list[str]:
    torch.manual_seed(0)
    x = torch.rand(B, 3, 32, 32, device=device)
    xs = x.unsqueeze(0).expand(T, *x.shape).flatten(0, 1).contiguous()
    y = torch.randint(0, 10, (B,), device=device)
    impls: list[tuple[str, Callable[[torch.Tensor, int], torch.Tensor]]] = []
    lif = LIF(beta=BETA)
    impls.append(("spikefed LIF (layer order; fused on CUDA)",
                  lambda h, T: lif(h.unflatten(0, (T, -1))).flatten(0, 1)))
    leaky = snntorch_leaky()
    if leaky is not None:
        def snn_torch(h: torch.Tensor, T: int) -> torch.Tensor:
            mem = leaky.init_leaky()
            out = []
            for h_t in h.unflatten(0, (T, -1)):
                spk, mem = leaky(h_t, mem)
                out.append(spk)
            return torch.cat(out)
        impls.append(("snnTorch Leaky", snn_torch))
    sj = spikingjelly_lif()
    if sj is not None:
        node, reset_net = sj

        def jelly(h: torch.Tensor, T: int) -> torch.Tensor:
            reset_net(node)  # SpikingJelly neurons keep their state between calls
            return node(h.unflatten(0, (T, -1))).flatten(0, 1)
        impls.append(("SpikingJelly LIFNode (multi-step)", jelly))
    impls.append(("ReLU net on the T x B images", lambda h, T: F.relu(h)))
    rows = ["| implementation | ms per training step |", "|---|---|"]
    for name, neuron in impls:
        net = ConvBody(neuron).to(device)
        opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)

        def step(net: nn.Module = net, opt: torch.optim.Optimizer = opt) -> None:
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(net(xs, T), y).backward()
            opt.step()

        rows.append(f"| {name} | {median_ms(step, repeats, device):.1f} |")
    return rows


# (3) FC step -----------------------------------------------------------------------------
def bench_fc(device: torch.device, T: int, B: int, repeats: int) -> list[str]:
    torch.manual_seed(0)
    x = torch.rand(B, 1, 28, 28, device=device)
    y = torch.randint(0, 10, (B,), device=device)
    cases: list[tuple[str, Callable[[], None]]] = []
    for order in ("step", "layer"):
        for once in (False, True):
            model = build_model("mlp", spiking=True, in_shape=(1, 28, 28), num_classes=10, T=T,
                                order=order, hidden=(512,), norm="none",
                                stem_once=once).to(device)

            def step(model: nn.Module = model) -> None:
                model.zero_grad(set_to_none=True)
                F.cross_entropy(model(x), y).backward()

            cases.append((f"spikefed, {order} order, stem_once={once}", step))
    fc1, fc2 = nn.Linear(784, 512).to(device), nn.Linear(512, 10).to(device)
    flat = x.flatten(1)
    leaky = snntorch_leaky()
    if leaky is not None:
        def snn_torch() -> None:
            fc1.zero_grad(set_to_none=True)
            fc2.zero_grad(set_to_none=True)
            mem, out = leaky.init_leaky(), 0
            for _ in range(T):  # the usual snnTorch loop: fc1 at every step
                spk, mem = leaky(fc1(flat), mem)
                out = out + fc2(spk)
            F.cross_entropy(out / T, y).backward()
        cases.append(("snnTorch Leaky (fc1 in the loop)", snn_torch))
    sj = spikingjelly_lif()
    if sj is not None:
        node, reset_net = sj
        node = node.to(device)

        def jelly() -> None:
            fc1.zero_grad(set_to_none=True)
            fc2.zero_grad(set_to_none=True)
            h = fc1(flat.unsqueeze(0).expand(T, *flat.shape))  # multi-step: [T, B, 784]
            F.cross_entropy(fc2(node(h)).mean(0), y).backward()
            reset_net(node)
        cases.append(("SpikingJelly LIFNode (multi-step)", jelly))
    times = {name: median_ms(fn, repeats, device) for name, fn in cases}
    ref = times.get("snnTorch Leaky (fc1 in the loop)")
    rows = ["| implementation | ms per training step | snnTorch time / this |", "|---|---|---|"]
    for name, ms in times.items():
        rows.append(f"| {name} | {ms:.1f} | {f'{ref / ms:.2f}x' if ref else '—'} |")
    return rows


# (4) vectorised vs serial rounds -------------------------------------------------------
def _fed_model(norm: str):
    return lambda: build_model("mlp", spiking=True, in_shape=(1, 28, 28), num_classes=10, T=4,
                               norm=norm, hidden=(64,))


def _round(alg, broadcast, states, datas, ids, ctx, mode: str) -> None:
    list(client_updates(alg, broadcast, states, datas, ids, ctx, mode))


def bench_rounds(device: torch.device, counts: list[int], repeats: int,
                 extra_at: int) -> list[str]:
    """One round of local training (1 step of batch 16 per client) serial vs vectorised."""
    rows = ["| algorithm | model | clients | serial (ms/round) | vectorised (ms/round) | "
            "speed-up |", "|---|---|---|---|---|---|"]
    cases = [("fedavg", "none", c) for c in counts]
    cases += [("scaffold", "none", extra_at), ("moon", "none", extra_at),
              ("fedavg", "bn", extra_at)]
    for name, norm, C in cases:
        model_fn = _fed_model(norm)
        alg = build_algorithm(name, {"proj_dim": 16} if name == "moon" else {})
        torch.manual_seed(0)
        _, broadcast = alg.init_server(model_fn())
        g = torch.Generator().manual_seed(C)
        datas = [ClientData(torch.rand(16, 1, 28, 28, generator=g),
                            torch.randint(0, 10, (16,), generator=g)) for _ in range(C)]
        states: dict[int, dict] = {i: {} for i in range(C)}
        ids = list(range(C))
        ctx = TrainContext(model_fn=model_fn, batch_size=16, lr=0.05, momentum=0.9,
                           device=device)
        reps = 1 if C >= 1000 else repeats
        t = {}
        for mode in ("off", "on"):
            run = partial(_round, alg, broadcast, states, datas, ids, ctx, mode)
            t[mode] = median_ms(run, reps, device, warmup=1)
        rows.append(f"| {name} | MLP 784-64-10 T=4, norm={norm} | {C} | {t['off']:.0f} | "
                    f"{t['on']:.0f} | {t['off'] / t['on']:.2f}x |")
    return rows


# (5) Spiking ResNet-20 throughput --------------------------------------------------------
def bench_resnet(device: torch.device, T: int, B: int, repeats: int) -> list[str]:
    """Training images/s of the zoo ResNet-20 (BatchNorm, layer order, SGD with momentum) as
    an SNN on ``B`` images x ``T`` steps, and as an ANN on the ``T*B`` images."""
    torch.manual_seed(0)
    x = torch.rand(B, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (B,), device=device)
    xs, ys = x.repeat(T, 1, 1, 1), y.repeat(T)
    rows = ["| model | images per step | ms per step | images/s |", "|---|---|---|---|"]
    cases = [("SNN, layer order", True, dict(order="layer"), x, y),
             ("SNN, layer order, stem_once", True, dict(order="layer", stem_once=True), x, y),
             ("ANN on the T x B images", False, {}, xs, ys)]
    for name, spiking, kw, inp, target in cases:
        model = build_model("resnet20", spiking=spiking, in_shape=(3, 32, 32), num_classes=10,
                            T=T, norm="bn", **kw).to(device)
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

        def step(model: nn.Module = model, opt: torch.optim.Optimizer = opt,
                 inp: torch.Tensor = inp, target: torch.Tensor = target) -> None:
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(inp), target).backward()
            opt.step()

        ms = median_ms(step, repeats, device)
        rows.append(f"| {name} | {len(inp)} | {ms:.1f} | {len(inp) / ms * 1e3:.0f} |")
    return rows


def header(device: torch.device) -> str:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    return (f"date {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC; device {device} "
            f"({name or platform.machine()}, {os.cpu_count()} CPUs, {torch.get_num_threads()} "
            f"thread(s)); load average {load}; torch {torch.__version__}, snnTorch "
            f"{version('snntorch') or 'not installed'}, SpikingJelly "
            f"{version('spikingjelly') or 'not installed'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
    parser.add_argument("--neurons", type=int, default=None,
                        help="neurons in (1) (default 16.8M on CUDA, 1M on CPU)")
    parser.add_argument("--conv-batch", type=int, default=None,
                        help="batch of (2) (default 128 on CUDA, 8 on CPU)")
    parser.add_argument("--clients", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--fused-cpu", action="store_true",
                        help="also time the compiled LIF on CPU (compiles for a minute)")
    parser.add_argument("--only", nargs="+",
                        choices=["bandwidth", "conv", "fc", "rounds", "resnet"], default=None,
                        help="sections to run (default: all; resnet only on CUDA)")
    args = parser.parse_args()
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    if args.only is None:
        args.only = ["bandwidth", "conv", "fc", "rounds"] + (["resnet"] if cuda else [])
    neurons = args.neurons or (16_777_216 if cuda else 1_048_576)
    conv_batch = args.conv_batch or (128 if cuda else 8)
    clients = [10, 100] if args.quick else args.clients
    if args.quick:
        neurons, conv_batch, args.repeats = min(neurons, 65_536), min(conv_batch, 2), 2
    print(header(device) + "\n")
    if "bandwidth" in args.only:
        print("## (1) LIF forward, T=16, no grad\n")
        print("\n".join(bench_bandwidth(device, 16, neurons, args.repeats, args.fused_cpu)) + "\n")
    if "conv" in args.only:
        print(f"## (2) conv SNN training step, T=8, B={conv_batch}\n")
        print("\n".join(bench_conv(device, 8, conv_batch, args.repeats)) + "\n")
    if "fc" in args.only:
        print("## (3) FC 784-512-10 training step, T=16, B=128, direct input\n")
        print("\n".join(bench_fc(device, 16, 128, args.repeats)) + "\n")
    if "rounds" in args.only:
        print("## (4) one federated round, serial vs vectorised\n")
        print("\n".join(bench_rounds(device, clients, args.repeats, 100 if not args.quick
                                     else clients[-1])) + "\n")
    if "resnet" in args.only:
        B = 128 if cuda and not args.quick else 2
        print(f"## (5) ResNet-20 training throughput, T=4, B={B}, BatchNorm\n")
        print("\n".join(bench_resnet(device, 4, B, args.repeats)))


if __name__ == "__main__":
    main()
