"""Update codecs on Flower: the encoded payload travels in the reply's ArrayRecord, the server
decodes it, the records equal the in-process engine's, and a malformed payload is rejected."""

from __future__ import annotations

from dataclasses import replace

import pytest

pytest.importorskip("flwr", reason="Flower is not installed (pip install 'spikefed[flower]')")

import torch  # noqa: E402
from parity import assert_same_records  # noqa: E402  (tests/parity.py)

from spikefed.config import load_config  # noqa: E402
from spikefed.experiment import build_federation  # noqa: E402
from spikefed.flower import make_client_app, make_server_app, run_local  # noqa: E402
from spikefed.flower.records import STATE, load_client_state  # noqa: E402
from spikefed.report import read_metrics  # noqa: E402
from spikefed.rounds import uplink as uplink_module  # noqa: E402
from spikefed.rounds.uplink import RESIDUAL, SEP  # noqa: E402
from spikefed.sim import Simulation  # noqa: E402

SMALL = ["data.num_clients=4", "train.clients_per_round=3", "train.rounds=3", "model.T=2",
         "model.kwargs.hidden=[16]", "data.test_subset=200", "data.partition.scheme=iid",
         "train.eval_clients=true"]


def _federation(*extra: str):
    fed = build_federation(load_config(overrides=[*SMALL, *extra]))
    for c in fed.clients:
        c.x, c.y = c.x[:48], c.y[:48]
    return fed


def _run_flower(fed, out):
    server = make_server_app(federation=fed, out_dir=out)
    return run_local(server, make_client_app(federation=fed), len(fed.clients))


@pytest.mark.parametrize("codec", [
    ["train.codec.name=topk", "train.codec.fraction=0.05", "train.codec.error_feedback=true"],
    ["train.codec.name=qsgd", "train.codec.bits=4"],
    ["algorithm.name=scaffold", "train.codec.name=sign"]])
def test_compressed_runs_match_the_in_process_engine(tmp_path, codec) -> None:
    fed = _federation(*codec)
    Simulation(fed.cfg, tmp_path / "sim", federation=fed).run()
    grid = _run_flower(fed, tmp_path / "flower")
    sim = read_metrics(tmp_path / "sim" / "metrics.jsonl")
    flw = read_metrics(tmp_path / "flower" / "metrics.jsonl")
    assert all(r["bytes_up"] < r["bytes_up_raw"] for r in sim)
    assert_same_records(sim, flw)
    if fed.cfg.train.codec.uses_error_feedback:  # the residual stays on the node
        states = [load_client_state(ctx) for ctx in grid.contexts.values()
                  if STATE in ctx.state.config_records]
        assert states and all(RESIDUAL in s for s in states)


def test_malformed_encoded_payload_is_rejected_not_fatal(tmp_path, monkeypatch) -> None:
    fed = _federation("train.codec.name=topk", "train.clients_per_round=4", "train.rounds=1")
    send = uplink_module.Uplink.send

    def corrupt_client_2(self, upload, *args, **kwargs):
        wire, state = send(self, upload, *args, **kwargs)
        if upload.client_id == 2:  # truncated indices of one tensor
            name = next(k for k in wire.tensors if k.endswith(f"{SEP}indices"))
            wire = replace(wire, tensors={**wire.tensors, name: wire.tensors[name][:-1]})
        return wire, state

    monkeypatch.setattr(uplink_module.Uplink, "send", corrupt_client_2)
    _run_flower(fed, tmp_path)
    rec = read_metrics(tmp_path / "metrics.jsonl")[0]
    assert rec["uploads"] == 3 and rec["aggregated"]
    assert [r["client"] for r in rec["rejected"]] == [2]
    assert "undecodable upload" in rec["rejected"][0]["reason"]
    assert rec["bytes_up"] > 0 and all(torch.isfinite(torch.tensor(rec["server_acc"])).view(-1))


def test_flsnn_codes_against_its_per_client_downlink(tmp_path) -> None:
    """FL-SNN sends each client its own downlink: the update is coded against that payload on
    both engines, with the same records."""
    fed = build_federation(load_config(overrides=[
        "data.dataset=nmnist-mini", "data.events.polarity=merge", "data.events.downsample=17",
        "model.name=glm", "model.T=10", "model.kwargs.n_hidden=3", "model.kwargs.memory=5",
        "algorithm.name=flsnn", "algorithm.params.tau=2", "algorithm.params.comm_rate=0.2",
        "data.num_clients=4", "train.clients_per_round=2", "train.rounds=3",
        "data.partition.scheme=iid", "data.test_subset=20", "train.eval_clients=false",
        "train.codec.name=sign"]))
    for c in fed.clients:
        c.x, c.y = c.x[:12], c.y[:12]
    Simulation(fed.cfg, tmp_path / "sim", federation=fed).run()
    _run_flower(fed, tmp_path / "flower")
    sim = read_metrics(tmp_path / "sim" / "metrics.jsonl")
    assert all(not r["rejected"] and r["bytes_up"] < r["bytes_up_raw"] for r in sim)
    assert_same_records(sim, read_metrics(tmp_path / "flower" / "metrics.jsonl"))
