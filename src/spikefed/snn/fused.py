"""Fused multi-step LIF/IF: the whole ``[T, ...]`` loop compiled into few kernels.

The reference multi-step forward (`LIF.forward(x)`) launches several small kernels per time
step; on a GPU that is launch-bound and reaches a fraction of the memory bandwidth. Here the
same recurrence, written as one pure function, goes through ``torch.compile`` (inductor:
Triton kernels on CUDA, C++ on CPU), forward and surrogate backward alike, so each
elementwise chain becomes one kernel.

- **When:** `fused_mode()` decides. ``"auto"`` (default) fuses CUDA tensors only; ``"always"``
  fuses on any device (tests, benchmarks); ``"never"`` keeps the reference loop.
- **Never under torch.func transforms:** inside `vmap`/`grad` (vectorised clients, per-sample
  DP gradients) the reference loop runs, so those transforms keep working.
- **Compiled once per shape:** one compiled function per neuron configuration; torch.compile
  caches the graph per input shape, dtype and device (static shapes), so a run with fixed
  batch shapes compiles once per layer shape. Compile time is paid in the first steps.
- Same semantics as the reference: reset by subtraction, to zero or none, detached or not,
  learnable decay (clamped to [0, 1]) and threshold, any registered surrogate.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator

import torch
from torch import Tensor

from spikefed.snn.surrogate import get_surrogate

FUSED_MODES = ("auto", "always", "never")
_mode = "auto"
_backend = "inductor"
#: Graphs kept per compiled function (one per layer shape and neuron configuration); past
#: torch's default of 8 it would silently fall back to the reference loop.
RECOMPILE_LIMIT = 64


def fused_mode() -> str:
    """The current policy: ``auto`` (CUDA tensors), ``always`` or ``never``."""
    return _mode


@contextlib.contextmanager
def use_fused(mode: str, backend: str = "inductor") -> Iterator[None]:
    """Within the block, multi-step neurons follow ``mode`` (``auto``/``always``/``never``),
    compiled with the torch.compile ``backend`` (``aot_eager`` traces forward and backward
    without generating code: a quick check of the traced graph)."""
    global _mode, _backend
    if mode not in FUSED_MODES:
        raise ValueError(f"fused mode={mode!r} is unknown; choose one of {list(FUSED_MODES)}")
    previous = _mode, _backend
    _mode, _backend = mode, backend
    try:
        yield
    finally:
        _mode, _backend = previous


def should_fuse(x: Tensor) -> bool:
    """Whether a multi-step forward on ``x`` takes the fused path now."""
    if _mode == "never" or torch._C._functorch.peek_interpreter_stack() is not None:
        return False
    if torch.compiler.is_compiling():  # already inside a compiled region: inline the loop
        return False
    return _mode == "always" or x.is_cuda


def lif_multistep(x: Tensor, v: Tensor, beta: Tensor | float, theta: Tensor | float,
                  reset: str, surrogate: str, alpha: float, detach_reset: bool) -> Tensor:
    """Spikes ``[T, ...]`` of the LIF recurrence over ``x[T, ...]`` from membrane ``v``.

    ``beta`` and ``theta`` are floats or (learnable) scalar tensors; ``beta`` is clamped to
    [0, 1] as `Decay` does. Mirrors `LIF._step` exactly.
    """
    spike = get_surrogate(surrogate).apply
    learned_beta = isinstance(beta, Tensor)
    learned_theta = isinstance(theta, Tensor)
    b = beta.clamp(0.0, 1.0) if learned_beta else beta
    out = []
    for x_t in x:
        if learned_beta:
            v = b * v + x_t
        elif b != 1.0:
            v = b * v + x_t
        else:
            v = v + x_t
        pre = v - theta
        s = spike(pre, alpha)
        out.append(s)
        if reset == "none":
            continue
        r = s.detach() if detach_reset else s
        if reset == "zero":
            v = v * (1.0 - r)
        elif learned_theta:
            v = (1.0 - r) * v + r * pre
        else:
            v = v - r * theta
    return torch.stack(out)


def fused_multistep(x: Tensor, v: Tensor, beta: Tensor | float, theta: Tensor | float,
                    reset: str, surrogate: str, alpha: float, detach_reset: bool) -> Tensor:
    """`lif_multistep` through the compiled function of the current backend."""
    with torch._dynamo.config.patch(recompile_limit=RECOMPILE_LIMIT):
        return _compiled(_backend)(x, v, beta, theta, reset, surrogate, alpha, detach_reset)


@functools.cache
def _compiled(backend: str) -> Callable[..., Tensor]:
    """`lif_multistep` under ``torch.compile`` (built once per backend; graphs cached per
    shape and neuron configuration)."""
    return torch.compile(lif_multistep, dynamic=False, backend=backend)
