"""Defenses: DP-SGD accountant and per-sample clipping, pruning, noise, SNFL conversion."""

from __future__ import annotations

import math

import pytest
import torch

from spikefed.privacy import (
    Defense,
    ThreatModel,
    clip_per_sample,
    defended_observation,
    dp_gradient,
    epsilon,
    observe,
    per_sample_grads,
    prune,
    rdp_sampled_gaussian,
)
from spikefed.privacy.clients import build_twins
from spikefed.privacy.threat import trainable

SMALL = dict(
    T=3,
    encoder="direct",
    norm="none",
    neuron={"surrogate": "sigmoid", "alpha": 4.0},
    options={"hidden": (16,)},
    ann_activation="relu",
    seed=0,
)


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.rand(5, 1, 8, 8, generator=g), torch.tensor([0, 1, 2, 3, 1])


def test_accountant_monotone_in_noise_and_steps() -> None:
    e1 = epsilon(0.01, 1.0, 100, 1e-5)[0]
    assert epsilon(0.01, 2.0, 100, 1e-5)[0] < e1
    assert epsilon(0.01, 1.0, 1000, 1e-5)[0] > e1
    assert epsilon(0.02, 1.0, 100, 1e-5)[0] > e1
    # full batch reduces to the Gaussian mechanism's RDP alpha / (2 sigma^2)
    assert rdp_sampled_gaussian(1.0, 2.0, 8) == pytest.approx(8 / 8)
    assert rdp_sampled_gaussian(0.5, 2.0, 8) < rdp_sampled_gaussian(1.0, 2.0, 8)
    with pytest.raises(ValueError, match="sigma"):
        epsilon(0.1, 0.0, 10, 1e-5)


@pytest.mark.parametrize("spiking", [False, True])
def test_per_sample_grads_sum_to_batch_gradient_and_clip_bounds_norms(spiking: bool) -> None:
    ann, snn = build_twins("mlp", (1, 8, 8), 4, **SMALL)
    model = snn if spiking else ann
    x, y = _batch()
    params = trainable(model)
    ps = per_sample_grads(model, params, x, y)
    full = observe(model, x, y, ThreatModel())
    for k in full:
        assert torch.allclose(ps[k].mean(0), full[k], atol=1e-5)
    clipped = clip_per_sample(ps, 0.01)
    norms = torch.sqrt(sum(g.flatten(1).pow(2).sum(1) for g in clipped.values()))
    assert float(norms.max()) <= 0.01 * (1 + 1e-4)
    assert float(torch.sqrt(sum(g.flatten(1).pow(2).sum(1) for g in ps.values())).max()) > 0.01


def test_dp_gradient_noise_free_and_noisy() -> None:
    ann, _ = build_twins("mlp", (1, 8, 8), 4, **SMALL)
    x, y = _batch()
    gen = torch.Generator().manual_seed(0)
    exact = dp_gradient(ann, trainable(ann), x, y, sigma=0.0, clip=1e6, generator=gen)
    full = observe(ann, x, y, ThreatModel())
    assert all(torch.allclose(exact[k], full[k], atol=1e-5) for k in full)
    noisy = defended_observation(
        ann, x, y, ThreatModel(), Defense("dpsgd", sigma=1.0, clip=0.1), gen
    )
    assert any(not torch.allclose(noisy[k], full[k], atol=1e-3) for k in full)


def test_prune_keeps_top_fraction_and_noise_perturbs() -> None:
    g = {"w": torch.arange(1.0, 101.0).reshape(10, 10)}
    p = prune(g, 0.9)["w"]
    assert int((p != 0).sum()) == 10 and float(p.max()) == 100.0
    with pytest.raises(ValueError, match="ratio"):
        Defense("prune", ratio=1.0)
    ann, _ = build_twins("mlp", (1, 8, 8), 4, **SMALL)
    x, y = _batch()
    gen = torch.Generator().manual_seed(0)
    clean = observe(ann, x, y, ThreatModel())
    noisy = defended_observation(ann, x, y, ThreatModel(), Defense("noise", sigma=0.1), gen)
    diff = torch.cat([(noisy[k] - clean[k]).flatten() for k in clean])
    assert 0.07 < float(diff.std()) < 0.13


def test_snfl_conversion_changes_the_upload() -> None:
    convert = pytest.importorskip("spikefed.convert")
    if not hasattr(convert, "convert_ann_to_snn"):
        pytest.skip("spikefed.convert.convert_ann_to_snn is not available")
    from spikefed.privacy import snfl_convert

    ann, _ = build_twins("mlp", (1, 8, 8), 4, **SMALL)
    x, y = _batch()
    conv = snfl_convert(ann, torch.rand(32, 1, 8, 8), T=4)
    assert conv.thresholds and all(v > 0 for v in conv.thresholds.values())
    up = observe(conv.model.train(), x, y, ThreatModel())
    assert torch.isfinite(torch.cat([v.flatten() for v in up.values()])).all()


# (q, sigma, steps): full batch, typical DP-SGD settings, small and large sampling rates.
ACCOUNTANT_GRID = [(1.0, 1.0, 1), (1.0, 5.0, 10), (0.01, 4.0, 10_000), (0.01, 1.1, 1_000),
                   (0.05, 2.0, 500), (0.2, 0.8, 100), (0.001, 1.0, 100_000), (0.1, 1.5, 2_000)]


@pytest.mark.parametrize(("q", "sigma", "steps"), ACCOUNTANT_GRID)
def test_epsilon_matches_an_independent_accountant(q: float, sigma: float, steps: int) -> None:
    """Our epsilon equals Google's dp-accounting RDP accountant within 1 %."""
    dpa = pytest.importorskip("dp_accounting", reason="dp-accounting is in the dev extra")
    from dp_accounting.rdp import RdpAccountant

    event = dpa.GaussianDpEvent(sigma)
    if q < 1.0:
        event = dpa.PoissonSampledDpEvent(q, event)
    reference = RdpAccountant()
    reference.compose(event, steps)
    assert epsilon(q, sigma, steps, 1e-5)[0] == pytest.approx(reference.get_epsilon(1e-5),
                                                              rel=0.01)


def test_epsilon_is_tighter_than_the_classic_conversion() -> None:
    """The classic RDP->DP bound (Mironov 2017, Prop. 3) is looser at every order we use."""
    q, sigma, steps, delta = 1.0, 1.0, 1, 1e-5
    classic = min(steps * rdp_sampled_gaussian(q, sigma, a) + math.log(1 / delta) / (a - 1)
                  for a in range(2, 257))
    assert epsilon(q, sigma, steps, delta)[0] < classic
