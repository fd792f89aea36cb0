"""``lenet-dlg``: the small LeNet that Deep Leakage from Gradients (Zhu, Liu & Han 2019) attacks.

DLG's image experiments invert the gradient of a LeNet variant built to be twice
differentiable: three 5x5 convolutions with 12 channels each and padding 2 — the first two
with stride 2, the third with stride 1, so there is no pooling at all — each followed by a
sigmoid, then one fully connected layer from the flattened 12 x H/4 x W/4 features (768 for
32x32 CIFAR images) to the classes. Every weight and bias is drawn from U(-0.5, 0.5) (the
reference implementation's ``weights_init``), which keeps the sigmoids away from saturation
and the gradients large; the DLG attack relies on both.

In the zoo the body is written once: the ANN has ``activation`` (``"sigmoid"`` for DLG's own
network, ``"relu"`` — the default, as every zoo ANN — for a network that can be converted to
an SNN) where the SNN has a spiking neuron, under the same name, so ``lenet-dlg`` with
``activation="relu"`` converts SNFL-style (ReLU -> IF) and shares its ``state_dict`` with the
sigmoid ANN.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from spikefed.models.base import ZooModel, conv_out
from spikefed.models.registry import register_model

ACTIVATIONS = ("relu", "sigmoid")
INITS = ("dlg", "torch")


@register_model("lenet-dlg")
class DLGLeNet(ZooModel):
    """DLG's LeNet: conv 12@5x5/2, conv 12@5x5/2, conv 12@5x5/1 (padding 2), FC to classes.

    Options: ``activation`` (ANN only: ``relu`` or DLG's ``sigmoid``), ``init`` (``dlg``:
    U(-0.5, 0.5) for every weight and bias, as DLG; ``torch``: PyTorch's default init).
    """

    STRIDES = (2, 2, 1)

    def __init__(
        self, *, activation: str = "relu", init: str = "dlg", channels: int = 12, **common: Any
    ) -> None:
        super().__init__(**common)
        if activation not in ACTIVATIONS:
            raise ValueError(
                f"activation={activation!r} is unknown; choose one of {list(ACTIVATIONS)}"
            )
        if init not in INITS:
            raise ValueError(f"init={init!r} is unknown; choose one of {list(INITS)}")
        self.activation = activation
        c, h, w = self.require_image()
        for i, stride in enumerate(self.STRIDES, start=1):
            setattr(self, f"conv{i}", nn.Conv2d(c, channels, 5, stride, 2, bias=self.use_bias))
            setattr(self, f"norm{i}", self.make_norm(channels))
            setattr(self, f"act{i}", self.make_act())
            c, h, w = channels, conv_out(h, 5, stride, 2), conv_out(w, 5, stride, 2)
        self.classifier = nn.Linear(c * h * w, self.num_classes)
        if init == "dlg":
            self._dlg_init()

    def make_act(self) -> nn.Module:
        """A spiking neuron (SNN), ``nn.ReLU`` or ``nn.Sigmoid`` (ANN, per ``activation``)."""
        if not self.spiking and self.activation == "sigmoid":
            return nn.Sigmoid()
        return super().make_act()

    @torch.no_grad()
    def _dlg_init(self) -> None:
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                m.weight.uniform_(-0.5, 0.5)
                if m.bias is not None:
                    m.bias.uniform_(-0.5, 0.5)

    def run(self, x: Tensor, ctx: Any) -> Tensor:
        h = x
        for i in range(1, len(self.STRIDES) + 1):
            h = getattr(self, f"conv{i}")(h)
            h = ctx.norm(getattr(self, f"norm{i}"), h)
            h = ctx.act(getattr(self, f"act{i}"), h)
        return self.classifier(h.flatten(1))
