"""snnTorch's timing conventions for LIF/IF neurons, for weights trained with snnTorch.

Our :class:`~spikefed.snn.neurons.LIF` fires when ``v >= theta`` and resets in the same step,
before the next decay. snnTorch's ``Leaky`` (default ``reset_delay=True``) instead

- fires only when ``v > theta`` (a membrane exactly at threshold does not spike), and
- applies the reset of a spike at the *next* step, after that step's decay:
  ``v_t = beta * v_{t-1} + x_t - r_{t-1} * theta`` with ``r_{t-1} = [v_{t-1} > theta]``
  (reset to zero: ``v_t = beta * (1 - r_{t-1}) * v_{t-1} + x_t``).

:class:`SnnTorchLIF` / :class:`SnnTorchIF` implement exactly that (reset signal detached, as
in snnTorch), selected with ``model.neuron.reset_convention: snntorch``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from spikefed.snn.neurons import IF, LIF

CONVENTIONS = ("spikefed", "snntorch")


class _SnnTorchTiming:
    """Mixin replacing the step of LIF/IF with snnTorch's delayed-reset timing."""

    def _step(self, x_t: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        thresh = self.thresh  # type: ignore[attr-defined]
        r = ((thresh(v) if thresh is not None else v - self.threshold) > 0).to(v.dtype)
        if self.reset == "zero":  # type: ignore[attr-defined]
            v = v * (1.0 - r)
        decay = self.decay  # type: ignore[attr-defined]
        if decay is not None:
            v = decay(v) + x_t
        else:
            v = self.beta * v + x_t  # type: ignore[attr-defined]
        if self.reset == "subtract":  # type: ignore[attr-defined]
            v = (1.0 - r) * v + r * thresh(v) if thresh is not None else v - r * self.threshold
        pre = thresh(v) if thresh is not None else v - self.threshold  # type: ignore[attr-defined]
        s = self.surrogate_fn.apply(pre, self.alpha)  # type: ignore[attr-defined]
        return s * (pre != 0).to(s.dtype), v  # strictly above threshold, as snnTorch

    def forward(self, x: Tensor, v: Tensor | None = None) -> Any:
        """``forward(x[T, B, ...]) -> spikes``; ``forward(x_t, v) -> (s_t, v_next)``."""
        if v is not None:
            return self._step(x, v)
        state = self.init_state(x[0])  # type: ignore[attr-defined]
        out = []
        for t in range(x.shape[0]):
            s, state = self._step(x[t], state)
            out.append(s)
        return torch.stack(out)


class SnnTorchLIF(_SnnTorchTiming, LIF):
    """:class:`LIF` with snnTorch ``Leaky``'s firing and reset timing."""


class SnnTorchIF(_SnnTorchTiming, IF):
    """:class:`IF` with snnTorch's firing and reset timing (``Leaky`` with ``beta=1``)."""


def with_convention(cls: type, convention: str) -> type:
    """The neuron class implementing ``convention`` for neuron type ``cls`` (LIF or IF)."""
    if convention not in CONVENTIONS:
        raise ValueError(f"neuron reset_convention={convention!r} is unknown; choose one of "
                         f"{list(CONVENTIONS)}")
    if convention == "spikefed":
        return cls
    return {LIF: SnnTorchLIF, IF: SnnTorchIF}[cls]
