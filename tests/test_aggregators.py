"""Aggregators chosen in the config: robust combiners, upload filters, the default mean."""

from __future__ import annotations

import pytest
import torch

from spikefed.config import ConfigError, load_config
from spikefed.experiment import build_federation
from spikefed.fl.aggregation import weighted_average
from spikefed.fl.aggregators import AGGREGATORS, Aggregator, register_aggregator
from spikefed.fl.base import Upload
from spikefed.report.metrics import read_metrics
from spikefed.security import ModelReplacement, Trigger, poison_client
from spikefed.sim import Simulation

FIVE = ["data.num_clients=5", "train.rounds=1", "model.T=2", "model.kwargs.hidden=[8]",
        "data.test_subset=50", "data.partition.scheme=iid", "train.eval_clients=false"]


@pytest.mark.parametrize(("overrides", "message"), [
    (["aggregator.name=mode"], "aggregator.name='mode' is unknown; choose one of"),
    (["aggregator.name=threshold"], "use an SNFL algorithm"),
    (["aggregator.name=median", "dp.level=client"], "use aggregator.name=mean"),
    (["aggregator.name=krum", "aggregator.num_byzantine=3"], "lower aggregator.num_byzantine"),
    (["aggregator.name=trimmed_mean", "aggregator.trim=3"], "lower aggregator.trim"),
    (["aggregator.z=0"], "aggregator.z"),
])
def test_bad_aggregator_config_names_field_value_and_fix(overrides, message) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(overrides=[*FIVE, "train.clients_per_round=5", *overrides])


def test_default_mean_is_the_weighted_average_bit_for_bit() -> None:
    fed = build_federation(load_config(overrides=FIVE))
    base = fed.initial_model().state_dict()
    uploads = [Upload(i, {k: v + 0.1 * i * torch.ones_like(v) for k, v in base.items()}, 10 + i)
               for i in range(3)]
    _, params = fed.algorithm.aggregate({"params": base}, uploads)
    want = weighted_average(uploads)
    assert all(torch.equal(params[k], want[k]) for k in want)


def _attacked_round(tmp_path, name: str) -> tuple[float, dict, dict, list[Upload]]:
    """One round, client 4 adds 100 to every weight (a huge but valid upload).

    Returns (distance of the new server model to the honest clients' weighted mean, the
    round record, the server params, the honest uploads)."""
    sim = Simulation(load_config(overrides=[*FIVE, f"aggregator.name={name}"]), tmp_path / name)
    for c in sim.fed.clients:
        c.x, c.y = c.x[:32], c.y[:32]
    real, honest = sim.fed.algorithm.client_update, []

    def client_update(client_id, broadcast, state, data, ctx):
        upload, new_state, metrics = real(client_id, broadcast, state, data, ctx)
        if client_id == 4:
            upload = Upload(4, {k: v + 100.0 for k, v in upload.tensors.items()},
                            upload.num_samples, upload.metrics)
        else:
            honest.append(upload)
        return upload, new_state, metrics

    sim.fed.algorithm.client_update = client_update
    sim.run()
    params = torch.load(tmp_path / name / "checkpoint" / "state.pt",
                        weights_only=True)["server_state"]["params"]
    mean = weighted_average(honest)
    distance = float(torch.cat([(params[k] - mean[k]).flatten() for k in mean]).norm())
    return distance, read_metrics(tmp_path / name / "metrics.jsonl")[0], params, honest


def test_robust_aggregators_resist_one_huge_upload_and_mean_does_not(tmp_path) -> None:
    mean_distance, mean_record, _, _ = _attacked_round(tmp_path, "mean")
    assert mean_distance > 100.0  # 1/5 of a +100 shift on every weight
    assert "aggregator_rejected" not in mean_record
    for name in ("median", "trimmed_mean", "krum", "multi_krum"):
        distance, record, _, _ = _attacked_round(tmp_path, name)
        assert distance < 0.01 * mean_distance, name
        assert record["uploads"] == 5  # every upload was valid; the aggregator decided
        dropped = {d["client"] for d in record.get("aggregator_rejected", [])}
        if name == "multi_krum":
            assert dropped == {4}  # keeps n - f = 4: exactly the honest clients
        elif name == "krum":
            assert len(dropped) == 4 and 4 in dropped
        else:
            assert "aggregator_rejected" not in record  # combiners replace the mean


def test_threshold_filter_drops_a_boosted_snfl_client(tmp_path) -> None:
    cfg = load_config(None, [
        "data.dataset=mnist-mini", "data.num_clients=5", "data.partition.scheme=iid",
        "model.name=lenet5", "model.spiking=false", "model.norm=bn", "algorithm.name=s-fedavg",
        "algorithm.params.T=8", "algorithm.params.calib_size=32", "train.lr=0.05",
        "train.rounds=1", "train.eval_clients=false", "data.test_subset=50",
        "aggregator.name=threshold"])
    fed = build_federation(cfg)
    for c in fed.clients:
        c.x, c.y = c.x[:100], c.y[:100]
    fed.clients[2] = poison_client(fed.clients[2], Trigger(), 0.5, seed=2)
    fed.algorithm = ModelReplacement(fed.algorithm, [2], 5.0)
    Simulation(cfg, tmp_path, federation=fed).run()
    record = read_metrics(tmp_path / "metrics.jsonl")[0]
    assert [d["client"] for d in record["aggregator_rejected"]] == [2]
    assert "outlier" in record["aggregator_rejected"][0]["reason"]
    assert record["uploads"] == 5


def test_a_registered_aggregator_is_usable_from_the_config(tmp_path) -> None:
    """Registration is the only step: the config accepts the name, the run uses it."""
    def first_client_only(_params) -> Aggregator:
        return Aggregator("first", select=lambda ups: (ups[:1], []))

    register_aggregator("first_only", first_client_only, "test: keep the first upload")
    try:
        _, record, params, honest = _attacked_round(tmp_path, "first_only")
    finally:
        del AGGREGATORS["first_only"]
    assert record["aggregator_rejected"] == []
    first = next(u for u in honest if u.client_id == 0)
    assert all(torch.equal(params[k], first.tensors[k]) for k in first.tensors)
    assert load_config(overrides=FIVE).aggregator.name == "mean"
