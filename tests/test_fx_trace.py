"""Zoo models are traceable by torch.fx (SpikingJelly's converter and other tools need it)."""

from __future__ import annotations

import importlib.util
import os

import pytest
import torch
import torch.fx

from spikefed.models import build_model, zoo_models
from spikefed.models.fx import spiking_trace
from spikefed.snn.neurons import SpikingNeuron

SHAPES = {"mlp": (1, 28, 28), "lenet5": (1, 28, 28)}


@pytest.mark.parametrize("name", zoo_models())
@pytest.mark.parametrize("spiking,order,encoder", [
    (False, "step", "direct"), (True, "step", "direct"), (True, "layer", "rate"),
    (True, "step", "latency")])
def test_symbolic_trace_matches_eager(name, spiking, order, encoder) -> None:
    shape = SHAPES.get(name, (3, 32, 32))
    model = build_model(name, spiking=spiking, in_shape=shape, num_classes=10, T=2, norm="bn",
                        order=order, encoder=encoder).eval()
    graph = torch.fx.symbolic_trace(model)
    x = torch.rand(3, *shape)
    torch.manual_seed(1)
    expected = model(x)
    torch.manual_seed(1)
    assert torch.allclose(graph(x), expected, atol=1e-5)
    if spiking:  # with neurons kept as modules the surrogate gradient survives tracing
        leafy = spiking_trace(model)
        torch.manual_seed(1)
        out = leafy(x)
        assert torch.allclose(out, expected, atol=1e-5)
        neurons = {name for name, m in model.named_modules() if isinstance(m, SpikingNeuron)}
        called = [n.target for n in leafy.graph.nodes if n.op == "call_module"]
        assert neurons <= set(called) and len([c for c in called if c in neurons]) >= 2 * len(
            neurons)  # unrolled over T=2
        out.sum().backward()
        grads = [p.grad for p in leafy.parameters() if p.grad is not None]
        assert grads and any(float(g.abs().sum()) > 0 for g in grads)


def test_spikingjelly_converter_accepts_a_zoo_ann() -> None:
    """The failure reported in issue 15: SpikingJelly's ANN->SNN converter traces our ANN."""
    if importlib.util.find_spec("spikingjelly") is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("spikingjelly missing in CI; `make dev` installs it with --no-deps")
        pytest.skip("spikingjelly is not installed (pip install --no-deps spikingjelly)")
    try:
        from spikingjelly.activation_based.ann2snn import Converter, RateCodingRecipe
    except ImportError as err:  # an optional dependency of spikingjelly itself is missing
        pytest.skip(f"spikingjelly.activation_based.ann2snn does not import here: {err}")
    model = build_model("mlp", spiking=False, in_shape=(1, 28, 28), num_classes=10,
                        norm="none", hidden=(32,)).eval()
    data = [(torch.rand(8, 1, 28, 28), torch.zeros(8, dtype=torch.long))]
    snn = Converter(RateCodingRecipe(dataloader=data, mode="Max")).convert(model)
    assert isinstance(snn, torch.fx.GraphModule)
    assert sum("IFNode" in type(m).__name__ for m in snn.modules()) == 1  # the one ReLU
