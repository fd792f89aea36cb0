"""The IF neuron of a converted SNN: per-layer threshold and initial membrane in the state_dict."""

from __future__ import annotations

import torch
from torch import Tensor

from spikefed.snn.neurons import IF


class ConvertedIF(IF):
    """IF neuron (beta = 1, reset by subtraction) emitting spikes of amplitude ``theta``.

    State-dict entries: ``thresh.theta`` (the threshold, a scalar) and ``v0`` (the initial
    membrane potential per neuron, shaped like one sample's input, e.g. ``[C, H, W]``).
    Emitting ``theta * s`` keeps the next layer's weights equal to the (BN-folded) ANN
    weights, as in SNFL Eq. 5, so ``W_S`` stays invertible to ``W_A`` on the server.
    """

    def __init__(self, threshold: float, shape: tuple[int, ...], v0: float = 0.0) -> None:
        super().__init__(threshold=threshold, reset="subtract", learn_threshold=True)
        self.register_buffer("v0", torch.full(tuple(shape), float(v0)))

    @property
    def output_scale(self) -> Tensor:
        """Amplitude of one output spike (= the threshold); divide outputs by it to count spikes."""
        assert self.thresh is not None
        return self.thresh.theta

    def init_state(self, like: Tensor) -> Tensor:
        """Membrane ``v0`` broadcast over the batch of ``like``."""
        return torch.zeros_like(like) + self.v0.to(like.dtype)

    def _step(self, x_t: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        s, v = super()._step(x_t, v)
        return s * self.output_scale, v

    def extra_repr(self) -> str:
        return f"threshold={float(self.output_scale):.4g}, v0_shape={tuple(self.v0.shape)}"
