"""Surrogate spike functions: Heaviside forward, smooth-derivative backward, torch.func support."""

from __future__ import annotations

import pytest
import torch

from spikefed.snn import SURROGATES, get_surrogate, spike

NAMES = sorted(SURROGATES)


@pytest.mark.parametrize("name", NAMES)
def test_forward_is_heaviside(name: str) -> None:
    x = torch.tensor([-2.0, -1e-6, 0.0, 1e-6, 3.0])
    assert torch.equal(spike(x, name), torch.tensor([0.0, 0.0, 1.0, 1.0, 1.0]))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("alpha", [0.5, 2.0, 5.0])
def test_backward_equals_derivative_of_smooth_function(name: str, alpha: float) -> None:
    cls = SURROGATES[name]
    x = torch.linspace(-3, 3, 601, dtype=torch.float64)
    x = x[(x.abs() * alpha - 1).abs() > 1e-6]  # skip the triangle's kinks
    xs = x.clone().requires_grad_(True)
    spike(xs, name, alpha).sum().backward()
    xr = x.clone().requires_grad_(True)
    cls.smooth(xr, alpha).sum().backward()
    torch.testing.assert_close(xs.grad, xr.grad, atol=1e-10, rtol=1e-8)
    # and the smooth function really is a step stand-in: finite differences agree too
    h = 1e-6
    fd = (cls.smooth(x + h, alpha) - cls.smooth(x - h, alpha)) / (2 * h)
    torch.testing.assert_close(xs.grad, fd, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_surrogate_integrates_to_one(name: str) -> None:
    x = torch.linspace(-200, 200, 400_001, dtype=torch.float64)
    area = torch.trapezoid(SURROGATES[name].derivative(x, 2.0), x)
    assert abs(area.item() - 1.0) < 5e-3


@pytest.mark.parametrize("name", NAMES)
def test_vmap_grad_matches_loop(name: str) -> None:
    w = torch.randn(4, 3)
    x = torch.randn(5, 3)

    def loss(w_row: torch.Tensor) -> torch.Tensor:
        return spike(x @ w_row, name).sum()

    batched = torch.func.vmap(torch.func.grad(loss))(w)
    looped = torch.stack([torch.func.grad(loss)(w_row) for w_row in w])
    torch.testing.assert_close(batched, looped)
    assert batched.abs().sum() > 0


def test_unknown_surrogate_lists_choices() -> None:
    with pytest.raises(ValueError, match="surrogate='nope'.*atan"):
        get_surrogate("nope")
