"""Per-client feature skew: fixed, deterministic image transforms (torch only)."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

Transform = Callable[[torch.Tensor], torch.Tensor]
KINDS = ("rotation", "noise", "brightness")


def _batched(fn: Transform) -> Transform:
    """Accept `[C, H, W]` or `[N, C, H, W]`; `fn` sees `[N, C, H, W]`."""
    def apply(x: torch.Tensor) -> torch.Tensor:
        if x.dim() not in (3, 4):
            raise ValueError(f"feature-skew transforms take [C, H, W] or [N, C, H, W], got "
                             f"shape {tuple(x.shape)}")
        return fn(x[None])[0] if x.dim() == 3 else fn(x)
    return apply


def _rotation(degrees: float) -> Transform:
    theta = math.radians(degrees)
    cos, sin = math.cos(theta), math.sin(theta)

    def rotate(x: torch.Tensor) -> torch.Tensor:
        if degrees == 0:
            return x.clone()
        mat = torch.tensor([[cos, -sin, 0.0], [sin, cos, 0.0]], dtype=x.dtype, device=x.device)
        grid = F.affine_grid(mat.expand(len(x), 2, 3), list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return rotate


def _noise(sigma: float, seed: int) -> Transform:
    def add_noise(x: torch.Tensor) -> torch.Tensor:
        gen = torch.Generator(device="cpu").manual_seed(seed)
        noise = torch.randn(x.shape, generator=gen, dtype=x.dtype).to(x.device)
        return (x + sigma * noise).clamp_(0.0, 1.0)
    return add_noise


def _brightness(factor: float) -> Transform:
    def scale(x: torch.Tensor) -> torch.Tensor:
        return (x * factor).clamp_(0.0, 1.0)
    return scale


def feature_skew(num_clients: int, kind: str = "rotation", strength: float = 1.0,
                 seed: int = 0) -> list[Transform]:
    """One transform per client; client `i` gets level `l_i = i * strength / num_clients`.

    - `rotation`: rotate by `l_i` degrees (e.g. strength=90 spreads clients over 0..90°).
    - `noise`: add Gaussian noise with sigma `l_i` (clamped to [0, 1]). The noise field depends
      only on `(seed, i)` and the input shape, so a transform maps equal inputs to equal outputs;
      apply it once to a client's data to obtain its fixed, noisy copy.
    - `brightness`: multiply by `1 + l_i` (clamped to [0, 1]); negative strength darkens.

    Client 0 is always unchanged (the reference domain). Inputs are `[C, H, W]` or `[N, C, H, W]`.
    """
    if not isinstance(num_clients, int) or num_clients < 1:
        raise ValueError(f"num_clients must be a positive integer, got {num_clients!r}")
    if kind not in KINDS:
        raise ValueError(f"unknown feature-skew kind {kind!r}; choose one of {', '.join(KINDS)}")
    if not math.isfinite(strength):
        raise ValueError(f"strength must be finite, got {strength!r}")
    if kind == "noise" and strength < 0:
        raise ValueError(f"noise strength is a standard deviation and must be >= 0, got {strength}")
    if kind == "brightness" and strength * (num_clients - 1) / num_clients <= -1:
        bound = -num_clients / max(num_clients - 1, 1)
        raise ValueError(f"brightness strength={strength} would make a client's factor <= 0 "
                         f"(all black); use strength > {bound:.3g}")
    transforms = []
    for i in range(num_clients):
        level = i * strength / num_clients
        if kind == "rotation":
            fn = _rotation(level)
        elif kind == "noise":
            fn = _noise(level, seed * 1_000_003 + i)
        else:
            fn = _brightness(1.0 + level)
        transforms.append(_batched(fn))
    return transforms
