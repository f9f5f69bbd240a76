"""Continuous normalizing flows: the trace estimators against explicit Jacobians, the CNF's density
against closed forms and brute-force log-determinants, its inverse, its gradients and its errors."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from nodecourse.models.flows import (CNF, CNFField, exact_trace, hutchinson_trace, sample_probe,
                                     standard_normal_log_prob)

DT = torch.float64
TIGHT = dict(method="dopri5", rtol=1e-10, atol=1e-10)


def _field(dim=3, hidden=16, seed=0, condition_dim=0, activation=nn.Tanh):
    torch.manual_seed(seed)
    return CNFField(dim, hidden, condition_size=condition_dim, activation=activation).to(DT)


def _cnf(dim=2, hidden=8, seed=0, **kwargs):
    torch.manual_seed(seed)
    kwargs = {**TIGHT, **kwargs}
    return CNF(dim, hidden, **kwargs).to(DT)


def _jacobians(field, z, t=0.3):
    """Per-sample Jacobians [B, D, D] of the field, by torch.autograd.functional.jacobian."""
    return torch.stack([torch.autograd.functional.jacobian(lambda p: field(t, p[None])[0], zi) for zi in z])


# --------------------------------------------------------------------------------- the base density


def test_standard_normal_log_prob_matches_torch_distributions():
    z = torch.randn(7, 3, dtype=DT)
    base = torch.distributions.MultivariateNormal(torch.zeros(3, dtype=DT), torch.eye(3, dtype=DT))
    torch.testing.assert_close(standard_normal_log_prob(z), base.log_prob(z))


# --------------------------------------------------------------------------------- trace estimators


@pytest.mark.parametrize("dim", [1, 2, 5])
def test_exact_trace_equals_the_trace_of_the_autograd_jacobian(dim):
    field = _field(dim, seed=dim)
    z = torch.randn(6, dim, dtype=DT, requires_grad=True)
    tr = exact_trace(field(0.3, z), z)
    expected = torch.diagonal(_jacobians(field, z.detach()), dim1=-2, dim2=-1).sum(-1)
    assert tr.shape == (6,)
    torch.testing.assert_close(tr, expected, rtol=1e-12, atol=1e-12)


def test_exact_trace_is_differentiable_gradcheck():
    field = _field(2, hidden=6, seed=1)
    z = torch.randn(3, 2, dtype=DT, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: exact_trace(field(0.1, x), x), (z,))
    # and with respect to the parameters: a central finite difference on one weight
    w = field.net[0].weight
    loss = exact_trace(field(0.1, z), z).sum()
    (g,) = torch.autograd.grad(loss, w)
    h, (i, j) = 1e-6, (2, 1)
    def shifted(step):  # the trace after moving w[i, j] by step
        with torch.no_grad():
            w[i, j] += step
        value = exact_trace(field(0.1, z), z).sum()
        with torch.no_grad():
            w[i, j] -= step
        return value

    up, down = shifted(h), shifted(-h)
    assert g[i, j].item() == pytest.approx(((up - down) / (2 * h)).item(), rel=1e-6, abs=1e-9)


def test_exact_trace_without_graph_is_detached_and_equal():
    field = _field(3, seed=2)
    z = torch.randn(4, 3, dtype=DT, requires_grad=True)
    kept = exact_trace(field(0.0, z), z, create_graph=True)
    dropped = exact_trace(field(0.0, z), z, create_graph=False)
    assert kept.requires_grad and not dropped.requires_grad
    torch.testing.assert_close(kept.detach(), dropped)


def test_hutchinson_with_the_basis_vectors_sums_to_the_exact_trace():
    field = _field(4, seed=3)
    z = torch.randn(5, 4, dtype=DT, requires_grad=True)
    f = field(0.2, z)
    total = sum(hutchinson_trace(f, z, torch.eye(4, dtype=DT)[i].expand(5, 4)) for i in range(4))
    torch.testing.assert_close(total, exact_trace(f, z), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kind", ["rademacher", "gaussian"])
def test_hutchinson_is_unbiased_against_the_exact_trace(kind):
    field = _field(6, seed=4)
    n = 20000
    z0 = torch.randn(1, 6, dtype=DT)
    z = z0.expand(n, 6).clone().requires_grad_(True)  # one point, n independent probes
    f = field(0.0, z)
    eps = sample_probe(z, kind, generator=torch.Generator().manual_seed(0))
    estimates = hutchinson_trace(f, z, eps)
    exact = exact_trace(f, z)[0].item()
    se = estimates.std().item() / math.sqrt(n)
    assert se > 0
    assert abs(estimates.mean().item() - exact) < 4 * se
    # the variance has a closed form: Rademacher sum_{i<j} (A_ij + A_ji)^2, Gaussian 2 ||sym(A)||_F^2
    A = _jacobians(field, z0, t=0.0)[0]
    S = A + A.T
    variance = (torch.triu(S, 1) ** 2).sum() if kind == "rademacher" else 0.5 * (S**2).sum()
    assert estimates.var().item() == pytest.approx(variance.item(), rel=0.1)


def test_sample_probe_values_and_moments():
    like = torch.zeros(50000, 3, dtype=DT)
    rad = sample_probe(like, "rademacher", torch.Generator().manual_seed(1))
    assert rad.dtype == DT and set(rad.unique().tolist()) == {-1.0, 1.0}
    gauss = sample_probe(like, "gaussian", torch.Generator().manual_seed(2))
    for eps in (rad, gauss):
        second_moment = eps.T @ eps / eps.shape[0]
        torch.testing.assert_close(second_moment, torch.eye(3, dtype=DT), atol=0.03, rtol=0)


def test_trace_of_a_field_that_ignores_z_is_zero():
    z = torch.randn(3, 2, dtype=DT, requires_grad=True)
    f = torch.ones(3, 2, dtype=DT, requires_grad=True) * 2.0  # requires grad, but not through z
    assert torch.equal(exact_trace(f, z), torch.zeros(3, dtype=DT))
    assert torch.equal(hutchinson_trace(f, z, torch.ones(3, 2, dtype=DT)), torch.zeros(3, dtype=DT))


# --------------------------------------------------------------------------------- the field


def test_field_shapes_time_condition_and_nfe():
    field = _field(2, seed=5, condition_dim=3)
    z, c = torch.randn(4, 2, dtype=DT), torch.randn(4, 3, dtype=DT)
    out = field(torch.tensor(0.5), z, c)
    assert out.shape == (4, 2) and field.nfe == 1
    torch.testing.assert_close(out, field.net(torch.cat([z, torch.full((4, 1), 0.5, dtype=DT), c], -1)))
    assert field.net[0].in_features == 2 + 1 + 3
    assert not torch.allclose(field(0.5, z, c), field(0.9, z, c))  # time is an input


# --------------------------------------------------------------------------------- the CNF


def test_cnf_shapes_dtype_and_forward_alias():
    model = _cnf(3, trace="exact")
    x = torch.randn(5, 3, dtype=DT)
    lp = model.log_prob(x)
    assert lp.shape == (5,) and lp.dtype == DT
    torch.testing.assert_close(model(x), lp)
    logp, z1, delta = model.log_prob_and_base(x)
    assert z1.shape == (5, 3) and delta.shape == (5,)
    assert model.sample(7).shape == (7, 3)
    assert model.to_base(x).shape == model.from_base(x).shape == (5, 3)
    assert model.trajectory(x, torch.linspace(1, 0, 4)).shape == (4, 5, 3)


def test_zero_field_cnf_has_the_base_density():
    model = _cnf(2)
    last = model.field.net[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.zero_()
    x = torch.randn(9, 2, dtype=DT)
    torch.testing.assert_close(model.log_prob(x), standard_normal_log_prob(x), rtol=1e-12, atol=1e-12)
    gen = torch.Generator().manual_seed(3)
    z = torch.randn(4, 2, generator=torch.Generator().manual_seed(3), dtype=DT)
    torch.testing.assert_close(model.sample(4, generator=gen), z)


def test_linear_field_log_density_change_is_minus_t_trace():
    """With identity activations f(t, z) = A z + a t + b, so delta(t1) = -t1 tr(A) (Jacobi's formula)."""
    model = _cnf(2, hidden=5, activation=nn.Identity, t1=1.7)
    W = [m.weight for m in model.field.net if isinstance(m, nn.Linear)]
    A = (W[2] @ W[1] @ W[0])[:, :2]  # the z-columns of the product of the weights
    x = torch.randn(6, 2, dtype=DT)
    logp, z1, delta = model.log_prob_and_base(x)
    torch.testing.assert_close(delta, torch.full_like(delta, -1.7 * torch.trace(A).item()), rtol=1e-8, atol=1e-9)
    torch.testing.assert_close(logp, standard_normal_log_prob(z1) + 1.7 * torch.trace(A))


def test_log_density_change_equals_the_flow_maps_log_determinant():
    model = _cnf(2, hidden=8, seed=6)
    x = torch.randn(4, 2, dtype=DT)
    _, _, delta = model.log_prob_and_base(x)
    for i in range(4):
        jac = torch.autograd.functional.jacobian(lambda p: model.to_base(p[None])[0], x[i])
        sign, logdet = torch.linalg.slogdet(jac)
        assert sign.item() == 1.0  # a flow map preserves orientation
        assert delta[i].item() == pytest.approx(-logdet.item(), abs=1e-7)


def test_cnf_density_integrates_to_one():
    model = _cnf(2, hidden=8, seed=7, method="rk4", options={"step_size": 0.125})
    with torch.no_grad():
        model.field.net[-1].weight.mul_(0.5)  # a mild flow keeps the mass inside the grid
    n, lim = 121, 6.0
    axis = torch.linspace(-lim, lim, n, dtype=DT)
    gy, gx = torch.meshgrid(axis, axis, indexing="ij")
    points = torch.stack([gx.reshape(-1), gy.reshape(-1)], -1)
    with torch.no_grad():
        mass = model.log_prob(points).exp().sum().item() * (axis[1] - axis[0]).item() ** 2
    assert mass == pytest.approx(1.0, abs=2e-3)


def test_from_base_inverts_to_base():
    model = _cnf(2, hidden=8, seed=8)
    x = torch.randn(10, 2, dtype=DT)
    z = model.to_base(x)
    assert (z - x).abs().max() > 1e-2  # the flow moves the points
    torch.testing.assert_close(model.from_base(z), x, rtol=0, atol=1e-8)


def test_sample_is_from_base_of_gaussian_draws():
    model = _cnf(2, seed=9)
    draws = torch.randn(5, 2, generator=torch.Generator().manual_seed(4), dtype=DT)
    torch.testing.assert_close(model.sample(5, generator=torch.Generator().manual_seed(4)),
                               model.from_base(draws))


def test_hutchinson_log_prob_is_unbiased():
    """z(t) does not depend on the probe, so the mean over probes is the exact log-density."""
    model = _cnf(3, hidden=8, seed=10, trace="hutchinson", method="rk4", options={"step_size": 0.25})
    x = torch.randn(1, 3, dtype=DT)
    torch.manual_seed(11)
    with torch.no_grad():
        estimates = model.log_prob(x.expand(4000, 3))
        exact = model.log_prob(x, trace="exact").item()
    se = estimates.std().item() / math.sqrt(estimates.numel())
    assert se > 0 and abs(estimates.mean().item() - exact) < 4 * se


def test_gaussian_probe_is_used_when_asked():
    model = _cnf(2, seed=12, trace="hutchinson", probe="gaussian", method="rk4", options={"step_size": 0.5})
    torch.manual_seed(0)
    a = model.log_prob(torch.zeros(3, 2, dtype=DT))
    assert not torch.allclose(a[0], a[1])  # a different probe per sample


def test_log_prob_gradcheck_through_the_solver():
    model = _cnf(2, hidden=4, seed=13, method="rk4", options={"step_size": 0.25})
    x = torch.randn(2, 2, dtype=DT, requires_grad=True)
    assert torch.autograd.gradcheck(model.log_prob, (x,))


@pytest.mark.parametrize("setting", [True, "checkpoint"])
@pytest.mark.parametrize("trace", ["exact", "hutchinson"])
def test_adjoint_gradients_equal_backprop(trace, setting):
    model = _cnf(2, hidden=8, seed=14, trace=trace, rtol=1e-9, atol=1e-9)
    x = torch.randn(5, 2, dtype=DT)
    torch.manual_seed(1)
    g_backprop = torch.autograd.grad(-model.log_prob(x).mean(), list(model.parameters()))
    model.adjoint = setting  # set after construction: the next solve uses it
    torch.manual_seed(1)  # the same probes
    g_adjoint = torch.autograd.grad(-model.log_prob(x).mean(), list(model.parameters()))
    assert all(g.abs().sum() > 0 for g in g_backprop)
    for a, b in zip(g_backprop, g_adjoint):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_log_prob_without_grad_builds_no_graph():
    model = _cnf(2, seed=15)
    with torch.no_grad():
        lp = model.log_prob(torch.randn(3, 2, dtype=DT))
    assert not lp.requires_grad


def test_conditional_cnf_uses_its_condition():
    model = _cnf(2, seed=16, condition_size=2)
    x = torch.randn(4, 2, dtype=DT)
    c0, c1 = torch.tensor([1.0, 0.0], dtype=DT), torch.tensor([0.0, 1.0], dtype=DT)
    torch.testing.assert_close(model.log_prob(x, c0), model.log_prob(x, c0.expand(4, 2)))
    assert not torch.allclose(model.log_prob(x, c0), model.log_prob(x, c1))
    z = model.to_base(x, c1)
    torch.testing.assert_close(model.from_base(z, c1), x, rtol=0, atol=1e-8)
    assert model.sample(3, c0).shape == (3, 2)


# --------------------------------------------------------------------------------- errors


def test_errors_say_what_to_fix():
    with pytest.raises(ValueError, match="unknown trace"):
        CNF(2, trace="approx")
    with pytest.raises(ValueError, match="unknown probe"):
        CNF(2, probe="uniform")
    with pytest.raises(ValueError, match="t1 must be a positive"):
        CNF(2, t1=0.0)
    with pytest.raises(ValueError, match="input_size must be an integer"):
        CNF(0)
    model = _cnf(2)
    with pytest.raises(ValueError, match=r"expects x of shape \[batch, 2\]"):
        model.log_prob(torch.randn(4, 3, dtype=DT))
    with pytest.raises(ValueError, match=r"expects x of shape \[batch, 2\], got \(2,\); add a batch dimension"):
        model.log_prob(torch.randn(2, dtype=DT))
    with pytest.raises(ValueError, match="takes no condition"):
        model.log_prob(torch.randn(4, 2, dtype=DT), torch.ones(4, 1, dtype=DT))
    with pytest.raises(ValueError, match="unknown trace"):
        model.log_prob(torch.randn(4, 2, dtype=DT), trace="hutch")
    with pytest.raises(ValueError, match="n must be an integer"):
        model.sample(0)
    conditional = _cnf(2, condition_size=2)
    with pytest.raises(ValueError, match="is conditional"):
        conditional.log_prob(torch.randn(4, 2, dtype=DT))
    with pytest.raises(ValueError, match=r"condition must be \[2\] or \[4, 2\]"):
        conditional.log_prob(torch.randn(4, 2, dtype=DT), torch.ones(4, 3, dtype=DT))
    z = torch.randn(3, 2, dtype=DT, requires_grad=True)
    with pytest.raises(ValueError, match="computed from z with autograd on"):
        exact_trace(z.detach() * 2, z)
    with pytest.raises(ValueError, match="shaped like z"):
        exact_trace(z[:, :1] * 2, z)
    with pytest.raises(ValueError, match="eps must hold one probe per sample"):
        hutchinson_trace(z * 2, z, torch.ones(3, 1, dtype=DT))
    with pytest.raises(ValueError, match="unknown probe kind"):
        sample_probe(z, "uniform")
    with pytest.raises(TypeError, match="must be a tensor"):
        standard_normal_log_prob([1.0, 2.0])
