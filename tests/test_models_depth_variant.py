"""Depth-variant models: the bases, ConcatMLP, Galerkin layers and stacked ODE blocks, each checked for its
shapes, its gradients (against central finite differences) and the property that defines it."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from nodecourse import odeint
from nodecourse.models import MLP, ODEFunc
from nodecourse.models.depth_variant import (ConcatMLP, GalerkinLinear, GalerkinMLP, StackedODE, fourier_basis,
                                             legendre_basis)

from helpers import assert_directional_derivatives

DT = torch.float64
RK4 = dict(method="rk4", options={"step_size": 1 / 16})


def _seeded(make, seed=0):
    torch.manual_seed(seed)
    return make().to(DT)


def _randomise(module, scale=0.5, seed=1):
    """Random values in every parameter (Galerkin layers start with zero higher-order terms)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return module


# ----------------------------------------------------------------------------- bases


def test_fourier_basis_shape_and_values():
    s = torch.tensor([[0.0, 0.1, 0.7], [0.3, 1.2, -0.4]], dtype=DT)
    phi = fourier_basis(s, 2, period=2.0)
    assert phi.shape == (2, 3, 5) and phi.dtype == DT
    w = math.pi  # 2 pi / period
    expected = torch.stack([torch.ones_like(s), torch.cos(w * s), torch.cos(2 * w * s), torch.sin(w * s),
                            torch.sin(2 * w * s)], dim=-1)
    torch.testing.assert_close(phi, expected)
    torch.testing.assert_close(fourier_basis(s + 2.0, 2, period=2.0), phi)  # periodic
    assert fourier_basis(torch.tensor(0.4), 0).shape == (1,)
    assert fourier_basis(0.25, 1).tolist() == pytest.approx([1.0, 0.0, 1.0], abs=1e-7)


def test_legendre_basis_is_the_legendre_polynomials_and_orthogonal():
    z = torch.linspace(-1, 1, 11, dtype=DT)
    P = legendre_basis(z, 4, interval=(-1.0, 1.0))
    assert P.shape == (11, 5)
    torch.testing.assert_close(P[:, 2], (3 * z**2 - 1) / 2)
    torch.testing.assert_close(P[:, 3], (5 * z**3 - 3 * z) / 2)
    torch.testing.assert_close(P[:, 4], (35 * z**4 - 30 * z**2 + 3) / 8)
    # on [2, 5] it is the same polynomials of the mapped depth
    s = 2 + 3 * (z + 1) / 2
    torch.testing.assert_close(legendre_basis(s, 4, interval=(2.0, 5.0)), P)
    # orthogonality by Gauss-Legendre quadrature with 8 nodes (exact for degree <= 15)
    nodes, weights = (torch.tensor(v, dtype=DT) for v in __import__("numpy").polynomial.legendre.leggauss(8))
    Q = legendre_basis(nodes, 4, interval=(-1.0, 1.0))
    gram = (Q.T * weights) @ Q
    torch.testing.assert_close(gram, torch.diag(2 / (2 * torch.arange(5, dtype=DT) + 1)))


@pytest.mark.parametrize("call, error, match", [
    (lambda: fourier_basis(torch.tensor(0.1), -1), ValueError, "n_harmonics must be an integer >= 0"),
    (lambda: fourier_basis(torch.tensor(0.1), 2, period=0.0), ValueError, "period must be a finite positive"),
    (lambda: fourier_basis("0.1", 2), TypeError, "depth s must be a number"),
    (lambda: legendre_basis(torch.tensor(0.1), 1.5), ValueError, "degree must be an integer"),
    (lambda: legendre_basis(torch.tensor(0.1), 2, interval=(1.0, 0.0)), ValueError, "finite a < b"),
    (lambda: legendre_basis(torch.tensor(0.1), 2, interval=3.0), ValueError, "pair"),
])
def test_bases_reject_bad_input(call, error, match):
    with pytest.raises(error, match=match):
        call()


# ----------------------------------------------------------------------------- ConcatMLP


