"""``torch.fx`` graphs of models with spiking neurons kept as modules.

``torch.fx.symbolic_trace`` works on every zoo model, but it traces *into* our neurons: the
surrogate-gradient ``autograd.Function`` is recorded as its forward (a Heaviside step), so
the graph computes the same outputs but trains with zero gradient through spikes.
:func:`spiking_trace` keeps every :class:`SpikingNeuron` as one ``call_module`` node instead,
so surrogate gradients, learnable decays/thresholds and spike counting hooks still work.
"""

from __future__ import annotations

import torch.fx
from torch import nn

from spikefed.snn.neurons import SpikingNeuron


class SpikingTracer(torch.fx.Tracer):
    """An fx tracer for which spiking neurons are leaf modules."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return isinstance(m, SpikingNeuron) or super().is_leaf_module(m, module_qualified_name)


def spiking_trace(model: nn.Module) -> torch.fx.GraphModule:
    """Trace ``model`` (static input ``[B, *in_shape]``) with neurons as leaf modules."""
    graph = SpikingTracer().trace(model)
    return torch.fx.GraphModule(model, graph, type(model).__name__)
