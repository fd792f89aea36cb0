"""Real event recordings in the attack benchmark: sources, the stacked ANN arm, a tiny run."""

from __future__ import annotations

import pytest
import torch

from spikefed.experiments.privacy import load_attack_config, run_attack_benchmark
from spikefed.privacy.domains import InputDomain
from spikefed.privacy.event_victims import event_victims, resolve_source


def test_bundled_nmnist_frames_are_binary_digit_recordings() -> None:
    x, y = event_victims("nmnist-bundled", None, 3, 0, 10)
    assert x.shape == (3, 10, 1, 17, 17)
    assert set(x.unique().tolist()) <= {0.0, 1.0} and 0.02 < x.mean() < 0.5
    assert set(y.tolist()) <= {1, 7}
    assert resolve_source("auto", None) == "nmnist-bundled"
    with pytest.raises(ValueError, match="event_steps=7"):
        event_victims("nmnist-bundled", None, 1, 0, 7)
    with pytest.raises(ValueError, match="data.root"):
        event_victims("dvs-gesture", None, 1, 0, 10)
    with pytest.raises(ValueError, match="events_source='bogus'"):
        resolve_source("bogus", None)


def test_real_archives_give_frames(shared_data) -> None:
    x, y = event_victims("dvs-gesture", shared_data, 2, 0, 10)
    assert x.shape == (2, 10, 2, 32, 32) and y.tolist() == [0, 1]
    xn, _ = event_victims("auto", shared_data, 1, 0, 10)
    assert xn.shape == (1, 10, 2, 17, 17)


def test_stacked_domain_feeds_the_same_bins_to_an_ann() -> None:
    z = torch.randn(2, 4, 2, 5, 5)
    snn = InputDomain("events", (4, 2, 5, 5), T=4)
    ann = InputDomain("events", (4, 2, 5, 5), T=4, stacked=True)
    torch.testing.assert_close(ann.model_input(z), snn.model_input(z).transpose(0, 1).flatten(1, 2))
    x = (torch.rand(2, 4, 2, 5, 5) > 0.5).float()
    assert ann.client_input(x).shape == (2, 8, 5, 5)
    with pytest.raises(ValueError, match="stacked"):
        InputDomain("image", (1, 5, 5), stacked=True)


def test_events_benchmark_attacks_ann_and_snn_on_the_same_recording(tmp_path) -> None:
    cfg = load_attack_config("configs/attack_events_nmnist.yaml", [
        "data.samples=1", "dlg.iterations=2", "dlg.inner_iter=3", "ig.iterations=6",
        "domain.events_source=nmnist-bundled", "model.options={channels: [4, 4], fc: 8}",
        "domain.event_steps=3",
    ])
    rows = run_attack_benchmark(cfg, tmp_path)
    assert {(r["model"], r["attack"]) for r in rows} == {
        (m, a) for m in ("ann", "snn") for a in ("idlg", "ig")
    }
    for r in rows:
        assert 0.0 <= r["spike_f1"] <= 1.0 and len(r["per_bin_psnr"].split(";")) == 3
    assert "| events | ig | ann |" in (tmp_path / "summary.md").read_text()


def test_ig_lowers_the_matching_loss_for_the_stacked_ann() -> None:
    from spikefed.models import build_model
    from spikefed.privacy.attacks import Problem, cosine_distance, inverting_gradients
    from spikefed.privacy.threat import ThreatModel, observe

    x, y = event_victims("nmnist-bundled", None, 1, 0, 3)
    dom = InputDomain("events", tuple(x.shape[1:]), T=3, stacked=True)
    torch.manual_seed(0)
    ann = build_model("convnet", spiking=False, in_shape=(3, 17, 17), num_classes=10,
                      norm="none", channels=(4, 4), fc=8)
    threat = ThreatModel()
    problem = Problem(ann, observe(ann, dom.client_input(x), y, threat), threat, dom, 10, 1)
    z0 = dom.init(1, torch.Generator().manual_seed(0))
    start = float(cosine_distance(problem.simulate(z0, y), problem.target).detach())
    res = inverting_gradients(problem, iterations=20, lr=0.1, tv=0.0, labels=y, seed=0)
    assert res.loss < start
