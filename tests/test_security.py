"""Backdoor poisoning and threshold-based detection of poisoned SNFL clients."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from spikefed.config import load_config
from spikefed.experiment import build_federation
from spikefed.experiments.snfl import cap_clients
from spikefed.fl import ClientData
from spikefed.security import (
    Trigger,
    add_trigger,
    anomaly_scores,
    attack_success_rate,
    flag_outliers,
    poison_client,
    roc_auc,
    separation_ratio,
    threshold_vectors,
)


def test_trigger_and_poisoning() -> None:
    x = torch.zeros(10, 1, 8, 8)
    trig = Trigger(size=2, value=1.0, target=3, margin=1)
    stamped = add_trigger(x, trig)
    assert stamped[:, :, 5:7, 5:7].eq(1).all() and stamped.sum() == 10 * 4
    assert x.sum() == 0  # input untouched
    data = ClientData(x, torch.arange(10) % 3)
    poisoned = poison_client(data, trig, 0.5, seed=0)
    hit = poisoned.x.flatten(1).sum(1) > 0
    assert int(hit.sum()) == 5 and poisoned.y[hit].eq(3).all()
    assert torch.equal(poisoned.y[~hit], data.y[~hit])
    with pytest.raises(ValueError, match="does not fit"):
        add_trigger(torch.zeros(1, 1, 3, 3), Trigger(size=4))


class _Detector(nn.Module):
    """Predicts class 0 when the bottom-right pixel is lit, else class 1."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lit = x[:, 0, -2, -2]
        return torch.stack([lit, 1 - lit], dim=1)


def test_attack_success_rate_counts_non_target_samples_only() -> None:
    x, y = torch.zeros(6, 1, 8, 8), torch.tensor([0, 1, 1, 2, 2, 0])
    assert attack_success_rate(_Detector(), x, y, Trigger(size=2, target=0)) == 1.0
    assert attack_success_rate(_Detector(), x, y, Trigger(size=2, target=1)) == 0.0


def test_scores_auc_and_separation() -> None:
    assert roc_auc([0.1, 0.2, 0.9, 0.8], [False, False, True, True]) == 1.0
    assert roc_auc([0.9, 0.2, 0.1, 0.8], [False, False, True, True]) == 0.25
    assert roc_auc([1.0, 1.0], [False, True]) == 0.5
    assert separation_ratio([1.0, 2.0, 8.0], [False, False, True]) == 4.0
    clean = torch.ones(8, 3) + 0.01 * torch.randn(8, 3)
    vectors = torch.cat([clean, torch.full((2, 3), 5.0)])
    scores = anomaly_scores(vectors)
    assert flag_outliers(scores).tolist() == [False] * 8 + [True] * 2
    # the median centre resists the outliers; the mean is dragged towards them
    assert anomaly_scores(vectors, "mean")[:8].mean() > scores[:8].mean()


def test_thresholds_expose_poisoned_snfl_clients() -> None:
    cfg = load_config(None, [
        "data.dataset=mnist-mini", "data.num_clients=6", "data.partition.scheme=iid",
        "model.name=lenet5", "model.spiking=false", "model.norm=bn", "algorithm.name=s-fedavg",
        "algorithm.params.T=8", "algorithm.params.calib_size=32", "train.lr=0.05"])
    fed = build_federation(cfg)
    cap_clients(fed, 200, cfg.seed)
    trigger, attackers = Trigger(size=4, value=1.0, target=0), [1, 4]
    for i in attackers:
        fed.clients[i] = poison_client(fed.clients[i], trigger, 0.5, seed=i)
    alg = fed.algorithm
    server, broadcast = alg.init_server(fed.initial_model())
    states = {i: {"client_id": i} for i in range(6)}
    for r in (1, 2):  # score the second round: clean clients agree after one aggregation
        ups = []
        for i, d in enumerate(fed.clients):
            up, states[i], _ = alg.client_update(broadcast, states[i], d, fed.train_context(r))
            ups.append(up)
        server, broadcast = alg.aggregate(server, ups)
    uploads = [u.tensors for u in ups]
    keys = sorted(k for k in uploads[0] if k.endswith("thresh.theta"))
    assert len(keys) == 4  # one threshold per spiking layer of LeNet-5
    scores = anomaly_scores(threshold_vectors(uploads, keys))
    labels = [i in attackers for i in range(6)]
    assert roc_auc(scores, labels) >= 0.9
    assert separation_ratio(scores, labels) > 1.0
