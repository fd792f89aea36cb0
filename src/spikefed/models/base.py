"""Base class shared by every zoo model: one body, run as ANN, SNN step order or layer order.

A model writes its body once in ``run(x, ctx)`` and routes every activation through
``ctx.act(module, h)`` and every normalisation through ``ctx.norm(module, h)``. The context
decides what that means:

- ANN: ``module(h)`` (``nn.ReLU`` / norm).
- SNN step order: ``run`` is called once per time step on ``x[t]``; neurons take one step
  with membrane state kept in the context (fresh for each ``forward`` call).
- SNN layer order: ``run`` is called once on ``x`` flattened to ``[T*B, ...]``; neurons run
  over all ``T`` at once and BatchNorm is applied per time step, so both orders give the
  same numbers (train and eval mode).

The ANN has ``nn.ReLU`` exactly where the SNN has a spiking neuron, under the same name.

Static input: with ``direct`` encoding of a static batch ``[B, ...]`` every time step sees the
same input, so the first weight layer's current is the same at every step. A model whose body
routes that layer through ``self.stem(ctx, module, h)`` (and does nothing time-dependent
before it) sets ``static_stem = True``; built with ``stem_once=True`` the contexts then
compute it once per forward and reuse it at every step (step order) or broadcast it over
``T`` (layer order). The result is the same within float rounding (the layer's weight
gradient is summed before, not after, its one matrix product), and activity counters see
the layer run once, so its MACs are counted once per sample. It is off by default only
because that rounding changes the trajectory of existing runs.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from spikefed.snn.encoders import ENCODINGS, encode
from spikefed.snn.neurons import SpikingNeuron, make_neuron

NORMS = ("bn", "none", "gn")
ORDERS = ("step", "layer")
TEMPORAL_INPUTS = ("time_first", "batch_first")


class AnnContext:
    """Plain ANN evaluation."""

    def act(self, module: nn.Module, h: Tensor) -> Tensor:
        return module(h)

    def norm(self, module: nn.Module, h: Tensor) -> Tensor:
        return module(h)


class StepContext:
    """One SNN time step at a time; holds membrane state per neuron module.

    With ``static=True`` the stem layer's output of the first step is reused at every step.
    """

    def __init__(self, static: bool = False) -> None:
        self.state: dict[nn.Module, Tensor] = {}
        self.static = static
        self.stems: dict[nn.Module, Tensor] = {}

    def stem(self, module: nn.Module, h: Tensor) -> Tensor:
        if not self.static:
            return module(h)
        out = self.stems.get(module)
        if out is None:
            out = self.stems[module] = module(h)
        return out

    def act(self, module: nn.Module, h: Tensor) -> Tensor:
        v = self.state.get(module)
        if v is None:
            v = module.init_state(h)
        s, self.state[module] = module.step(h, v)
        return s

    def norm(self, module: nn.Module, h: Tensor) -> Tensor:
        return module(h)


class LayerContext:
    """All time steps at once on ``[T*B, ...]`` tensors.

    With ``static=True`` the body receives the static ``[B, ...]`` batch; the stem layer runs
    on it once and its output is broadcast to ``[T*B, ...]``.
    """

    def __init__(self, T: int, B: int, static: bool = False) -> None:
        self.T, self.B, self.static = T, B, static

    def stem(self, module: nn.Module, h: Tensor) -> Tensor:
        out = module(h)
        if not self.static:
            return out
        return out.unsqueeze(0).expand(self.T, *out.shape).flatten(0, 1)

    def act(self, module: nn.Module, h: Tensor) -> Tensor:
        x = h.unflatten(0, (self.T, self.B))
        if isinstance(h, torch.fx.Proxy):  # fx cannot loop over a traced tensor: unroll T
            v = module.init_state(x[0])
            out = []
            for t in range(self.T):
                s, v = module.step(x[t], v)
                out.append(s)
            return torch.stack(out).flatten(0, 1)
        return module(x).flatten(0, 1)

    def norm(self, module: nn.Module, h: Tensor) -> Tensor:
        if isinstance(module, _BatchNorm):
            x = h.unflatten(0, (self.T, self.B))
            return torch.cat([module(x[t]) for t in range(self.T)])  # indexing: fx-traceable
        return module(h)


def _choice(arg: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{arg}={value!r} is not supported; choose one of {list(choices)}")


def _groups(channels: int) -> int:
    """GroupNorm group count: the largest of 8, 4, 2, 1 dividing ``channels``."""
    return next(g for g in (8, 4, 2, 1) if channels % g == 0)


class ZooModel(nn.Module):
    """ANN or SNN classifier with a shared body; subclasses implement ``run(x, ctx)``."""

    #: ``run`` sends its first weight layer through ``stem`` and nothing before it depends on
    #: the time step, so a static direct-coded input may compute that layer once.
    static_stem: bool = False

    def __init__(
        self,
        *,
        spiking: bool,
        in_shape: tuple[int, ...],
        num_classes: int,
        T: int = 8,
        neuron: dict[str, Any] | None = None,
        encoder: str = "direct",
        norm: str = "bn",
        order: str = "step",
        bias: bool | None = None,
        stem_once: bool = False,
        temporal_input: str = "time_first",
    ) -> None:
        super().__init__()
        in_shape = tuple(int(d) for d in in_shape)
        if len(in_shape) not in (1, 3) or any(d < 1 for d in in_shape):
            raise ValueError(f"in_shape={in_shape!r} must be (C, H, W) or (D,) of positive sizes")
        if int(num_classes) < 2:
            raise ValueError(f"num_classes={num_classes!r} must be >= 2")
        if int(T) < 1:
            raise ValueError(f"T={T!r} must be a positive number of time steps")
        _choice("encoder", encoder, ENCODINGS)
        _choice("norm", norm, NORMS)
        _choice("order", order, ORDERS)
        _choice("temporal_input", temporal_input, TEMPORAL_INPUTS)
        self.temporal_input = temporal_input
        self.spiking = bool(spiking)
        self.in_shape = in_shape
        self.num_classes = int(num_classes)
        self.T = int(T)
        self.encoder = encoder
        self.norm_kind = norm
        self.order = order
        self.bias = bias
        self.stem_once = bool(stem_once)
        self.neuron_cfg = dict(neuron or {})
        if spiking:
            make_neuron(self.neuron_cfg)  # validate early

    # building blocks --------------------------------------------------------------------
    def make_act(self) -> nn.Module:
        """A spiking neuron (SNN) or ``nn.ReLU`` (ANN)."""
        return make_neuron(self.neuron_cfg) if self.spiking else nn.ReLU()

    def make_norm(self, channels: int, dims: int = 2) -> nn.Module:
        """BatchNorm1d/2d, GroupNorm or Identity per ``norm``."""
        if self.norm_kind == "bn":
            return nn.BatchNorm2d(channels) if dims == 2 else nn.BatchNorm1d(channels)
        if self.norm_kind == "gn":
            return nn.GroupNorm(_groups(channels), channels)
        return nn.Identity()

    @property
    def use_bias(self) -> bool:
        """Whether Conv/Linear layers carry a bias.

        By default only layers without a following norm do; ``bias=True`` keeps a bias before
        BatchNorm too (SNFL needs it: that ANN bias is what clients keep private).
        """
        return self.norm_kind == "none" if self.bias is None else self.bias

    def require_image(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of an image input, or a clear error for vector inputs."""
        if len(self.in_shape) != 3:
            raise ValueError(
                f"in_shape={self.in_shape!r}: {type(self).__name__} needs an image shape (C, H, W)"
            )
        return self.in_shape  # type: ignore[return-value]

    @staticmethod
    def stem(ctx: Any, module: nn.Module, h: Tensor) -> Tensor:
        """The first weight layer ``module(h)``, computed once for static input when the
        context supports it (contexts without a ``stem`` method just call the module)."""
        fn = getattr(ctx, "stem", None)
        return module(h) if fn is None else fn(module, h)

    # forward ----------------------------------------------------------------------------
    def run(self, x: Tensor, ctx: Any) -> Tensor:
        """The body: input batch (one time step) to readout logits."""
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        """``x[B, *in_shape]`` (or ``[T, B, *in_shape]`` for an SNN) to logits ``[B, K]``.

        A temporal input (event frames) is ``[T, B, ...]``, or ``[B, T, ...]`` when the model
        was built with ``temporal_input="batch_first"`` (rows of an event data set); an integer
        tensor (uint8 frames) is cast to float. An SNN consumes it without an encoder; an ANN
        takes the mean frame over ``T`` (the input rate an SNN sees, so a converted SNN fed
        the frames matches its ANN).

        Under ``torch.fx.symbolic_trace`` the input is taken to be static ``[B, *in_shape]``
        (its rank is not known while tracing), so zoo models are traceable/exportable.
        """
        if isinstance(x, torch.fx.Proxy):
            return self._forward_static(x)
        n = len(self.in_shape)
        if x.dim() == n + 2:
            if not x.is_floating_point():
                x = x.float()
            time_dim = 1 if self.temporal_input == "batch_first" else 0
            if not self.spiking:
                x = x.mean(time_dim)
            elif time_dim == 1:
                x = x.transpose(0, 1)
        if not self.spiking:
            if x.dim() != n + 1:
                raise ValueError(f"input of shape {tuple(x.shape)}: expected [B, *{self.in_shape}]")
            return self.run(x, AnnContext())
        if x.dim() == n + 1:
            return self._forward_static(x)
        if x.dim() != n + 2:
            raise ValueError(
                f"input of shape {tuple(x.shape)}: expected [B, *{self.in_shape}] (static) "
                f"or [T, B, *{self.in_shape}] (temporal)"
            )
        return self._forward_temporal(x, x.shape[0])

    def _forward_static(self, x: Tensor) -> Tensor:
        """Forward of a static batch without any branch on the input's rank or shape."""
        if not self.spiking:
            return self.run(x, AnnContext())
        if self.stem_once and self.static_stem and self.encoder == "direct":
            return self._forward_temporal(x, self.T, static=True)
        return self._forward_temporal(encode(x, self.T, self.encoder), self.T)

    def _forward_temporal(self, x: Tensor, T: int, static: bool = False) -> Tensor:
        """Forward of ``x[T, B, ...]`` in the model's order, averaging readouts over time.

        With ``static=True``, ``x`` is one static batch ``[B, ...]`` that every step sees (the
        stem layer then runs once, see ``stem_once``).
        """
        B = x.shape[0] if static else x.shape[1]
        if self.order == "layer":
            h = x if static else x.flatten(0, 1)
            return self.run(h, LayerContext(T, B, static)).unflatten(0, (T, B)).mean(0)
        ctx = StepContext(static)
        out = self.run(x if static else x[0], ctx)
        for t in range(1, T):
            out = out + self.run(x if static else x[t], ctx)
        return out / T

    def extra_repr(self) -> str:
        kind = f"SNN(T={self.T}, encoder={self.encoder!r}, order={self.order!r})"
        return f"in_shape={self.in_shape}, num_classes={self.num_classes}, " + (
            kind if self.spiking else "ANN"
        )


def activation_modules(model: nn.Module) -> dict[str, nn.Module]:
    """Activation modules by name: ``nn.ReLU`` in an ANN, spiking neurons in an SNN."""
    return {
        name: m
        for name, m in model.named_modules()
        if isinstance(m, (nn.ReLU, SpikingNeuron))
    }


def conv_out(size: int, kernel: int, stride: int = 1, padding: int = 0) -> int:
    """Output length of a convolution/pooling along one axis."""
    return math.floor((size + 2 * padding - kernel) / stride) + 1
