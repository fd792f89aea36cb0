"""Update codecs on the in-process engine (`spikefed.rounds.uplink`): exact bytes per round,
error feedback conserved across rounds and exact on resume, malformed payloads rejected."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from spikefed.comm.codecs import index_dtype
from spikefed.config import ConfigError, load_config
from spikefed.fl.base import Upload
from spikefed.report import read_metrics
from spikefed.rounds.pipeline import RoundIntake
from spikefed.rounds.uplink import RESIDUAL, SEP, Uplink, uplink_for
from spikefed.sim import Simulation
from spikefed.sim.checkpoint import load_checkpoint

TINY = ["data.num_clients=4", "data.test_subset=40", "train.rounds=3", "model.T=2",
        "model.kwargs.hidden=[8]", "data.partition.scheme=iid", "train.batch_size=16",
        "train.eval_clients=false"]
CODECS = {
    "topk+ef": ["train.codec.name=topk", "train.codec.fraction=0.05",
                "train.codec.error_feedback=true"],
    "qsgd": ["train.codec.name=qsgd", "train.codec.bits=4"],
    "sign": ["train.codec.name=sign"],
}


def _sim(out, *extra: str) -> Simulation:
    sim = Simulation(load_config(overrides=[*TINY, *extra]), out)
    for c in sim.fed.clients:
        c.x, c.y = c.x[:32], c.y[:32]
    return sim


def _expected_bytes(name: str, cfg, model) -> int:
    """Hand-computed bytes of one encoded FedAvg upload (docs/communication.md formulas)."""
    total = 0
    for t in model.state_dict().values():
        n = t.numel()
        if not t.is_floating_point():
            total += n * t.element_size()
        elif name == "topk":
            k = max(1, math.ceil(cfg.fraction * n - 1e-9))
            total += k * t.element_size() + k * index_dtype(n).itemsize
        elif name == "qsgd":
            total += math.ceil(cfg.bits * n / 8) + 4
        else:
            total += math.ceil(n / 8) + 4
    return total


@pytest.mark.parametrize("codec", sorted(CODECS))
def test_bytes_up_is_the_exact_encoded_size(tmp_path, codec) -> None:
    sim = _sim(tmp_path / "run", *CODECS[codec])
    sim.run()
    cfg = sim.cfg.train.codec
    model = sim.fed.model_fn()
    one = _expected_bytes(cfg.name, cfg, model)
    raw = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    recs = read_metrics(tmp_path / "run" / "metrics.jsonl")
    for rec in recs:
        assert rec["uploads"] == 4
        assert rec["bytes_up"] == 4 * one
        assert rec["bytes_up_raw"] == 4 * raw
        assert rec["bytes_up"] < rec["bytes_up_raw"] / 4
        assert rec["energy_comm_up_pj"] == pytest.approx(
            8 * rec["bytes_up"] * sim.cfg.energy.e_up_pj_per_bit)


def test_default_records_have_no_raw_bytes(tmp_path) -> None:
    _sim(tmp_path / "run", "train.rounds=1").run()
    assert "bytes_up_raw" not in read_metrics(tmp_path / "run" / "metrics.jsonl")[0]


def test_error_feedback_conserves_the_total_update_inside_the_engine(tmp_path) -> None:
    """Per client, the decoded updates over rounds plus the final residual sum to the raw
    updates (every client takes part in every round here)."""
    sim = _sim(tmp_path / "run", *CODECS["topk+ef"])
    decoded: dict[int, list[Upload]] = {}
    sim.pipeline.add_decoder(lambda u, _: decoded.setdefault(u.client_id, []).append(u) or u)
    state = sim._fresh_state()
    raw_total: dict[int, dict[str, torch.Tensor]] = {}
    sent_total: dict[int, dict[str, torch.Tensor]] = {}
    for _ in range(3):
        sent = {k: v.clone() for k, v in state.broadcast.items()}
        n_before = {cid: len(v) for cid, v in decoded.items()}
        sim.run_round(state)
        for cid, local in sim._local.items():
            got = decoded[cid][n_before.get(cid, 0)]
            for k, v in sent.items():
                if not v.is_floating_point():
                    continue
                raw_total.setdefault(cid, {}).setdefault(k, torch.zeros_like(v))
                sent_total.setdefault(cid, {}).setdefault(k, torch.zeros_like(v))
                raw_total[cid][k] += local.tensors[k] - v
                sent_total[cid][k] += got.tensors[k] - v
    assert len(raw_total) == 4
    for cid, per_key in raw_total.items():
        residual = state.client_states[cid][RESIDUAL]
        lost = 0.0
        for k, total in per_key.items():
            torch.testing.assert_close(sent_total[cid][k] + residual[k], total,
                                       rtol=0, atol=1e-5)
            lost += float(residual[k].norm())
        assert lost > 0  # top-k 5 % really held something back


def test_resume_with_error_feedback_is_exact(tmp_path) -> None:
    extra = [*CODECS["topk+ef"], "train.clients_per_round=2"]
    _sim(tmp_path / "full", *extra).run()
    _sim(tmp_path / "split", *extra).run(stop_after=1)
    middle = load_checkpoint(tmp_path / "split" / "checkpoint")
    assert any(RESIDUAL in s for s in middle["client_states"].values())
    _sim(tmp_path / "split", *extra).run(resume=True)
    full = load_checkpoint(tmp_path / "full" / "checkpoint")
    resumed = load_checkpoint(tmp_path / "split" / "checkpoint")
    for key in ("server_state", "broadcast", "client_states"):
        assert _equal(full[key], resumed[key]), key
    a, b = (read_metrics(tmp_path / d / "metrics.jsonl") for d in ("full", "split"))
    assert [{k: v for k, v in r.items() if k != "wall_s"} for r in a] == \
        [{k: v for k, v in r.items() if k != "wall_s"} for r in b]


def _equal(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and torch.equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    return a == b


def _wire(sim: Simulation, *, round_idx: int = 1):
    """A client's real encoded upload against the first broadcast, and that broadcast."""
    state = sim._fresh_state()
    upload, _, _ = sim.fed.algorithm.client_update(0, state.broadcast, {}, sim.fed.clients[0],
                                                   sim.fed.train_context(round_idx))
    wire, _ = sim.uplink.encode(upload, state.broadcast, None, round_idx)
    return wire, state.broadcast, upload


