"""Continual FL under drift: schedule, task data, EWC/proximal consolidation, forgetting."""

from __future__ import annotations

import json

import pytest
import torch
from small_runs import run_small  # tests/small_runs.py

from spikefed.config import ConfigError, load_config
from spikefed.drift import Consolidation, DriftSchedule, TaskSlot, forgetting
from spikefed.experiment import build_federation
from spikefed.flower.support import require_flower_support
from spikefed.sim import Simulation
from spikefed.sim.checkpoint import load_checkpoint

SMALL = ["data.num_clients=3", "data.test_subset=300", "model.T=4",
         "model.kwargs.hidden=[32]", "data.partition.scheme=iid", "drift.classes_per_task=5",
         "drift.rounds_per_task=1", "train.rounds=3"]


def _run(tmp_path, name: str, *extra: str) -> tuple[Simulation, list[dict]]:
    return run_small(tmp_path / name, [*SMALL, *extra], 150)


def test_ewc_with_zero_strength_equals_plain_training_bit_for_bit(tmp_path) -> None:
    _, plain = _run(tmp_path, "plain")
    sim, zero = _run(tmp_path, "zero", "drift.consolidation=ewc", "drift.strength=0")
    _, strong = _run(tmp_path, "strong", "drift.consolidation=ewc", "drift.strength=50")
    assert isinstance(sim.fed.algorithm, Consolidation)
    for a, b in zip(plain, zero, strict=True):
        for key in ("server_acc", "train_loss_mean", "task_acc", "forgetting"):
            assert a[key] == b[key], key
    # the zero-strength run did switch tasks and estimate a Fisher, kept only client-side
    ckpt = load_checkpoint(tmp_path / "zero" / "checkpoint")
    assert any("drift_fisher" in s and s["drift_task"] == 1
               for s in ckpt["client_states"].values())
    assert not any(k.startswith("drift_") for k in ckpt["server_state"])
    # ... and a positive strength changes training after the switch, not before
    assert strong[0]["train_loss_mean"] == plain[0]["train_loss_mean"]
    assert strong[1]["train_loss_mean"] != plain[1]["train_loss_mean"]


def test_proximal_consolidation_pulls_towards_the_anchor(tmp_path) -> None:
    _, plain = _run(tmp_path, "plain", "train.rounds=2")
    _, prox = _run(tmp_path, "prox", "train.rounds=2", "drift.consolidation=proximal",
                   "drift.strength=5")
    assert prox[0]["train_loss_mean"] == plain[0]["train_loss_mean"]
    assert prox[1]["train_loss_mean"] > plain[1]["train_loss_mean"]  # the penalty is in it


def test_metrics_summary_and_heatmap_are_written(tmp_path) -> None:
    _, recs = _run(tmp_path, "run")
    assert [r["tasks_seen"] for r in recs] == [1, 2, 2]
    assert [len(r["task_acc"]) for r in recs] == [1, 2, 2]
    assert recs[0]["forgetting"] is None and recs[1]["forgetting"] is not None
    assert recs[-1]["avg_task_acc"] == pytest.approx(sum(recs[-1]["task_acc"]) / 2)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["forgetting"] == recs[-1]["forgetting"]
    assert (tmp_path / "run" / "drift.png").stat().st_size > 1000


def test_schedule_is_reproducible_by_seed_and_respects_client_offsets() -> None:
    a = DriftSchedule(4, 3, num_clients=20, seed=7, client_offset=2)
    b = DriftSchedule(4, 3, num_clients=20, seed=7, client_offset=2)
    c = DriftSchedule(4, 3, num_clients=20, seed=8, client_offset=2)
    assert a.offsets == b.offsets and a.offsets != c.offsets
    assert set(a.offsets) == {0, 1, 2}
    ref = DriftSchedule(4, 3, num_clients=1, seed=0)
    for cid, off in enumerate(a.offsets):
        for r in range(1, 16):
            assert a.slot(cid, r) == ref.slot(0, max(r - off, 1))
    assert [ref.slot(0, r).task for r in range(1, 15)] == [0] * 3 + [1] * 3 + [2] * 3 + [3] * 5
    assert a.seen(1) == 1 and a.seen(4) == 2 and a.seen(6) == 2  # the earliest client counts


def test_gradual_drift_ramps_the_next_task_in() -> None:
    s = DriftSchedule(3, 4, num_clients=1, seed=0, gradual_rounds=2)
    assert [s.slot(0, r) for r in range(1, 10)] == [
        TaskSlot(0), TaskSlot(0), TaskSlot(1, 1 / 3), TaskSlot(1, 2 / 3), TaskSlot(1),
        TaskSlot(1), TaskSlot(2, 1 / 3), TaskSlot(2, 2 / 3), TaskSlot(2)]


