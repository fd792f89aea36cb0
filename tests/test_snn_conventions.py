"""`reset_convention: snntorch` reproduces snnTorch's Leaky spike for spike."""

from __future__ import annotations

import importlib.util
import os

import pytest
import torch

from spikefed.config import load_config
from spikefed.snn.neurons import make_neuron


@pytest.fixture(scope="module")
def snntorch():
    if importlib.util.find_spec("snntorch") is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("snntorch missing in CI; `make dev` installs it with --no-deps")
        pytest.skip("snntorch is not installed (pip install --no-deps snntorch)")
    import snntorch

    return snntorch


def _leaky(snntorch, x, **kw):
    from snntorch import surrogate

    lk = snntorch.Leaky(spike_grad=surrogate.atan(alpha=2.0), **kw)
    mem, spikes, mems = lk.init_leaky(), [], []
    for t in range(x.shape[0]):
        s, mem = lk(x[t], mem)
        spikes.append(s)
        mems.append(mem)
    return torch.stack(spikes), torch.stack(mems)


def _ours(x, **kw):
    n = make_neuron({"surrogate": "atan", "alpha": 2.0, **kw})
    v, spikes, mems = n.init_state(x[0]), [], []
    for t in range(x.shape[0]):
        s, v = n(x[t], v)
        spikes.append(s)
        mems.append(v)
    return torch.stack(spikes), torch.stack(mems)


@pytest.mark.parametrize("beta,reset", [(0.9, "subtract"), (1.0, "subtract"), (0.8, "zero")])
def test_snntorch_convention_matches_leaky(snntorch, beta, reset) -> None:
    x = (torch.rand(40, 4, 16) * 0.8).requires_grad_(True)
    ref_s, ref_v = _leaky(snntorch, x, beta=beta, threshold=1.0, reset_mechanism=reset)
    s, v = _ours(x, beta=beta, threshold=1.0, reset=reset, reset_convention="snntorch")
    assert ref_s.sum() > 50  # the comparison sees many spikes
    assert torch.equal(s, ref_s) and torch.allclose(v, ref_v, atol=1e-6)
    (g_ref,) = torch.autograd.grad(ref_s.sum(), x)
    (g,) = torch.autograd.grad(s.sum(), x)
    assert torch.allclose(g, g_ref, atol=1e-5)  # atan surrogates share the same scale
    default_s, _ = _ours(x, beta=beta, threshold=1.0, reset=reset)
    if reset == "subtract" and beta < 1:  # (at beta=1 the reset timing cannot matter)
        assert not torch.equal(default_s, ref_s)  # our own convention does differ


def test_conventions_differ_as_documented(snntorch) -> None:
    x = torch.full((1000, 1), 0.3)
    ours = make_neuron({"beta": 0.9})(x).mean().item()
    theirs = make_neuron({"beta": 0.9, "reset_convention": "snntorch"})(x).mean().item()
    assert ours == pytest.approx(0.250) and theirs == pytest.approx(0.230)
    at = torch.ones(1, 1)  # a membrane exactly at threshold: ours fires, snnTorch does not
    assert make_neuron({})(at).item() == 1.0
    assert make_neuron({"reset_convention": "snntorch"})(at).item() == 0.0
    assert _leaky(snntorch, at, beta=0.9, threshold=1.0)[0].item() == 0.0


def test_reset_convention_from_config() -> None:
    cfg = load_config(None, ["model.neuron.reset_convention=snntorch"])
    neuron = make_neuron(cfg.model.neuron.model_dump())
    assert type(neuron).__name__ == "SnnTorchLIF"
    neuron = make_neuron({"type": "if", "reset_convention": "snntorch"})
    assert type(neuron).__name__ == "SnnTorchIF" and neuron.beta == 1.0
    with pytest.raises(Exception, match="reset_convention"):
        load_config(None, ["model.neuron.reset_convention=norse"])
