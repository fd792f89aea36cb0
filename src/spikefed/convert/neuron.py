"""The IF neuron of a converted SNN: per-layer threshold and initial membrane in the state_dict."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from spikefed.snn.neurons import IF

State = tuple[Tensor, Tensor]


def channel_view(values: Tensor, sample_dims: int) -> Tensor:
    """Per-channel ``values [C]`` shaped to broadcast over one sample ``[C, *spatial]``."""
    return values.reshape(-1, *([1] * (sample_dims - 1)))


class ConvertedIF(IF):
    """IF neuron (beta = 1, reset by subtraction) emitting spikes of amplitude ``theta``.

    State-dict entries: ``thresh.theta`` (the threshold: a scalar, or per channel ``[C, 1, 1]``
    / ``[F]`` when ``threshold`` is a 1-D tensor) and ``v0`` (the initial membrane potential
    per neuron, shaped like one sample's input, e.g. ``[C, H, W]``).
    Emitting ``theta * s`` keeps the next layer's weights equal to the (BN-folded) ANN
    weights, as in SNFL Eq. 5, so ``W_S`` stays invertible to ``W_A`` on the server.

    The state is ``(v, n)`` with ``n`` the spike count so far. ``pool=(kernel, stride,
    padding)`` marks a neuron whose only consumer is a 2-D max pool: it then emits, per pool
    window, one spike whenever the window's largest count grows (at that neuron's position,
    zeros elsewhere), so the max pool passes exactly the spike train of the most active
    neuron so far and the pooled rate converges to the max of the rates (a max of raw
    spike trains would overestimate it). Gradients pass straight through the gating.
    """

    def __init__(self, threshold: float | Tensor, shape: tuple[int, ...],
                 v0: float | Tensor = 0.0, pool: tuple[int, int, int] | None = None) -> None:
        theta = torch.as_tensor(threshold, dtype=torch.float32).detach()
        per_channel = theta.dim() > 0
        super().__init__(threshold=1.0 if per_channel else float(theta), reset="subtract",
                         learn_threshold=True)
        shape = tuple(shape)
        if per_channel:
            if theta.dim() != 1 or len(theta) != shape[0]:
                raise ValueError(f"per-channel threshold of shape {tuple(theta.shape)} does not "
                                 f"match the {shape[0]} channels of neuron shape {shape}")
            assert self.thresh is not None
            self.thresh.theta = nn.Parameter(channel_view(theta.clone(), len(shape)))
        start = torch.as_tensor(v0, dtype=torch.float32).detach()
        if start.dim() == 1:
            start = channel_view(start, len(shape))
        self.register_buffer("v0", torch.zeros(shape) + start)
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
        theta = self.output_scale
        shown = (f"{float(theta):.4g}" if theta.numel() == 1
                 else f"per-channel x{theta.numel()} (mean {float(theta.mean()):.4g})")
        return f"threshold={shown}, v0_shape={tuple(self.v0.shape)}, pool={self.pool}"
