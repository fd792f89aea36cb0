"""CIFAR ResNet-20: stem conv 16, three stages of three basic blocks (16/32/64 channels)."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from spikefed.models.base import ZooModel
from spikefed.models.registry import register_model


class BasicBlock(nn.Module):
    """``act2(norm2(conv2(act1(norm1(conv1(x))))) + shortcut(x))``.

    The shortcut is identity, or a strided 1x1 conv + norm (``down_conv``/``down_norm``)
    where the shape changes.
    """

    def __init__(self, owner: ZooModel, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        bias = owner.use_bias
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=bias)
        self.norm1 = owner.make_norm(c_out)
        self.act1 = owner.make_act()
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=bias)
        self.norm2 = owner.make_norm(c_out)
        self.act2 = owner.make_act()
        self.downsample = stride != 1 or c_in != c_out
        if self.downsample:
            self.down_conv = nn.Conv2d(c_in, c_out, 1, stride, bias=bias)
            self.down_norm = owner.make_norm(c_out)

    def run(self, x: Tensor, ctx: Any) -> Tensor:
        h = ctx.act(self.act1, ctx.norm(self.norm1, self.conv1(x)))
        h = ctx.norm(self.norm2, self.conv2(h))
        short = ctx.norm(self.down_norm, self.down_conv(x)) if self.downsample else x
        return ctx.act(self.act2, h + short)


@register_model("resnet20")
class ResNet20(ZooModel):
    """ResNet-20 for small images (He et al. 2016, CIFAR variant, projection shortcuts)."""

    def __init__(self, *, widths: tuple[int, int, int] = (16, 32, 64), **common: Any) -> None:
        super().__init__(**common)
        c, _, _ = self.require_image()
        w1, w2, w3 = (int(w) for w in widths)
        self.conv1 = nn.Conv2d(c, w1, 3, 1, 1, bias=self.use_bias)
        self.norm1 = self.make_norm(w1)
        self.act1 = self.make_act()
        stages = []
        c_in = w1
        for w, stride in ((w1, 1), (w2, 2), (w3, 2)):
            blocks = [BasicBlock(self, c_in, w, stride)]
            blocks += [BasicBlock(self, w, w, 1) for _ in range(2)]
            stages.append(nn.ModuleList(blocks))
            c_in = w
        self.layer1, self.layer2, self.layer3 = stages
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(w3, self.num_classes)

    static_stem = True

    def run(self, x: Tensor, ctx: Any) -> Tensor:
        h = ctx.act(self.act1, ctx.norm(self.norm1, self.stem(ctx, self.conv1, x)))
        for stage in (self.layer1, self.layer2, self.layer3):
            for block in stage:
                h = block.run(h, ctx)
        return self.classifier(self.pool(h).flatten(1))
