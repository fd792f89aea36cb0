"""The GLM (SRM) spiking network: kernels, topology checks and hand-derived gradients."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from spikefed.snn.glm import (
    GLMSNN,
    LearningRule,
    Topology,
    apply_update,
    raised_cosine_basis,
)


def _reference_loglik(snn: GLMSNN, params: dict, x: torch.Tensor, spikes: torch.Tensor
                      ) -> torch.Tensor:
    """Direct (loop-over-lags) log-likelihood of given spikes; differentiable in params."""
    t = snn.topology
    steps = x.shape[1]
    allspk = torch.cat([x.to(spikes.dtype), spikes], dim=2)            # [B, T, N]
    total = torch.zeros((), dtype=spikes.dtype)
    for k in range(steps):
        u = params["bias"].clone()
        for lag in range(1, snn.memory + 1):
            if k - lag < 0:
                break
            past = allspk[:, k - lag]                                    # [B, N]
            a = snn.basis_ff[:, lag - 1]                                 # [K_a]
            u = u + torch.einsum("bpnk,bn,k->bp", params["ff"] * snn.mask, past, a)
            own = spikes[:, k - lag]                                     # [B, P]
            u = u + (params["fb"] * snn.basis_fb[:, lag - 1]).sum(-1) * own
        s = spikes[:, k]
        total = total + (s * F.logsigmoid(u) + (1 - s) * F.logsigmoid(-u)).sum()
    del t
    return total


def _small_net(recurrent: bool = True) -> GLMSNN:
    topo = Topology.layered(5, 3, 2, recurrent_hidden=recurrent)
    mask = topo.mask.clone()
    mask[0, -1] = True                                                   # output -> hidden loop
    return GLMSNN(Topology(5, 3, 2, mask), n_basis_ff=3, n_basis_fb=2, memory=4,
                  dtype=torch.float64)


def test_eligibility_traces_equal_autograd_loglik_gradient() -> None:
    snn = _small_net()
    g = torch.Generator().manual_seed(1)
    params = snn.init_params(2, g, scale=2.0)
    params["fb"] = torch.randn(params["fb"].shape, generator=g, dtype=torch.float64)
    x = (torch.rand(2, 12, 5, generator=g) < 0.4).double()
    targets = (torch.rand(2, 12, 2, generator=g) < 0.5).double()
    state = snn.init_state(2)
    win = snn.window(params, state, snn.input_traces(x), targets, g)
    assert torch.equal(win.spikes[..., 3:], targets)                     # outputs clamped
    leaves = {k: v.clone().requires_grad_(True) for k, v in params.items()}
    _reference_loglik(snn, leaves, x, win.spikes).backward()
    for name in ("ff", "fb", "bias"):
        grad = leaves[name].grad
        if name == "ff":
            grad = grad * snn.mask
        torch.testing.assert_close(win.elig[name], grad, rtol=1e-9, atol=1e-9)
        assert grad.abs().sum() > 0


def test_windows_chain_like_one_long_window() -> None:
    snn = _small_net()
    g = torch.Generator().manual_seed(2)
    params = snn.init_params(1, g, scale=2.0)
    x = (torch.rand(1, 10, 5, generator=g) < 0.5).double()
    tr = snn.input_traces(x)
    whole = snn.window(params, snn.init_state(1), tr, None, g)
    state = snn.init_state(1)
    a = snn.window(params, state, tr[:, :4], None, g, forced=whole.spikes[:, :4])
    b = snn.window(params, state, tr[:, 4:], None, g, forced=whole.spikes[:, 4:])
    for name in ("ff", "fb", "bias"):
        torch.testing.assert_close(a.elig[name] + b.elig[name], whole.elig[name])


def test_update_uses_learning_signal_for_hidden_only() -> None:
    snn = _small_net()
    g = torch.Generator().manual_seed(3)
    params = snn.init_params(2, g)
    x = (torch.rand(2, 6, 5, generator=g) < 0.5).double()
    win = snn.window(params, snn.init_state(2), snn.input_traces(x),
                     torch.ones(2, 6, 2, dtype=torch.float64), g)
    rule = LearningRule(lr=0.1, kl_weight=0.5)
    baseline = torch.tensor([0.0, 1.0], dtype=torch.float64)
    before = {k: v.clone() for k, v in params.items()}
    delta, new_b = apply_update(snn, params, win, rule, baseline)
    signal = win.out_loglik - 0.5 * win.kl
    for name in ("ff", "fb", "bias"):
        torch.testing.assert_close(params[name] - before[name], delta[name])
        e = win.elig[name]
        torch.testing.assert_close(delta[name][:, 3:], 0.1 * e[:, 3:])
        adv = (signal - baseline).reshape(2, *([1] * (e.dim() - 1)))
        torch.testing.assert_close(delta[name][:, :3], 0.1 * adv * e[:, :3])
    torch.testing.assert_close(new_b, 0.9 * baseline + 0.1 * signal)


def test_raised_cosine_basis_shape_and_peaks() -> None:
    basis = raised_cosine_basis(4, 20)
    assert basis.shape == (4, 20)
    assert torch.all(basis >= 0) and torch.all(basis <= 1) and torch.all(basis.max(1).values > 0.9)
    peaks = basis.argmax(1)
    assert torch.all(peaks[1:] > peaks[:-1])          # later kernels reach further
    with pytest.raises(ValueError, match="n_basis"):
        raised_cosine_basis(0, 5)


def test_topology_rejects_bad_masks() -> None:
    topo = Topology.layered(4, 2, 2)
    assert not topo.outputs_feed_back
    assert not topo.mask[:, 4:].diagonal().any()
    bad = topo.mask.clone()
    bad[0, 4] = True
    with pytest.raises(ValueError, match="self-connections"):
        Topology(4, 2, 2, bad)
    with pytest.raises(ValueError, match="shape"):
        Topology(4, 2, 2, topo.mask[:, :-1])


def test_evaluate_learns_nothing_and_reports_per_model() -> None:
    snn = GLMSNN(Topology.layered(6, 2, 2), memory=3)
    g = torch.Generator().manual_seed(4)
    params = snn.init_params(3, g)
    params["bias"][0, 2:] = torch.tensor([5.0, -5.0])                   # model 0 always says 0
    x = (torch.rand(8, 7, 6, generator=g) < 0.3).float()
    y = torch.tensor([0, 1] * 4)
    ev = snn.evaluate(params, x, y, g, chunk=3)
    assert ev.loss.shape == (3,) and ev.accuracy.shape == (3,)
    assert ev.accuracy[0] == 0.5 and torch.all(ev.predictions[0] == 0)
