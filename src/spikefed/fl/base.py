"""The algorithm contract: two pure functions over named tensors.

An algorithm never imports an engine. The in-process simulator (`spikefed.sim`) and the Flower
adapter (`spikefed.flower`) both drive the same `client_update` / `aggregate` pair, so anything
that can carry a `dict[str, Tensor]` can run it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from spikefed.fl.aggregation import weighted_average
from spikefed.fl.objective import LocalObjective

Tensors = dict[str, torch.Tensor]


def payload_bytes(tensors: Mapping[str, torch.Tensor]) -> int:
    """Exact size in bytes of the tensor data in a payload (numel x element size, summed)."""
    return sum(t.numel() * t.element_size() for t in tensors.values())


@dataclass
class Upload:
    """What one client sends to the server after a round of local work."""

    client_id: int
    tensors: Tensors
    num_samples: int
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def nbytes(self) -> int:
        """Bytes on the wire for this upload (tensor data only)."""
        return payload_bytes(self.tensors)


@dataclass
class ClientData:
    """A client's local data: training tensors plus an optional per-client input transform."""

    x: torch.Tensor
    y: torch.Tensor
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None

    def __len__(self) -> int:
        return len(self.y)


@dataclass
class TrainContext:
    """Everything a client needs to train locally that is not model state."""

    model_fn: Callable[[], nn.Module]
    local_epochs: int = 1
    batch_size: int = 32
    lr: float = 0.05
    momentum: float = 0.0
    weight_decay: float = 0.0
    optimizer: str = "sgd"
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    seed: int = 0
    round: int = 0
    options: dict[str, Any] = field(default_factory=dict)
    #: per-minibatch training augmentation, resolved: "none" or "crop_flip"
    augment: str = "none"
    #: bf16 autocast in local training (CUDA)
    amp: bool = False
    #: channels-last memory format for the model and 4-D image batches
    channels_last: bool = False
    #: count spikes/SynOps/MACs of the training forward passes into the upload metrics
    #: (`train_spikes`, `train_synops`, `train_macs`; spikefed.energy turns them into energy)
    count_activity: bool = False
    _local: nn.Module | None = field(default=None, init=False, repr=False, compare=False)

    def local_model(self, state: Mapping[str, torch.Tensor]) -> nn.Module:
        """A model loaded with `state`, reused across this context's clients.

        Built once per context (one round) with `model_fn()` and reloaded per client:
        building a model costs more than loading a state_dict. `state` must be a full
        state_dict (every parameter and buffer), so nothing of the previous client survives.
        Leave it in the state local training left it in; never keep a reference to it.
        """
        if self._local is None:
            with torch.random.fork_rng(devices=[]):  # building must not move the RNG
                self._local = self.model_fn()
        self._local.load_state_dict(state)
        return self._local


