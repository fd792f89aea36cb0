"""Backdoor poisoning and threshold-based detection of poisoned SNFL clients."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from spikefed.config import load_config
from spikefed.experiment import build_federation
from spikefed.experiments.snfl import cap_clients, plan, with_scale
from spikefed.fl import ClientData
from spikefed.fl.aggregation import weighted_average
from spikefed.fl.snfl import SNN
from spikefed.security import (
    ModelReplacement,
    Trigger,
    add_trigger,
    anomaly_scores,
    attack_success_rate,
    boost_tensors,
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
    states: dict[int, dict] = {i: {} for i in range(6)}
    for r in (1, 2):  # score the second round: clean clients agree after one aggregation
        ups = []
        for i, d in enumerate(fed.clients):
            up, states[i], _ = alg.client_update(i, broadcast, states[i], d,
                                                 fed.train_context(r))
            ups.append(up)
        server, broadcast = alg.aggregate(server, ups)
    uploads = [u.tensors for u in ups]
    keys = sorted(k for k in uploads[0] if k.endswith("thresh.theta"))
    assert len(keys) == 4  # one threshold per spiking layer of LeNet-5
    scores = anomaly_scores(threshold_vectors(uploads, keys))
    labels = [i in attackers for i in range(6)]
    assert roc_auc(scores, labels) >= 0.9
    assert separation_ratio(scores, labels) > 1.0


def test_boost_tensors_is_scaled_model_replacement() -> None:
    local = {"fc.weight": torch.randn(3, 4), "bn.running_var": torch.rand(3) + 0.5,
             "bn.num_batches_tracked": torch.tensor(7), "private.head": torch.randn(2)}
    ref = {"fc.weight": torch.randn(3, 4), "bn.running_var": torch.rand(3) + 0.5,
           "bn.num_batches_tracked": torch.tensor(3)}
    out = boost_tensors(local, ref, 4.0)
    assert torch.equal(out["fc.weight"], 4.0 * (local["fc.weight"] - ref["fc.weight"])
                       + ref["fc.weight"])
    # BN statistics, integer tensors and keys the reference lacks are not boosted
    for k in ("bn.running_var", "bn.num_batches_tracked", "private.head"):
        assert torch.equal(out[k], local[k])
    assert torch.allclose(boost_tensors(local, ref, 1.0)["fc.weight"], local["fc.weight"])
    with pytest.raises(ValueError, match="boost=0"):
        boost_tensors(local, ref, 0.0)
    with pytest.raises(ValueError, match="shape"):
        boost_tensors(local, {"fc.weight": torch.zeros(4, 3)}, 2.0)
    with pytest.raises(ValueError, match="attacker"):
        ModelReplacement(object(), [], 2.0)  # type: ignore[arg-type]


def _clean_then_attack(boost: float) -> tuple[float, float]:
    """FedAvg, 5 clients: 3 clean rounds, then client 0 (20% triggered data) attacks with
    ``boost``; clean accuracy and attack success rate of the averaged model."""
    cfg = load_config(None, [
        "data.dataset=mnist-mini", "data.num_clients=5", "data.partition.scheme=iid",
        "data.test_subset=300", "model.name=mlp", "model.spiking=false", "model.norm=none",
        "algorithm.name=fedavg", "train.lr=0.05"])
    fed = build_federation(cfg)
    cap_clients(fed, 150, cfg.seed)
    trigger, alg = Trigger(size=4, value=1.0, target=0), fed.algorithm
    server, broadcast = alg.init_server(fed.initial_model())
    for r in (1, 2, 3):
        ups = [alg.client_update(i, broadcast, {}, d, fed.train_context(r))[0]
               for i, d in enumerate(fed.clients)]
        server, broadcast = alg.aggregate(server, ups)
    fed.clients[0] = poison_client(fed.clients[0], trigger, 0.2, seed=0)
    attack = ModelReplacement(alg, [0], boost)
    ups = [attack.client_update(i, broadcast, {}, d, fed.train_context(4))[0]
           for i, d in enumerate(fed.clients)]
    honest = alg.client_update(0, broadcast, {}, fed.clients[0], fed.train_context(4))
    expected = boost_tensors(honest[0].tensors, broadcast, boost)
    assert all(torch.equal(ups[0].tensors[k], expected[k]) for k in expected)
    model = alg.server_model(attack.aggregate(server, ups)[0], fed.model_fn)
    acc = float((model(fed.test_x).argmax(1) == fed.test_y).float().mean())
    return acc, attack_success_rate(model, fed.test_x, fed.test_y, trigger)


def test_model_replacement_makes_the_backdoor_survive_averaging() -> None:
    _, asr_plain = _clean_then_attack(1.0)
    acc_boosted, asr_boosted = _clean_then_attack(5.0)  # boost = n / eta, eta = 1
    assert asr_boosted > asr_plain + 0.4 and asr_boosted > 0.8
    assert acc_boosted > 0.15  # the averaged model is not just "always the target"


def test_boosted_snfl_upload_carries_boosted_ann_and_thresholds_expose_it() -> None:
    cfg = load_config(None, [
        "data.dataset=mnist-mini", "data.num_clients=5", "data.partition.scheme=iid",
        "model.name=lenet5", "model.spiking=false", "model.norm=bn", "algorithm.name=s-fedavg",
        "algorithm.params.T=8", "algorithm.params.calib_size=32", "train.lr=0.05"])
    fed = build_federation(cfg)
    cap_clients(fed, 100, cfg.seed)
    snfl, boost, ctx = fed.algorithm, 5.0, fed.train_context(1)
    fed.clients[2] = poison_client(fed.clients[2], Trigger(), 0.5, seed=2)
    attack = ModelReplacement(snfl, [2], boost)
    server, broadcast = attack.init_server(fed.initial_model())
    ups, states = [], {}
    for i, d in enumerate(fed.clients):
        up, states[i], _ = attack.client_update(i, broadcast, {}, d, ctx)
        ups.append(up)
    ann, reference, _, _ = snfl.train_ann(2, broadcast, {}, fed.clients[2], ctx)
    trained = ann.state_dict()
    # the attacker keeps its trained (un-boosted) ANN as client state
    assert all(torch.equal(v, trained[k]) for k, v in states[2]["ann"].items())
    # the server recovers the boosted ANN weights W_A = G + boost (X - G) from the SNN upload
    recovered = snfl.recover_ann(ups[2].tensors, server["layout"])
    for k in ("conv1.weight", "fc3.weight", "classifier.weight", "norm1.weight"):
        want = boost * (trained[k] - reference[k]) + reference[k]
        assert torch.allclose(recovered[k], want, atol=1e-5, rtol=1e-4), k
    honest_up = [snfl.recover_ann(u.tensors, server["layout"]) for u in ups]
    norms = [float(torch.cat([(u[k] - reference[k]).flatten() for k in ("conv1.weight",
                                                                       "fc3.weight")]).norm())
             for u in honest_up]
    assert norms[2] > 2 * max(n for i, n in enumerate(norms) if i != 2)
    uploads = [u.tensors for u in ups]
    keys = sorted(k for k in uploads[0] if k.endswith("thresh.theta"))
    scores = anomaly_scores(threshold_vectors(uploads, keys))
    labels = [i == 2 for i in range(5)]
    assert roc_auc(scores, labels) == 1.0
    snn_keys = [k for k in uploads[0] if k.startswith(SNN)]
    assert torch.isfinite(torch.cat([v.flatten() for v in
                                     weighted_average(ups, snn_keys).values()])).all()


def test_backdoor_plan_compares_data_poisoning_with_model_replacement(tmp_path) -> None:
    scale = with_scale("small", backdoor_clients=8, backdoor_attackers=2)
    jobs = plan("backdoor", scale, tmp_path, None)
    assert [j["boost"] for j in jobs] == [1.0, 4.0]  # default boost: clients / attackers
    assert len({j["cfg"]["name"] for j in jobs}) == 2
    only_poison = plan("backdoor", with_scale("small", backdoor_boost=1.0), tmp_path, None)
    assert [j["boost"] for j in only_poison] == [1.0]
    with pytest.raises(ValueError, match="boost"):
        plan("backdoor", with_scale("small", backdoor_boost=0.5), tmp_path, None)
