"""One client of ten tries to take over the global model; the server aggregates the honest nine.

Each attack wraps FedAvg's `client_update` for client `ATTACKER`; the honest uploads of the
same round are captured, and the global model after the round must equal their weighted
average exactly (or, with `clip`, the average with the attacker's update clipped).
"""

from __future__ import annotations

import pytest
import torch

from spikefed.fl.aggregation import weighted_average
from spikefed.fl.base import Upload
from spikefed.fl.fedavg import FedAvg
from spikefed.rounds.update_norm import clip_update, update_norm

ATTACKER = 3
TEN = ["data.num_clients=10", "train.clients_per_round=10", "data.test_subset=50",
       "model.T=2", "model.kwargs.hidden=[16]", "data.partition.scheme=iid",
       "train.eval_clients=false", "train.rounds=1"]


def _floats(tensors, fn):
    return {k: fn(v) if v.is_floating_point() else v for k, v in tensors.items()}


def _first_float(tensors) -> str:
    return next(k for k, v in tensors.items() if v.is_floating_point())


def _replace_one(fn):
    def attack(upload: Upload) -> Upload:
        key = _first_float(upload.tensors)
        upload.tensors = {**upload.tensors, key: fn(upload.tensors[key])}
        return upload
    return attack


def _scaled(factor: float):
    def attack(upload: Upload) -> Upload:
        upload.tensors = _floats(upload.tensors, lambda v: v * factor)
        return upload
    return attack


def _constant_with_huge_count(upload: Upload) -> Upload:
    upload.tensors = _floats(upload.tensors, lambda v: torch.full_like(v, 0.123))
    upload.num_samples = 10**12
    return upload


ATTACKS = {
    # name: (how the attacker changes its honest upload, words the rejection must hold)
    "huge num_samples": (_constant_with_huge_count, "num_samples=1000000000000"),
    "1e30 weights": (lambda u: Upload(u.client_id, _floats(u.tensors, lambda v: v * 0 + 1e30),
                                      u.num_samples, u.metrics), "train.max_upload_abs"),
    "sparse tensor": (_replace_one(lambda v: v.to_sparse()), "not dense"),
    "meta tensor": (_replace_one(lambda v: v.to("meta")), "meta tensor"),
    "None tensor": (_replace_one(lambda v: None), "is a NoneType"),
    "None upload": (lambda u: None, "client sent a NoneType"),
    "tensor subclass": (_replace_one(lambda v: v.as_subclass(_Sneaky)), "tensor subclass"),
}


class _Sneaky(torch.Tensor):
    """A tensor subclass: it could change behaviour inside aggregation."""


class Takeover(FedAvg):
    """FedAvg where client ATTACKER alters its upload; honest uploads are recorded."""

    def __init__(self, attack) -> None:
        self.attack = attack
        self.honest: list[Upload] = []
        self.malicious: Upload | None = None
        self.broadcast: dict[str, torch.Tensor] = {}

    def client_update(self, client_id, broadcast, client_state, data, ctx):
        upload, state, metrics = super().client_update(client_id, broadcast, client_state,
                                                       data, ctx)
        self.broadcast = {k: v.clone() for k, v in broadcast.items()}
        if client_id != ATTACKER:
            self.honest.append(Upload(upload.client_id,
                                      {k: v.clone() for k, v in upload.tensors.items()},
                                      upload.num_samples))
            return upload, state, metrics
        self.malicious = self.attack(upload)
        return self.malicious, state, metrics


def _run(tmp_path, algorithm, *extra: str):
    from spikefed.config import load_config
    from spikefed.experiment import build_federation
    from spikefed.report import read_metrics
    from spikefed.sim import Simulation
    from spikefed.sim.checkpoint import load_checkpoint

    fed = build_federation(load_config(overrides=[*TEN, *extra]))
    for c in fed.clients:
        c.x, c.y = c.x[:16], c.y[:16]
    fed.algorithm = algorithm
    Simulation(fed.cfg, tmp_path, federation=fed).run()
    record = read_metrics(tmp_path / "metrics.jsonl")[0]
    return record, load_checkpoint(tmp_path / "checkpoint")["server_state"]["params"]


def _assert_same(actual, expected) -> None:
    assert actual.keys() == expected.keys()
    for key in expected:
        assert torch.equal(actual[key], expected[key]), key


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_one_client_cannot_take_over(tmp_path, name) -> None:
    attack, reason = ATTACKS[name]
    alg = Takeover(attack)
    record, params = _run(tmp_path, alg)
    assert len(alg.honest) == 9
    assert record["uploads"] == 9 and record["aggregated"]
    assert [r["client"] for r in record["rejected"]] == [ATTACKER]
    assert reason in record["rejected"][0]["reason"], record["rejected"]
    _assert_same(params, weighted_average(alg.honest))


def test_norm_bound_rejects_a_boosted_update(tmp_path) -> None:
    alg = Takeover(_scaled(50.0))  # x50 stays under the default max_upload_abs
    record, params = _run(tmp_path, alg, "train.update_norm_bound=20")
    assert [r["client"] for r in record["rejected"]] == [ATTACKER]
    assert "train.update_norm_bound=20" in record["rejected"][0]["reason"]
    _assert_same(params, weighted_average(alg.honest))


def test_without_the_bound_the_boosted_update_gets_through(tmp_path) -> None:
    """The control for the test above: the attack is real, and the bound is what stops it."""
    alg = Takeover(_scaled(50.0))
    record, params = _run(tmp_path, alg)
    assert record["rejected"] == [] and record["uploads"] == 10
    assert not torch.equal(params[_first_float(params)],
                           weighted_average(alg.honest)[_first_float(params)])


def test_norm_bound_clips_when_asked(tmp_path) -> None:
    alg = Takeover(_scaled(50.0))
    record, params = _run(tmp_path, alg, "train.update_norm_bound=20",
                          "train.update_norm_policy=clip")
    assert record["rejected"] == [] and record["uploads"] == 10
    [clip] = record["clipped"]
    assert clip["client"] == ATTACKER and clip["bound"] == 20.0 and clip["norm"] > 20.0
    assert clip["norm"] == pytest.approx(update_norm(alg.malicious.tensors, alg.broadcast))
    clipped = Upload(ATTACKER, clip_update(alg.malicious.tensors, alg.broadcast, 20.0),
                     alg.malicious.num_samples)
    assert update_norm(clipped.tensors, alg.broadcast) == pytest.approx(20.0, rel=1e-5)
    uploads = sorted([*alg.honest, clipped], key=lambda u: u.client_id)
    _assert_same(params, weighted_average(uploads))
