"""Leakage metrics: SSIM/PSNR sanity, Hungarian matching, leak iteration, temporal scores."""

from __future__ import annotations

import math

import pytest
import torch

from spikefed.privacy import metrics as M


def test_identical_images_give_ssim_one_and_infinite_psnr() -> None:
    x = torch.rand(3, 1, 28, 28)
    assert torch.allclose(M.ssim(x, x), torch.ones(3), atol=1e-5)
    assert torch.isinf(M.psnr(x, x)).all()
    assert float(M.mse(x, x).max()) == 0.0


def test_psnr_of_known_noise_matches_formula() -> None:
    x = torch.full((1, 1, 16, 16), 0.5)
    d = 0.05
    sign = (torch.arange(16)[:, None] + torch.arange(16)[None]) % 2 * 2 - 1
    y = x + d * sign  # every pixel off by exactly d: MSE = d^2
    assert float(M.psnr(y, x)) == pytest.approx(10 * math.log10(1 / d**2), abs=1e-3)
    assert float(M.ssim(y, x)) < 0.99


def test_ssim_orders_degradation_and_rejects_bad_shapes() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 1, 28, 28, generator=g)
    small = (x + 0.05 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    big = (x + 0.3 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    assert float(M.ssim(small, x)) > float(M.ssim(big, x))
    with pytest.raises(ValueError, match="shapes differ"):
        M.ssim(x, x[..., :20])


def test_hungarian_matching_recovers_a_permutation() -> None:
    x = torch.rand(6, 1, 8, 8)
    perm = torch.tensor([3, 0, 5, 1, 4, 2])
    shuffled = x[perm] + 0.01 * torch.randn(6, 1, 8, 8)
    found = M.match_batch(shuffled, x)
    assert torch.equal(shuffled[found].round(decimals=1), x.round(decimals=1)) or torch.allclose(
        shuffled[found], x, atol=0.05
    )
    assert torch.equal(perm[found], torch.arange(6))


def test_iterations_to_leak_first_crossing() -> None:
    assert M.iterations_to_leak([1, 2, 3], [5.0, 21.0, 30.0], [0.1, 0.2, 0.9]) == 2
    assert M.iterations_to_leak([1, 2, 3], [5.0, 6.0, 7.0], [0.1, 0.6, 0.9]) == 2
    assert M.iterations_to_leak([1, 2], [5.0, 6.0], [0.1, 0.2]) is None


def test_temporal_scores() -> None:
    x = (torch.rand(8, 2, 10, 10) > 0.7).float()
    assert M.spike_f1(x, x) == 1.0
    assert M.spike_f1(1 - x, x) == 0.0
    assert M.temporal_consistency(x, x) == pytest.approx(1.0)
    flipped = x.flip(0)
    assert M.temporal_consistency(flipped, x) < 1.0
    p, s = M.per_bin_scores(x, x)
    assert p.shape == (8,) and torch.isinf(p).all() and torch.allclose(s, torch.ones(8), atol=1e-5)