def test_concat_mlp_shapes_and_per_sample_times():
    net = _seeded(lambda: ConcatMLP([3, 8, 8, 2]))
    y = torch.randn(5, 3, dtype=DT)
    assert net(torch.tensor(0.3, dtype=DT), y).shape == (5, 2)
    t = torch.rand(5, dtype=DT)
    per_sample = net(t, y)
    one_by_one = torch.stack([net(t[i], y[i]) for i in range(5)])
    torch.testing.assert_close(per_sample, one_by_one)
    assert net.nfe == 1 + 1 + 5


def test_concat_mlp_sees_depth_at_every_layer_and_reduces_to_the_mlp():
    net = _seeded(lambda: ConcatMLP([2, 6, 2]))
    plain = _seeded(lambda: MLP([2, 6, 2]), seed=3)
    with torch.no_grad():
        for layer, target in zip(net.layers, [plain[0], plain[2]]):
            target.weight.copy_(layer.weight[:, :-1])
            target.bias.copy_(layer.bias)
    y = torch.randn(4, 2, dtype=DT)
    # by hand: every layer gets [h, t]
    t = torch.tensor(0.8, dtype=DT)
    h1 = torch.tanh(net.layers[0](torch.cat([y, t.expand(4, 1)], -1)))
    torch.testing.assert_close(net(t, y), net.layers[1](torch.cat([h1, t.expand(4, 1)], -1)))
    with torch.no_grad():
        for layer in net.layers:
            layer.weight[:, -1] = 0
    for s in (0.0, 1.5):
        torch.testing.assert_close(net(torch.tensor(s, dtype=DT), y), plain(y))


def test_concat_mlp_one_layer_equals_time_dependent_odefunc():
    net = _seeded(lambda: ConcatMLP([2, 3]))
    func = ODEFunc(net.layers[0], time_dependent=True)
    y, t = torch.randn(6, 2, dtype=DT), torch.tensor(0.4, dtype=DT)
    torch.testing.assert_close(net(t, y), func(t, y))


def test_concat_mlp_gradients():
    net = _seeded(lambda: ConcatMLP([2, 5, 2]))
    y = torch.randn(3, 2, dtype=DT)
    assert_directional_derivatives(net, lambda: net(torch.tensor(0.7, dtype=DT), y).pow(2).sum())
    y.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda inp: net(torch.tensor(0.7, dtype=DT), inp), (y,))


def test_concat_mlp_rejects_bad_input():
    with pytest.raises(ValueError, match="ConcatMLP needs at least an input and an output size"):
        ConcatMLP([3])
    with pytest.raises(ValueError, match=r"expects states \[\.\.\., 3\]"):
        ConcatMLP([3, 2])(0.0, torch.zeros(4, 2))


# ----------------------------------------------------------------------------- GalerkinLinear


def test_galerkin_linear_shapes_and_weight_series():
    layer = _randomise(_seeded(lambda: GalerkinLinear(3, 2, basis="fourier", order=2)))
    assert layer.n_terms == 5 and layer.weight_coeffs.shape == (5, 2, 3) and layer.bias_coeffs.shape == (5, 2)
    x, s = torch.randn(4, 3, dtype=DT), torch.tensor(0.3, dtype=DT)
    y = layer(s, x)
    assert y.shape == (4, 2)
    phi = fourier_basis(s, 2)
    W = sum(phi[k] * layer.weight_coeffs[k] for k in range(5))
    b = sum(phi[k] * layer.bias_coeffs[k] for k in range(5))
    torch.testing.assert_close(y, x @ W.T + b)
    torch.testing.assert_close(layer.weight(s), W)
    assert layer(s, torch.randn(7, 5, 3, dtype=DT)).shape == (7, 5, 2)   # extra leading dims


def test_galerkin_linear_per_sample_depths_equal_one_call_per_sample():
    layer = _randomise(_seeded(lambda: GalerkinLinear(2, 3, basis="legendre", order=3)))
    x, s = torch.randn(5, 2, dtype=DT), torch.rand(5, dtype=DT)
    torch.testing.assert_close(layer(s, x), torch.stack([layer(s[i], x[i]) for i in range(5)]))
    x3 = torch.randn(5, 4, 2, dtype=DT)
    torch.testing.assert_close(layer(s, x3), torch.stack([layer(s[i], x3[i]) for i in range(5)]))


