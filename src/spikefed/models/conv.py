"""Plain convolutional models: ``convnet``, ``lenet5`` and ``vgg-small``.

Pooling is max pooling (a max of spikes is a spike, so downstream layers still see spikes).
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from spikefed.models.base import ZooModel, conv_out
from spikefed.models.registry import register_model


class _ConvStack(ZooModel):
    """``conv{i} -> norm{i} -> act{i} [-> pool]`` blocks, then ``fc{j} -> act`` and ``classifier``.

    ``spec`` lists ``(out_channels, kernel, padding, pool_after)`` per conv layer.
    """

    def _build(
        self, spec: list[tuple[int, int, int, bool]], fc_hidden: tuple[int, ...]
    ) -> None:
        c, h, w = self.require_image()
        self.n_conv, self.pool_after = len(spec), [p for *_, p in spec]
        for i, (out_c, k, pad, pool) in enumerate(spec, start=1):
            setattr(self, f"conv{i}", nn.Conv2d(c, out_c, k, padding=pad, bias=self.use_bias))
            setattr(self, f"norm{i}", self.make_norm(out_c))
            setattr(self, f"act{i}", self.make_act())
            c, h, w = out_c, conv_out(h, k, 1, pad), conv_out(w, k, 1, pad)
            if pool:
                h, w = h // 2, w // 2
            if h < 1 or w < 1:
                raise ValueError(
                    f"in_shape={self.in_shape!r} is too small for {type(self).__name__}"
                )
        self.pool = nn.MaxPool2d(2)
        width = c * h * w
        self.n_fc = len(fc_hidden)
        for j, units in enumerate(fc_hidden, start=len(spec) + 1):
            setattr(self, f"fc{j}", nn.Linear(width, units))
            setattr(self, f"act{j}", self.make_act())
            width = units
        self.classifier = nn.Linear(width, self.num_classes)

    static_stem = True

    def run(self, x: Tensor, ctx: Any) -> Tensor:
        h = x
        for i in range(1, self.n_conv + 1):
            conv = getattr(self, f"conv{i}")
            h = self.stem(ctx, conv, h) if i == 1 else conv(h)
            h = ctx.norm(getattr(self, f"norm{i}"), h)
            h = ctx.act(getattr(self, f"act{i}"), h)
            if self.pool_after[i - 1]:
                h = self.pool(h)
        h = h.flatten(1)
        for j in range(self.n_conv + 1, self.n_conv + self.n_fc + 1):
            h = ctx.act(getattr(self, f"act{j}"), getattr(self, f"fc{j}")(h))
        return self.classifier(h)


@register_model("convnet")
class ConvNet(_ConvStack):
    """Two 3x3 conv blocks (32, 64 channels, each + 2x2 max pool), FC 128, classifier."""

    def __init__(self, *, channels: tuple[int, int] = (32, 64), fc: int = 128, **common: Any):
        super().__init__(**common)
        c1, c2 = channels
        self._build([(c1, 3, 1, True), (c2, 3, 1, True)], (fc,))


@register_model("lenet5")
class LeNet5(_ConvStack):
    """LeNet-5: conv 6@5x5, pool, conv 16@5x5, pool, FC 120, FC 84, classifier.

    Images smaller than 32x32 (e.g. 28x28 MNIST) get padding 2 in the first conv.
    """

    def __init__(self, **common: Any) -> None:
        super().__init__(**common)
        _, h, w = self.require_image()
        pad = 2 if min(h, w) < 32 else 0
        self._build([(6, 5, pad, True), (16, 5, 0, True)], (120, 84))


@register_model("vgg-small")
class VGGSmall(_ConvStack):
    """VGG-style: 3 stages x 2 conv 3x3 (``widths`` channels), pool after each, FC 256."""

    def __init__(
        self, *, widths: tuple[int, int, int] = (64, 128, 256), fc: int = 256, **common: Any
    ) -> None:
        super().__init__(**common)
        spec = []
        for width in widths:
            spec += [(int(width), 3, 1, False), (int(width), 3, 1, True)]
        self._build(spec, (fc,))
