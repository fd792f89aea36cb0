"""An algorithm's local objective stated functionally, so an engine can train clients together.

`Algorithm.local_objective` returns a :class:`LocalObjective` for one client: the state it
starts from, the tensors its extra loss terms read, any extra trainable tensors and a
penalty written over those tensors (no module state), plus per-parameter gradient offsets.
`spikefed.sim.vectorized` stacks many clients' objectives along a client axis and trains them
with `torch.func.vmap(grad(...))`; `Algorithm.finish_local` then packages each client's result
exactly as its serial `client_update` does.

The penalty must depend on the client only through the tensors of its objective (`consts`,
`extra`): the engine calls the first client's penalty with every client's slice.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

Tensors = dict[str, torch.Tensor]


@dataclass
class LocalStep:
    """What a penalty sees at one training step of one client (inside `vmap`).

    `model` is the module to `torch.func.functional_call` with `params` (the client's model
    parameters) and `buffers`; `features` is the readout layer's input of this step's forward
    pass (only when the objective asks for it).
    """

    model: nn.Module
    params: Tensors
    buffers: Tensors
    extra: Tensors
    consts: Tensors
    x: torch.Tensor
    logits: torch.Tensor
    features: torch.Tensor | None = None


Penalty = Callable[[LocalStep], torch.Tensor]


@dataclass
class LocalObjective:
    """One client's local training objective: cross-entropy + `penalty`, gradient + offset.

    - `start`: the full state_dict (parameters and buffers) the client starts from.
    - `consts`: per-client tensors the penalty reads (stacked over clients by the engine).
    - `extra`: extra trainable tensors optimised with the model (e.g. a private head),
      initial values; returned to `finish_local` after training.
    - `penalty`: scalar added to every step's loss (and to the reported training loss, as a
      serial `local_train(penalty=...)` does).
    - `grad_offset`: tensors added to the gradient of the same-named parameter before every
      optimiser step (not part of the loss), as a serial `grad_hook` does.
    - `features`: the penalty reads the readout layer's input (`LocalStep.features`).
    """

    start: Tensors
    consts: Tensors = field(default_factory=dict)
    extra: Tensors = field(default_factory=dict)
    penalty: Penalty | None = None
    grad_offset: Tensors = field(default_factory=dict)
    features: bool = False
