"""Scaled model replacement (Bagdasaryan et al. 2020, "How to backdoor federated learning").

A malicious client trains on poisoned data as usual but boosts its update before uploading,
``X~ = boost * (X - G) + G`` (``G``: the model it started from), so that averaging with the
benign updates does not wash the backdoor out. ``boost = n / eta`` (``n`` equally sized clients,
server learning rate ``eta``; ``n / (eta * k)`` for ``k`` colluding attackers) makes the new
global model approximately the attacker's model.

Boosted are all floating-point tensors except BatchNorm running statistics: those are
estimates of the attacker's data, not learned, and a boosted ``running_var`` can turn negative.

SNFL clients upload a converted SNN, whose thresholds and folded weights are not linear in the
ANN. :class:`ModelReplacement` therefore boosts the *trained ANN* against the ANN the client
started from (broadcast plus its own biases) and converts the boosted ANN on the private
calibration batch: the uploaded SNN, its thresholds and BN parameters all describe the boosted
model, and the ANN weights the server recovers (``W_S sigma / gamma``) are the boosted ones.
The attacker itself keeps its trained, un-boosted ANN as client state.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

from spikefed.fl.base import Algorithm, ClientData, Tensors, TrainContext, Upload
from spikefed.fl.snfl import SNFL
from spikefed.fl.wrap import DelegatingAlgorithm

BN_STATISTICS = ("running_mean", "running_var", "num_batches_tracked")


def boost_tensors(local: Tensors, reference: Tensors, boost: float) -> Tensors:
    """``boost * (local - reference) + reference`` for every floating-point tensor of ``local``
    that ``reference`` also holds, BatchNorm running statistics excepted (copied unchanged)."""
    if boost <= 0:
        raise ValueError(f"boost={boost} must be > 0 (1 leaves the update unchanged)")
    out: Tensors = {}
    for k, v in local.items():
        g = reference.get(k)
        if g is None or not v.is_floating_point() or k.rsplit(".", 1)[-1] in BN_STATISTICS:
            out[k] = v.clone()
            continue
        if g.shape != v.shape:
            raise ValueError(f"boost_tensors: {k!r} has shape {tuple(v.shape)} in the upload "
                             f"but {tuple(g.shape)} in the reference model")
        g = g.to(device=v.device, dtype=v.dtype)
        out[k] = boost * (v - g) + g
    return out


class ModelReplacement(DelegatingAlgorithm):
    """Wrap an algorithm so that the clients in ``attackers`` upload boosted updates.

    Server-side behaviour is the wrapped algorithm's. Plain algorithms (FedAvg, FedProx, ...)
    get their upload boosted against the broadcast; SNFL attackers boost the trained ANN before
    conversion (see the module docstring).
    """

    def __init__(self, base: Algorithm, attackers: Iterable[int], boost: float) -> None:
        self.attackers = frozenset(int(a) for a in attackers)
        if not self.attackers:
            raise ValueError("ModelReplacement needs at least one attacker client id")
        if boost <= 0:
            raise ValueError(f"boost={boost} must be > 0 (1 leaves the update unchanged)")
        super().__init__(base)
        self.boost = float(boost)

    def client_update(
        self, client_id: int, broadcast: Tensors, client_state: dict[str, Any], data: ClientData,
        ctx: TrainContext
    ) -> tuple[Upload, dict[str, Any], dict[str, float]]:
        if client_id not in self.attackers:
            return self.base.client_update(client_id, broadcast, client_state, data, ctx)
        if isinstance(self.base, SNFL):
            ann, reference, metrics, state = self.base.train_ann(client_id, broadcast,
                                                                 client_state, data, ctx)
            boosted = copy.deepcopy(ann)
            boosted.load_state_dict(boost_tensors(ann.state_dict(), reference, self.boost))
            return self.base.package(client_id, ann, boosted, state, data, ctx, metrics)
        upload, state, metrics = self.base.client_update(client_id, broadcast, client_state,
                                                         data, ctx)
        tensors = boost_tensors(upload.tensors, broadcast, self.boost)
        return Upload(upload.client_id, tensors, upload.num_samples, upload.metrics), state, metrics
