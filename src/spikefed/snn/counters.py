"""Count spikes, synaptic operations (SynOps) and multiply-accumulates (MACs) with hooks.

- **spikes**: output spikes of every :class:`SpikingNeuron` (step or multi-step calls).
- **SynOps**: for every ``nn.Linear``/``nn.ConvNd`` whose input is spikes (all 0/1, or 0/θ
  for neurons with an ``output_scale`` such as converted IF neurons), each
  input spike costs one accumulate per synapse it drives: ``out_features`` for a Linear;
  for a conv, ``out_channels / groups`` times the number of output positions whose receptive
  field contains that input position (exact at the borders, for any stride/padding/dilation).
- **MACs**: the same layers with non-binary (dense, analog) input cost the full dense count,
  e.g. the first layer of a directly encoded SNN, or every layer of an ANN. A dense input that
  is constant over time steps (direct coding of a static image) is charged **once per forward
  pass, not once per step**: hardware computes that current once and holds it. Within one
  forward of the counted model, a layer's dense input equal to the one it received at the
  previous time step costs no MACs (step order: the previous call; layer order, where a zoo
  SNN runs the layer once on ``[T*B, ...]``: the previous time block; each block is counted as
  one step, so both orders count alike). Inputs that change per step are charged at every step.

A binary-valued input to an ANN layer is counted as SynOps; that is the intended reading of
"input is spikes".
"""

from __future__ import annotations

from types import TracebackType

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from spikefed.snn.neurons import SpikingNeuron

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_CONV_FN = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


def _spike_count(x: Tensor, amplitudes: frozenset[float] = frozenset({1.0})) -> int | None:
    """Number of spikes in ``x`` if it is spike-valued, else None.

    Spike-valued: every entry is 0 or one shared spike amplitude. Plain spikes are 0/1;
    neurons with an ``output_scale`` (converted IF neurons emit spikes of amplitude theta)
    add their amplitude to ``amplitudes``.
    """
    count = int(torch.count_nonzero(x))
    if count == 0:
        return 0
    if len(amplitudes) == 1:  # the common case, without gathering the nonzero entries
        (amplitude,) = amplitudes
        return count if int(torch.count_nonzero(x == amplitude)) == count else None
    nonzero = x[x != 0]
    first = float(nonzero[0])
    return count if first in amplitudes and bool((nonzero == nonzero[0]).all()) else None


def conv_fanout_map(conv: nn.modules.conv._ConvNd, spatial: tuple[int, ...]) -> Tensor:
    """Number of output positions each input position of size ``spatial`` feeds (one channel)."""
    nd = len(spatial)
    with torch.enable_grad():
        ones_in = torch.ones(1, 1, *spatial, requires_grad=True)
        kernel = torch.ones(1, 1, *conv.kernel_size)
        out = _CONV_FN[nd](ones_in, kernel, None, conv.stride, conv.padding, conv.dilation)
        (grad,) = torch.autograd.grad(out.sum(), ones_in)
    return grad[0, 0]


# Spiking neuron classes of other libraries (snnTorch, SpikingJelly) counted like ours;
# filled by spikefed.models.foreign when it wraps such a network.
NEURON_TYPES: set[type] = {SpikingNeuron}


def register_neuron_type(cls: type) -> None:
    """Count spikes of modules of type ``cls`` (output, or first item of a tuple output)."""
    NEURON_TYPES.add(cls)