class Algorithm(ABC):
    """A federated algorithm: `client_update` runs on a client, `aggregate` on the server.

    `server_state` and `client_state` are plain dicts (tensors and numbers) so they can be
    checkpointed with `torch.save`; client state never leaves the client.
    """

    name: str = "algorithm"
    communicates: bool = True
    #: how `combine` merges client tensors; set by `use_combiner` (`spikefed.fl.aggregators`)
    _combiner: Callable[..., Tensors] = staticmethod(weighted_average)

    @abstractmethod
    def init_server(self, model: nn.Module) -> tuple[dict[str, Any], Tensors]:
        """Return the initial server state and the first broadcast."""

    @abstractmethod
    def client_update(
        self, client_id: int, broadcast: Tensors, client_state: dict[str, Any], data: ClientData,
        ctx: TrainContext
    ) -> tuple[Upload, dict[str, Any], dict[str, float]]:
        """Client `client_id` trains locally from `broadcast`; return (upload, new client
        state, metrics). The engine passes the id explicitly; it is never stored in state."""

    @abstractmethod
    def aggregate(
        self, server_state: dict[str, Any], uploads: list[Upload]
    ) -> tuple[dict[str, Any], Tensors]:
        """Combine the uploads; return (new server state, next broadcast)."""

    def downlink(self, server_state: dict[str, Any], broadcast: Tensors, client_id: int
                 ) -> Tensors:
        """What the server sends client `client_id` this round (default: the broadcast).

        Engines send and count (`bytes_down`) exactly this; an algorithm that personalises
        the downlink (FL-SNN's partial exchange) returns a smaller payload per client."""
        return broadcast

    def coded_keys(self, received: Tensors) -> dict[str, tuple[str, bool]]:
        """Upload keys an update codec (`train.codec`) may compress, given what the client
        received: ``{upload key: (key in received with the same shape and dtype, relative)}``.
        ``relative`` True: the codec compresses ``upload - received[ref]`` and the server adds
        it back; False: the upload value itself is already an update (SCAFFOLD's deltas) and is
        compressed as it is. Upload keys left out travel uncompressed (SNFL's SNN tensors).
        Default: every floating-point key of `received`, relative to itself."""
        return {k: (k, True) for k, v in received.items() if v.is_floating_point()}

    def combine(self, uploads: Sequence[Upload], keys: Sequence[str] | None = None) -> Tensors:
        """Merge the uploads' tensors under `keys` (all: None) into one; `aggregate` calls this
        wherever it averages client tensors. Default: the sample-weighted mean; a configured
        aggregator (`aggregator.name`) swaps in its combiner with `use_combiner`."""
        return self._combiner(uploads, keys)

    def use_combiner(self, combiner: Callable[..., Tensors]) -> None:
        """Make `combine` use `combiner(uploads, keys)` (e.g. a coordinate-wise median)."""
        self._combiner = combiner

    def server_model_state(self, server_state: dict[str, Any]) -> Tensors | None:
        """The state_dict the server model is evaluated with (default: `server_state['params']`).

        `None` means the algorithm has no server model (SOLO).
        """
        return server_state["params"]

    def server_model(self, server_state: dict[str, Any], model_fn: Callable[[], nn.Module]
                     ) -> nn.Module | None:
        """The server model ready to evaluate (default: `model_fn()` loaded with
        `server_model_state`). Algorithms whose server model differs from the clients'
        architecture (SNFL's SNN server) override this. `None`: no server model."""
        tensors = self.server_model_state(server_state)
        if tensors is None:
            return None
        model = model_fn()
        model.load_state_dict(tensors)
        return model

    def client_model_state(self, upload: Upload, client_state: dict[str, Any]) -> Tensors | None:
        """The state_dict a client's local model is evaluated with (default: its upload)."""
        return upload.tensors

    def local_objective(self, broadcast: Tensors, client_state: dict[str, Any],
                        ctx: TrainContext) -> LocalObjective | None:
        """This client's local objective in functional form (`spikefed.fl.objective`), or
        `None`: its clients train only serially. An algorithm that returns one also
        declares `vectorizable = True` on its own class and implements `finish_local`."""
        return None

    def finish_local(self, client_id: int, broadcast: Tensors, client_state: dict[str, Any],
                     data: ClientData,
                     ctx: TrainContext, trained: Tensors, extra: Tensors,
                     metrics: dict[str, float]) -> tuple[Upload, dict[str, Any]]:
        """Package a client's functionally trained state (`trained`, the model's state_dict,
        and the objective's `extra` tensors) as `client_update` does: (upload, new state).
        Default: upload the trained model, keep the client state."""
        return Upload(client_id, trained, len(data), metrics), client_state

    def round_metrics(self, server_state: dict[str, Any]) -> dict[str, Any]:
        """Extra per-round entries for metrics.jsonl (default none; DP reports epsilon)."""
        return {}

    def upload_keys(self, model: nn.Module) -> set[str]:
        """Keys a valid upload must carry (used to validate client uploads)."""
        return set(model.state_dict().keys())
