"""Model zoo: every model builds as ANN and SNN, matching names, finite grads, orders agree."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from spikefed.models import (
    MODELS,
    activation_modules,
    available_models,
    build_model,
    zoo_models,
)
from spikefed.snn import IF, LIF

SHAPES = {"mnist": (1, 28, 28), "cifar": (3, 32, 32)}


def test_registry_lists_required_models() -> None:
    assert {"mlp", "convnet", "lenet5", "vgg-small", "resnet20"} <= set(available_models())
    assert available_models() == sorted(MODELS)


@pytest.mark.parametrize("name", zoo_models())
@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_builds_as_ann_and_snn_with_matching_names(name: str, shape: str) -> None:
    in_shape = SHAPES[shape]
    ann = build_model(name, spiking=False, in_shape=in_shape, num_classes=10)
    snn = build_model(name, spiking=True, in_shape=in_shape, num_classes=10, T=2)
    assert set(ann.state_dict()) == set(snn.state_dict())
    acts_a, acts_s = activation_modules(ann), activation_modules(snn)
    assert acts_a.keys() == acts_s.keys() and len(acts_a) >= 1
    assert all(isinstance(m, nn.ReLU) for m in acts_a.values())
    assert all(isinstance(m, LIF) for m in acts_s.values())
    assert (snn.spiking, snn.T, snn.in_shape, snn.num_classes) == (True, 2, in_shape, 10)
    assert not ann.spiking
    x = torch.rand(2, *in_shape)
    y = torch.tensor([1, 7])
    for model in (ann, snn):
        out = model(x)
        assert out.shape == (2, 10)
        F.cross_entropy(out, y).backward()
        grads = [p.grad for p in model.parameters()]
        assert all(g is not None and torch.isfinite(g).all() for g in grads)
        assert any(g.abs().sum() > 0 for g in grads)


def test_relu_to_if_swap_by_name_equals_built_snn() -> None:
    ann = build_model("lenet5", spiking=False, in_shape=(1, 28, 28), num_classes=10)
    snn = build_model("lenet5", spiking=True, in_shape=(1, 28, 28), num_classes=10, T=4,
                      neuron={"type": "if", "v_init": 0.5})
    snn.load_state_dict(ann.state_dict())
    assert all(isinstance(m, IF) and m.v_init == 0.5 for m in activation_modules(snn).values())
    # swapping modules by name in the ANN itself gives the same network
    for name in activation_modules(ann):
        parent, _, leaf = name.rpartition(".")
        setattr(ann.get_submodule(parent), leaf, IF(v_init=0.5))
    ann.spiking, ann.T = True, 4
    ann.eval()
    snn.eval()
    x = torch.rand(3, 1, 28, 28)
    torch.testing.assert_close(ann(x), snn(x))


@pytest.mark.parametrize("name", ["convnet", "resnet20", "mlp"])
@pytest.mark.parametrize("train", [True, False])
def test_step_and_layer_order_identical(name: str, train: bool) -> None:
    kw = dict(spiking=True, in_shape=(3, 16, 16), num_classes=4, T=3, neuron={"threshold": 0.5})
    step = build_model(name, order="step", **kw)
    layer = build_model(name, order="layer", **kw)
    layer.load_state_dict(step.state_dict())
    step.train(train)
    layer.train(train)
    x = torch.rand(4, 3, 16, 16)
    out_s, out_l = step(x), layer(x)
    torch.testing.assert_close(out_s, out_l, atol=1e-5, rtol=1e-5)
    out_s.sum().backward()
    out_l.sum().backward()
    for (k, p_s), p_l in zip(step.named_parameters(), layer.parameters(), strict=True):
        torch.testing.assert_close(
            p_s.grad, p_l.grad, atol=1e-4, rtol=1e-3, msg=lambda m, k=k: f"{k}: {m}"
        )
    if train:  # per-time-step BatchNorm updates running stats identically
        for (k, b_s), b_l in zip(step.named_buffers(), layer.buffers(), strict=True):
            torch.testing.assert_close(b_s, b_l, msg=lambda m, k=k: f"{k}: {m}")


def test_temporal_input_used_as_is_and_readout_is_mean_of_linear() -> None:
    model = build_model("mlp", spiking=True, in_shape=(4,), num_classes=3, T=5, norm="none",
                        hidden=(6,))
    events = (torch.rand(7, 2, 4) < 0.5).float()  # T=7 differs from model.T
    out = model(events)
    hidden = model.act1(model.fc1(events))
    torch.testing.assert_close(out, model.classifier(hidden).mean(0))
    static = torch.rand(2, 4)
    torch.testing.assert_close(model(static), model(static.expand(5, 2, 4)))


@pytest.mark.parametrize("norm", ["none", "gn"])
def test_norm_variants_have_no_batchnorm(norm: str) -> None:
    model = build_model("resnet20", spiking=True, in_shape=(3, 8, 8), num_classes=10, T=1,
                        norm=norm)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert model(torch.rand(2, 3, 8, 8)).shape == (2, 10)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"name": "alexnet"}, "name='alexnet'"),
        ({"norm": "ln"}, "norm='ln'"),
        ({"order": "random"}, "order='random'"),
        ({"encoder": "poisson"}, "encoder='poisson'"),
        ({"T": 0}, "T=0"),
        ({"in_shape": (784,), "name": "convnet"}, "in_shape"),
        ({"in_shape": (1, 2, 2), "name": "lenet5"}, "in_shape"),
        ({"neuron": {"tau": 2.0}}, "tau"),
        ({"depth": 3}, "depth"),
    ],
)
def test_bad_arguments_raise_value_error(kwargs: dict, field: str) -> None:
    args = dict(name="mlp", spiking=True, in_shape=(1, 28, 28), num_classes=10)
    args.update(kwargs)
    name = args.pop("name")
    with pytest.raises(ValueError, match=field.replace("(", r"\(").replace(")", r"\)")):
        build_model(name, **args)


def test_wrong_input_rank_raises() -> None:
    model = build_model("mlp", spiking=True, in_shape=(4,), num_classes=3)
    with pytest.raises(ValueError, match="expected"):
        model(torch.rand(1, 2, 3, 4))
