"""Checkers of notebook 11: the references are right (against explicit Jacobians, quadrature, the package's
regularised dynamics, hand-computed limits and the stability function itself); every exercise's plausible
wrong answers fail on the case that names the mistake, and an answer written differently from the
reference passes; hints come in stages and never show the answer; the solutions notebook says whose
function its later cells ran; bad input gets a clear error."""
from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import torch
from torch import nn

from nodecourse import solve
from nodecourse.exercises import ex11
from nodecourse.exercises import checking
from nodecourse.models import MLP
from nodecourse.models.regularised import RegularisedODEFunc
from nodecourse.solvers import TABLEAUX

from helpers import failing_answer, hint_stages, answer_calls

F64 = torch.float64


@pytest.fixture(autouse=True)
def _last_hint_stage():
    """Each test sees the last (most specific) hint stage on a failure, whatever ran before it; the staging
    itself is tested in test_hints_come_in_stages_and_never_show_the_answer (and test_checker_contract.py)."""
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
# the checkers: staged hints that never show the answer, honest labels in the notebook
# --------------------------------------------------------------------------------------------------

CHECKERS = [
    (ex11.check_kinetic_integrand, ex11.kinetic_integrand),
    (ex11.check_frobenius_probe, ex11.frobenius_probe),
    (ex11.check_augmented_dynamics, ex11.augmented_dynamics),
    (ex11.check_euler_step_limit, ex11.euler_step_limit),
    (ex11.check_stability_limit, ex11.stability_limit),
    (ex11.check_stiffness_ratio, ex11.stiffness_ratio),
]
IDS = [checker.__name__ for checker, _ in CHECKERS]


@pytest.mark.parametrize("checker, reference", CHECKERS, ids=IDS)
def test_hints_come_in_stages_and_never_show_the_answer(checker, reference, capsys):
    seen, returned = hint_stages(checker, capsys)
    assert all(result is reference for result in returned)
    n = seen[0][1]
    assert 2 <= n <= 3 and [s for s, _, _ in seen] == [min(k, n) for k in (1, 2, 3, 4)]
    assert len({text for _, _, text in seen}) == n, "each stage says something new"
    code = answer_calls(reference)
    assert code, "the reference has code to compare the hints with"
    for _, _, text in seen:
        assert not [c for c in code if c.replace(" ", "") in text.replace(" ", "")], text


@pytest.mark.parametrize("checker, reference", CHECKERS, ids=IDS)
def test_show_answer_prints_the_reference_itself(checker, reference, capsys):
    checker(failing_answer)
    number = re.search(r"show_answer\('11\.(\d)'\)", capsys.readouterr().out).group(1)
    assert f"def {reference.__name__}(" in ex11.show_answer(int(number))


def test_the_solutions_notebook_says_whose_function_each_later_cell_ran():
    """Prints and plot titles after an exercise name the function's owner with who(), never 'your'/'mine'."""
    source = (Path(__file__).resolve().parents[1] / "solutions" / "11_regularisation_and_cost_exercises.py").read_text()
    code = [ln for ln in source.splitlines() if not ln.lstrip().startswith("#")]
    labelled = [ln for ln in code if re.search(r"print\(|title=|label=|\"\"\"", ln)]
    assert not [ln for ln in labelled if re.search(r"\b(your|yours|mine|ours)\b", ln, re.IGNORECASE)]
    for name in ("kinetic_integrand", "frobenius_probe", "augmented_dynamics", "euler_step_limit", "stability_limit"):
        assert f"who({name})" in source, name


def _fails_on(checker, wrong, capsys, label, *phrases):
    """The checker rejects ``wrong``; the case named ``label`` is among the failed ones, and each phrase shows."""
    returned = checker(wrong)
    out = capsys.readouterr().out
    assert returned is not wrong and "FAILED" in out and "hint:" in out, out
    assert f"wrong {label}" in out, out
    for phrase in phrases:
        assert phrase in out, out
    return out


