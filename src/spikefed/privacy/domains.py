"""Input domains: what the attacker optimises and how it becomes a model input.

Each domain maps a free variable ``z`` (what the optimiser updates) to the model input and to
the reconstruction that gets scored:

- ``image`` (ANN, or SNN with direct coding): ``z`` is the analog image ``[B, C, H, W]``.
- ``rate``: ``z`` are intensities; the SNN sees them over ``T`` steps either as their
  expectation (``relax="expected"``, the mean of the Bernoulli encoder) or as fresh Bernoulli
  spikes with a straight-through gradient (``relax="ste"``).
- ``latency``: ``z`` are intensities; each pixel fires once at step ``(1 - z)(T - 1)``,
  relaxed to a softmax over steps with temperature ``tau`` (``"expected"``) or a hard spike
  with the relaxed gradient (``"ste"``).
- ``events`` / ``raster``: ``z`` are logits of a temporal tensor ``[B, T, *shape]``
  (``[T, polarity, H, W]`` frames or ``[T, channels]`` spike rasters); the SNN sees
  ``sigmoid(z)`` (``"expected"``) or its rounding with a straight-through gradient (``"ste"``).
  With ``stacked=True`` (an ANN on the same data) the time bins are stacked along the first
  feature axis instead: ``[B, T * P, H, W]`` frames or ``[B, T * channels]`` rasters.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from spikefed.privacy import devices

DOMAINS = ("image", "rate", "latency", "events", "raster")
RELAXATIONS = ("expected", "ste")


@dataclass(frozen=True)
class InputDomain:
    """How a reconstruction is parameterised (see module docstring)."""

    kind: str
    shape: tuple[int, ...]  # per-sample shape of the reconstruction (temporal: (T, ...))
    T: int = 1
    relax: str = "expected"
    tau: float = 0.5
    stacked: bool = False

    def __post_init__(self) -> None:
        if self.kind not in DOMAINS:
            raise ValueError(f"domain={self.kind!r} is unknown; choose one of {list(DOMAINS)}")
        if self.relax not in RELAXATIONS:
            raise ValueError(f"relax={self.relax!r} is unknown; choose one of {list(RELAXATIONS)}")
        if self.temporal and self.shape[0] != self.T:
            raise ValueError(f"temporal domain shape {self.shape} must start with T={self.T}")
        if self.stacked and not self.temporal:
            raise ValueError(f"stacked=True needs a temporal domain, not {self.kind!r}")

    @property
    def temporal(self) -> bool:
        """True when the sample itself is a sequence of time bins."""
        return self.kind in ("events", "raster")

    def init(
        self,
        batch: int,
        generator: torch.Generator,
        uniform: bool = False,
        device: torch.device | str | None = None,
    ) -> Tensor:
        """A fresh free variable on ``device``: N(0, 1) (DLG) or U(0, 1) (``uniform``).

        Temporal domains always draw N(0, 1) logits. The draw comes from ``generator`` on its
        own device and is then moved to ``device`` (default: the generator's device).
        """
        shape = (batch, *self.shape)
        if uniform and not self.temporal:
            return devices.uniform(shape, generator, device)
        return devices.normal(shape, generator, device)

    def reconstruction(self, z: Tensor) -> Tensor:
        """The scored reconstruction in [0, 1] (detached)."""
        z = z.detach()
        return torch.sigmoid(z) if self.temporal else z.clamp(0.0, 1.0)

    def project(self, z: Tensor) -> None:
        """Box constraint in place: images stay in [0, 1]; logits are left free."""
        if not self.temporal:
            with torch.no_grad():
                z.clamp_(0.0, 1.0)

    def model_input(self, z: Tensor) -> Tensor:
        """The differentiable model input for free variable ``z``."""
        if self.kind == "image":
            return z
        if self.kind == "rate":
            p = z.clamp(0.0, 1.0).unsqueeze(0).expand(self.T, *z.shape)
            if self.relax == "expected":
                return p
            return p + (torch.bernoulli(p.detach()) - p).detach()
        if self.kind == "latency":
            return self._latency(z)
        p = torch.sigmoid(z)
        p = p.flatten(1, 2) if self.stacked else p.transpose(0, 1)  # [B, T*P, ..] / [T, B, ..]
        if self.relax == "expected":
            return p
        return p + ((p.detach() > 0.5).to(p.dtype) - p).detach()

    def _latency(self, z: Tensor) -> Tensor:
        x = z.clamp(0.0, 1.0)
        steps = torch.arange(self.T, dtype=z.dtype, device=z.device).view(self.T, *([1] * z.dim()))
        when = (1.0 - x).unsqueeze(0) * (self.T - 1)
        soft = torch.softmax(-((steps - when) ** 2) / self.tau, dim=0)
        if self.relax == "expected":
            return soft
        hard = (soft == soft.max(0, keepdim=True).values).to(z.dtype)
        return soft + (hard - soft).detach()

    def client_input(self, x: Tensor) -> Tensor:
        """The true model input for a ground-truth batch (temporal: ``[T, B, ...]``, or
        ``[B, T * P, ...]`` when ``stacked``)."""
        if self.stacked:
            return x.flatten(1, 2)
        return x.transpose(0, 1) if self.temporal else x