def test_class_incremental_clients_hold_only_their_tasks_labels() -> None:
    fed = build_federation(load_config(overrides=[
        "data.partition.scheme=iid", "drift.rounds_per_task=2", "drift.client_offset=1",
        "drift.gradual_rounds=1"]))
    drift = fed.drift
    assert drift.class_sets == [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]]
    for r in range(1, 9):
        clients = fed.clients_for_round(r)
        for cid in range(len(clients)):
            slot = drift.schedule.slot(cid, r)
            labels = set(clients[cid].y.tolist())
            allowed = set(drift.class_sets[slot.task])
            if slot.share < 1:
                allowed |= set(drift.class_sets[slot.task - 1])
                assert labels & set(drift.class_sets[slot.task])  # the new task is mixed in
            assert labels <= allowed and clients[cid].task == slot.task
    test_x, test_y = drift.test_set(3)
    assert set(test_y.tolist()) == {6, 7} and len(test_x) == len(test_y)


def test_domain_drift_transforms_each_task() -> None:
    fed = build_federation(load_config(overrides=[
        "data.partition.scheme=iid", "drift.kind=domain", "drift.domain=permutation",
        "drift.tasks=3", "drift.rounds_per_task=1"]))
    base = fed.clients[0]
    first, third = fed.clients_for_round(1)[0], fed.clients_for_round(3)[0]
    assert torch.equal(first.x, base.x) and not torch.equal(third.x, base.x)
    assert torch.equal(third.x.flatten(1).sort(1).values, base.x.flatten(1).sort(1).values)
    assert torch.equal(third.y, base.y) and third.task == 2
    assert torch.equal(fed.drift.task_data(0, 1).x, fed.drift.task_data(0, 1).x)


def test_forgetting_on_a_hand_made_accuracy_matrix() -> None:
    history = [[0.9], [0.95, 0.2], [0.6, 0.8]]
    assert forgetting([], [0.5]) is None
    # task 0 best 0.95 now 0.5, task 1 best 0.8 now 0.7; task 2 is current (not finished)
    assert forgetting(history, [0.5, 0.7, 0.9]) == pytest.approx((0.45 + 0.1) / 2)
    assert forgetting(history[:1], [0.99, 0.3]) == 0.0  # a new best is no drop


@pytest.mark.parametrize(("overrides", "needle"), [
    (["drift.kind=domain"], "drift.tasks"),
    (["drift.strength=1"], "drift.strength=1"),
    (["drift.gradual_rounds=5"], "drift.gradual_rounds=5"),
    (["drift.consolidation=ewc", "algorithm.name=solo"], "algorithm.name='solo'"),
    (["drift.consolidation=ewc", "train.vectorize=on"], "train.vectorize=off"),
    (["drift.consolidation=bogus"], "drift.consolidation"),
    (["drift.kind=domain", "drift.tasks=2", "data.dataset=nmnist-mini"], "drift.kind='domain'"),
    (["drift.joint=true", "drift.consolidation=proximal"], "drift.joint=true"),
])
def test_config_errors_name_the_field(overrides, needle) -> None:
    with pytest.raises(ConfigError, match=None) as err:
        load_config(overrides=overrides)
    assert needle in str(err.value)


def test_too_many_class_tasks_and_flower_are_refused() -> None:
    with pytest.raises(ValueError, match="drift.tasks=6"):
        build_federation(load_config(overrides=["drift.tasks=6"]))
    with pytest.raises(ConfigError, match="in-process engine"):
        require_flower_support(load_config(overrides=["drift.kind=class_incremental"]))


def test_joint_training_sees_every_task_at_once() -> None:
    fed = build_federation(load_config(overrides=[
        "data.partition.scheme=iid", "drift.joint=true", "drift.tasks=3"]))
    data = fed.clients_for_round(1)[0]
    assert set(data.y.tolist()) == set(range(6)) and data.task == 0  # tasks 0-2: digits 0-5
    rotated = build_federation(load_config(overrides=[
        "data.partition.scheme=iid", "drift.joint=true", "drift.kind=domain", "drift.tasks=3"]))
    base, mixed = rotated.clients[0], rotated.clients_for_round(1)[0]
    same = (mixed.x == base.x).flatten(1).all(1)
    assert 0 < int(same.sum()) < len(base)  # some images raw (task 0), the others rotated