def _passes(checker, answer, capsys):
    assert checker(answer) is answer
    out = capsys.readouterr().out
    assert "passed" in out and "FAILED" not in out, out


# --- exercise 1: the kinetic integrand ------------------------------------------------------------


def test_a_mean_instead_of_a_sum_fails(capsys):
    _fails_on(ex11.check_kinetic_integrand, lambda f: f.pow(2).mean(dim=1), capsys,
              "a sum over the state, not a mean", "add them all")


def test_a_norm_instead_of_its_square_fails(capsys):
    _fails_on(ex11.check_kinetic_integrand, lambda f: f.flatten(1).norm(dim=1), capsys,
              "the squared norm: a sum of squares, no square root ([3, 4] gives 25)", "values differ")


def test_a_kinetic_integrand_for_2d_only_fails_on_images(capsys):
    out = _fails_on(ex11.check_kinetic_integrand, lambda f: f.pow(2).sum(dim=1), capsys,
                    "image-shaped velocities [3, 2, 4, 4]", "expected shape (3,)")
    assert "ok    float32 in, float32 out" in out


def test_a_kinetic_integrand_in_float64_fails_on_float32_input(capsys):
    _fails_on(ex11.check_kinetic_integrand, lambda f: f.double().flatten(1).pow(2).sum(1), capsys,
              "float32 in, float32 out", "expected dtype torch.float32")


def test_a_kinetic_integrand_with_vector_norm_passes(capsys):
    _passes(ex11.check_kinetic_integrand, lambda f: torch.linalg.vector_norm(f.flatten(1), dim=1) ** 2, capsys)


# --- exercise 2: the Frobenius norm from one probe ------------------------------------------------


def test_a_jacobian_vector_product_fails_on_the_non_symmetric_jacobian(capsys):
    def jvp_version(f, z, eps):
        # J eps by the double-vjp trick: also unbiased for ||J||_F^2, but not the product the task asks for
        u = torch.zeros_like(f, requires_grad=True)
        (g,) = torch.autograd.grad(f, z, u, create_graph=True)
        (jv,) = torch.autograd.grad(g, u, eps, create_graph=True)
        return jv.pow(2).sum(dim=1)

    _fails_on(ex11.check_frobenius_probe, jvp_version, capsys, "eps^T J, not J eps: a linear f = z W^T",
              "not a Jacobian-vector product")


def test_a_probe_without_create_graph_fails_only_the_training_case(capsys):
    def no_graph(f, z, eps):
        (vjp,) = torch.autograd.grad(f, z, eps)
        return vjp.pow(2).sum(dim=1)

    out = _fails_on(ex11.check_frobenius_probe, no_graph, capsys, "differentiable in the parameters",
                    "create_graph=True")
    assert "ok    tanh MLP" in out


def test_the_exact_frobenius_norm_instead_of_the_estimate_fails(capsys):
    def exact(f, z, eps):  # the quantity estimated, not the estimate: D passes, no probe
        rows = [torch.autograd.grad(f[:, i].sum(), z, create_graph=True)[0] for i in range(z.shape[1])]
        return torch.stack(rows, 1).pow(2).sum(dim=(1, 2))

    _fails_on(ex11.check_frobenius_probe, exact, capsys, "tanh MLP 3-16-3, batch of 5", "values differ")


def test_a_probe_summed_over_the_batch_fails(capsys):
    def summed(f, z, eps):
        return torch.autograd.grad(f, z, eps, create_graph=True)[0].pow(2).sum()

    _fails_on(ex11.check_frobenius_probe, summed, capsys, "tanh MLP 3-16-3, batch of 5: one number per sample",
              "expected shape (5,)")


