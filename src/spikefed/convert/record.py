"""Contexts that run a zoo body layer by layer for calibration.

- :func:`ann_activations`: every ReLU output of the ANN.
- :func:`snn_rates`: the converted SNN's spike rates (``theta`` x count / T) of every
  :class:`ConvertedIF` up to a stop layer, and optionally the time-averaged inputs of given layers.
- :func:`preactivation`: the input current of one neuron computed from recorded rates of
  the neurons before it (differentiable w.r.t. the layers feeding it), for weight calibration.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor, nn


class _Stop(Exception):
    """Raised inside the body once the layer of interest has run."""

    def __init__(self, h: Tensor | None = None) -> None:
        super().__init__()
        self.h = h


def _names(model: nn.Module) -> dict[nn.Module, str]:
    return {m: n for n, m in model.named_modules()}


class _AnnRecord:
    def __init__(self, names: dict[nn.Module, str]) -> None:
        self.names = names
        self.out: dict[str, Tensor] = {}

    def act(self, module: nn.Module, h: Tensor) -> Tensor:
        a = torch.relu(h)
        self.out[self.names[module]] = a
        return a

    def norm(self, module: nn.Module, h: Tensor) -> Tensor:
        return module(h)


class _SpikeRecord:
    def __init__(self, names: dict[nn.Module, str], stop: str | None) -> None:
        self.names = names
        self.stop = stop
        self.state: dict[nn.Module, Any] = {}

    def act(self, module: nn.Module, h: Tensor) -> Tensor:
        v = self.state.get(module)
        if v is None:
            v = module.init_state(h)
        s, self.state[module] = module.step(h, v)
        if self.names[module] == self.stop:
            raise _Stop
        return s

    def norm(self, module: nn.Module, h: Tensor) -> Tensor:
        return module(h)


class _Substitute:
    def __init__(self, names: dict[nn.Module, str], rates: dict[str, Tensor], stop: str) -> None:
        self.names = names
        self.rates = rates
        self.stop = stop

    def act(self, module: nn.Module, h: Tensor) -> Tensor:
        name = self.names[module]
        if name == self.stop:
            raise _Stop(h)
        return self.rates[name]

    def norm(self, module: nn.Module, h: Tensor) -> Tensor:
        return module(h)


def _chunks(x: Tensor, batch_size: int) -> Iterable[Tensor]:
    return (x[i:i + batch_size] for i in range(0, len(x), batch_size))


@torch.no_grad()
def ann_activations(model: nn.Module, x: Tensor, batch_size: int = 256) -> dict[str, Tensor]:
    """ReLU outputs of zoo ANN ``model`` on ``x``, by activation-module name (eval mode)."""
    names = _names(model)
    parts: dict[str, list[Tensor]] = {}
    was_training = model.training
    model.eval()
    try:
        for xb in _chunks(x, batch_size):
            ctx = _AnnRecord(names)
            model.run(xb, ctx)
            for k, v in ctx.out.items():
                parts.setdefault(k, []).append(v)
    finally:
        model.train(was_training)
    return {k: torch.cat(v) for k, v in parts.items()}


@torch.no_grad()
def snn_rates(
    model: nn.Module,
    x: Tensor,
    T: int,
    stop: str | None = None,
    inputs_of: Iterable[str] = (),
    batch_size: int = 256,
) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """Run the converted SNN ``T`` steps on static ``x`` up to neuron ``stop`` (all if None).

    Returns ``(rates, mean_inputs)``: each neuron's output averaged over time, and the input
    of each layer named in ``inputs_of`` averaged over time.
    """
    names = _names(model)
    wanted = list(inputs_of)
    rate_parts: dict[str, list[Tensor]] = {}
    input_parts: dict[str, list[Tensor]] = {n: [] for n in wanted}
    for xb in _chunks(x, batch_size):
        sums: dict[str, Tensor] = {}

        def hook(module: nn.Module, args: tuple, _sums: dict = sums) -> None:
            n = names[module]
            _sums[n] = _sums[n] + args[0] if n in _sums else args[0].clone()

        handles = [model.get_submodule(n).register_forward_pre_hook(hook) for n in wanted]
        ctx = _SpikeRecord(names, stop)
        try:
            for _ in range(T):
                try:
                    model.run(xb, ctx)
                except _Stop:
                    pass
        finally:
            for h in handles:
                h.remove()
        for module, state in ctx.state.items():
            rate_parts.setdefault(names[module], []).append(module.rate(state, T))
        for n in wanted:
            input_parts[n].append(sums[n] / T)
    rates = {k: torch.cat(v) for k, v in rate_parts.items()}
    return rates, {k: torch.cat(v) for k, v in input_parts.items()}


def preactivation(
    model: nn.Module,
    x: Tensor,
    stop: str,
    rates: dict[str, Tensor],
    layer_inputs: dict[str, Tensor],
) -> Tensor:
    """Time-averaged input current of neuron ``stop``: earlier neurons output ``rates`` and
    the layers in ``layer_inputs`` see those recorded (time-averaged) inputs."""
    names = _names(model)

    def pre_hook(module: nn.Module, args: tuple) -> tuple:
        return (layer_inputs[names[module]],)

    handles = [model.get_submodule(n).register_forward_pre_hook(pre_hook) for n in layer_inputs]
    try:
        model.run(x, _Substitute(names, rates, stop))
    except _Stop as stopped:
        assert stopped.h is not None
        return stopped.h
    finally:
        for h in handles:
            h.remove()
    raise ValueError(f"neuron {stop!r} was not reached in the forward pass")