@pytest.mark.parametrize("basis, order", [("fourier", 3), ("legendre", 4), ("fourier", 0)])
def test_galerkin_linear_with_only_the_constant_term_is_nn_linear(basis, order):
    linear = _seeded(lambda: nn.Linear(3, 2), seed=4)
    layer = _seeded(lambda: GalerkinLinear(3, 2, basis=basis, order=order))
    with torch.no_grad():
        layer.weight_coeffs.zero_()
        layer.bias_coeffs.zero_()
        layer.weight_coeffs[0] = linear.weight
        layer.bias_coeffs[0] = linear.bias
    x = torch.randn(6, 3, dtype=DT)
    for s in (0.0, 0.45, 0.99, 3.3):
        torch.testing.assert_close(layer(torch.tensor(s, dtype=DT), x), linear(x), rtol=0, atol=1e-15)


def test_galerkin_linear_starts_depth_invariant_and_fourier_weights_are_periodic():
    layer = _seeded(lambda: GalerkinLinear(2, 2, order=2, period=0.5))
    x = torch.randn(3, 2, dtype=DT)
    torch.testing.assert_close(layer(0.1, x), layer(0.37, x))    # only the constant term at initialisation
    _randomise(layer)
    assert not torch.allclose(layer(0.1, x), layer(0.37, x))
    torch.testing.assert_close(layer(0.1, x), layer(0.6, x))     # period 0.5


def test_galerkin_linear_gradients():
    layer = _randomise(_seeded(lambda: GalerkinLinear(2, 3, order=1)))
    x = torch.randn(4, 2, dtype=DT, requires_grad=True)
    s = torch.rand(4, dtype=DT)
    assert_directional_derivatives(layer, lambda: layer(s, x.detach()).sin().sum())
    assert torch.autograd.gradcheck(lambda inp: layer(s, inp), (x,))


def test_galerkin_linear_without_bias():
    layer = _randomise(_seeded(lambda: GalerkinLinear(2, 2, bias=False)))
    assert layer.bias(0.3) is None and len(list(layer.parameters())) == 1
    x = torch.randn(3, 2, dtype=DT)
    torch.testing.assert_close(layer(0.3, x), x @ layer.weight(0.3).T)


@pytest.mark.parametrize("kwargs, match", [
    (dict(basis="chebyshev"), "unknown basis 'chebyshev'"),
    (dict(order=-1), "order must be an integer >= 0"),
    (dict(period=-2.0), "period must be a finite positive"),
    (dict(interval=(0.0, 0.0)), "finite a < b"),
])
def test_galerkin_linear_rejects_bad_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GalerkinLinear(2, 2, **kwargs)


def test_galerkin_linear_rejects_bad_shapes():
    layer = GalerkinLinear(3, 2)
    with pytest.raises(ValueError, match=r"expects inputs \[\.\.\., 3\]"):
        layer(0.0, torch.zeros(4, 2))
    with pytest.raises(ValueError, match="one depth per sample"):
        layer(torch.zeros(3), torch.zeros(4, 3))
    with pytest.raises(ValueError, match="in_features must be an integer"):
        GalerkinLinear(0, 2)


# ----------------------------------------------------------------------------- GalerkinMLP


def test_galerkin_mlp_is_a_vector_field_with_depth_variant_weights():
    field = _randomise(_seeded(lambda: GalerkinMLP([2, 8, 2], basis="fourier", order=1)), scale=0.3)
    h0 = torch.randn(5, 2, dtype=DT)
    t = torch.linspace(0, 1, 4, dtype=DT)
    assert odeint(field, h0, t, **RK4).shape == (4, 5, 2)
    # by hand: the layers at the same depth with a tanh between them
    s = torch.tensor(0.3, dtype=DT)
    torch.testing.assert_close(field(s, h0), field.layers[1](s, torch.tanh(field.layers[0](s, h0))))
    assert_directional_derivatives(field, lambda: odeint(field, h0, t, **RK4)[-1].pow(2).sum())