def test_a_probe_one_row_at_a_time_fails_on_the_number_of_passes(capsys):
    def per_row(f, z, eps):  # the right numbers from D passes: eps^T J assembled row by row
        rows = [torch.autograd.grad(f[:, i].sum(), z, create_graph=True)[0] for i in range(z.shape[1])]
        vjp = torch.einsum("bi,bij->bj", eps, torch.stack(rows, 1))
        return vjp.pow(2).sum(1)

    _fails_on(ex11.check_frobenius_probe, per_row, capsys, "ONE vector-Jacobian product", "5 backward passes")


def test_a_probe_with_einsum_passes(capsys):
    def other(f, z, eps):
        (v,) = torch.autograd.grad(f, z, eps, create_graph=True)
        return torch.einsum("bd,bd->b", v, v)

    _passes(ex11.check_frobenius_probe, other, capsys)


# --- exercise 3: the augmented dynamics -----------------------------------------------------------


def test_augmented_dynamics_that_ignores_time_fails(capsys):
    def frozen_time(func, t, state, eps):
        return ex11.augmented_dynamics(func, torch.zeros_like(torch.as_tensor(t)), state, eps)

    out = _fails_on(ex11.check_augmented_dynamics, frozen_time, capsys, "the field at time t (t = 0.7")
    assert "ok    the triple (f, ||f||^2, ||eps^T df/dz||^2), z without grad at t = 0" in out


def test_augmented_dynamics_that_reuses_the_kinetic_term_fails(capsys):
    def kinetic_twice(func, t, state, eps):
        f, kin, _ = ex11.augmented_dynamics(func, t, state, eps)
        return f, kin, kin

    _fails_on(ex11.check_augmented_dynamics, kinetic_twice, capsys, "the triple", "dE_J/dt: values differ")


def test_augmented_dynamics_that_adds_the_integrals_fails(capsys):
    def accumulates(func, t, state, eps):
        f, kin, jac = ex11.augmented_dynamics(func, t, state, eps)
        return f, kin + state[1], jac + state[2]

    _fails_on(ex11.check_augmented_dynamics, accumulates, capsys, "the integrals' current values do not enter",
              "play no part")


def test_augmented_dynamics_that_evaluates_the_field_twice_fails(capsys):
    def twice(func, t, state, eps):
        z = state[0]
        with torch.enable_grad():
            z = z if z.requires_grad else z.detach().requires_grad_(True)
            f = func(t, z)
            return f, ex11.kinetic_integrand(func(t, z)), ex11.frobenius_probe(f, z, eps)

    out = _fails_on(ex11.check_augmented_dynamics, twice, capsys, "func is evaluated once per call",
                    "func was evaluated 2 times")
    assert "ok    float32 [6, 2]" in out  # the values are right


def test_augmented_dynamics_without_enable_grad_fails_under_no_grad(capsys):
    def no_enable(func, t, state, eps):
        z = state[0] if state[0].requires_grad else state[0].detach().requires_grad_(True)
        f = func(t, z)
        return f, ex11.kinetic_integrand(f), ex11.frobenius_probe(f, z, eps)

    out = _fails_on(ex11.check_augmented_dynamics, no_enable, capsys, "called inside torch.no_grad()",
                    "raised RuntimeError")
    assert "ok    the field at time t" in out


def test_augmented_dynamics_written_inline_passes(capsys):
    def inline(func, t, state, eps):
        with torch.enable_grad():
            z = state[0] if state[0].requires_grad else state[0].detach().requires_grad_(True)
            f = func(t, z)
            (row,) = torch.autograd.grad(f, z, eps, create_graph=True)
            return f, (f * f).sum(dim=1), (row * row).sum(dim=1)

    _passes(ex11.check_augmented_dynamics, inline, capsys)


# --- exercise 4: the explicit Euler step limit ----------------------------------------------------


def test_two_over_the_largest_eigenvalue_fails_on_complex_eigenvalues(capsys):
    def real_only(A):
        return float(2 / torch.linalg.eigvals(A.double()).abs().max())

    out = _fails_on(ex11.check_euler_step_limit, real_only, capsys, "a complex pair: eigenvalues -0.1 +- i",
                    "real part and the modulus")
    assert "ok    the most restrictive eigenvalue sets the limit" in out