def _corrupt(wire: Upload, name: str, tensor: torch.Tensor) -> Upload:
    return replace(wire, tensors={**wire.tensors, name: tensor})


@pytest.mark.parametrize("codec", ["topk", "sign"])
def test_malformed_encoded_uploads_are_rejected(tmp_path, codec) -> None:
    sim = _sim(tmp_path / "run", *CODECS["topk+ef" if codec == "topk" else "sign"])
    wire, broadcast, _ = _wire(sim)
    key = "fc1.weight"
    n = broadcast[key].numel()
    bad = []
    if codec == "topk":
        idx = wire.tensors[f"{key}{SEP}indices"]
        bad.append(_corrupt(wire, f"{key}{SEP}indices", idx[:-1]))  # truncated
        width = index_dtype(n).itemsize
        big = idx.clone()
        big[:width] = 255  # an index beyond the tensor (n < 2**(8 * width) - 1 here)
        bad.append(_corrupt(wire, f"{key}{SEP}indices", big))
        bad.append(_corrupt(wire, f"{key}{SEP}values",
                            wire.tensors[f"{key}{SEP}values"].double()))
    else:
        codes = wire.tensors[f"{key}{SEP}codes"]
        bad.append(_corrupt(wire, f"{key}{SEP}codes", codes[:-1]))
        bad.append(_corrupt(wire, f"{key}{SEP}scale", torch.tensor([float("nan")])))
        missing = dict(wire.tensors)
        del missing[f"{key}{SEP}scale"]
        bad.append(replace(wire, tensors=missing))
    bad.append(_corrupt(wire, f"{key}{SEP}extra", torch.zeros(3, dtype=torch.uint8)))
    bad.append(_corrupt(wire, f"nonsense{SEP}values", torch.zeros(3)))
    good = RoundIntake()
    assert sim.pipeline.receive(good, wire, 0, broadcast, len(sim.fed.clients[0]))
    for i, upload in enumerate(bad):
        intake = RoundIntake()
        assert not sim.pipeline.receive(intake, upload, 0, broadcast, len(sim.fed.clients[0]))
        assert "undecodable upload" in intake.rejected[0].reason, i


def test_decode_rebuilds_broadcast_plus_update(tmp_path) -> None:
    """Lossless fraction (top-k 100 %): the server gets the client's upload back."""
    sim = _sim(tmp_path / "run", "train.codec.name=topk", "train.codec.fraction=1.0")
    wire, broadcast, upload = _wire(sim)
    back = sim.uplink.decode(wire, broadcast)
    for k, v in upload.tensors.items():
        torch.testing.assert_close(back.tensors[k], v, rtol=0, atol=1e-6)
    assert back.num_samples == upload.num_samples and back.metrics == upload.metrics


def test_qsgd_stream_depends_on_seed_round_and_client(tmp_path) -> None:
    sim = _sim(tmp_path / "run", *CODECS["qsgd"])
    a, _, _ = _wire(sim, round_idx=1)
    b, _, _ = _wire(sim, round_idx=1)
    c, _, _ = _wire(sim, round_idx=2)
    codes = f"fc1.weight{SEP}codes"
    assert torch.equal(a.tensors[codes], b.tensors[codes])
    assert not torch.equal(a.tensors[codes], c.tensors[codes])


def test_scaffold_codes_its_deltas_as_they_are(tmp_path) -> None:
    """SCAFFOLD uploads model and control deltas: both are coded as values (not relative)."""
    sim = _sim(tmp_path / "run", "algorithm.name=scaffold", "train.rounds=2",
               *CODECS["sign"])
    sim.run()
    recs = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert all(r["uploads"] == 4 and not r["rejected"] for r in recs)
    assert recs[-1]["bytes_up"] * 20 < recs[-1]["bytes_up_raw"]
    keys = uplink_for(sim.cfg, sim.fed.algorithm).algorithm.coded_keys(
        sim._fresh_state().broadcast)
    assert keys and all(not relative for _, relative in keys.values())


def test_keys_outside_the_contract_travel_uncompressed(tmp_path) -> None:
    sim = _sim(tmp_path / "run", *CODECS["sign"])
    uplink: Uplink = sim.uplink
    received = {"w": torch.randn(64)}
    upload = Upload(0, {"w": torch.randn(64), "snn.w": torch.randn(5)}, 10)
    wire, _ = uplink.encode(upload, received, None, 1)
    assert set(wire.tensors) == {"snn.w", f"w{SEP}codes", f"w{SEP}scale"}
    assert torch.equal(wire.tensors["snn.w"], upload.tensors["snn.w"])
    assert wire.nbytes == 5 * 4 + 64 // 8 + 4


def test_async_mode_refuses_a_codec() -> None:
    with pytest.raises(ConfigError, match="train.codec.name='topk'"):
        load_config(overrides=["asynchronous.mode=fedasync", "train.codec.name=topk"])
