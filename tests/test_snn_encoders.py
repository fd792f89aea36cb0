"""Direct, rate and latency encoders."""

from __future__ import annotations

import pytest
import torch

from spikefed.snn import ENCODERS, encode


@pytest.mark.parametrize("method", sorted(ENCODERS))
def test_shapes_and_module_matches_function(method: str) -> None:
    x = torch.rand(3, 1, 4, 4)
    out = encode(x, 5, method, generator=torch.Generator().manual_seed(1))
    assert out.shape == (5, 3, 1, 4, 4)
    module = ENCODERS[method](5)
    if method == "rate":
        module.generator = torch.Generator().manual_seed(1)
    assert torch.equal(module(x), out)


def test_direct_repeats_value() -> None:
    x = torch.randn(2, 3)
    out = encode(x, 4, "direct")
    assert all(torch.equal(out[t], x) for t in range(4))


def test_rate_mean_matches_intensity_and_straight_through_grad() -> None:
    x = torch.tensor([0.0, 0.1, 0.5, 0.9, 1.0]).requires_grad_(True)
    out = encode(x, 4000, "rate", generator=torch.Generator().manual_seed(0))
    assert set(out.unique().tolist()) <= {0.0, 1.0}
    torch.testing.assert_close(out.mean(0), x.detach(), atol=0.03, rtol=0)
    out.sum().backward()
    torch.testing.assert_close(x.grad, torch.full_like(x, 4000.0))


def test_latency_brighter_fires_earlier_exactly_once() -> None:
    x = torch.tensor([1.0, 0.75, 0.5, 0.2, 0.0])
    out = encode(x, 9, "latency")
    counts = out.sum(0)
    assert counts.tolist() == [1.0, 1.0, 1.0, 1.0, 0.0]  # x = 0 is below the threshold
    first = out[:, :4].argmax(0)
    assert first.tolist() == [0, 2, 4, 6]
    assert torch.all(first[:-1] < first[1:])


def test_bad_method_and_T() -> None:
    with pytest.raises(ValueError, match="method='poisson'"):
        encode(torch.rand(2), 3, "poisson")
    with pytest.raises(ValueError, match="T=0"):
        encode(torch.rand(2), 0, "direct")