def test_the_largest_bound_instead_of_the_smallest_fails(capsys):
    def loosest(A):
        lam = torch.linalg.eigvals(A.double())
        return float((-2 * lam.real / lam.abs() ** 2).max())

    _fails_on(ex11.check_euler_step_limit, loosest, capsys, "the most restrictive eigenvalue sets the limit")


def test_a_tensor_instead_of_a_float_fails(capsys):
    def tensor(A):
        lam = torch.linalg.eigvals(A.double())
        return (-2 * lam.real / lam.abs() ** 2).min()

    _fails_on(ex11.check_euler_step_limit, tensor, capsys, "float32 input, a Python float out",
              "return a Python float")


def test_the_euler_limit_from_numpy_eigenvalues_in_a_loop_passes(capsys):
    def other(A):
        import numpy as np

        bounds = [2 * -lam.real / (lam.real**2 + lam.imag**2) for lam in np.linalg.eigvals(A.double().numpy())]
        return float(min(bounds))

    _passes(ex11.check_euler_step_limit, other, capsys)


# --- exercise 5: the stability limit from the tableau ---------------------------------------------


def test_a_coarse_scan_fails(capsys):
    def coarse(tableau):
        return math.floor(ex11.stability_limit(tableau) * 10) / 10

    _fails_on(ex11.check_stability_limit, coarse, capsys, "rk4 (four stages), to within 1e-6", "bisection")


def test_the_embedded_weights_fail(capsys):
    def embedded(tableau):
        low = type(tableau)(tableau.name, tableau.c, tableau.a, tableau.b_embedded or tableau.b, tableau.order)
        return ex11.stability_limit(low)

    out = _fails_on(ex11.check_stability_limit, embedded, capsys, "dopri5 (seven stages): the propagated weights b")
    assert "ok    euler" in out


def test_the_last_crossing_instead_of_the_first_fails(capsys):
    def last_crossing(tableau):  # scan down from large s: finds where |R(-s)| leaves [-1, 1] for good
        gamma = ex11._stability_coefficients(tableau).tolist()
        grid = torch.arange(20000, 0, -1, dtype=torch.float64) * 1e-3
        amp = sum(g * (-grid) ** k for k, g in enumerate(gamma)).abs()
        lo = float(grid[int((amp <= 1).nonzero()[0])])
        hi = lo + 1e-3
        for _ in range(60):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if abs(sum(g * (-mid) ** k for k, g in enumerate(gamma))) <= 1 else (lo, mid)
        return lo

    out = _fails_on(ex11.check_stability_limit, last_crossing, capsys, "the FIRST crossing", "expected 2.76393")
    assert "ok    rk4" in out


def test_a_stability_limit_from_the_resolvent_passes(capsys):
    """R(z) from (I - zA)^-1 by a linear solve instead of the polynomial, a finer scan and a different bisection."""
    def other(tableau):
        s = tableau.n_stages
        A = torch.zeros(s, s, dtype=torch.float64)
        for i, row in enumerate(tableau.a):
            A[i, : len(row)] = torch.tensor([float(a) for a in row], dtype=torch.float64)
        b = torch.tensor([float(x) for x in tableau.b], dtype=torch.float64)

        def amp(x):
            z = -x
            return abs(1 + z * float(b @ torch.linalg.solve(torch.eye(s, dtype=torch.float64) - z * A,
                                                           torch.ones(s, dtype=torch.float64))))

        x = 0.0
        while amp(x + 0.005) <= 1:
            x += 0.005
        lo, hi = x, x + 0.005
        while hi - lo > 1e-9:
            lo, hi = ((lo + hi) / 2, hi) if amp((lo + hi) / 2) <= 1 else (lo, (lo + hi) / 2)
        return lo

    _passes(ex11.check_stability_limit, other, capsys)


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
