"""The GLM spiking network of FL-SNN as a model the engines can build, load and evaluate.

``model.name: glm`` builds a :class:`GLMNet`: the parameters of one
:class:`~spikefed.snn.glm.GLMSNN` (``ff``, ``fb``, ``bias``) as buffers — the network learns by
its own local rule (:mod:`spikefed.fl.flsnn`), not by backpropagation. Its input is a batch of
event frames ``[B, T, ...]``, flattened to ``N_in`` binary inputs per step (any value > 0 is a
spike); its output is one score per class (output spike count + 1e-3 x mean firing probability),
sampled with a generator seeded from ``eval_seed`` on every call, so evaluation is repeatable.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from spikefed.models.registry import register_model
from spikefed.snn.glm import GLMSNN, Topology


@register_model("glm")
class GLMNet(nn.Module):
    """Inputs -> ``n_hidden`` recurrent hidden GLM neurons and one output neuron per class."""

    def __init__(self, *, spiking: bool = True, in_shape: tuple[int, ...], num_classes: int,
                 T: int = 8, temporal_input: str | None = None, n_hidden: int = 8,
                 n_basis_ff: int = 4, memory: int = 10, init_scale: float = 0.5,
                 eval_seed: int = 0, neuron: dict[str, Any] | None = None,
                 encoder: str = "direct", norm: str = "bn", order: str = "step",
                 stem_once: bool = False) -> None:
        """``neuron``, ``encoder``, ``norm``, ``order`` and ``stem_once`` (the zoo's options)
        do not apply: GLM neurons are defined by their kernels and read event frames directly."""
        super().__init__()
        if not spiking:
            raise ValueError("model.name=glm is a spiking network; set model.spiking=true")
        if temporal_input is None:
            raise ValueError("model.name=glm reads event frames; set data.dataset to an event "
                             "set (e.g. nmnist-mini)")
        if n_hidden < 0 or memory < 1 or n_basis_ff < 1:
            raise ValueError(f"model.kwargs n_hidden={n_hidden} (>= 0), memory={memory} (>= 1), "
                             f"n_basis_ff={n_basis_ff} (>= 1) out of range")
        topology = Topology.layered(math.prod(in_shape), n_hidden, num_classes)
        self.snn = GLMSNN(topology, n_basis_ff=n_basis_ff, memory=memory)
        self.eval_seed = eval_seed
        self.num_classes, self.in_shape = num_classes, tuple(in_shape)
        self.T: int | None = T
        params = self.snn.init_params(1, None, scale=init_scale)  # global RNG: seeded by engine
        for name, value in params.items():
            self.register_buffer(name, value[0].clone())

    @classmethod
    def of_network(cls, snn: GLMSNN, generator: torch.Generator | None = None,
                   init_scale: float = 0.5) -> GLMNet:
        """A model holding ``snn`` with freshly initialised parameters (drawn from
        ``generator``)."""
        t = snn.topology
        model = cls(in_shape=(t.n_input,), num_classes=t.n_output, temporal_input="batch_first",
                    n_hidden=t.n_hidden, n_basis_ff=snn.n_basis_ff, memory=snn.memory)
        model.snn = snn
        model.T = None  # steps per example: set by the data, not the model
        for name, value in snn.init_params(1, generator, scale=init_scale).items():
            setattr(model, name, value[0].clone())
        return model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spikes = (x.reshape(x.shape[0], x.shape[1], -1) > 0).to(self.snn.dtype)
        params = {"ff": self.ff[None].cpu(), "fb": self.fb[None].cpu(),
                  "bias": self.bias[None].cpu()}
        gen = torch.Generator().manual_seed(self.eval_seed)
        return self.snn.output_scores(params, spikes.cpu(), gen)[0].to(x.device)
