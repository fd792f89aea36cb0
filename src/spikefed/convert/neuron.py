"""The IF neuron of a converted SNN: per-layer threshold and initial membrane in the state_dict."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from spikefed.snn.neurons import IF

State = tuple[Tensor, Tensor]


class ConvertedIF(IF):
    """IF neuron (beta = 1, reset by subtraction) emitting spikes of amplitude ``theta``.

    State-dict entries: ``thresh.theta`` (the threshold, a scalar) and ``v0`` (the initial
    membrane potential per neuron, shaped like one sample's input, e.g. ``[C, H, W]``).
    Emitting ``theta * s`` keeps the next layer's weights equal to the (BN-folded) ANN
    weights, as in SNFL Eq. 5, so ``W_S`` stays invertible to ``W_A`` on the server.

    The state is ``(v, n)`` with ``n`` the spike count so far. ``pool=(kernel, stride,
    padding)`` marks a neuron whose only consumer is a 2-D max pool: it then emits, per pool
    window, one spike whenever the window's largest count grows (at that neuron's position,
    zeros elsewhere), so the max pool passes exactly the spike train of the most active
    neuron so far and the pooled rate converges to the max of the rates (a max of raw
    spike trains would overestimate it). Gradients pass straight through the gating.
    """

    def __init__(self, threshold: float, shape: tuple[int, ...], v0: float = 0.0,
                 pool: tuple[int, int, int] | None = None) -> None:
        super().__init__(threshold=threshold, reset="subtract", learn_threshold=True)
        self.register_buffer("v0", torch.full(tuple(shape), float(v0)))
        self.pool = pool

    @property
    def output_scale(self) -> Tensor:
        """Amplitude of one output spike (= the threshold); divide outputs by it to count spikes."""
        assert self.thresh is not None
        return self.thresh.theta

    def init_state(self, like: Tensor) -> State:  # type: ignore[override]
        """Membrane ``v0`` broadcast over the batch of ``like`` and zero spike counts."""
        return torch.zeros_like(like) + self.v0.to(like.dtype), torch.zeros_like(like)

    def rate(self, state: State, T: int) -> Tensor:
        """Output rate in activation units (``theta * count / T``) of an end ``state``."""
        return state[1] * (self.output_scale.detach() / T)

    def _step(self, x_t: Tensor, state: State) -> tuple[Tensor, State]:  # type: ignore[override]
        v, n = state
        s, v = super()._step(x_t, v)
        n_next = n + s.detach()
        if self.pool is not None:
            k, stride, pad = self.pool
            top, where = F.max_pool2d(n_next, k, stride, pad, return_indices=True)
            grew = top - F.max_pool2d(n, k, stride, pad)
            gated = F.max_unpool2d(grew, where, k, stride, pad, output_size=n.shape[-2:])
            # forward: the gated spikes; backward: the neuron's own surrogate gradient, so
            # gradients (training, gradient-inversion attacks) still reach earlier layers
            s = gated + (s - s.detach())
        return s * self.output_scale, (v, n_next)

    def extra_repr(self) -> str:
        return (f"threshold={float(self.output_scale):.4g}, v0_shape={tuple(self.v0.shape)}, "
                f"pool={self.pool}")
