"""ANN-SNN accuracy gap at small T: per-layer vs per-channel thresholds, 128 vs more
calibration images (docs/conversion.md, "Options that close the gap").

Trains a BN ConvNet ANN centrally on the bundled mnist-mini for a few epochs (seeded), then
converts it for every T x calibration x threshold granularity x calibration-set size and
prints a markdown table of test accuracy, gap to the ANN (points) and seconds per cell.

    PYTHONPATH=src python benchmarks/bench_conversion_options.py --epochs 2 --T 2,4,8
"""

from __future__ import annotations

import argparse
import time

import torch

from spikefed.convert import convert_ann_to_snn
from spikefed.convert.sweep import predict
from spikefed.data import load_dataset
from spikefed.fl.base import ClientData, TrainContext
from spikefed.fl.local import local_train
from spikefed.models import build_model


def train_ann(model_name: str, epochs: int, seed: int) -> tuple[torch.nn.Module, float]:
    """A BN ANN trained centrally on mnist-mini; returns it (eval mode) and the seconds."""
    train = load_dataset("mnist-mini", "train")
    torch.manual_seed(seed)

    def make() -> torch.nn.Module:
        return build_model(model_name, spiking=False, in_shape=train.in_shape,
                           num_classes=train.num_classes, norm="bn")

    ann = make()
    ctx = TrainContext(model_fn=make, local_epochs=epochs, batch_size=64, lr=0.05,
                       momentum=0.9, seed=seed)
    start = time.perf_counter()
    local_train(ann, ClientData(train.x, train.y), ctx, client_id=0)
    return ann.eval(), time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="convnet")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--T", default="2,4,8")
    parser.add_argument("--calib", default="none,light")
    parser.add_argument("--calib-samples", default="128,512")
    parser.add_argument("--threshold", default="mmse")
    args = parser.parse_args()
    torch.set_num_threads(1)
    ann, train_s = train_ann(args.model, args.epochs, args.seed)
    train = load_dataset("mnist-mini", "train")
    test = load_dataset("mnist-mini", "test")
    ann_acc = float((predict(ann, test.x) == test.y).float().mean())
    print(f"{args.model} ANN ({args.epochs} epochs, seed {args.seed}, {train_s:.0f} s): "
          f"test accuracy {100 * ann_acc:.2f} % on {len(test)} images; "
          f"threshold {args.threshold}\n")
    print("| T | calibration | thresholds | calib images | SNN acc % | gap (points) | s |")
    print("|---:|---|---|---:|---:|---:|---:|")
    g = torch.Generator().manual_seed(args.seed)
    order = torch.randperm(len(train), generator=g)
    for T in (int(t) for t in args.T.split(",")):
        for calibration in args.calib.split(","):
            for n in (int(s) for s in args.calib_samples.split(",")):
                for per_channel in (False, True):
                    start = time.perf_counter()
                    snn = convert_ann_to_snn(ann, train.x[order[:n]], T,
                                             threshold=args.threshold, calibration=calibration,
                                             per_channel=per_channel)
                    acc = float((predict(snn.model, test.x) == test.y).float().mean())
                    seconds = time.perf_counter() - start
                    print(f"| {T} | {calibration} | {'channel' if per_channel else 'layer'} "
                          f"| {n} | {100 * acc:.2f} | {100 * (ann_acc - acc):.2f} "
                          f"| {seconds:.1f} |", flush=True)


if __name__ == "__main__":
    main()
