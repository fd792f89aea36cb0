"""Energy of a round: training counts, first-layer MACs, radio energy, energy to a target."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from spikefed.config import ConfigError, load_config
from spikefed.energy import (
    EnergyModel,
    add_client_energy,
    energy_summary,
    energy_to_target,
    round_energy,
)
from spikefed.fl.base import ClientData, TrainContext
from spikefed.fl.local import client_generator, iterate_minibatches, local_train
from spikefed.models import build_model
from spikefed.snn.counters import ActivityCounter


def _mlp(order: str, **kw) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("mlp", spiking=True, in_shape=(4,), num_classes=2, T=3, hidden=(5,),
                       order=order, **kw)


@pytest.mark.parametrize("order", ["step", "layer"])
def test_first_layer_macs_once_for_constant_input_per_step_for_varying(order: str) -> None:
    model = _mlp(order).eval()
    x = torch.rand(2, 4) + 0.1  # dense (non-binary) static input, B=2
    per_step = 2 * 4 * 5  # B * in_features * hidden: one step of the first layer
    with ActivityCounter(model) as c, torch.no_grad():
        model(x)  # direct coding: the same input at T=3 steps
    assert c.per_layer["fc1"]["macs"] == per_step
    frames = torch.stack([x, x + 1, x + 1])  # [T, B, 4]: steps 0 and 1 differ, 1 and 2 equal
    with ActivityCounter(model) as c, torch.no_grad():
        model(frames)
    assert c.per_layer["fc1"]["macs"] == 2 * per_step
    with ActivityCounter(model) as c, torch.no_grad():
        model(torch.stack([x, x + 1, x + 2]))  # changes at every step
        model(x)  # a second forward starts afresh: its first step is charged again
    assert c.per_layer["fc1"]["macs"] == 3 * per_step + per_step
    with ActivityCounter(model) as c, torch.no_grad():
        model(torch.stack([x, torch.zeros_like(x), x]))  # a silent step in between
    assert c.per_layer["fc1"]["macs"] == 2 * per_step


def test_rate_coded_input_is_synops_not_macs() -> None:
    model = _mlp("step", encoder="rate").eval()
    with ActivityCounter(model) as c, torch.no_grad():
        model(torch.rand(2, 4))
    assert "macs" not in c.per_layer["fc1"] and c.per_layer["fc1"].get("synops", 0) > 0


def _client(n: int = 40) -> ClientData:
    g = torch.Generator().manual_seed(1)
    return ClientData(torch.rand(n, 4, generator=g), torch.randint(0, 2, (n,), generator=g))


def test_training_counts_equal_separate_forwards_and_leave_training_unchanged() -> None:
    data = _client()
    ctx = TrainContext(model_fn=lambda: _mlp("step"), batch_size=16, lr=0.0, seed=3, round=2,
                       local_epochs=2, count_activity=True)
    start = _mlp("step").state_dict()
    model = _mlp("step")
    metrics = local_train(model, data, ctx, client_id=7)
    # the same forward passes, counted separately (lr=0: the weights do not move)
    reference = _mlp("step").train()
    gen = client_generator(3, 2, 7)
    torch.randint(0, 2**31 - 1, (1,), generator=gen)  # local_train's seed draw
    with ActivityCounter(reference) as c, torch.no_grad():
        for _ in range(2):
            for x, _y in iterate_minibatches(data, 16, gen):
                reference(x)
    assert metrics["train_macs"] == c.macs == 2 * 40 * 4 * 5  # once per sample and epoch
    assert metrics["train_synops"] == c.synops and metrics["train_spikes"] == c.spikes > 0
    # counting changes nothing in training, bit for bit
    trained = {}
    for count in (True, False):
        m = _mlp("step")
        m.load_state_dict(start)
        ctx = TrainContext(model_fn=lambda: _mlp("step"), batch_size=16, lr=0.1, seed=3,
                           round=2, count_activity=count)
        out = local_train(m, data, ctx, client_id=7)
        trained[count] = (out["train_loss"], m.state_dict())
        assert ("train_macs" in out) == count
    assert trained[True][0] == trained[False][0]
    for k, v in trained[True][1].items():
        assert torch.equal(v, trained[False][1][k]), k


def _upload(cid: int, nbytes: int, **metrics: float) -> SimpleNamespace:
    return SimpleNamespace(client_id=cid, nbytes=nbytes, metrics=metrics)


def test_round_energy_is_bits_times_energy_per_bit_and_counts_times_event_energy() -> None:
    em = EnergyModel(e_up_pj_per_bit=3.0, e_down_pj_per_bit=0.5, e_synop_pj=0.25, e_mac_pj=2.0,
                     e_spike_pj=1.0, backward_factor=2.0)
    ups = [_upload(4, 100, train_spikes=10, train_synops=20, train_macs=30),
           _upload(9, 60, train_spikes=1, train_synops=2, train_macs=3)]
    rec = round_energy(ups, {4: 100, 9: 60}, {4: 200, 9: 200, 7: 200}, em)
    assert rec["energy_comm_up_pj"] == 160 * 8 * 3.0
    assert rec["energy_comm_down_pj"] == 600 * 8 * 0.5
    forward4, forward9 = 10 + 20 * 0.25 + 30 * 2.0, 1 + 2 * 0.25 + 3 * 2.0
    assert rec["energy_train_pj"] == 3 * (forward4 + forward9)
    assert rec["energy_round_pj"] == 3 * (forward4 + forward9) + 160 * 24 + 600 * 4
    assert rec["energy_clients"][4] == {"energy_train_pj": 3 * forward4,
                                        "energy_comm_up_pj": 100 * 24,
                                        "energy_comm_down_pj": 200 * 4,
                                        "energy_pj": 3 * forward4 + 2400 + 800}
    record = {"clients": [{"client": 9, "acc": 0.5}]}
    add_client_energy(record, rec)
    assert record["clients"][0]["energy_comm_up_pj"] == 60 * 24
    assert record["energy_round_pj"] == rec["energy_round_pj"] and "energy_clients" not in record
    uncounted = round_energy([_upload(1, 10, train_loss=0.3)], {1: 10}, {1: 10}, em)
    assert uncounted["energy_train_pj"] is None
    assert uncounted["energy_round_pj"] == 10 * 24 + 10 * 4


def test_energy_to_target_on_hand_made_records() -> None:
    records = [
        {"round": 1, "energy_round_pj": 5.0, "energy_train_pj": 1.0, "energy_comm_up_pj": 2.0,
         "energy_comm_down_pj": 2.0, "server_acc": 0.5},
        {"round": 2, "energy_round_pj": 7.0, "energy_train_pj": 1.0, "energy_comm_up_pj": 3.0,
         "energy_comm_down_pj": 3.0},  # not evaluated this round
        {"round": 3, "energy_round_pj": 4.0, "energy_train_pj": 2.0, "energy_comm_up_pj": 1.0,
         "energy_comm_down_pj": 1.0, "server_acc": 0.8},
    ]
    assert energy_to_target(records, 0.5) == 5.0
    assert energy_to_target(records, 0.6) == 16.0
    assert energy_to_target(records, 0.9) is None
    summary = energy_summary(records, [0.6, 0.9])
    assert summary["energy_total_pj"] == 16.0 and summary["energy_per_round_pj"] == 16.0 / 3
    assert summary["energy_train_total_pj"] == 4.0 and summary["energy_comm_total_pj"] == 12.0
    assert summary["energy_to_acc_pj"] == {"0.6": 16.0, "0.9": None}
    assert energy_summary([{"round": 1}]) == {}


@pytest.mark.parametrize("override, field", [
    ("energy.e_up_pj_per_bit=-1", "energy.e_up_pj_per_bit"),
    ("energy.e_down_pj_per_bit=-0.5", "energy.e_down_pj_per_bit"),
    ("energy.backward_factor=-2", "energy.backward_factor"),
    ("energy.target_acc=[0.5,1.5]", "energy.target_acc"),
    ("energy.count_training=3", "energy.count_training"),
])
def test_config_errors_name_the_field(override: str, field: str) -> None:
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        load_config(overrides=[override])


def test_engine_records_round_energy_per_client_and_in_the_summary(tmp_path) -> None:
    from spikefed.fl import payload_bytes
    from spikefed.report import read_metrics
    from spikefed.sim import Simulation

    cfg = load_config(overrides=[
        "data.num_clients=4", "data.test_subset=100", "train.rounds=2", "train.batch_size=32",
        "model.T=2", "model.kwargs.hidden=[16]", "data.partition.scheme=iid",
        "train.clients_per_round=2", "energy.e_up_pj_per_bit=2.0",
        "energy.e_down_pj_per_bit=1.0", "energy.target_acc=[0.01,1.0]"])
    sim = Simulation(cfg, tmp_path / "run")
    for c in sim.fed.clients:
        c.x, c.y = c.x[:40], c.y[:40]
    summary = sim.run()
    recs = read_metrics(tmp_path / "run" / "metrics.jsonl")
    model_bytes = payload_bytes(sim.fed.initial_model().state_dict())
    for rec in recs:
        assert rec["energy_comm_up_pj"] == 2 * model_bytes * 8 * 2.0
        assert rec["energy_comm_down_pj"] == 2 * model_bytes * 8 * 1.0
        clients = rec["clients"]
        assert len(clients) == 2 and all(c["energy_train_pj"] > 0 for c in clients)
        # every client's 40 samples pass the 784->16 first layer once each (direct coding)
        macs = 40 * 784 * 16
        assert all(c["energy_train_pj"] >= 3 * 4.6 * macs for c in clients)
        assert rec["energy_train_pj"] == pytest.approx(sum(c["energy_train_pj"] for c in clients))
        assert rec["energy_round_pj"] == pytest.approx(
            rec["energy_train_pj"] + rec["energy_comm_up_pj"] + rec["energy_comm_down_pj"])
        assert rec["macs_per_sample"] == 784 * 16  # server inference: first layer once
    assert summary["energy_total_pj"] == pytest.approx(sum(r["energy_round_pj"] for r in recs))
    assert summary["energy_to_acc_pj"] == {"0.01": recs[0]["energy_round_pj"], "1.0": None}


def test_step_and_layer_order_count_mixed_frames_alike() -> None:
    """Dense, spike-valued and repeated frames: layer order counts each time block as a step."""
    counts = {}
    torch.manual_seed(0)
    ref = build_model("convnet", spiking=True, in_shape=(1, 8, 8), num_classes=3, T=4,
                      neuron={"threshold": 0.3})
    x = torch.rand(2, 1, 8, 8) + 0.1
    frames = torch.stack([x, (x > 0.6).float(), x, x])  # dense, spikes, dense again, repeat
    for order in ("step", "layer"):
        model = build_model("convnet", spiking=True, in_shape=(1, 8, 8), num_classes=3, T=4,
                            neuron={"threshold": 0.3}, order=order)
        model.load_state_dict(ref.state_dict())
        with ActivityCounter(model.eval()) as c, torch.no_grad():
            model(frames)
        counts[order] = (c.spikes, c.synops, c.macs, c.per_layer["conv1"])
    assert counts["step"] == counts["layer"]
    conv1 = counts["step"][3]
    assert conv1["macs"] == 2 * 2 * 8 * 8 * 32 * 9 and conv1["synops"] > 0  # frames 0 and 2
