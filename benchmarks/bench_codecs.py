"""Update codecs: exact bytes on the wire per codec for zoo models, and their error and time.

Run: ``OMP_NUM_THREADS=1 python benchmarks/bench_codecs.py``. Prints a markdown table
(docs/communication.md quotes it).

The update is a seeded standard-normal draw in the shape of each model's state dict (bytes
depend only on the shapes; the relative error ``|decoded - update| / |update|`` of one encode
depends on the values, so it is indicative for Gaussian-like updates only). Integer buffers
(BatchNorm's ``num_batches_tracked``) are sent as they are.
"""

from __future__ import annotations

import argparse
import time

import torch

from spikefed.comm import NoneCodec, QSGDCodec, SignCodec, TopKCodec
from spikefed.models import build_model

MODELS = {"mlp (default run, 1x28x28)": ("mlp", (1, 28, 28), "none"),
          "vgg-small + BN (3x32x32)": ("vgg-small", (3, 32, 32), "bn")}
CODECS = [NoneCodec(), TopKCodec(0.01), TopKCodec(0.1), QSGDCodec(4), QSGDCodec(8), SignCodec()]


def _label(codec) -> str:
    if isinstance(codec, TopKCodec):
        return f"topk {codec.fraction:g}"
    if isinstance(codec, QSGDCodec):
        return f"qsgd {codec.bits} bits"
    return codec.name


def main() -> None:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    print("| model | entries (float) | codec | bytes | raw / codec | relative error | "
          "encode + decode ms |")
    print("|---|---|---|---|---|---|---|")
    for label, (name, shape, norm) in MODELS.items():
        model = build_model(name, spiking=True, in_shape=shape, num_classes=10, norm=norm)
        gen = torch.Generator().manual_seed(0)
        update = {k: torch.randn(v.shape, generator=gen) if v.is_floating_point() else v.clone()
                  for k, v in model.state_dict().items()}
        floats = sum(v.numel() for v in update.values() if v.is_floating_point())
        raw = None
        for codec in CODECS:
            t0 = time.perf_counter()
            encoded, _ = codec.encode(update, generator=torch.Generator().manual_seed(1))
            decoded = codec.decode(encoded)
            ms = 1000 * (time.perf_counter() - t0)
            raw = raw or encoded.nbytes
            err = sum(float(((decoded[k] - v) ** 2).sum()) for k, v in update.items()
                      if v.is_floating_point())
            norm2 = sum(float((v ** 2).sum()) for v in update.values() if v.is_floating_point())
            print(f"| {label} | {floats:,} | {_label(codec)} | {encoded.nbytes:,} | "
                  f"{raw / encoded.nbytes:.1f} | {(err / norm2) ** 0.5:.3f} | {ms:.0f} |")


if __name__ == "__main__":
    main()
