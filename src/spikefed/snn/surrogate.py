"""Surrogate-gradient spike functions.

The forward pass is the Heaviside step (``x >= 0`` gives 1.0); the backward pass uses the
derivative of a smooth stand-in for the step, scaled by a sharpness ``alpha``. Every function
is a ``torch.autograd.Function`` in the ``forward`` + ``setup_context`` style with
``generate_vmap_rule = True``, so ``torch.func.vmap(torch.func.grad(...))`` and per-sample
gradient tools (Opacus) work through it.

Each smooth stand-in rises from 0 to 1, so each surrogate derivative integrates to 1.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor


class SurrogateSpike(torch.autograd.Function):
    """Base class: Heaviside forward, ``derivative(x, alpha)`` backward."""

    generate_vmap_rule = True

    @staticmethod
    def smooth(x: Tensor, alpha: float) -> Tensor:
        """Smooth function whose derivative is the surrogate gradient."""
        raise NotImplementedError

    @staticmethod
    def derivative(x: Tensor, alpha: float) -> Tensor:
        """Surrogate gradient d smooth / dx."""
        raise NotImplementedError

    @staticmethod
    def forward(x: Tensor, alpha: float) -> Tensor:  # type: ignore[override]
        return (x >= 0).to(x.dtype)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
        x, alpha = inputs
        ctx.save_for_backward(x)
        ctx.alpha = alpha

    @classmethod
    def backward(cls, ctx: Any, grad_output: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        (x,) = ctx.saved_tensors
        return grad_output * cls.derivative(x, ctx.alpha), None


class ATanSpike(SurrogateSpike):
    """Arctan surrogate: smooth = 1/pi * atan(pi/2 * alpha * x) + 1/2."""

    @staticmethod
    def smooth(x: Tensor, alpha: float) -> Tensor:
        return torch.atan(0.5 * math.pi * alpha * x) / math.pi + 0.5

    @staticmethod
    def derivative(x: Tensor, alpha: float) -> Tensor:
        return (0.5 * alpha) / (1.0 + (0.5 * math.pi * alpha * x) ** 2)


class FastSigmoidSpike(SurrogateSpike):
    """Fast-sigmoid (SuperSpike) surrogate: smooth = 1/2 * alpha*x / (1 + alpha*|x|) + 1/2."""

    @staticmethod
    def smooth(x: Tensor, alpha: float) -> Tensor:
        return 0.5 * alpha * x / (1.0 + alpha * x.abs()) + 0.5

    @staticmethod
    def derivative(x: Tensor, alpha: float) -> Tensor:
        return (0.5 * alpha) / (1.0 + alpha * x.abs()) ** 2


class SigmoidSpike(SurrogateSpike):
    """Sigmoid surrogate: smooth = sigmoid(alpha * x)."""

    @staticmethod
    def smooth(x: Tensor, alpha: float) -> Tensor:
        return torch.sigmoid(alpha * x)

    @staticmethod
    def derivative(x: Tensor, alpha: float) -> Tensor:
        s = torch.sigmoid(alpha * x)
        return alpha * s * (1.0 - s)


class TriangleSpike(SurrogateSpike):
    """Triangle surrogate: gradient alpha * max(0, 1 - alpha*|x|) (support |x| < 1/alpha)."""

    @staticmethod
    def smooth(x: Tensor, alpha: float) -> Tensor:
        u = (alpha * x).clamp(-1.0, 1.0)
        return 0.5 + u - 0.5 * u * u.abs()

    @staticmethod
    def derivative(x: Tensor, alpha: float) -> Tensor:
        return alpha * (1.0 - alpha * x.abs()).clamp(min=0.0)


SURROGATES: dict[str, type[SurrogateSpike]] = {
    "atan": ATanSpike,
    "fast_sigmoid": FastSigmoidSpike,
    "sigmoid": SigmoidSpike,
    "triangle": TriangleSpike,
}


def get_surrogate(name: str) -> type[SurrogateSpike]:
    """Look up a surrogate class by name; unknown names raise ``ValueError`` with the choices."""
    try:
        return SURROGATES[name]
    except KeyError:
        raise ValueError(
            f"surrogate={name!r} is unknown; choose one of {sorted(SURROGATES)}"
        ) from None


def spike(x: Tensor, surrogate: str = "atan", alpha: float = 2.0) -> Tensor:
    """Heaviside spike of ``x`` (1.0 where ``x >= 0``) with a surrogate gradient."""
    return get_surrogate(surrogate).apply(x, float(alpha))
