"""Static direct-coded input: the first layer runs once per forward, with the same results."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from spikefed.models import build_model

CASES = [("mlp", (1, 8, 8), {"hidden": (16,)}), ("mlp", (1, 8, 8), {"hidden": ()}),
         ("convnet", (1, 12, 12), {"norm": "bn"}), ("lenet5", (1, 28, 28), {}),
         ("resnet20", (3, 8, 8), {"norm": "bn", "widths": (4, 8, 8)})]


def _pair(name: str, shape: tuple[int, ...], order: str, kw: dict):
    torch.manual_seed(0)
    model = build_model(name, spiking=True, in_shape=shape, num_classes=4, T=3, order=order,
                        neuron={"threshold": 0.3}, stem_once=True, **kw)
    twin = build_model(name, spiking=True, in_shape=shape, num_classes=4, T=3, order=order,
                       neuron={"threshold": 0.3}, **kw)
    twin.load_state_dict(model.state_dict())
    return model, twin


@pytest.mark.parametrize("order", ["step", "layer"])
@pytest.mark.parametrize(("name", "shape", "kw"), CASES)
def test_static_input_matches_the_repeated_sequence(name, shape, kw, order) -> None:
    model, twin = _pair(name, shape, order, kw)
    x, y = torch.rand(5, *shape), torch.tensor([0, 1, 2, 3, 0])
    static = model(x)  # computes the first layer once
    seq = twin(x.unsqueeze(0).expand(3, *x.shape))  # the old path: once per time step
    torch.testing.assert_close(static, seq, rtol=1e-5, atol=1e-6)
    F.cross_entropy(static, y).backward()
    F.cross_entropy(seq, y).backward()
    for (k, p), q in zip(model.named_parameters(), twin.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-6, msg=k)
    for (k, b), c in zip(model.named_buffers(), twin.buffers(), strict=True):
        torch.testing.assert_close(b.float(), c.float(), rtol=1e-5, atol=1e-6, msg=k)


@pytest.mark.parametrize("order", ["step", "layer"])
def test_first_layer_runs_once_for_static_input_only(order: str) -> None:
    model, _ = _pair("mlp", (1, 8, 8), order, {"hidden": (16,)})
    calls = []
    model.fc1.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    x = torch.rand(5, 1, 8, 8)
    model(x)
    assert calls == [5]  # one call on the B=5 static batch
    calls.clear()
    model(x.unsqueeze(0).expand(3, *x.shape))
    assert sum(calls) == 15  # a [T, B] sequence: every step
    calls.clear()
    rate = build_model("mlp", spiking=True, in_shape=(1, 8, 8), num_classes=4, T=3, order=order,
                       encoder="rate", hidden=(16,), stem_once=True)
    rate.fc1.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    rate(x)
    assert sum(calls) == 15  # rate-coded input changes every step
    calls.clear()
    default = build_model("mlp", spiking=True, in_shape=(1, 8, 8), num_classes=4, T=3,
                          order=order, hidden=(16,))
    default.fc1.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    default(x)
    assert sum(calls) == 15  # stem_once is off by default


def test_config_keys_reach_the_model() -> None:
    from spikefed.config import load_config
    from spikefed.experiment import model_factory

    cfg = load_config(overrides=["model.stem_once=true", "model.order=layer"])
    model = model_factory(cfg, (1, 8, 8), 4)()
    assert model.stem_once and model.order == "layer"
    default = model_factory(load_config(), (1, 8, 8), 4)()
    assert not default.stem_once and default.order == "step"  # auto on CPU
    with pytest.raises(ValueError, match="model.kwargs.order"):
        load_config(overrides=["model.kwargs.order=layer"])


def test_static_input_under_vmap_grad() -> None:
    from torch.func import functional_call, grad, vmap

    model, twin = _pair("mlp", (1, 8, 8), "step", {"hidden": (16,), "norm": "none"})
    params = {k: v.detach().unsqueeze(0).repeat(2, *([1] * v.dim()))
              for k, v in model.named_parameters()}
    x, y = torch.rand(2, 5, 1, 8, 8), torch.randint(0, 4, (2, 5))

    def loss(p, xb, yb, m):
        return F.cross_entropy(functional_call(m, p, (xb,)), yb)

    g_static = vmap(grad(lambda p, xb, yb: loss(p, xb, yb, model)))(params, x, y)
    g_seq = vmap(grad(lambda p, xb, yb: loss(p, xb.unsqueeze(0).expand(3, *xb.shape), yb,
                                              twin)))(params, x, y)
    for k in params:
        torch.testing.assert_close(g_static[k], g_seq[k], rtol=1e-4, atol=1e-6)


def test_auto_order_is_layer_on_cuda_and_step_on_cpu() -> None:
    from spikefed.experiment import resolve_order

    assert resolve_order("auto", torch.device("cuda")) == "layer"
    assert resolve_order("auto", torch.device("cpu")) == "step"
    assert resolve_order("layer", torch.device("cpu")) == "layer"
