"""Upload validation: every kind of bad upload is rejected with a reason naming the tensor."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from spikefed.fl.base import Upload
from spikefed.fl.fedavg import FedAvg
from spikefed.fl.registry import ALGORITHMS
from spikefed.fl.solo import Solo
from spikefed.rounds.validation import (
    Rejection,
    RoundFailedError,
    UploadValidator,
    require_quorum,
)


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))


def _good(client: int = 0) -> Upload:
    return Upload(client, {k: v.clone() for k, v in Net().state_dict().items()}, 10)


@pytest.fixture
def validator() -> UploadValidator:
    return UploadValidator.for_model(FedAvg(), Net(), max_bytes=10_000)


def test_valid_upload_passes(validator) -> None:
    assert validator.check(_good()) is None


@pytest.mark.parametrize("mutate, expected", [
    (lambda t: t.pop("fc.bias"), "missing tensor(s) 'fc.bias'"),
    (lambda t: t.update(extra=torch.zeros(1)), "unexpected tensor(s) 'extra'"),
    (lambda t: t.update({"fc.weight": torch.zeros(3, 5)}),
     "tensor 'fc.weight' has shape (3, 5), expected (3, 4)"),
    (lambda t: t.update({"fc.weight": torch.zeros(3, 4, dtype=torch.float64)}),
     "tensor 'fc.weight' has dtype torch.float64, expected torch.float32"),
    (lambda t: t["fc.bias"].__setitem__(1, float("nan")), "tensor 'fc.bias' has 1 non-finite"),
    (lambda t: t["fc.weight"].__setitem__((0, 0), float("-inf")), "tensor 'fc.weight' has 1 non"),
    (lambda t: t.update({"steps": [1, 2]}), "tensor 'steps' is a list, not a torch.Tensor"),
])
def test_bad_tensors_are_named(validator, mutate, expected) -> None:
    upload = _good(client=7)
    mutate(upload.tensors)
    reason = validator.check(upload)
    assert reason is not None and reason.startswith(expected), reason


def test_size_limit_and_sample_count() -> None:
    up = _good()
    limit = up.nbytes - 1
    assert f"> train.max_upload_bytes={limit}" in UploadValidator.for_model(
        FedAvg(), Net(), max_bytes=limit).check(up)
    assert UploadValidator.for_model(FedAvg(), Net(), max_bytes=up.nbytes).check(up) is None
    up.num_samples = -1
    assert "num_samples=-1" in UploadValidator.for_model(FedAvg(), Net()).check(up)


def test_algorithm_keys_and_silent_algorithms() -> None:
    class WeightsOnly(FedAvg):
        def upload_keys(self, model):
            return {"fc.weight"}

    v = UploadValidator.for_model(WeightsOnly(), Net())
    assert v.check(Upload(0, {"fc.weight": torch.zeros(3, 4)}, 1)) is None
    assert "unexpected" in v.check(_good())
    silent = UploadValidator.for_model(Solo(), Net())  # communicates=False: uploads nothing
    assert silent.check(Upload(0, {}, 5)) is None


def test_screen_and_quorum(validator) -> None:
    bad = _good(client=3)
    bad.tensors["fc.bias"][0] = float("inf")
    valid, rejected = validator.screen([_good(1), bad, _good(4)])
    assert [u.client_id for u in valid] == [1, 4]
    assert rejected[0].client == 3 and "fc.bias" in rejected[0].reason
    assert rejected[0].as_record() == {"client": 3, "reason": rejected[0].reason}
    require_quorum(1, valid=2, min_clients=2, rejections=rejected)  # enough: no error
    require_quorum(1, valid=0, min_clients=2, rejections=[])  # stragglers only: no error
    with pytest.raises(RoundFailedError) as err:
        require_quorum(5, valid=1, min_clients=2, rejections=[Rejection(3, "boom")])
    assert "round 5 failed" in str(err.value) and "client 3: boom" in str(err.value)
    assert isinstance(err.value, ValueError)  # the CLI reports it as a user-facing error


# ----- the in-process engine ------------------------------------------------------------------

SMALL = ["data.num_clients=4", "train.clients_per_round=4", "data.test_subset=100",
         "model.T=2", "model.kwargs.hidden=[16]", "data.partition.scheme=iid",
         "train.eval_clients=false"]


class Faulty(FedAvg):
    """Client 1 crashes and client 2 uploads NaNs from round `bad_from` on."""

    def __init__(self, bad_from: int = 1, everyone: bool = False) -> None:
        self.bad_from, self.everyone = bad_from, everyone

    def client_update(self, client_id, broadcast, client_state, data, ctx):
        cid = client_id
        if ctx.round >= self.bad_from and (cid == 1 or self.everyone):
            raise RuntimeError(f"client {cid} lost its disk")
        upload, state, metrics = super().client_update(client_id, broadcast, client_state,
                                                       data, ctx)
        if ctx.round >= self.bad_from and cid == 2:
            upload.tensors = {**upload.tensors}
            key = next(k for k, v in upload.tensors.items() if v.is_floating_point())
            upload.tensors[key] = torch.full_like(upload.tensors[key], float("nan"))
        return upload, state, metrics


def _sim(tmp_path, algorithm, *extra: str):
    from spikefed.config import load_config
    from spikefed.experiment import build_federation
    from spikefed.sim import Simulation

    fed = build_federation(load_config(overrides=[*SMALL, *extra]))
    for c in fed.clients:
        c.x, c.y = c.x[:48], c.y[:48]
    fed.algorithm = algorithm
    return Simulation(fed.cfg, tmp_path, federation=fed)


def test_engine_isolates_crashing_and_poisoned_clients(tmp_path) -> None:
    from spikefed.report import read_metrics
    from spikefed.sim.checkpoint import load_checkpoint

    summary = _sim(tmp_path, Faulty(), "train.rounds=2").run()
    recs = read_metrics(tmp_path / "metrics.jsonl")
    assert [r["uploads"] for r in recs] == [2, 2]
    reasons = {r["client"]: r["reason"] for r in recs[0]["rejected"]}
    assert "lost its disk" in reasons[1] and "RuntimeError" in reasons[1]
    assert "non-finite" in reasons[2]
    assert summary["finite"] and summary["final_server_acc"] is not None
    ckpt = load_checkpoint(tmp_path / "checkpoint")
    assert all(torch.isfinite(v).all() for v in ckpt["broadcast"].values()
               if v.is_floating_point())


def test_engine_round_failure_keeps_checkpoint_and_metrics(tmp_path) -> None:
    from spikefed.report import read_metrics

    sim = _sim(tmp_path, Faulty(bad_from=3, everyone=True), "train.rounds=4",
               "train.min_clients=2")
    with pytest.raises(RoundFailedError) as err:
        sim.run()
    assert err.value.round == 3 and err.value.valid == 0
    assert "client 0: client_update raised RuntimeError" in str(err.value)
    before = (tmp_path / "checkpoint" / "state.pt").read_bytes()
    assert [r["round"] for r in read_metrics(tmp_path / "metrics.jsonl")] == [1, 2]
    sim.fed.algorithm = FedAvg()  # the faulty clients are repaired: the run resumes
    sim.pipeline.validator = UploadValidator.for_model(FedAvg(), sim.fed.model_fn())
    assert (tmp_path / "checkpoint" / "state.pt").read_bytes() == before
    assert sim.run(resume=True)["rounds"] == 4


def test_cli_reports_failed_round_and_exits_nonzero(tmp_path) -> None:
    from typer.testing import CliRunner

    from spikefed.cli import app

    sets = [a for s in [*SMALL, "train.rounds=1", "train.max_upload_bytes=100"]
            for a in ("--set", s)]
    result = CliRunner().invoke(app, ["run", *sets, "--out", str(tmp_path)])
    assert result.exit_code != 0
    assert "round 1 failed" in result.output
    assert "train.max_upload_bytes=100" in result.output
    assert not (tmp_path / "checkpoint" / "state.pt").exists()


@pytest.mark.parametrize("name", sorted(ALGORITHMS))
def test_honest_uploads_of_every_algorithm_pass(tmp_path, name) -> None:
    from spikefed.config import load_config
    from spikefed.experiment import build_federation
    from spikefed.report import read_metrics
    from spikefed.sim import Simulation

    extra = ["model.spiking=false"] if name.startswith("s-") else []
    small = SMALL
    if name == "flsnn":  # GLM network on event frames, partial exchange
        small = [*SMALL[:3], "data.partition.scheme=iid", "data.dataset=nmnist-mini",
                 "data.events.polarity=merge", "data.events.downsample=17", "model.name=glm",
                 "model.T=10", "model.kwargs.n_hidden=2", "algorithm.params.comm_rate=0.1"]
    cfg = load_config(overrides=[*small, "train.rounds=1", f"algorithm.name={name}", *extra])
    fed = build_federation(cfg)
    for c in fed.clients:
        c.x, c.y = c.x[:32], c.y[:32]
    Simulation(cfg, tmp_path, federation=fed).run()
    rec = read_metrics(tmp_path / "metrics.jsonl")[0]
    assert rec["rejected"] == []
    assert rec["uploads"] == len(fed.clients)


# ----- substance: sample counts, magnitudes, update norms, odd tensors ------------------------

def test_num_samples_must_match_the_partition(validator) -> None:
    up = _good()
    assert validator.check(up, partition_size=10) is None
    reason = validator.check(up, partition_size=9)
    assert reason.startswith("num_samples=10 but the client's partition holds 9 samples")


def test_magnitude_and_norm_bounds() -> None:
    from spikefed.rounds.update_norm import update_norm

    up = _good()
    broadcast = {k: v.clone() for k, v in up.tensors.items()}
    up.tensors["fc.weight"] = broadcast["fc.weight"] + 3.0  # 12 entries moved by 3
    assert update_norm(up.tensors, broadcast) == pytest.approx(6 * 3 ** 0.5)  # 10.39
    assert UploadValidator.for_model(FedAvg(), Net(), norm_bound=10.5).check(
        up, broadcast=broadcast) is None
    reason = UploadValidator.for_model(FedAvg(), Net(), norm_bound=6.0).check(
        up, broadcast=broadcast)
    assert "update norm 10.39 > train.update_norm_bound=6" in reason
    capped = UploadValidator.for_model(FedAvg(), Net(), max_abs=100.0)
    up.tensors["fc.bias"] = torch.tensor([0.0, -1e30, 1.0])
    assert "magnitude 1e+30 > train.max_upload_abs=100" in capped.check(up)
    # with the magnitude bound off, the norm bound alone still refuses 1e30 (float64 sums)
    normed = UploadValidator.for_model(FedAvg(), Net(), norm_bound=1e6)
    assert "update norm 1e+30 > train.update_norm_bound=1e+06" in normed.check(
        up, broadcast=broadcast)


def test_clip_policy_scales_the_update_to_the_bound() -> None:
    from spikefed.rounds.update_norm import update_norm

    up = _good(client=5)
    broadcast = {k: v.clone() for k, v in up.tensors.items()}
    up.tensors["fc.weight"] = broadcast["fc.weight"] + 3.0
    clipper = UploadValidator.for_model(FedAvg(), Net(), norm_bound=2.0, norm_policy="clip")
    verdict = clipper.judge(up, 5, broadcast=broadcast)
    assert verdict.rejection is None and verdict.clip.client == 5
    assert verdict.clip.norm == pytest.approx(6 * 3 ** 0.5) and verdict.clip.bound == 2.0
    assert update_norm(verdict.upload.tensors, broadcast) == pytest.approx(2.0)
    assert torch.equal(verdict.upload.tensors["steps"], up.tensors["steps"])  # ints untouched
    small = Upload(6, {k: v.clone() for k, v in broadcast.items()}, 10)
    small.tensors["fc.bias"] += 1.0  # norm sqrt(3) < 2
    verdict = clipper.judge(small, 6, broadcast=broadcast)
    assert verdict.clip is None and verdict.upload is small


@pytest.mark.parametrize("value, expected", [
    (torch.zeros(3, 4).to_sparse(), "has layout torch.sparse_coo (not dense)"),
    (torch.zeros(3, 4, device="meta"), "is a meta tensor"),
    (None, "is a NoneType, not a torch.Tensor"),
    (torch.quantize_per_tensor(torch.zeros(3, 4), 0.1, 0, torch.qint8), "is quantized"),
])
def test_odd_tensors_are_rejected_not_raised(validator, value, expected) -> None:
    up = _good(client=2)
    up.tensors["fc.weight"] = value
    verdict = validator.judge(up, 2, partition_size=10)
    assert verdict.upload is None and verdict.rejection.client == 2
    assert expected in verdict.rejection.reason, verdict.rejection.reason


def test_judge_never_raises() -> None:
    class Hostile(dict):
        def __iter__(self):
            raise RuntimeError("boom")

    v = UploadValidator.for_model(FedAvg(), Net())
    verdict = v.judge(Upload(1, Hostile(), 10), 1)
    assert verdict.upload is None and "could not be checked (RuntimeError: boom)" in (
        verdict.rejection.reason)
    assert "client sent a str" in v.judge("weights", 4).rejection.reason
