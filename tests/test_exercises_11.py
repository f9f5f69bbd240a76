"""Checkers of notebook 11: the references are right (against explicit Jacobians, quadrature, the package's
regularised dynamics, hand-computed limits and the stability function itself), wrong answers fail with a
hint, unattempted ones hand back the reference, and bad input gets a clear error."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from nodecourse import solve
from nodecourse.exercises import ex11
from nodecourse.exercises import checking
from nodecourse.models import MLP
from nodecourse.models.regularised import RegularisedODEFunc
from nodecourse.solvers import TABLEAUX

F64 = torch.float64


@pytest.fixture(autouse=True)
def _last_hint_stage():
    """Each test sees the last (most specific) hint stage on a failure, whatever ran before it; the staging
    itself is tested in test_checker_contract.py."""
    checking.reset_hints(already_failed=10)
    yield
    checking.reset_hints(already_failed=0)


def _not_attempted(*args, **kwargs):
    raise NotImplementedError("Exercise")


def _wrapped(fn):
    """A distinct function object that behaves like ``fn`` (so we can tell which one a checker returns)."""
    return lambda *args, **kwargs: fn(*args, **kwargs)


def _net(sizes=(3, 10, 3), seed=0):
    torch.manual_seed(seed)
    return MLP(list(sizes)).to(F64)


# --------------------------------------------------------------------------------------------------
# the references against independent computations
# --------------------------------------------------------------------------------------------------


def test_kinetic_integrand_by_hand():
    f = torch.tensor([[3.0, 4.0], [1.0, -1.0]], dtype=F64)
    assert ex11.kinetic_integrand(f).tolist() == [25.0, 2.0]
    images = torch.randn(3, 2, 5, 5, dtype=F64)
    torch.testing.assert_close(ex11.kinetic_integrand(images), torch.stack([(x * x).sum() for x in images]))


def test_frobenius_probe_contracts_the_explicit_jacobian():
    net = _net()
    z = torch.randn(4, 3, dtype=F64, requires_grad=True)
    eps = torch.randn(4, 3, dtype=F64)
    expected = torch.stack([(eps[i] @ torch.autograd.functional.jacobian(net, z[i].detach())).pow(2).sum()
                            for i in range(4)])
    torch.testing.assert_close(ex11.frobenius_probe(net(z), z, eps), expected)


def test_frobenius_probe_is_unbiased_and_differentiable():
    net = _net(seed=1)
    point = torch.randn(3, dtype=F64)
    n = 20000
    z = point.expand(n, 3).clone().requires_grad_(True)
    gen = torch.Generator().manual_seed(0)
    samples = ex11.frobenius_probe(net(z), z, torch.randn(n, 3, generator=gen, dtype=F64))
    exact = torch.autograd.functional.jacobian(net, point).pow(2).sum()
    assert abs(samples.mean() - exact) < 4 * samples.std() / math.sqrt(n)
    assert samples.requires_grad, "create_graph=True: the estimate can be trained on"
    z_small = torch.randn(2, 3, dtype=F64, requires_grad=True)
    eps = torch.randn(2, 3, dtype=F64)
    assert torch.autograd.gradcheck(lambda x: ex11.frobenius_probe(net(x), x, eps), (z_small,))


def test_augmented_dynamics_equals_the_package_and_its_integrals_equal_quadrature():
    net = _net(seed=2)
    package = RegularisedODEFunc(net)
    z0 = torch.randn(3, 3, dtype=F64)
    state = package.initial_state(z0)
    field = package.dynamics
    for got, expected in zip(ex11.augmented_dynamics(field, 0.0, state, package.probe), package(0.0, state)):
        torch.testing.assert_close(got, expected)
    t = torch.linspace(0, 1, 1001, dtype=F64)
    sol = solve(lambda s, y: ex11.augmented_dynamics(field, s, y, package.probe), state, t, rtol=1e-10, atol=1e-12)
    with torch.no_grad():
        speed2 = torch.stack([field(s, z).pow(2).sum(1) for s, z in zip(t, sol.ys[0])])
    torch.testing.assert_close(sol.ys[1][-1], torch.trapezoid(speed2, t, dim=0), rtol=1e-6, atol=0)


def test_augmented_dynamics_under_no_grad():
    net = _net(seed=3)
    with torch.no_grad():
        out = ex11.augmented_dynamics(lambda t, z: net(z), 0.0, (torch.randn(2, 3, dtype=F64),) * 3,
                                      torch.randn(2, 3, dtype=F64))
    assert [tuple(o.shape) for o in out] == [(2, 3), (2,), (2,)]


@pytest.mark.parametrize("A, expected", [
    (torch.diag(torch.tensor([-1.0, -100.0], dtype=F64)), 0.02),
    (torch.tensor([[-0.1, -1.0], [1.0, -0.1]], dtype=F64), 0.2 / 1.01),
    (torch.tensor([[-2.0, 1.0], [0.0, -2.0]], dtype=F64), 1.0),
])
def test_euler_step_limit_by_hand(A, expected):
    assert ex11.euler_step_limit(A) == pytest.approx(expected, rel=1e-10)


def test_euler_step_limit_is_where_the_step_matrix_stops_contracting():
    torch.manual_seed(4)
    Q = torch.linalg.qr(torch.randn(4, 4, dtype=F64))[0]
    A = Q @ torch.tensor([[-1.0, 0, 0, 0], [0, -3.0, -8.0, 0], [0, 8.0, -3.0, 0], [0, 0, 0, -40.0]], dtype=F64) @ Q.T
    h = ex11.euler_step_limit(A)

    def radius(step: float) -> float:
        return torch.linalg.eigvals(torch.eye(4, dtype=F64) + step * A).abs().max().item()

    assert radius(0.999 * h) < 1 < radius(1.001 * h)


def test_stability_limit_known_values_and_boundary():
    expected = {"euler": 2.0, "midpoint": 2.0, "heun2": 2.0, "rk4": 2.785293563405, "dopri5": 3.306567892635}
    for name, value in expected.items():
        assert ex11.stability_limit(TABLEAUX[name]) == pytest.approx(value, abs=1e-9), name
    for name in ("rk4", "bosh3", "rkf45", "dopri5"):  # |R(-x*)| = 1, with R from (I - zA)^{-1} directly
        tab = TABLEAUX[name]
        s = tab.n_stages
        A = torch.zeros(s, s, dtype=F64)
        for i, row in enumerate(tab.a):
            A[i, : len(row)] = torch.tensor([float(a) for a in row], dtype=F64)
        b = torch.tensor([float(x) for x in tab.b], dtype=F64)
        x = ex11.stability_limit(tab)

        def R(z: float) -> float:
            return (1 + z * b @ torch.linalg.solve(torch.eye(s, dtype=F64) - z * A, torch.ones(s, dtype=F64))).item()

        assert abs(abs(R(-x)) - 1) < 1e-9 and abs(R(-x - 1e-3)) > 1
        assert all(abs(R(-u)) <= 1 for u in (0.5, x / 2, 0.99 * x))


def test_reference_errors():
    with pytest.raises(TypeError, match=r"tensor \[B, \.\.\.\]"):
        ex11.kinetic_integrand([1.0, 2.0])
    with pytest.raises(ValueError, match="square matrix"):
        ex11.euler_step_limit(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="negative real part"):
        ex11.euler_step_limit(torch.eye(2))
    with pytest.raises(TypeError, match="ButcherTableau"):
        ex11.stability_limit("rk4")


# --------------------------------------------------------------------------------------------------
# the checkers
# --------------------------------------------------------------------------------------------------

CHECKERS = [
    (ex11.check_kinetic_integrand, ex11.kinetic_integrand),
    (ex11.check_frobenius_probe, ex11.frobenius_probe),
    (ex11.check_augmented_dynamics, ex11.augmented_dynamics),
    (ex11.check_euler_step_limit, ex11.euler_step_limit),
    (ex11.check_stability_limit, ex11.stability_limit),
]
IDS = [checker.__name__ for checker, _ in CHECKERS]


@pytest.mark.parametrize("checker, _", CHECKERS, ids=IDS)
def test_checkers_need_a_function(checker, _):
    with pytest.raises(TypeError, match="expects your function"):
        checker(None)


def test_a_mean_instead_of_a_sum_fails(capsys):
    assert ex11.check_kinetic_integrand(lambda f: f.pow(2).mean(dim=1)) is ex11.kinetic_integrand
    out = capsys.readouterr().out
    assert "wrong a batch of 4 velocities" in out and "A sum, not a mean" in out


def test_a_kinetic_integrand_for_2d_only_fails_on_images(capsys):
    assert ex11.check_kinetic_integrand(lambda f: f.pow(2).sum(dim=1)) is ex11.kinetic_integrand
    out = capsys.readouterr().out
    assert "ok    [6, 5] float32" in out and "wrong image-shaped" in out and "expected shape (3,)" in out


def test_a_jacobian_vector_product_fails_on_the_non_symmetric_jacobian(capsys):
    def jvp_version(f, z, eps):
        # J eps by the double-vjp trick: also unbiased for ||J||_F^2, but not the product the task asks for
        u = torch.zeros_like(f, requires_grad=True)
        (g,) = torch.autograd.grad(f, z, u, create_graph=True)
        (jv,) = torch.autograd.grad(g, u, eps, create_graph=True)
        return jv.pow(2).sum(dim=1)

    assert ex11.check_frobenius_probe(jvp_version) is ex11.frobenius_probe
    out = capsys.readouterr().out
    assert "wrong linear f = z W^T" in out and "not a Jacobian-vector product" in out


def test_a_probe_without_create_graph_fails_only_the_training_case(capsys):
    def no_graph(f, z, eps):
        (vjp,) = torch.autograd.grad(f, z, eps)
        return vjp.pow(2).sum(dim=1)

    assert ex11.check_frobenius_probe(no_graph) is ex11.frobenius_probe
    out = capsys.readouterr().out
    assert "ok    tanh MLP" in out and "wrong differentiable in the parameters" in out and "create_graph=True" in out


def test_augmented_dynamics_that_ignores_time_or_reuses_the_kinetic_term_fails(capsys):
    def frozen_time(func, t, state, eps):
        return ex11.augmented_dynamics(func, torch.zeros_like(torch.as_tensor(t)), state, eps)

    assert ex11.check_augmented_dynamics(frozen_time) is ex11.augmented_dynamics
    out = capsys.readouterr().out
    assert "ok    z without grad at t = 0" in out and "wrong t = 0.7" in out

    def kinetic_twice(func, t, state, eps):
        f, kin, _ = ex11.augmented_dynamics(func, t, state, eps)
        return f, kin, kin

    assert ex11.check_augmented_dynamics(kinetic_twice) is ex11.augmented_dynamics
    assert "dE_J/dt: values differ" in capsys.readouterr().out


def test_augmented_dynamics_that_adds_the_integrals_fails(capsys):
    def accumulates(func, t, state, eps):
        f, kin, jac = ex11.augmented_dynamics(func, t, state, eps)
        return f, kin + state[1], jac + state[2]

    assert ex11.check_augmented_dynamics(accumulates) is ex11.augmented_dynamics
    out = capsys.readouterr().out
    assert "wrong the integrals' current values" in out and "do not depend on" in out


def test_two_over_the_largest_eigenvalue_fails_on_complex_eigenvalues(capsys):
    def real_only(A):
        return float(2 / torch.linalg.eigvals(A.double()).abs().max())

    assert ex11.check_euler_step_limit(real_only) is ex11.euler_step_limit
    out = capsys.readouterr().out
    assert "ok    diag(-1, -100)" in out and "wrong a damped rotation" in out and "Re(lam)" in out


def test_a_coarse_scan_or_the_embedded_weights_fail(capsys):
    def coarse(tableau):
        return math.floor(ex11.stability_limit(tableau) * 10) / 10

    assert ex11.check_stability_limit(coarse) is ex11.stability_limit
    out = capsys.readouterr().out
    assert "wrong rk4" in out and "bisect" in out

    def embedded(tableau):
        low = type(tableau)(tableau.name, tableau.c, tableau.a, tableau.b_embedded or tableau.b, tableau.order)
        return ex11.stability_limit(low)

    assert ex11.check_stability_limit(embedded) is ex11.stability_limit
    out = capsys.readouterr().out
    assert "ok    euler" in out and "wrong dopri5" in out


def test_checkers_return_the_learners_function_for_use_in_the_notebook():
    mine = _wrapped(ex11.frobenius_probe)
    assert ex11.check_frobenius_probe(mine, verbose=False) is mine
    assert ex11.check_frobenius_probe(_not_attempted, verbose=False) is ex11.frobenius_probe
    net = nn.Linear(2, 2).double()
    z = torch.randn(3, 2, dtype=F64, requires_grad=True)
    assert mine(net(z), z, torch.ones(3, 2, dtype=F64)).shape == (3,)


# --- exercise 6 (find the bug) and exercise 7 (predict) -------------------------------------------


def test_the_shipped_stiffness_bug_fails_on_complex_eigenvalues(capsys):
    assert ex11.check_stiffness_ratio(ex11.buggy_stiffness_ratio) is ex11.stiffness_ratio
    out = capsys.readouterr().out
    assert "ok    diagonal A" in out and "wrong a lightly damped fast rotation" in out
    assert "real parts" in out


def test_stiffness_ratio_from_numpy_passes(capsys):
    def other(A):
        import numpy as np

        re = np.abs(np.linalg.eigvals(A.double().numpy()).real)
        return re.max() / re.min()

    assert ex11.check_stiffness_ratio(other) is other
    assert "passed 4/4" in capsys.readouterr().out


def test_stiffness_ratio_upside_down_fails(capsys):
    def inverted(A):
        return 1 / ex11.stiffness_ratio(A)

    assert ex11.check_stiffness_ratio(inverted) is ex11.stiffness_ratio
    assert "wrong diagonal A = diag(-1, -100)" in capsys.readouterr().out


def test_euler_limit_prediction(capsys):
    assert ex11.check_euler_limit_prediction(None, verbose=False) == pytest.approx(0.04, abs=1e-4)
    ex11.check_euler_limit_prediction(0.02)  # 1 / 50: where the iterates stop alternating, not where they grow
    out = capsys.readouterr().out
    assert "FAILED" in out and "2 / 50" in out
    ex11.check_euler_limit_prediction(0.04)
    assert "passed" in capsys.readouterr().out
