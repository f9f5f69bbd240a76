"""Data-controlled and adaptive-depth Neural ODEs: shapes, gradients (against central finite differences)
and the property that defines each."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from nodecourse import odeint
from nodecourse.models import MLP, ODEBlock, ODEFunc
from nodecourse.models.controlled import AdaptiveDepthODE, DataControlledField, DataControlledODE, RescaledField

from helpers import assert_directional_derivatives

DT = torch.float64
TIGHT = dict(rtol=1e-10, atol=1e-12)


def _seeded(make, seed=0):
    torch.manual_seed(seed)
    return make().to(DT)


# ----------------------------------------------------------------------------- data control


def test_controlled_field_shapes_and_constant_control():
    field = _seeded(lambda: DataControlledField(2, 3, hidden_size=(8, 8)))
    h, x = torch.randn(5, 2, dtype=DT), torch.randn(5, 3, dtype=DT)
    dh, dx = field(torch.tensor(0.0, dtype=DT), (h, x))
    assert dh.shape == (5, 2) and dx.shape == (5, 3) and torch.equal(dx, torch.zeros_like(x))
    torch.testing.assert_close(dh, field.net(torch.cat([h, x], -1)))
    assert field.control_weight.shape == (8, 3)


def test_controlled_field_with_zero_control_weights_is_the_uncontrolled_field():
    field = _seeded(lambda: DataControlledField(2, 3, hidden_size=(8,), time_dependent=True))
    with torch.no_grad():
        field.control_weight.zero_()
    plain = _seeded(lambda: MLP([3, 8, 2]), seed=1)   # input [h, t]
    with torch.no_grad():
        plain[0].weight.copy_(torch.cat([field.net[0].weight[:, :2], field.net[0].weight[:, 5:]], dim=1))
        plain[0].bias.copy_(field.net[0].bias)
        plain[2].load_state_dict(field.net[2].state_dict())
    uncontrolled = ODEFunc(plain, time_dependent=True)
    h, t = torch.randn(4, 2, dtype=DT), torch.tensor(0.6, dtype=DT)
    for seed in range(3):
        x = torch.randn(4, 3, dtype=DT, generator=torch.Generator().manual_seed(seed))
        torch.testing.assert_close(field.vector(t, h, x), uncontrolled(t, h))


def test_controlled_ode_equals_the_tuple_solve_and_lets_trajectories_cross():
    field = _seeded(lambda: DataControlledField(1, 1, hidden_size=(8,)))
    model = DataControlledODE(field, t1=1.0, method="dopri5", **TIGHT)
    x = torch.linspace(-1, 1, 7, dtype=DT)[:, None]
    assert model(x).shape == (7, 1)
    expected = odeint(field, (x, x), torch.tensor([0.0, 1.0], dtype=DT), **TIGHT)[0][-1]
    torch.testing.assert_close(model(x), expected)
    assert model.trajectory(x, steps=5).shape == (5, 7, 1)
    # the linear controlled field dh/ds = -2x reflects every input: a map no plain 1-D flow represents
    with torch.no_grad():
        field.net[0].weight.zero_()
        field.net[0].weight[:, 1] = 1.0     # hidden units see x only
        field.net[0].bias.zero_()
        field.net[2].weight.fill_(-2.0 / 8)
        field.net[2].bias.zero_()
    field.net[1] = nn.Identity()            # a linear field
    torch.testing.assert_close(model(x), -x)


def test_controlled_ode_with_zero_control_equals_a_plain_ode_block():
    field = _seeded(lambda: DataControlledField(2, 2, hidden_size=(8,)))
    with torch.no_grad():
        field.control_weight.zero_()
    net = _seeded(lambda: MLP([2, 8, 2]), seed=2)
    with torch.no_grad():
        net[0].weight.copy_(field.net[0].weight[:, :2])
        net[0].bias.copy_(field.net[0].bias)
        net[2].load_state_dict(field.net[2].state_dict())
    x = torch.randn(5, 2, dtype=DT)
    model = DataControlledODE(field, t1=0.8, method="rk4", step_size=0.1)
    block = ODEBlock(ODEFunc(net), t1=0.8, method="rk4", options={"step_size": 0.1})
    torch.testing.assert_close(model(x), block(x))


def test_controlled_ode_with_layers_around_it():
    field = _seeded(lambda: DataControlledField(4, 2, hidden_size=(8,)))
    model = DataControlledODE(field, input_layer=nn.Linear(2, 4).to(DT), output_layer=nn.Linear(4, 3).to(DT))
    assert model(torch.randn(6, 2, dtype=DT)).shape == (6, 3)


@pytest.mark.parametrize("adjoint", [False, True, "checkpoint"])
def test_controlled_ode_gradients(adjoint):
    field = _seeded(lambda: DataControlledField(1, 1, hidden_size=(8,)))
    model = DataControlledODE(field, t1=1.0, method="dopri5", adjoint=adjoint, **TIGHT)
    x = torch.linspace(-1, 1, 5, dtype=DT)[:, None]
    assert_directional_derivatives(model, lambda: (model(x) + x).pow(2).mean(), rtol=1e-5)
    x.requires_grad_(True)  # the input enters twice, as h(0) and as the control
    assert torch.autograd.gradcheck(lambda inp: model(inp), (x,), atol=1e-6)


def test_controlled_rejects_bad_input():
    field = DataControlledField(2, 3)
    with pytest.raises(TypeError, match=r"tuple state \(h, x\)"):
        field(0.0, torch.zeros(4, 2))
    with pytest.raises(ValueError, match=r"needs h \[\.\.\., 2\] and x \[\.\.\., 3\]"):
        field.vector(0.0, torch.zeros(4, 2), torch.zeros(5, 3))
    with pytest.raises(ValueError, match="state_size must be a positive integer"):
        DataControlledField(0, 1)
    with pytest.raises(ValueError, match=r"state_size \(2\) must equal input_size \(3\)"):
        DataControlledODE(field)
    with pytest.raises(TypeError, match="must be a DataControlledField"):
        DataControlledODE(ODEFunc(MLP([1, 1])))
    square = DataControlledField(1, 1)
    with pytest.raises(ValueError, match="finite positive end depth"):
        DataControlledODE(square, t1=-1.0)
    with pytest.raises(ValueError, match="step_size must be a finite positive"):
        DataControlledODE(square, step_size=0.0)
    with pytest.raises(ValueError, match=r"expects inputs of shape \[batch, 1\]"):
        DataControlledODE(square)(torch.zeros(4, 2))


# ----------------------------------------------------------------------------- adaptive depth


class _ConstantDepth(nn.Module):
    """g(x) whose softplus is the given depth T for every input."""

    def __init__(self, T):
        super().__init__()
        self.g = nn.Parameter(torch.tensor(math.log(math.expm1(T)), dtype=DT))

    def forward(self, x):
        return self.g.expand(x.shape[0], 1)


def test_rescaled_field_is_the_chain_rule():
    func = _seeded(lambda: ODEFunc(MLP([2, 8, 1]), time_dependent=True))
    field = RescaledField(func)
    h, T = torch.randn(4, 1, dtype=DT), torch.rand(4, 1, dtype=DT) + 0.5
    sigma = torch.tensor(0.3, dtype=DT)
    dh, dT = field(sigma, (h, T))
    expected = torch.stack([T[i] * func(sigma * T[i, 0], h[i]) for i in range(4)])
    torch.testing.assert_close(dh, expected)
    assert torch.equal(dT, torch.zeros_like(T))


def test_adaptive_depth_solves_each_sample_to_its_own_depth():
    func = _seeded(lambda: ODEFunc(MLP([2, 8, 1]), time_dependent=True))
    model = AdaptiveDepthODE(func, _seeded(lambda: MLP([1, 8, 1]), seed=1), min_depth=0.2, method="dopri5", **TIGHT)
    x = torch.tensor([[-0.9], [0.0], [0.4], [1.1]], dtype=DT)
    T = model.depth(x)
    assert T.shape == (4, 1) and bool((T > 0.2).all())
    out = model(x)
    assert out.shape == (4, 1)
    for i in range(4):
        alone = odeint(func, x[i], torch.cat([torch.zeros(1, dtype=DT), T[i]]), **TIGHT)[-1]
        torch.testing.assert_close(out[i], alone)
    hs, depths = model.trajectory(x, steps=6)
    assert hs.shape == (6, 4, 1) and depths.shape == (6, 4)
    torch.testing.assert_close(depths[-1], T[:, 0])


def test_adaptive_depth_with_a_constant_depth_is_a_fixed_depth_ode():
    func = _seeded(lambda: ODEFunc(MLP([2, 8, 2])))
    model = AdaptiveDepthODE(func, _ConstantDepth(1.7), method="dopri5", **TIGHT)
    x = torch.randn(5, 2, dtype=DT)
    block = ODEBlock(func, t1=1.7, method="dopri5", **TIGHT)
    torch.testing.assert_close(model(x), block(x))


def test_adaptive_depth_gradient_with_respect_to_the_depth_is_the_field():
    func = _seeded(lambda: ODEFunc(MLP([2, 8, 1]), time_dependent=True))
    depth = _ConstantDepth(0.9)
    model = AdaptiveDepthODE(func, depth, method="dopri5", **TIGHT)
    x = torch.randn(3, 1, dtype=DT)
    out = model(x)
    (grad_g,) = torch.autograd.grad(out.sum(), depth.g)
    T = model.depth(x).detach()
    dT_dg = torch.sigmoid(depth.g.detach())                      # softplus' = sigmoid
    expected = (func(T[:, 0], out.detach()) * dT_dg).sum()       # dh(T)/dT = f(T, h(T))
    torch.testing.assert_close(grad_g, expected, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("adjoint", [False, True, "checkpoint"])
def test_adaptive_depth_gradients(adjoint):
    func = _seeded(lambda: ODEFunc(MLP([2, 6, 1]), time_dependent=True))
    model = AdaptiveDepthODE(func, _seeded(lambda: MLP([1, 6, 1]), seed=1), method="dopri5", adjoint=adjoint, **TIGHT)
    x = torch.linspace(-1, 1, 5, dtype=DT)[:, None]
    assert_directional_derivatives(model, lambda: (model(x) + x).pow(2).mean(), rtol=1e-5)


def test_adaptive_depth_rejects_bad_input():
    func = ODEFunc(MLP([1, 4, 1]))
    with pytest.raises(TypeError, match="depth_net must be an nn.Module"):
        AdaptiveDepthODE(func, lambda x: x)
    with pytest.raises(ValueError, match="min_depth must be a finite number >= 0"):
        AdaptiveDepthODE(func, MLP([1, 1]), min_depth=-1.0)
    with pytest.raises(TypeError, match="func must be an nn.Module"):
        AdaptiveDepthODE(lambda t, h: h, MLP([1, 1]))
    with pytest.raises(ValueError, match=r"depth_net must map \[batch, D\] to \[batch, 1\]"):
        AdaptiveDepthODE(func, MLP([1, 2]))(torch.zeros(3, 1))
    with pytest.raises(ValueError, match=r"expects inputs of shape \[batch, D\]"):
        AdaptiveDepthODE(func, MLP([1, 1]))(torch.zeros(3))
