"""Leaky integrate-and-fire neurons with explicit state.

Dynamics per time step (``x`` is the input current)::

    v  <- beta * v + x
    s  =  spike(v - theta)                      # Heaviside forward, surrogate backward
    v  <- v - s * theta      (reset="subtract")
    v  <- v * (1 - s)        (reset="zero")
    v  unchanged             (reset="none")

With ``detach_reset=True`` (the default) the spike used in the reset is detached from the
graph: gradients flow through the membrane and the spike output, not through the reset
path. This is the common choice (snnTorch, SpikingJelly) and gives better-behaved gradients.

No state survives between calls: ``forward`` starts from ``init_state`` every time.
The multi-step forward of CUDA tensors runs fused (`spikefed.snn.fused`: the loop under
``torch.compile``); this module's loop is the reference and the CPU path.
Learnable ``beta``/``theta`` live in the single-input submodules :class:`Decay` and
:class:`Threshold`; fixed ones are plain floats, so a default neuron has no parameters and
no buffers in its ``state_dict``.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import Tensor, nn

from spikefed.snn.fused import fused_multistep, should_fuse
from spikefed.snn.surrogate import get_surrogate

RESETS = ("subtract", "zero", "none")


class Decay(nn.Module):
    """Learnable membrane decay: ``forward(v) = clamp(beta, 0, 1) * v``."""

    def __init__(self, beta: float) -> None:
        super().__init__()
        self.beta = nn.Parameter(torch.tensor(float(beta)))

    def forward(self, v: Tensor) -> Tensor:
        return self.beta.clamp(0.0, 1.0) * v


class Threshold(nn.Module):
    """Learnable firing threshold: ``forward(v) = v - theta`` (the spike argument)."""

    def __init__(self, theta: float) -> None:
        super().__init__()
        self.theta = nn.Parameter(torch.tensor(float(theta)))

    def forward(self, v: Tensor) -> Tensor:
        return v - self.theta


class SpikingNeuron(nn.Module):
    """Marker base class for spiking neuron modules (counted by ``ActivityCounter``).

    Subclasses implement ``init_state(like)`` and a single step via ``forward(x_t, v)``
    returning ``(s_t, v_next)``; ``forward(x)`` with no state runs over ``[T, B, ...]``.
    """

    def init_state(self, like: Tensor) -> Tensor:
        """Initial membrane potential shaped like one time step of input."""
        raise NotImplementedError

    def step(self, x_t: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """One time step (goes through ``__call__`` so forward hooks see it)."""
        return self(x_t, v)


class LIF(SpikingNeuron):
    """Leaky integrate-and-fire neuron (multi-step and single-step)."""

    def __init__(
        self,
        beta: float = 0.9,
        threshold: float = 1.0,
        reset: str = "subtract",
        surrogate: str = "atan",
        alpha: float = 2.0,
        learn_beta: bool = False,
        learn_threshold: bool = False,
        v_init: float = 0.0,
        detach_reset: bool = True,
    ) -> None:
        super().__init__()
        if not 0.0 <= float(beta) <= 1.0:
            raise ValueError(f"beta={beta!r} must lie in [0, 1]")
        if float(threshold) <= 0.0:
            raise ValueError(f"threshold={threshold!r} must be > 0")
        if reset not in RESETS:
            raise ValueError(f"reset={reset!r} is unknown; choose one of {list(RESETS)}")
        if float(alpha) <= 0.0:
            raise ValueError(f"alpha={alpha!r} must be > 0")
        self.surrogate_fn = get_surrogate(surrogate)
        self.surrogate = surrogate
        self.alpha = float(alpha)
        self.reset = reset
        self.v_init = float(v_init)
        self.detach_reset = bool(detach_reset)
        self.beta = float(beta)
        self.threshold = float(threshold)
        self.decay: Decay | None = Decay(beta) if learn_beta else None
        self.thresh: Threshold | None = Threshold(threshold) if learn_threshold else None

    def init_state(self, like: Tensor) -> Tensor:
        """Membrane potential ``v_init`` with the shape, dtype and device of ``like``."""
        if self.v_init == 0.0:
            return torch.zeros_like(like)
        return torch.full_like(like, self.v_init)

    def _step(self, x_t: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        if self.decay is not None:
            v = self.decay(v) + x_t
        elif self.beta != 1.0:
            v = self.beta * v + x_t
        else:
            v = v + x_t
        pre = self.thresh(v) if self.thresh is not None else v - self.threshold
        s = self.surrogate_fn.apply(pre, self.alpha)
        if self.reset == "none":
            return s, v
        r = s.detach() if self.detach_reset else s
        if self.reset == "zero":
            return s, v * (1.0 - r)
        if self.thresh is not None:  # v - r * theta, written with the single-input module
            return s, (1.0 - r) * v + r * pre
        return s, v - r * self.threshold

    def forward(self, x: Tensor, v: Tensor | None = None) -> Any:
        """``forward(x[T, B, ...]) -> spikes[T, B, ...]``; ``forward(x_t, v) -> (s_t, v_next)``."""
        if v is not None:
            return self._step(x, v)
        if type(self)._step is LIF._step and should_fuse(x):
            return fused_multistep(
                x, self.init_state(x[0]),
                self.decay.beta if self.decay is not None else self.beta,
                self.thresh.theta if self.thresh is not None else self.threshold,
                self.reset, self.surrogate, self.alpha, self.detach_reset)
        state = self.init_state(x[0])
        out = []
        for x_t in x:
            s, state = self._step(x_t, state)
            out.append(s)
        return torch.stack(out)

    def extra_repr(self) -> str:
        beta = "learnable" if self.decay is not None else self.beta
        theta = "learnable" if self.thresh is not None else self.threshold
        return (
            f"beta={beta}, threshold={theta}, reset={self.reset!r}, "
            f"surrogate={self.surrogate!r}, alpha={self.alpha}, v_init={self.v_init}"
        )


class IF(LIF):
    """Integrate-and-fire neuron (LIF with beta = 1), reset by subtraction by default.

    For ANN-to-SNN conversion use ``v_init = threshold / 2`` to halve the rounding error.
    """

    def __init__(
        self,
        threshold: float = 1.0,
        reset: str = "subtract",
        surrogate: str = "atan",
        alpha: float = 2.0,
        learn_threshold: bool = False,
        v_init: float = 0.0,
        detach_reset: bool = True,
    ) -> None:
        super().__init__(
            beta=1.0,
            threshold=threshold,
            reset=reset,
            surrogate=surrogate,
            alpha=alpha,
            learn_threshold=learn_threshold,
            v_init=v_init,
            detach_reset=detach_reset,
        )


NEURONS: dict[str, type[SpikingNeuron]] = {}


def register_neuron(name: str, cls: type[SpikingNeuron]) -> None:
    """Make neuron class `cls` available as `model.neuron.type: <name>`; its `__init__`
    keywords are the `model.neuron` options it takes (others are left out)."""
    NEURONS[name] = cls


def neuron_options(name: str) -> set[str]:
    """The keyword options registered neuron `name`'s constructor accepts."""
    return set(inspect.signature(NEURONS[name].__init__).parameters) - {"self"}


register_neuron("lif", LIF)
register_neuron("if", IF)


def make_neuron(cfg: dict[str, Any] | None = None) -> SpikingNeuron:
    """Build a neuron from ``{"type": "lif"|"if"|..., **kwargs}`` (default: ``LIF()``);
    ``reset_convention="snntorch"`` gives snnTorch's spike/reset timing."""
    cfg = dict(cfg or {})
    kind = cfg.pop("type", "lif")
    if kind not in NEURONS:
        raise ValueError(f"neuron type={kind!r} is unknown; choose one of {sorted(NEURONS)}")
    cls = NEURONS[kind]
    convention = cfg.pop("reset_convention", "spikefed")
    if convention != "spikefed":  # snnTorch's timing (spikefed.snn.conventions)
        from spikefed.snn.conventions import with_convention

        cls = with_convention(cls, convention)
    allowed = set(inspect.signature(cls.__init__).parameters) - {"self"}
    unknown = sorted(set(cfg) - allowed)
    if unknown:
        raise ValueError(
            f"neuron option(s) {unknown} are not accepted by {cls.__name__}; "
            f"allowed: {sorted(allowed)}"
        )
    return cls(**cfg)