def test_galerkin_mlp_with_constant_terms_only_is_the_mlp():
    mlp = _seeded(lambda: MLP([2, 8, 2]), seed=5)
    field = _seeded(lambda: GalerkinMLP([2, 8, 2], basis="legendre", order=2))
    with torch.no_grad():
        for layer, linear in zip(field.layers, [mlp[0], mlp[2]]):
            layer.weight_coeffs.zero_()
            layer.bias_coeffs.zero_()
            layer.weight_coeffs[0] = linear.weight
            layer.bias_coeffs[0] = linear.bias
    h = torch.randn(4, 2, dtype=DT)
    torch.testing.assert_close(field(torch.tensor(0.8, dtype=DT), h), mlp(h))


def test_galerkin_mlp_rejects_bad_sizes():
    with pytest.raises(ValueError, match="every GalerkinMLP size must be a positive integer"):
        GalerkinMLP([2, 0, 2])


# ----------------------------------------------------------------------------- StackedODE


def _block(seed):
    return _seeded(lambda: ODEFunc(MLP([2, 8, 2])), seed=seed)


def test_stacked_identical_blocks_equal_one_block_over_the_total_depth():
    block = _block(0)
    stacked = StackedODE([block] * 3, t1=1.5, **RK4)
    h0 = torch.randn(6, 2, dtype=DT)
    one = odeint(block, h0, torch.tensor([0.0, 1.5], dtype=DT), **RK4)[-1]
    torch.testing.assert_close(stacked(h0), one, rtol=0, atol=1e-13)
    t = torch.tensor([0.0, 0.25, 0.5, 1.2, 1.5], dtype=DT)
    torch.testing.assert_close(stacked.trajectory(h0, t), odeint(block, h0, t, **RK4), rtol=0, atol=1e-13)


def test_stacked_blocks_run_one_after_another_on_their_intervals():
    blocks = [_block(1), _block(2)]
    stacked = StackedODE(blocks, breakpoints=[0.0, 0.4, 1.0], method="dopri5", rtol=1e-10, atol=1e-12)
    h0 = torch.randn(3, 2, dtype=DT)
    mid = odeint(blocks[0], h0, torch.tensor([0.0, 0.4], dtype=DT), rtol=1e-10, atol=1e-12)[-1]
    end = odeint(blocks[1], mid, torch.tensor([0.4, 1.0], dtype=DT), rtol=1e-10, atol=1e-12)[-1]
    assert stacked(h0).shape == (3, 2)
    torch.testing.assert_close(stacked(h0), end)
    traj = stacked.trajectory(h0, [0.4, 0.7, 1.0])
    assert traj.shape == (3, 3, 2)
    torch.testing.assert_close(traj[0], mid)
    torch.testing.assert_close(traj[2], end)
    assert stacked.breakpoints == (0.0, 0.4, 1.0) and len(list(stacked.parameters())) == 2 * 4


@pytest.mark.parametrize("adjoint", [False, True, "checkpoint"])
def test_stacked_gradients(adjoint):
    blocks = [_block(3), _block(4)]
    stacked = StackedODE(blocks, t1=1.0, method="dopri5", rtol=1e-10, atol=1e-12, adjoint=adjoint)
    h0 = torch.randn(4, 2, dtype=DT)
    assert_directional_derivatives(stacked, lambda: stacked(h0).pow(2).sum(), rtol=1e-5)


def test_stacked_rejects_bad_input():
    with pytest.raises(TypeError, match="non-empty sequence of nn.Modules"):
        StackedODE([])
    with pytest.raises(ValueError, match="need 3 breakpoints"):
        StackedODE([_block(0), _block(1)], breakpoints=[0.0, 1.0])
    with pytest.raises(ValueError, match="strictly increasing"):
        StackedODE([_block(0), _block(1)], breakpoints=[0.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="finite positive end depth"):
        StackedODE([_block(0)], t1=0.0)
    stacked = StackedODE([_block(0)], t1=1.0)
    with pytest.raises(ValueError, match=r"must lie in \[0.0, 1.0\]"):
        stacked.trajectory(torch.zeros(2, 2, dtype=DT), [0.0, 2.0])
    with pytest.raises(ValueError, match="strictly increasing depths"):
        stacked.trajectory(torch.zeros(2, 2, dtype=DT), [0.5, 0.2])