class ActivityCounter:
    """Context manager counting spikes, SynOps and MACs of ``model`` during forward passes.

    >>> with ActivityCounter(model) as c:
    ...     model(x)
    >>> c.spikes, c.synops, c.macs, c.per_layer["act1"]["spikes"]
    """

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.per_layer: dict[str, dict[str, int]] = {}
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        self._fanout_cache: dict[tuple[int, tuple[int, ...]], Tensor] = {}
        self._amplitudes = frozenset({1.0})
        #: each layer's last dense input in the current forward (repeats cost no MACs)
        self._dense_inputs: dict[str, Tensor] = {}
        #: (T, B) of the current forward when the model runs its layers over all steps at once
        self._time_blocks: tuple[int, int] | None = None
        #: hooks count only while this is true (pause it around forwards that are not to count)
        self.counting = True
        #: the latest spiking neuron output and its spike count (a layer fed exactly that
        #: tensor reuses the count instead of re-checking and re-counting it)
        self._last_spikes: tuple[Tensor, int] | None = None

    # totals -----------------------------------------------------------------------------
    def _total(self, key: str) -> int:
        return sum(d.get(key, 0) for d in self.per_layer.values())

    @property
    def spikes(self) -> int:
        """Total output spikes of all spiking neurons."""
        return self._total("spikes")

    @property
    def neuron_updates(self) -> int:
        """Total neuron-steps evaluated (for firing rates)."""
        return self._total("neuron_updates")

    @property
    def synops(self) -> int:
        """Total synaptic operations driven by spikes."""
        return self._total("synops")

    @property
    def macs(self) -> int:
        """Total multiply-accumulates of layers with dense input."""
        return self._total("macs")

    @property
    def firing_rate(self) -> float:
        """Spikes per neuron-step over all spiking neurons (0.0 if none ran)."""
        n = self.neuron_updates
        return self.spikes / n if n else 0.0

    def reset(self) -> None:
        """Zero all counts."""
        self.per_layer.clear()
        self._dense_inputs.clear()

    def _root_hook(self, module: nn.Module, inputs: tuple) -> None:
        """A new forward of the counted model: forget the previous forward's inputs."""
        self._dense_inputs.clear()
        self._last_spikes = None
        self._time_blocks = _layer_order_blocks(module, inputs[0]) if inputs else None

    def _steps(self, x: Tensor) -> tuple[Tensor, ...]:
        """The time steps in one layer call: ``T`` blocks of ``[T*B, ...]`` in layer order
        (so both orders count alike), else the call's input itself."""
        blocks = self._time_blocks
        if blocks is not None and blocks[0] > 1 and x.shape[0] == blocks[0] * blocks[1]:
            return x.unflatten(0, blocks).unbind(0)
        return (x,)

    def _new_dense(self, name: str, x: Tensor) -> bool:
        """Whether dense input ``x`` differs from the layer's dense input at the previous step
        of this forward (a constant input's current is computed, and charged, once)."""
        previous = self._dense_inputs.get(name)
        self._dense_inputs[name] = x
        return previous is None or previous.shape != x.shape or not torch.equal(previous, x)

    def _input_spikes(self, x: Tensor) -> int | None:
        """Spikes in layer input ``x`` (None: dense). A neuron's output passed on unchanged
        (same memory, size and version, e.g. through ``flatten``) reuses the neuron's count:
        spiking neurons emit spikes (0 or their amplitude) by construction."""
        last = self._last_spikes
        if last is not None:
            s, count = last
            if (x.data_ptr() == s.data_ptr() and x.numel() == s.numel()
                    and x._version == s._version and x.is_contiguous() and s.is_contiguous()):
                return count
        return _spike_count(x, self._amplitudes)

    def _repeats_dense(self, name: str, x: Tensor) -> bool:
        """``x`` is the very tensor data (same memory, layout and version) this layer got as
        dense input at the previous step of this forward: nothing new to compute or count."""
        previous = self._dense_inputs.get(name)
        return (previous is not None and previous.data_ptr() == x.data_ptr()
                and previous.shape == x.shape and previous.stride() == x.stride()
                and previous._version == x._version)

    # hooks ------------------------------------------------------------------------------
    def _add(self, name: str, key: str, value: int) -> None:
        layer = self.per_layer.setdefault(name, {})
        layer[key] = layer.get(key, 0) + value

    def _neuron_hook(self, name: str):
        def hook(module: nn.Module, inputs: tuple, output: Tensor | tuple) -> None:
            if not self.counting:
                return
            s = output[0] if isinstance(output, tuple) else output
            count = int(torch.count_nonzero(s))
            self._last_spikes = (s, count)
            layer = self.per_layer.setdefault(name, {})
            layer["spikes"] = layer.get("spikes", 0) + count
            layer["neuron_updates"] = layer.get("neuron_updates", 0) + s.numel()

        return hook

    def _linear_hook(self, name: str):
        def hook(module: nn.Linear, inputs: tuple, output: Tensor) -> None:
            if not self.counting:
                return
            # inputs are only compared and counted: no autograd graph is built
            for x in self._steps(inputs[0]):
                self._count_linear(name, module, x)

        return hook

    def _count_linear(self, name: str, module: nn.Linear, x: Tensor) -> None:
        if self._repeats_dense(name, x):
            return
        spikes = self._input_spikes(x)
        if spikes is not None:
            self._dense_inputs.pop(name, None)  # a spike step: no dense current held
            self._add(name, "synops", spikes * module.out_features)
        elif self._new_dense(name, x):
            self._add(name, "macs", x.numel() * module.out_features)

    def _conv_hook(self, name: str):
        def hook(module: nn.modules.conv._ConvNd, inputs: tuple, output: Tensor) -> None:
            if not self.counting:
                return
            x = inputs[0]
            if x.dim() == len(module.kernel_size) + 1:  # unbatched
                x, output = x.unsqueeze(0), output.unsqueeze(0)
            steps = self._steps(x)
            for step in steps:
                self._count_conv(name, module, step, output.numel() // len(steps))

        return hook

    def _count_conv(self, name: str, module: nn.modules.conv._ConvNd, x: Tensor,
                    out_numel: int) -> None:
        if self._repeats_dense(name, x):
            return
        if self._input_spikes(x) is not None:
            self._dense_inputs.pop(name, None)  # a spike step: no dense current held
            spatial = tuple(x.shape[2:])
            key = (id(module), spatial)
            if key not in self._fanout_cache:
                self._fanout_cache[key] = conv_fanout_map(module, spatial)
            per_pos = (x != 0).sum(dim=(0, 1)).to(torch.float64)
            fan = self._fanout_cache[key].to(torch.float64)
            per_channel = module.out_channels // module.groups
            self._add(name, "synops", int((per_pos * fan).sum().item()) * per_channel)
        elif self._new_dense(name, x):
            k = 1
            for size in module.kernel_size:
                k *= size
            self._add(name, "macs", out_numel * (module.in_channels // module.groups) * k)

    def __enter__(self) -> ActivityCounter:
        scales = {float(torch.as_tensor(m.output_scale).detach()) for m in self.model.modules()
                  if isinstance(getattr(m, "output_scale", None), (Tensor, float))}
        self._amplitudes = frozenset({1.0} | scales)
        self._handles.append(self.model.register_forward_pre_hook(self._root_hook))
        for name, m in self.model.named_modules():
            if isinstance(m, tuple(NEURON_TYPES)):
                self._handles.append(m.register_forward_hook(self._neuron_hook(name)))
            elif isinstance(m, nn.Linear):
                self._handles.append(m.register_forward_hook(self._linear_hook(name)))
            elif isinstance(m, _CONVS):
                self._handles.append(m.register_forward_hook(self._conv_hook(name)))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()
        self._dense_inputs.clear()
        self._last_spikes = None


def _layer_order_blocks(model: nn.Module, x: object) -> tuple[int, int] | None:
    """(T, B) when ``model`` is a zoo SNN in layer order (its layers see ``[T*B, ...]``).

    Static input ``[B, *in_shape]`` runs ``model.T`` steps; temporal input is ``[T, B, ...]``
    (or ``[B, T, ...]`` with ``temporal_input="batch_first"``). None for any other model.
    """
    if not (isinstance(x, Tensor) and getattr(model, "order", None) == "layer"
            and getattr(model, "spiking", False)):
        return None
    n = len(getattr(model, "in_shape", ()))
    if x.dim() == n + 1:
        return int(model.T), int(x.shape[0])
    if x.dim() == n + 2:
        t, b = (1, 0) if getattr(model, "temporal_input", "time_first") == "batch_first" else (0, 1)
        return int(x.shape[t]), int(x.shape[b])
    return None
