"""Training-time data augmentation applied per minibatch on the training device.

`crop_flip` is the standard CIFAR recipe: pad each image with `padding` zero pixels on every
side, cut a random window of the original size and flip it horizontally with probability 1/2.
It is written as batched tensor indexing (no per-image Python loop, no torchvision), so it runs
where the minibatch already is (CPU or GPU). The random offsets and flips are drawn on the CPU
from a generator seeded by (experiment seed, round, client), then moved to the batch's device:
the same seed gives the same augmented batches on every device, bit for bit on CPU.

Augmentation touches training minibatches only; test data and calibration batches are never
augmented.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch.nn import functional as F

AUGMENTS = ("none", "auto", "crop_flip")
#: Data sets for which `auto` means `crop_flip` (natural images where shifts and mirror images
#: keep the label). Digits (a flipped 2 is no 2) and event streams stay unaugmented.
CROP_FLIP_DATASETS = ("cifar10", "cifar100")

Augmenter = Callable[[torch.Tensor], torch.Tensor]


def resolve_augment(augment: str, dataset: str) -> str:
    """The augmentation `augment` means for `dataset`: `auto` becomes `crop_flip` or `none`."""
    if augment not in AUGMENTS:
        raise ValueError(f"data.augment={augment!r} is unknown; choose one of {list(AUGMENTS)}")
    if augment != "auto":
        return augment
    key = dataset.strip().lower().replace("_", "-")
    return "crop_flip" if key in CROP_FLIP_DATASETS else "none"


def augment_generator(seed: int, round_idx: int, client_id: int) -> torch.Generator:
    """A CPU generator for augmentation draws: a function of (seed, round, client) only,
    independent of the minibatch-order stream (turning augmentation on keeps the order)."""
    state = np.random.SeedSequence([seed, round_idx, client_id, 0xA06]).generate_state(1)[0]
    return torch.Generator().manual_seed(int(state))


def crop_flip(x: torch.Tensor, generator: torch.Generator, padding: int = 4) -> torch.Tensor:
    """Random crop after `padding` zero pixels per side, then a random horizontal flip.

    `x`: a batch `[N, ..., H, W]` (the last two dimensions are the image plane). Returns a new
    tensor of the same shape, dtype and device.
    """
    if x.dim() < 3:
        raise ValueError(f"data.augment=crop_flip needs image batches [N, ..., H, W]; got shape "
                         f"{tuple(x.shape)}; set data.augment=none for flat inputs")
    if padding < 0:
        raise ValueError(f"padding={padding} must be >= 0")
    n, h, w = x.shape[0], x.shape[-2], x.shape[-1]
    offsets = torch.randint(0, 2 * padding + 1, (2, n), generator=generator)
    flips = torch.rand(n, generator=generator) < 0.5
    lead = x.shape[1:-2]
    flat = x.reshape(n, -1, h, w)
    padded = F.pad(flat, (padding, padding, padding, padding))
    dev = x.device
    rows = offsets[0].to(dev)[:, None] + torch.arange(h, device=dev)  # [N, H]
    cols = offsets[1].to(dev)[:, None] + torch.arange(w, device=dev)  # [N, W]
    cols = torch.where(flips.to(dev)[:, None], cols.flip(1), cols)
    batch = torch.arange(n, device=dev)[:, None, None]
    out = padded[batch, :, rows[:, :, None], cols[:, None, :]]  # [N, H, W, C']
    return out.permute(0, 3, 1, 2).reshape(n, *lead, h, w).contiguous()


def batch_augmenter(augment: str, seed: int, round_idx: int, client_id: int
                    ) -> Augmenter | None:
    """The per-minibatch augmentation of one client's round (`None` when `augment` is `none`).

    `augment` must be resolved already (`resolve_augment`): `none` or `crop_flip`.
    """
    if augment == "none":
        return None
    if augment != "crop_flip":
        raise ValueError(f"augmentation {augment!r} is not resolved; pass it through "
                         "resolve_augment (none or crop_flip)")
    generator = augment_generator(seed, round_idx, client_id)
    return lambda x: crop_flip(x, generator)
