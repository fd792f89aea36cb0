"""Multi-layer perceptron: flatten, ``fc{i} -> norm{i} -> act{i}`` per hidden layer, then
``classifier``."""

from __future__ import annotations

import math
from typing import Any

from torch import Tensor, nn

from spikefed.models.base import ZooModel
from spikefed.models.registry import register_model


@register_model("mlp")
class MLP(ZooModel):
    """Fully connected classifier for any input shape (flattened)."""

    def __init__(self, *, hidden: tuple[int, ...] | list[int] = (256,), **common: Any) -> None:
        super().__init__(**common)
        hidden = tuple(int(h) for h in hidden)
        if any(h < 1 for h in hidden):
            raise ValueError(f"hidden={hidden!r} must be positive layer sizes")
        self.hidden = hidden
        width = math.prod(self.in_shape)
        self.depth = len(hidden)
        for i, h in enumerate(hidden, start=1):
            setattr(self, f"fc{i}", nn.Linear(width, h, bias=self.use_bias))
            setattr(self, f"norm{i}", self.make_norm(h, dims=1))
            setattr(self, f"act{i}", self.make_act())
            width = h
        self.classifier = nn.Linear(width, self.num_classes)

    static_stem = True

    def run(self, x: Tensor, ctx: Any) -> Tensor:
        h = x.flatten(1)
        if self.depth == 0:
            return self.stem(ctx, self.classifier, h)
        for i in range(1, self.depth + 1):
            fc = getattr(self, f"fc{i}")
            h = self.stem(ctx, fc, h) if i == 1 else fc(h)
            h = ctx.norm(getattr(self, f"norm{i}"), h)
            h = ctx.act(getattr(self, f"act{i}"), h)
        return self.classifier(h)
