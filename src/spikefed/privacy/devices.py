"""Devices in the privacy benchmark: where a model lives, and seeded draws for any device.

Seeded draws (dummy inputs, soft labels, defense noise) come from the generator's own device
and are then moved to the target device. With the benchmark's CPU generators a GPU run starts
from the same dummies and the same noise as a CPU run, and CPU runs draw exactly as before.
"""

from __future__ import annotations

from itertools import chain

import torch
from torch import Tensor, nn


def module_device(model: nn.Module) -> torch.device:
    """Device of the model's first parameter (or buffer); CPU for a stateless module."""
    first = next(chain(model.parameters(), model.buffers()), None)
    return first.device if first is not None else torch.device("cpu")


def normal(
    shape: tuple[int, ...], generator: torch.Generator, device: torch.device | str | None = None
) -> Tensor:
    """``N(0, 1)`` of ``shape`` drawn with ``generator``, moved to ``device`` (default: its own)."""
    t = torch.randn(shape, generator=generator, device=generator.device)
    return t if device is None else t.to(device)


def uniform(
    shape: tuple[int, ...], generator: torch.Generator, device: torch.device | str | None = None
) -> Tensor:
    """``U(0, 1)`` of ``shape`` drawn with ``generator``, moved to ``device`` (default: its own)."""
    t = torch.rand(shape, generator=generator, device=generator.device)
    return t if device is None else t.to(device)
