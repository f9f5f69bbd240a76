"""Regularised Neural ODEs: shapes, gradients, and the properties that define them (the running integrals
are the integrals, the probe estimate is unbiased, the augmentation leaves the trajectory alone)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from nodecourse import solve
from nodecourse.models import MLP, ODEFunc
from nodecourse.models.regularised import (RegularisedClassifier, RegularisedODEFunc, jacobian_probe_integrand,
                                           kinetic_integrand)

from helpers import assert_entry_gradients

DT = torch.float64
TOL = {"rtol": 1e-9, "atol": 1e-11}


def _net(sizes=(3, 8, 3), seed=0):
    torch.manual_seed(seed)
    return MLP(list(sizes)).to(DT)


def _exact_frobenius(net: nn.Module, z: torch.Tensor) -> torch.Tensor:
    """||df/dz||_F^2 per sample from the full Jacobian of one sample at a time: [B]."""
    return torch.stack([torch.autograd.functional.jacobian(net, zi).pow(2).sum() for zi in z])


# ----------------------------------------------------------------------------- the integrands


def test_kinetic_integrand_is_the_squared_norm_per_sample():
    f = torch.randn(5, 2, 3, dtype=DT)
    expected = torch.tensor([float((fi * fi).sum()) for fi in f], dtype=DT)
    torch.testing.assert_close(kinetic_integrand(f), expected)
    assert kinetic_integrand(torch.randn(4, 7)).shape == (4,)


def test_probe_integrand_equals_the_full_jacobian_contracted_with_the_probe():
    net = _net()
    z = torch.randn(4, 3, dtype=DT, requires_grad=True)
    eps = torch.randn(4, 3, dtype=DT)
    got = jacobian_probe_integrand(net(z), z, eps)
    expected = torch.stack([(eps[i] @ torch.autograd.functional.jacobian(net, z[i].detach())).pow(2).sum()
                            for i in range(4)])
    torch.testing.assert_close(got, expected)


def test_probe_estimate_is_unbiased_for_the_frobenius_norm():
    """Mean over many Gaussian probes -> ||J||_F^2, within 4 standard errors; the spread matches the
    Gaussian variance 2 ||J J^T||_F^2."""
    net = _net((3, 16, 3), seed=1)
    z0 = torch.randn(1, 3, dtype=DT)
    n = 20000
    z = z0.expand(n, 3).clone().requires_grad_(True)
    gen = torch.Generator().manual_seed(0)
    samples = jacobian_probe_integrand(net(z), z, torch.randn(n, 3, generator=gen, dtype=DT), create_graph=False)
    J = torch.autograd.functional.jacobian(net, z0[0])
    exact = J.pow(2).sum()
    stderr = samples.std() / n**0.5
    assert abs(samples.mean() - exact) < 4 * stderr
    assert samples.var().item() == pytest.approx(2 * (J @ J.T).pow(2).sum().item(), rel=0.1)


# ----------------------------------------------------------------------------- RegularisedODEFunc


def test_func_shapes_and_dtype():
    func = RegularisedODEFunc(_net())
    state = func.initial_state(torch.randn(6, 3, dtype=DT))
    assert [tuple(s.shape) for s in state] == [(6, 3), (6,), (6,)]
    assert func.probe.shape == (6, 3) and func.probe.dtype == DT
    out = func(torch.tensor(0.0, dtype=DT), state)
    assert [tuple(o.shape) for o in out] == [(6, 3), (6,), (6,)] and all(o.dtype == DT for o in out)
    sol = solve(func, state, torch.linspace(0, 1, 4, dtype=DT), rtol=1e-6, atol=1e-8)
    assert [tuple(s.shape) for s in sol.ys] == [(4, 6, 3), (4, 6), (4, 6)]


def test_running_kinetic_integral_equals_quadrature_of_a_dense_trajectory():
    func = RegularisedODEFunc(_net(), kinetic=True, jacobian=False)
    z0 = torch.randn(5, 3, dtype=DT)
    t = torch.linspace(0, 1.5, 1501, dtype=DT)
    sol = solve(func, func.initial_state(z0), t, **TOL)
    with torch.no_grad():
        speed2 = torch.stack([kinetic_integrand(func.dynamics(s, z)) for s, z in zip(t, sol.ys[0])])  # [T, B]
    h = float(t[1] - t[0])
    simpson = h / 3 * (speed2[0] + speed2[-1] + 4 * speed2[1:-1:2].sum(0) + 2 * speed2[2:-1:2].sum(0))
    torch.testing.assert_close(sol.ys[1][-1], simpson, rtol=1e-8, atol=1e-10)
    assert bool((sol.ys[1][1:] >= sol.ys[1][:-1]).all()), "a running integral of a square never decreases"


def test_running_jacobian_integral_equals_quadrature_with_the_same_probe():
    func = RegularisedODEFunc(_net(seed=2), kinetic=False, jacobian=True)
    z0 = torch.randn(3, 3, dtype=DT)
    t = torch.linspace(0, 1.0, 1001, dtype=DT)
    sol = solve(func, func.initial_state(z0), t, **TOL)
    values = []
    for s, z in zip(t, sol.ys[0]):
        zr = z.clone().requires_grad_(True)
        values.append(jacobian_probe_integrand(func.dynamics(s, zr), zr, func.probe, create_graph=False))
    values = torch.stack(values)
    h = float(t[1] - t[0])
    simpson = h / 3 * (values[0] + values[-1] + 4 * values[1:-1:2].sum(0) + 2 * values[2:-1:2].sum(0))
    torch.testing.assert_close(sol.ys[2][-1], simpson, rtol=1e-8, atol=1e-10)
    assert torch.equal(sol.ys[1], torch.zeros_like(sol.ys[1])), "kinetic=False leaves its integral at zero"


def test_augmentation_leaves_the_state_trajectory_alone():
    net = _net(seed=3)
    z0 = torch.randn(4, 3, dtype=DT)
    t = torch.linspace(0, 2, 11, dtype=DT)
    plain = solve(ODEFunc(net), z0, t, rtol=1e-5, atol=1e-7)
    off = RegularisedODEFunc(net, kinetic=False, jacobian=False)
    both = RegularisedODEFunc(net)
    sol_off = solve(off, off.initial_state(z0), t, rtol=1e-5, atol=1e-7)
    sol_both = solve(both, both.initial_state(z0), t, **TOL)
    assert torch.equal(sol_off.ys[0], plain.ys) and sol_off.stats.nfe == plain.stats.nfe  # zero integrands: same steps
    torch.testing.assert_close(sol_both.ys[0], solve(ODEFunc(net), z0, t, **TOL).ys, rtol=1e-7, atol=1e-9)


def test_func_gradients_match_finite_differences():
    """gradcheck through the integrands (the Jacobian term is a double backward) in z and a weight."""
    net = _net((2, 4, 2), seed=4)
    func = RegularisedODEFunc(net)
    z = torch.randn(3, 2, dtype=DT, requires_grad=True)
    func.sample_probe(z)
    weight = net[0].weight
    assert torch.autograd.gradcheck(lambda z_in: func(0.0, (z_in, z_in.new_zeros(3), z_in.new_zeros(3))), (z,))
    # parameter gradient of the summed integrands against central differences
    loss = lambda: sum(o.sum() for o in func(0.0, (z.detach(), z.new_zeros(3), z.new_zeros(3)))[1:])  # noqa: E731
    assert_entry_gradients(loss, weight, [(0, 0), (1, 1), (3, 0)])


def test_func_without_grad_returns_detached_integrals():
    func = RegularisedODEFunc(_net())
    state = func.initial_state(torch.randn(2, 3, dtype=DT))
    with torch.no_grad():
        out = func(0.0, state)
    assert not any(o.requires_grad for o in out) and bool((out[2] >= 0).all())


def test_func_errors():
    func = RegularisedODEFunc(_net())
    with pytest.raises(TypeError, match="tuple state"):
        func(0.0, torch.zeros(2, 3, dtype=DT))
    with pytest.raises(ValueError, match="initial_state"):
        func(0.0, (torch.zeros(2, 3, dtype=DT), torch.zeros(2, dtype=DT), torch.zeros(2, dtype=DT)))
    func.initial_state(torch.zeros(2, 3, dtype=DT))
    with pytest.raises(ValueError, match=r"shaped like z \(5, 3\)"):
        func(0.0, (torch.zeros(5, 3, dtype=DT), torch.zeros(5, dtype=DT), torch.zeros(5, dtype=DT)))
    with pytest.raises(TypeError, match="floating tensor"):
        func.initial_state(torch.zeros(2, 3, dtype=torch.long))


# ----------------------------------------------------------------------------- RegularisedClassifier


def _classifier(**kwargs):
    torch.manual_seed(0)
    return RegularisedClassifier(input_size=2, output_size=3, state_size=3, hidden_size=8, **kwargs).to(DT)


def test_classifier_shapes_nfe_and_penalty():
    model = _classifier(kinetic=0.1, jacobian=0.2)
    x = torch.randn(7, 2, dtype=DT)
    logits = model(x)
    assert logits.shape == (7, 3) and model.nfe == model.stats.nfe > 0
    assert torch.is_tensor(model.penalty) and model.penalty.requires_grad and model.penalty.item() > 0
    e_kin, e_jac = model.integrals(x)
    assert e_kin.shape == e_jac.shape == (7,)
    model.eval()
    model(x)
    assert model.penalty == 0.0


def test_classifier_penalty_is_the_weighted_mean_of_the_integrals():
    model = _classifier(kinetic=0.3, jacobian=0.0, rtol=1e-9, atol=1e-11)
    x = torch.randn(5, 2, dtype=DT)
    model(x)
    e_kin, _ = model.integrals(x)
    assert model.penalty.item() == pytest.approx(0.3 * e_kin.mean().item(), rel=1e-7)


def test_classifier_with_zero_weights_is_the_plain_neural_ode():
    model = _classifier()
    x = torch.randn(6, 2, dtype=DT)
    logits = model(x)
    plain = solve(ODEFunc(model.func.dynamics.net), model.embed(x), torch.tensor([0.0, 1.0], dtype=DT),
                  rtol=1e-3, atol=1e-3)
    torch.testing.assert_close(logits, model.readout(plain.ys[-1]))
    assert model.penalty == 0.0 and model.nfe == plain.stats.nfe


def test_classifier_eval_logits_do_not_depend_on_the_weights():
    x = torch.randn(6, 2, dtype=DT)
    plain, regularised = _classifier().eval(), _classifier(kinetic=1.0, jacobian=1.0).eval()
    torch.testing.assert_close(plain(x), regularised(x))


def test_classifier_gradient_matches_finite_differences():
    model = _classifier(kinetic=0.5, jacobian=0.5, rtol=1e-10, atol=1e-10)
    x = torch.randn(4, 2, dtype=DT)
    y = torch.tensor([0, 1, 2, 1])
    gen = torch.Generator().manual_seed(5)

    def loss() -> torch.Tensor:
        gen.manual_seed(5)
        z0 = model.embed(x)
        sol = solve(model.func, model.func.initial_state(z0, gen), torch.tensor([0.0, 1.0], dtype=DT),
                    rtol=1e-10, atol=1e-10)
        z1, e_kin, e_jac = (p[-1] for p in sol.ys)
        return nn.functional.cross_entropy(model.readout(z1), y) + 0.5 * e_kin.mean() + 0.5 * e_jac.mean()

    weight = model.func.dynamics.net[0].weight
    assert_entry_gradients(loss, weight, [(0, 0), (5, 2)], rel=1e-4, abs_tol=1e-7)


def test_regularised_training_lowers_the_integrals():
    """A few steps on the penalty alone shrink the kinetic energy and the Jacobian norm."""
    model = _classifier(kinetic=1.0, jacobian=1.0)
    x = torch.randn(32, 2, dtype=DT)
    before = [v.mean().item() for v in model.integrals(x, torch.Generator().manual_seed(0))]
    opt = torch.optim.Adam(model.func.parameters(), lr=1e-2)
    for _ in range(30):
        model(x)
        opt.zero_grad()
        model.penalty.backward()
        opt.step()
    after = [v.mean().item() for v in model.integrals(x, torch.Generator().manual_seed(0))]
    assert after[0] < 0.5 * before[0] and after[1] < 0.5 * before[1]


@pytest.mark.parametrize("kwargs, error, match", [
    ({"kinetic": -1.0}, ValueError, "kinetic must be a finite number >= 0"),
    ({"jacobian": float("nan")}, ValueError, "jacobian must be a finite number >= 0"),
    ({"state_size": 0}, ValueError, "state_size must be a positive integer"),
    ({"method": "rk45"}, ValueError, "unknown method"),
    ({"method": "rk4"}, ValueError, "adaptive method"),
    ({"t1": 0.0}, ValueError, "t1 must be a finite positive"),
])
def test_classifier_rejects_bad_settings(kwargs, error, match):
    with pytest.raises(error, match=match):
        RegularisedClassifier(**kwargs)


def test_classifier_rejects_bad_inputs():
    with pytest.raises(ValueError, match=r"inputs of shape \[batch, 2\]"):
        _classifier()(torch.zeros(4, 3, dtype=DT))


def _training_loss_and_grads(adjoint, x, y, seed=3, **kwargs):
    """The regularised training loss of one forward pass (probe drawn from ``seed``) and its parameter gradients."""
    model = _classifier(kinetic=0.5, jacobian=0.5, adjoint=adjoint, **kwargs)
    torch.manual_seed(seed)
    loss = nn.functional.cross_entropy(model(x), y) + model.penalty
    grads = torch.autograd.grad(loss, list(model.func.parameters()) + [model.embed.weight])
    return model, loss, grads


@pytest.mark.parametrize("adjoint, rel", [("checkpoint", 1e-9), (True, 1e-5)])
def test_classifier_adjoint_settings_give_backprops_gradient(adjoint, rel):
    """Replayed steps give backprop's gradient through the same solve; the adjoint ODE gives it to its
    tolerance. Both through the running integrals, whose Jacobian term is itself a gradient."""
    x, y = torch.randn(5, 2, dtype=DT, generator=torch.Generator().manual_seed(1)), torch.tensor([0, 1, 2, 1, 0])
    _, loss_bp, grads_bp = _training_loss_and_grads(False, x, y, rtol=1e-9, atol=1e-10)
    model, loss, grads = _training_loss_and_grads(adjoint, x, y, rtol=1e-9, atol=1e-10)
    assert loss.item() == pytest.approx(loss_bp.item(), rel=1e-12)
    for g, g_bp in zip(grads, grads_bp):
        torch.testing.assert_close(g, g_bp, rtol=rel, atol=rel * g_bp.abs().max().item())
    assert 0 < model.nfe_backward
    if adjoint == "checkpoint":   # one replay per accepted step: about the forward's evaluations
        assert model.nfe_backward <= 1.2 * model.nfe


def test_classifier_backward_nfe_is_none_without_a_backward_solve():
    model = _classifier(kinetic=0.5)
    model(torch.randn(3, 2, dtype=DT)).sum().backward()
    assert model.nfe_backward is None
    model.adjoint = "checkpoint"
    model(torch.randn(3, 2, dtype=DT))
    assert model.nfe_backward is None   # no backward pass through this forward yet


def test_classifier_rejects_a_bad_adjoint_setting():
    with pytest.raises(ValueError, match="adjoint must be False"):
        _classifier(adjoint="yes")
    model = _classifier()
    model.adjoint = "reverse"
    with pytest.raises(ValueError, match="adjoint must be False"):
        model(torch.randn(3, 2, dtype=DT))
