"""Fused (compiled) multi-step LIF/IF against the reference loop; vmap keeps the reference."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch.func import functional_call, grad, vmap
from torch.nn import functional as F

from spikefed.models import build_model
from spikefed.snn import fused
from spikefed.snn.fused import should_fuse, use_fused
from spikefed.snn.neurons import IF, LIF

CONFIGS = [dict(reset=r, detach_reset=d) for r, d in itertools.product(
    ("subtract", "zero", "none"), (True, False))] + [
    dict(learn_beta=True, learn_threshold=True), dict(learn_threshold=True, reset="zero"),
    dict(surrogate="fast_sigmoid", beta=0.5, threshold=0.7), dict(v_init=0.3)]


def _compare(neuron: torch.nn.Module, mode: str, backend: str, device: str = "cpu") -> None:
    """Fused vs reference: spikes, input gradient and parameter gradients."""
    torch.manual_seed(0)
    neuron = neuron.to(device)
    x = (torch.randn(6, 5, 7, device=device) * 1.5).requires_grad_()
    weight = torch.randn(6, 5, 7, device=device)
    with use_fused("never"):
        ref = neuron(x)
        ref_grads = torch.autograd.grad((ref * weight).sum(), [x, *neuron.parameters()])
    with use_fused(mode, backend):
        assert should_fuse(x)
        out = neuron(x)
        grads = torch.autograd.grad((out * weight).sum(), [x, *neuron.parameters()])
    assert ref.sum() > 0 and torch.equal(out, ref)
    for g, r in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(g, r, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()))
def test_traced_fused_graph_matches_reference(cfg) -> None:
    """The compiled function's traced forward and backward graphs (aot_eager: no codegen)."""
    _compare(LIF(**cfg), "always", "aot_eager")


def test_traced_fused_if_matches_reference() -> None:
    _compare(IF(threshold=0.8, reset="zero"), "always", "aot_eager")


@pytest.mark.slow
def test_inductor_kernel_on_cpu_matches_reference() -> None:
    """The generated (C++ on CPU) kernel itself: one compile, so it takes a while."""
    _compare(LIF(learn_beta=True, learn_threshold=True), "always", "inductor")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()))
def test_fused_cuda_kernel_matches_reference(cfg) -> None:
    _compare(LIF(**cfg), "auto", "inductor", device="cuda")


def test_auto_fuses_cuda_tensors_only_and_never_under_transforms() -> None:
    x = torch.randn(3, 2)
    assert not should_fuse(x)  # auto on a CPU tensor
    with use_fused("always"):
        assert should_fuse(x)
        seen = []
        vmap(lambda row: seen.append(should_fuse(row)) or row)(x)
        assert seen == [False]
    with use_fused("never"):
        assert not should_fuse(x)
    with pytest.raises(ValueError, match="fused mode='fast'"):
        with use_fused("fast"):
            pass


def test_vmap_grad_through_a_layer_order_model_uses_the_reference(monkeypatch) -> None:
    """Vectorised clients and per-sample DP gradients still work with fusing forced on."""
    def refuse(*args, **kwargs):
        raise AssertionError("the fused path must not run under vmap")

    monkeypatch.setattr("spikefed.snn.neurons.fused_multistep", refuse)
    model = build_model("mlp", spiking=True, in_shape=(1, 6, 6), num_classes=3, T=3,
                        order="layer", norm="none", hidden=(8,), neuron={"learn_beta": True})
    params = {k: v.detach().unsqueeze(0).repeat(2, *([1] * v.dim()))
              for k, v in model.named_parameters()}
    x, y = torch.rand(2, 4, 1, 6, 6), torch.randint(0, 3, (2, 4))

    def loss(p, xb, yb):
        return F.cross_entropy(functional_call(model, p, (xb,)), yb)

    with use_fused("always"):
        grads = vmap(grad(loss))(params, x, y)
    assert grads["fc1.weight"].shape == params["fc1.weight"].shape
    assert torch.isfinite(grads["act1.decay.beta"]).all()
    assert fused.fused_mode() == "auto"
