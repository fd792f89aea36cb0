"""Bring your own model: federate any ``nn.Module`` classifier, including snnTorch and
SpikingJelly networks.

A foreign network maps one input batch ``x[B, *in_shape]`` to logits ``[B, K]`` (or a tuple
whose first item is that, as snnTorch's ``(spk, mem)``). :class:`ForeignModel` runs it under
spikefed's contract (``forward(x[B, ...])`` or ``forward(x[T, B, ...])`` to logits):

- **plain ANN** (no spiking neurons): called once; temporal input is averaged over time.
- **snnTorch** (``snntorch.SpikingNeuron`` inside): hidden states are reset per forward (each
  neuron's own ``reset_mem``; snnTorch's global registry of neurons is not used and the
  network's neurons are taken out of it so federating many models does not leak memory); the
  network is stepped ``T`` times (direct input, or ``x[t]``) and its outputs averaged.
  snnTorch's int64 ``reset_mechanism_val`` buffers stay integers (FedAvg copies integer
  tensors instead of averaging them).
- **SpikingJelly** (``spikingjelly...neuron.BaseNode`` inside): ``functional.reset_net`` per
  forward; multi-step networks (``step_mode='m'``) get ``[T, B, ...]`` in one call,
  single-step ones are stepped like snnTorch; outputs are averaged over time.

Spikes of the foreign neurons are counted by :class:`~spikefed.snn.counters.ActivityCounter`.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from spikefed.snn.counters import register_neuron_type
from spikefed.snn.encoders import encode


def _snntorch_neuron_type() -> type | None:
    try:
        from snntorch import SpikingNeuron
    except ImportError:
        return None
    return SpikingNeuron


def _spikingjelly_types() -> tuple[type, type] | None:
    try:
        from spikingjelly.activation_based import base, neuron
    except ImportError:
        return None
    return neuron.BaseNode, base.MemoryModule


def detect_kind(net: nn.Module) -> str:
    """``"snntorch"``, ``"spikingjelly"`` or ``"ann"`` (no known spiking neurons)."""
    snt = _snntorch_neuron_type()
    if snt is not None and any(isinstance(m, snt) for m in net.modules()):
        return "snntorch"
    sj = _spikingjelly_types()
    if sj is not None and any(isinstance(m, sj[0]) for m in net.modules()):
        return "spikingjelly"
    return "ann"


class ForeignModel(nn.Module):
    """A foreign classifier run under spikefed's input/state/time conventions."""

    def __init__(self, net: nn.Module, in_shape: tuple[int, ...], T: int = 8,
                 encoder: str = "direct") -> None:
        super().__init__()
        self.net = net
        self.in_shape = tuple(int(d) for d in in_shape)
        self.T = int(T)
        self.encoder = encoder
        self.kind = detect_kind(net)
        self.spiking = self.kind != "ann"
        self.multi_step = self.kind == "spikingjelly" and any(
            getattr(m, "step_mode", "s") == "m" for m in net.modules())
        if self.kind == "snntorch":
            snt = _snntorch_neuron_type()
            ours = {id(m) for m in net.modules() if isinstance(m, snt)}
            snt.instances[:] = [m for m in snt.instances if id(m) not in ours]
            register_neuron_type(snt)
        elif self.kind == "spikingjelly":
            register_neuron_type(_spikingjelly_types()[0])

    def reset_state(self) -> None:
        """Forget every neuron's hidden state (called at the start of each forward)."""
        if self.kind == "snntorch":
            for m in self.net.modules():
                if isinstance(getattr(m, "mem", None), Tensor) and hasattr(m, "reset_mem"):
                    m.reset_mem()
        elif self.kind == "spikingjelly":
            from spikingjelly.activation_based import functional

            functional.reset_net(self.net)

    def _call(self, x: Tensor) -> Tensor:
        out = self.net(x)
        return out[0] if isinstance(out, (tuple, list)) else out

    def forward(self, x: Tensor) -> Tensor:
        """``x[B, *in_shape]`` or ``x[T, B, *in_shape]`` to logits ``[B, K]``."""
        n = len(self.in_shape)
        if x.dim() not in (n + 1, n + 2):
            raise ValueError(f"input of shape {tuple(x.shape)}: expected [B, *{self.in_shape}] "
                             f"or [T, B, *{self.in_shape}]")
        temporal = x.dim() == n + 2
        if not self.spiking:
            if temporal:
                return torch.stack([self._call(x_t) for x_t in x]).mean(0)
            return self._call(x)
        self.reset_state()
        if not temporal:
            x = encode(x, self.T, self.encoder)
        if self.multi_step:
            return self._call(x).mean(0)
        out = self._call(x[0])
        for t in range(1, x.shape[0]):
            out = out + self._call(x[t])
        return out / x.shape[0]


def load_factory(spec: str) -> Callable[..., nn.Module]:
    """The callable named by ``"package.module:factory"``."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ValueError(f"model.name={spec!r}: a custom model is written "
                         "'package.module:factory'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ValueError(f"model.name={spec!r}: cannot import {module_name!r} ({err}); "
                         "is the package installed or on PYTHONPATH?") from None
    factory = module
    for part in attr.split("."):
        factory = getattr(factory, part, None)
        if factory is None:
            raise ValueError(f"model.name={spec!r}: {module_name!r} has no attribute {attr!r}")
    if not callable(factory):
        raise ValueError(f"model.name={spec!r}: {attr!r} is not callable")
    return factory


def call_factory(factory: Callable[..., nn.Module], in_shape: tuple[int, ...],
                 num_classes: int, T: int, kwargs: dict[str, Any]) -> nn.Module:
    """Call ``factory(**kwargs)``, adding ``in_shape``/``num_classes``/``T`` where it takes
    them; the result must be an ``nn.Module``."""
    given = dict(kwargs)
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        params = {}
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    for key, value in (("in_shape", tuple(in_shape)), ("num_classes", num_classes), ("T", T)):
        if key in params or (takes_any and key not in given):
            given.setdefault(key, value)
    try:
        net = factory(**given)
    except TypeError as err:
        raise ValueError(f"model factory {getattr(factory, '__name__', factory)!r} rejected "
                         f"its arguments {sorted(given)}: {err}; set them in model.kwargs"
                         ) from None
    if not isinstance(net, nn.Module):
        raise ValueError(f"model factory {getattr(factory, '__name__', factory)!r} returned "
                         f"{type(net).__name__}, not a torch.nn.Module")
    return net


def foreign_model_fn(factory: Callable[..., nn.Module], in_shape: tuple[int, ...],
                     num_classes: int, T: int = 8, encoder: str = "direct",
                     kwargs: dict[str, Any] | None = None) -> Callable[[], nn.Module]:
    """A zero-argument builder of ``ForeignModel(factory(...))`` for the engines."""

    def build() -> nn.Module:
        net = call_factory(factory, in_shape, num_classes, T, kwargs or {})
        return net if isinstance(net, ForeignModel) else ForeignModel(net, in_shape, T,
                                                                         encoder)

    return build
