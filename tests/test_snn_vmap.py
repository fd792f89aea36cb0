"""torch.func: vmap(grad) over stacked client parameters equals a per-client loop."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call, grad, stack_module_state, vmap

from spikefed.models import build_model


@pytest.mark.parametrize("order", ["step", "layer"])
@pytest.mark.parametrize("neuron", [None, {"learn_beta": True, "learn_threshold": True}])
def test_vmap_grad_over_four_mlp_clients_equals_loop(order: str, neuron: dict | None) -> None:
    clients = [
        build_model("mlp", spiking=True, in_shape=(1, 8, 8), num_classes=5, T=4, norm="none",
                    order=order, neuron=neuron, hidden=(32, 16))
        for _ in range(4)
    ]
    params, _ = stack_module_state(clients)
    base = clients[0]
    x = torch.rand(4, 6, 1, 8, 8) * 2
    y = torch.randint(0, 5, (4, 6))

    def loss(p: dict, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(functional_call(base, p, (xb,)), yb)

    batched = vmap(grad(loss))(params, x, y)
    for i, model in enumerate(clients):
        p_i = {k: v.detach() for k, v in model.named_parameters()}
        ref = grad(loss)(p_i, x[i], y[i])
        for k in ref:
            torch.testing.assert_close(batched[k][i], ref[k], atol=1e-5, rtol=1e-5)
    assert all(torch.isfinite(g).all() for g in batched.values())
    assert batched["fc1.weight"].abs().sum() > 0  # gradient reaches the first layer
