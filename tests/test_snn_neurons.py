"""LIF / IF dynamics, reset modes, learnable parameters and state handling."""

from __future__ import annotations

import pytest
import torch

from spikefed.snn import IF, LIF, make_neuron


def _run_steps(neuron: LIF, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    v = neuron.init_state(x[0])
    out = []
    for x_t in x:
        s, v = neuron.step(x_t, v)
        out.append(s)
    return torch.stack(out), v


def test_if_soft_reset_counts_exactly() -> None:
    x = torch.full((10, 1), 0.3)
    spikes, v = _run_steps(IF(threshold=1.0), x)
    assert spikes.sum().item() == 3
    assert abs(v.item() - (0.3 * 10 - 3)) < 1e-6


def test_lif_hand_computed_sequence_beta_half() -> None:
    x = torch.tensor([0.6, 0.6, 0.6, 0.0, 1.2]).unsqueeze(1)
    spikes, v = _run_steps(LIF(beta=0.5, threshold=1.0), x)
    # v: 0.6 -> 0.9 -> 1.05 (spike, 0.05) -> 0.025 -> 1.2125 (spike, 0.2125)
    assert spikes.squeeze(1).tolist() == [0.0, 0.0, 1.0, 0.0, 1.0]
    assert v.item() == pytest.approx(0.2125, abs=1e-6)


def test_reset_to_zero_and_none() -> None:
    x = torch.tensor([0.7, 0.7, 0.7, 0.7]).unsqueeze(1)
    s_zero, v_zero = _run_steps(IF(reset="zero"), x)
    assert s_zero.squeeze(1).tolist() == [0.0, 1.0, 0.0, 1.0]
    assert v_zero.item() == 0.0
    s_none, v_none = _run_steps(IF(reset="none"), x)
    assert s_none.squeeze(1).tolist() == [0.0, 1.0, 1.0, 1.0]
    assert v_none.item() == pytest.approx(2.8)


def test_multistep_forward_equals_step_loop_and_no_state_survives() -> None:
    neuron = LIF(beta=0.8, threshold=0.5)
    x = torch.rand(6, 3, 4)
    spikes = neuron(x)
    assert spikes.shape == x.shape
    looped, _ = _run_steps(neuron, x)
    assert torch.equal(spikes, looped)
    assert torch.equal(neuron(x), spikes)  # second call starts from a fresh state


def test_v_init_shifts_first_spike() -> None:
    x = torch.full((2, 1), 0.5)
    assert IF(v_init=0.0)(x).squeeze(1).tolist() == [0.0, 1.0]
    assert IF(v_init=0.5)(x).squeeze(1).tolist() == [1.0, 0.0]


def test_default_neuron_has_empty_state_dict() -> None:
    assert LIF().state_dict() == {}
    assert list(IF().parameters()) == []


def test_learnable_beta_and_threshold_get_gradients_and_match_fixed() -> None:
    x = torch.rand(8, 4, 5)
    fixed = LIF(beta=0.7, threshold=0.6)
    learn = LIF(beta=0.7, threshold=0.6, learn_beta=True, learn_threshold=True)
    assert set(learn.state_dict()) == {"decay.beta", "thresh.theta"}
    out = learn(x)
    assert torch.equal(out, fixed(x))
    (out * torch.randn_like(out)).sum().backward()
    assert learn.decay.beta.grad is not None and learn.decay.beta.grad != 0
    assert learn.thresh.theta.grad is not None and learn.thresh.theta.grad != 0


def test_detach_reset_changes_gradient_only() -> None:
    x = torch.rand(10, 2, 3) * 0.8
    grads = []
    for detach in (True, False):
        xi = x.clone().requires_grad_(True)
        out = IF(threshold=0.5, detach_reset=detach)(xi)
        out.sum().backward()
        grads.append((out.detach(), xi.grad))
    assert torch.equal(grads[0][0], grads[1][0])
    assert not torch.allclose(grads[0][1], grads[1][1])


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"beta": 1.5}, "beta"),
        ({"threshold": 0.0}, "threshold"),
        ({"reset": "soft"}, "reset"),
        ({"surrogate": "relu"}, "surrogate"),
        ({"alpha": -1.0}, "alpha"),
    ],
)
def test_bad_arguments_raise(kwargs: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        LIF(**kwargs)


def test_make_neuron() -> None:
    n = make_neuron({"type": "if", "threshold": 2.0})
    assert isinstance(n, IF) and n.threshold == 2.0 and n.beta == 1.0
    with pytest.raises(ValueError, match="type='glm2'"):
        make_neuron({"type": "glm2"})
    with pytest.raises(ValueError, match="beta"):
        make_neuron({"type": "if", "beta": 0.5})
