"""Trace a zoo model's body once to learn its structure in forward order.

The trace runs ``model.run(x, ctx)`` with a recording context on a tiny dummy batch and
reports, per activation module (``nn.ReLU`` or spiking neuron), the Conv/Linear layers that
feed it (called since the previous activation), the shape of its output, the 2-D max pool
applied directly to its output (if any), and which BatchNorm follows which layer.
It works on ANN and SNN zoo models alike.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


@dataclass
class Structure:
    """What a trace of the body found, everything in forward order."""

    acts: list[str] = field(default_factory=list)
    feeds: dict[str, list[str]] = field(default_factory=dict)
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    bn_pairs: list[tuple[str, str]] = field(default_factory=list)
    pools: dict[str, tuple[int, int, int]] = field(default_factory=dict)
    readout: list[str] = field(default_factory=list)


class _TraceContext:
    def __init__(self, names: dict[nn.Module, str], structure: Structure) -> None:
        self.names = names
        self.s = structure
        self.pending: list[str] = []
        self.outputs: list[tuple[str, Tensor]] = []
        self.act_out: dict[str, Tensor] = {}
        self.pooled: set[str] = set()

    def pool_hook(self, module: nn.MaxPool2d, inputs: tuple, output: Tensor) -> None:
        act = next((n for n, out in self.act_out.items() if out is inputs[0]), None)
        if act is None:
            return
        size = (module.kernel_size, module.stride, module.padding, module.dilation)
        if module.ceil_mode or any(not isinstance(v, int) for v in size) or module.dilation != 1:
            self.pooled.add(act)  # an unsupported pool: leave it as a max of spike trains
            return
        self.s.pools[act] = (module.kernel_size, module.stride, module.padding)

    def layer_hook(self, module: nn.Module, inputs: tuple, output: Tensor) -> None:
        name = self.names[module]
        self.pending.append(name)
        self.outputs.append((name, output))

    def act(self, module: nn.Module, h: Tensor) -> Tensor:
        name = self.names[module]
        if name in self.s.feeds:
            raise ValueError(f"activation module {name!r} is used twice in the forward pass; "
                             "conversion needs one module per activation")
        self.s.acts.append(name)
        self.s.feeds[name] = self.pending
        self.s.shapes[name] = tuple(h.shape[1:])
        self.pending = []
        self.act_out[name] = torch.relu(h)
        return self.act_out[name]

    def norm(self, module: nn.Module, h: Tensor) -> Tensor:
        if isinstance(module, _BatchNorm):
            layer = next((n for n, out in reversed(self.outputs) if out is h), None)
            if layer is None:
                raise ValueError(f"BatchNorm {self.names[module]!r} does not directly follow a "
                                 "Conv/Linear layer, so it cannot be folded")
            self.s.bn_pairs.append((layer, self.names[module]))
        return module(h)


@torch.no_grad()
def trace_structure(model: nn.Module) -> Structure:
    """Run the body of zoo ``model`` once (eval mode, batch of 2) and return its structure."""
    if not hasattr(model, "run") or not hasattr(model, "in_shape"):
        raise ValueError(f"{type(model).__name__} is not a spikefed zoo model (it needs "
                         "`run(x, ctx)` and `in_shape`); build it with spikefed.models.build_model")
    names = {m: n for n, m in model.named_modules()}
    structure = Structure()
    ctx = _TraceContext(names, structure)
    handles = [m.register_forward_hook(ctx.layer_hook)
               for m in model.modules() if isinstance(m, LAYERS)]
    handles += [m.register_forward_hook(ctx.pool_hook)
                for m in model.modules() if isinstance(m, nn.MaxPool2d)]
    was_training = model.training
    model.eval()
    try:
        p = next(model.parameters(), None)
        x = torch.zeros(2, *model.in_shape, device=p.device if p is not None else None,
                        dtype=p.dtype if p is not None else None)
        model.run(x, ctx)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    structure.readout = ctx.pending
    for act in ctx.pooled:
        structure.pools.pop(act, None)
    return structure
