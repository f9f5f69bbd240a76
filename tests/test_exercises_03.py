"""Checkers of notebook 03: the references are right (against exact solutions, hand-computed values and
``nodecourse.solve``), wrong answers fail with a hint, unattempted ones hand back the reference, and bad
input gets a clear error."""
from __future__ import annotations

import functools
import math
from fractions import Fraction

import numpy as np
import pytest
import torch

from nodecourse import solve
from nodecourse.exercises import ex03
from nodecourse.exercises import checking
from nodecourse.solvers import TABLEAUX, ButcherTableau

from helpers import assert_checker_rejects as _fails

F64 = torch.float64


@pytest.fixture(autouse=True)
def _last_hint_stage():
    """Each test sees the last (most specific) hint stage on a failure, whatever ran before it; the staging
    itself is tested in test_checker_contract.py."""
    checking.reset_hints(already_failed=10)
    yield
    checking.reset_hints(already_failed=0)


# --------------------------------------------------------------------------------------------------
# the references against independent computations
# --------------------------------------------------------------------------------------------------


def test_convergence_order_recovers_power_laws_and_matches_polyfit():
    h = np.array([0.3, 0.1, 0.03, 0.01])
    for p in (1, 2, 4):
        assert ex03.convergence_order(h, 7.0 * h**p) == pytest.approx(p, abs=1e-12)
        assert ex03.convergence_order(h[::-1].copy(), (7.0 * h**p)[::-1].copy()) == pytest.approx(p, abs=1e-12)
    noisy = h**2 * np.array([1.5, 0.7, 1.2, 0.9])
    assert ex03.convergence_order(h, noisy) == pytest.approx(np.polyfit(np.log(h), np.log(noisy), 1)[0], abs=1e-12)


@pytest.mark.parametrize("name, taylor_terms", [("euler", 2), ("midpoint", 3), ("heun2", 3), ("rk4", 5)])
def test_rk_step_on_linear_decay_is_the_truncated_exponential(name, taylor_terms):
    """On y' = lam y a method with s = p stages (p <= 4) gives y1 = sum_{j <= p} (h lam)^j / j! y."""
    lam, h = -1.3, 0.4
    y = torch.tensor([[2.0], [-0.5]], dtype=F64)
    z = h * lam
    factor = sum(z**j / math.factorial(j) for j in range(taylor_terms))
    y1, err = ex03.rk_step(lambda t, x: lam * x, 0.0, y, h, TABLEAUX[name])
    assert torch.allclose(y1, factor * y, rtol=0, atol=1e-15) and err is None


def test_rkf45_error_estimate_is_the_error_of_the_fourth_order_quadrature():
    """For y' = g(t) a step is a quadrature rule; RKF45's b (order 4) is exact for cubics, its b_embedded
    (order 5) also for quartics, so on g = t^4 the estimate equals the true error of y1."""
    t0, h = 0.5, 0.3
    y = torch.zeros(1, dtype=F64)
    y1, err = ex03.rk_step(lambda t, x: torch.full_like(x, t**3), t0, y, h, TABLEAUX["rkf45"])
    assert y1.item() == pytest.approx(((t0 + h) ** 4 - t0**4) / 4, abs=1e-15) and abs(err.item()) < 1e-15
    y1, err = ex03.rk_step(lambda t, x: torch.full_like(x, t**4), t0, y, h, TABLEAUX["rkf45"])
    true_error = y1.item() - ((t0 + h) ** 5 - t0**5) / 5
    assert abs(true_error) > 1e-8 and err.item() == pytest.approx(true_error, rel=1e-9)


def test_rk_step_per_sample_equals_one_sample_at_a_time():
    def field(t, y):
        s = torch.as_tensor(t, dtype=y.dtype)
        s = s.reshape(-1, 1) if s.dim() == 1 else s
        return torch.sin(s) * y - y**2

    y = torch.tensor([[1.0, 0.5], [0.2, -0.3], [2.0, 1.0]], dtype=F64)
    t = torch.tensor([0.0, 1.0, 2.5], dtype=F64)
    h = torch.tensor([0.1, 0.02, 0.3], dtype=F64)
    together, err = ex03.rk_step(field, t, y, h, TABLEAUX["dopri5"])
    for b in range(3):
        alone, err_b = ex03.rk_step(field, t[b].item(), y[b], h[b].item(), TABLEAUX["dopri5"])
        assert torch.allclose(together[b], alone, atol=1e-15) and torch.allclose(err[b], err_b, atol=1e-15)


def _order_conditions_up_to_3(tab):
    """The four order conditions of orders 1-3, each as value - target, in exact arithmetic."""
    b, c, a = list(tab.b), list(tab.c), [list(row) for row in tab.a]
    return [sum(b) - 1,
            sum(bi * ci for bi, ci in zip(b, c)) - Fraction(1, 2),
            sum(bi * ci * ci for bi, ci in zip(b, c)) - Fraction(1, 3),
            sum(b[i] * a[i][j] * c[j] for i in range(3) for j in range(i)) - Fraction(1, 6)]


def test_third_order_tableau_gives_the_methods_of_heun_kutta_and_ralston():
    """Heun's nodes give the package's heun3; Kutta's (1901) weights are b = (1/6, 2/3, 1/6) with a31 = -1,
    a32 = 2; Ralston's nodes 1/2, 3/4 give the third-order solution that bosh3 propagates."""
    F = Fraction
    heun = ex03.third_order_tableau(F(1, 3), F(2, 3))
    assert (list(heun.c), [list(r) for r in heun.a], list(heun.b)) == (
        list(TABLEAUX["heun3"].c), [list(r) for r in TABLEAUX["heun3"].a], list(TABLEAUX["heun3"].b))
    kutta = ex03.third_order_tableau(F(1, 2), F(1))
    assert [list(r) for r in kutta.a] == [[], [F(1, 2)], [F(-1), F(2)]] and list(kutta.b) == [F(1, 6), F(2, 3), F(1, 6)]
    bosh3, ralston = TABLEAUX["bosh3"], ex03.third_order_tableau(F(1, 2), F(3, 4))
    assert list(ralston.c) == list(bosh3.c[:3]) and [list(r) for r in ralston.a] == [list(r) for r in bosh3.a[:3]]
    assert list(ralston.b) == list(bosh3.b[:3]) and bosh3.b[3] == 0
    assert heun.order == kutta.order == 3 and heun.n_stages == 3


@pytest.mark.parametrize("c2, c3", [(Fraction(1, 5), Fraction(7, 9)), (Fraction(-1, 2), Fraction(3, 2)),
                                    (Fraction(5, 4), Fraction(1, 3)), (Fraction(1), Fraction(1, 2))])
def test_third_order_tableau_meets_the_conditions_exactly_and_rows_sum_to_the_nodes(c2, c3):
    tab = ex03.third_order_tableau(c2, c3)
    assert all(isinstance(x, Fraction) for x in [*tab.c, *tab.b, *(x for row in tab.a for x in row)])
    assert list(tab.c) == [0, c2, c3] and all(sum(tab.a[i]) == tab.c[i] for i in range(3))
    assert _order_conditions_up_to_3(tab) == [0, 0, 0, 0]


def test_a_derived_method_converges_with_order_three_on_a_nonlinear_problem():
    def vdp(t, y):
        return torch.stack([y[1], (1 - y[0] ** 2) * y[1] - y[0]])

    z0, T = torch.tensor([1.0, 1.0], dtype=F64), 1.0
    exact = solve(vdp, z0, torch.tensor([0.0, T], dtype=F64), rtol=1e-13, atol=1e-13, method="dopri8").ys[-1]
    tab = ex03.third_order_tableau(0.4, 0.8)  # float nodes: a method no library ships
    errors = []
    for n in (20, 40, 80, 160):
        y = z0
        for i in range(n):
            y, err = ex03.rk_step(vdp, i * T / n, y, T / n, tab)
        errors.append((y - exact).norm().item())
    assert err is None and np.polyfit(np.log([T / n for n in (20, 40, 80, 160)]), np.log(errors), 1)[0] == \
        pytest.approx(3, abs=0.1)


@pytest.mark.parametrize("c2, c3", [(0, 0.5), (0.5, 0), (0.5, 0.5), (Fraction(2, 3), Fraction(2, 3)),
                                    (Fraction(2, 3), 1)])
def test_nodes_without_a_unique_third_order_method_are_refused(c2, c3):
    with pytest.raises(ValueError, match="third-order method"):
        ex03.third_order_tableau(c2, c3)


def test_next_step_size_by_hand():
    h = torch.full((6,), 0.1, dtype=F64)
    ratio = torch.tensor([32.0, 0.0, 1e9, 0.99, float("nan"), 1e-5], dtype=F64)
    expected = 0.1 * torch.tensor([0.9 / 2, 10.0, 0.2, 1.0, 0.2, 0.9 * 10.0], dtype=F64)
    assert torch.allclose(ex03.next_step_size(h, ratio, 5), expected, rtol=1e-12)
    assert ex03.next_step_size(h[:1], torch.tensor([8.0], dtype=F64), 3).item() == pytest.approx(0.1 * 0.9 / 2)


def test_mask_update_by_hand():
    t = torch.tensor([0.0, 0.0, 0.8, 0.9], dtype=F64)
    h = torch.tensor([0.5, 0.5, 0.2, 0.1], dtype=F64)
    y = torch.zeros(4, 2, dtype=F64)
    y_prop = torch.ones(4, 2, dtype=F64)
    accept = torch.tensor([True, False, True, True])
    active = torch.tensor([True, True, True, False])
    t_new, y_new, active_new = ex03.mask_update(t, y, y_prop, h, 1.0, accept, active)
    assert t_new.tolist() == [0.5, 0.0, 1.0, 0.9]  # 0.8 + 0.2 lands exactly on t_end
    assert y_new[:, 0].tolist() == [1.0, 0.0, 1.0, 0.0]
    assert active_new.tolist() == [True, True, False, False]


def test_batched_rkf45_meets_the_tolerance_and_matches_the_package_per_sample():
    rates = torch.logspace(0, 2, 6, dtype=F64)
    y0 = torch.ones(6, 1, dtype=F64)
    tol = 1e-6
    y_end, n_steps = ex03.batched_rkf45(lambda t, y: -rates[:, None] * y, y0, 3.0, tol, tol, 0.01)
    exact = torch.exp(-3.0 * rates)[:, None]
    assert bool(((y_end - exact).abs() < 10 * (tol + tol * exact)).all())
    package = solve(lambda t, y: -rates[:, None] * y, y0, torch.tensor([0.0, 3.0], dtype=F64), rtol=tol, atol=tol,
                    method="rkf45", options={"per_sample": True, "first_step": 0.01})
    assert bool(((n_steps - package.stats.n_steps).abs() <= (0.05 * package.stats.n_steps).clamp(min=2)).all())
    assert n_steps.dtype == torch.long and bool((n_steps[1:] >= n_steps[:-1]).all())  # faster decay, more steps


def test_batched_rkf45_sample_in_a_batch_equals_sample_alone():
    mus = torch.tensor([0.5, 3.0], dtype=F64)

    def vdp(m):
        def field(t, y):
            return torch.stack([y[:, 1], m * (1 - y[:, 0] ** 2) * y[:, 1] - y[:, 0]], dim=1)
        return field

    y0 = torch.tensor([[2.0, 0.0], [1.0, 1.0]], dtype=F64)
    y_end, n_steps = ex03.batched_rkf45(vdp(mus), y0, 2.0, 1e-7, 1e-7, 0.01)
    for b in range(2):
        alone, n_alone = ex03.batched_rkf45(vdp(mus[b : b + 1]), y0[b : b + 1], 2.0, 1e-7, 1e-7, 0.01)
        assert torch.allclose(alone[0], y_end[b], atol=1e-13) and n_alone.item() == n_steps[b].item()


# --------------------------------------------------------------------------------------------------
# bad input
# --------------------------------------------------------------------------------------------------


def test_bad_input_gets_clear_errors():
    with pytest.raises(ValueError, match="same length"):
        ex03.convergence_order([0.1, 0.2], [1.0])
    with pytest.raises(ValueError, match="positive"):
        ex03.convergence_order([0.1, 0.2], [0.0, 1.0])
    with pytest.raises(TypeError, match="ButcherTableau"):
        ex03.rk_step(lambda t, y: y, 0.0, torch.ones(2), 0.1, "rk4")
    with pytest.raises(ValueError, match="order must be a positive integer"):
        ex03.next_step_size(torch.ones(2), torch.ones(2), 0)
    with pytest.raises(TypeError, match="bool tensor"):
        ex03.mask_update(torch.zeros(2), torch.zeros(2, 1), torch.ones(2, 1), torch.ones(2), 1.0,
                         torch.ones(2), torch.ones(2, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"\[B, N\]"):
        ex03.batched_rkf45(lambda t, y: -y, torch.ones(3), 1.0, 1e-6, 1e-6, 0.1)
    with pytest.raises(ValueError, match="positive"):
        ex03.batched_rkf45(lambda t, y: -y, torch.ones(3, 1), 0.0, 1e-6, 1e-6, 0.1)
    with pytest.raises(TypeError, match="finite number"):
        ex03.third_order_tableau("1/2", 1.0)
    with pytest.raises(TypeError, match="expects your function"):
        ex03.check_third_order_tableau(None)


# --------------------------------------------------------------------------------------------------
# the checkers
# --------------------------------------------------------------------------------------------------


def test_end_point_slope_fails_the_noisy_case(capsys):
    def end_points(h, e):
        h, e = torch.as_tensor(h, dtype=F64), torch.as_tensor(e, dtype=F64)
        return float((e[-1].log() - e[0].log()) / (h[-1].log() - h[0].log()))

    assert ex03.check_convergence_order(end_points) is ex03.convergence_order
    out = capsys.readouterr().out
    assert "wrong noisy" in out and "ok    exact power law e = 3 h^2" in out and "least squares" in out
    assert "[stage 2 of 2]" in out and "x_centred" not in out  # a nudge, never the answer


def _tableau_from(c2, c3, b2, b3, a31, a32):
    return ButcherTableau("learner's", c=[0, c2, c3], a=[[], [c2], [a31, a32]], b=[1 - b2 - b3, b2, b3], order=3)


def test_a_tableau_whose_third_row_does_not_sum_to_c3_fails_where_a31_is_not_zero(capsys):
    """A learner who sets a31 = 0 (it is 0 for Heun's and Ralston's nodes) gets Heun right and Kutta wrong."""
    def no_row_sum(c2, c3):
        if c2 == 0 or c3 == 0 or c2 == c3 or 3 * c2 == 2:
            raise ValueError("no unique method")
        b2, b3 = (3 * c3 - 2) / (6 * c2 * (c3 - c2)), (2 - 3 * c2) / (6 * c3 * (c3 - c2))
        return _tableau_from(c2, c3, b2, b3, 0, 1 / (6 * b3 * c2))

    out = _fails(ex03.check_third_order_tableau, no_row_sum, capsys,
                 "ok    Heun's nodes 1/3, 2/3", "row 3 of a sums to 2, not to its node c_3 = 1")
    assert "wrong Kutta's nodes 1/2, 1" in out and "[stage 2 of 2]" in out and "1 / (6" not in out


def test_a32_from_the_wrong_node_fails_on_the_last_order_condition(capsys):
    """b3 a32 c2 = 1/6 written with c3 for c2: the rows still sum to c, orders 1 and 2 still hold."""
    def wrong_node(c2, c3):
        if c2 == 0 or c3 == 0 or c2 == c3 or 3 * c2 == 2:
            raise ValueError("no unique method")
        b2, b3 = (3 * c3 - 2) / (6 * c2 * (c3 - c2)), (2 - 3 * c2) / (6 * c3 * (c3 - c2))
        a32 = 1 / (6 * b3 * c3)
        return _tableau_from(c2, c3, b2, b3, c3 - a32, a32)

    out = _fails(ex03.check_third_order_tableau, wrong_node, capsys,
                 "the order condition order 3: sum_ij b_i a_ij c_j = 1/6 fails")
    assert "ok    nodes 1/2, 1/2: no unique method" in out and "ok    nodes 2/3, 1" in out


def test_nodes_that_make_b3_vanish_must_raise_a_value_error(capsys):
    """A learner who refuses only a singular system divides by b3 = 0 at c2 = 2/3."""
    def singular_only(c2, c3):
        if c2 * c3 * (c3 - c2) == 0:
            raise ValueError("the nodes do not fix b2 and b3")
        b2, b3 = (3 * c3 - 2) / (6 * c2 * (c3 - c2)), (2 - 3 * c2) / (6 * c3 * (c3 - c2))
        a32 = 1 / (6 * b3 * c2)
        return _tableau_from(c2, c3, b2, b3, c3 - a32, a32)

    out = _fails(ex03.check_third_order_tableau, singular_only, capsys,
                 "wrong nodes 2/3, 1: no third-order method, a ValueError is expected: raised ZeroDivisionError")
    assert "ok    nodes 1/2, 1/2: no unique method" in out and "passed 5/6" not in out and "FAILED 5/6" in out


def test_a_third_order_tableau_solved_numerically_passes(capsys):
    """The four conditions as a linear solve in floats (numpy), refusing a singular system or b3 = 0."""
    def numerically(c2, c3):
        c2, c3 = float(c2), float(c3)
        matrix = np.array([[c2, c3], [c2**2, c3**2]])
        if abs(np.linalg.det(matrix)) < 1e-12:
            raise ValueError(f"the nodes {c2}, {c3} do not fix b2 and b3")
        b2, b3 = np.linalg.solve(matrix, [1 / 2, 1 / 3])
        if abs(b3) < 1e-12:
            raise ValueError("b3 = 0: no method of order 3")
        a32 = 1 / (6 * b3 * c2)
        return ButcherTableau("numerical", c=[0.0, c2, c3], a=[[], [c2], [c3 - a32, a32]],
                              b=[1 - b2 - b3, b2, b3], order=3)

    assert ex03.check_third_order_tableau(numerically) is numerically
    assert "passed 6/6" in capsys.readouterr().out


def test_controller_that_shrinks_accepted_steps_fails(capsys):
    def plain_clamp(h, ratio, order, safety=0.9, ifactor=10.0, dfactor=0.2):
        factor = (safety * ratio ** (-1.0 / order)).clamp(dfactor, ifactor)
        return h * torch.where(torch.isnan(ratio), torch.full_like(factor, dfactor), factor)

    assert ex03.check_next_step_size(plain_clamp) is ex03.next_step_size
    out = capsys.readouterr().out
    assert "wrong accepted steps never shrink" in out and "[1, ifactor]" in out


def test_masking_that_ignores_the_active_mask_fails(capsys):
    def ignores_active(t, y, y_prop, h, t_end, accept, active):
        done = accept & (h >= t_end - t)
        t_new = torch.where(accept, torch.where(done, torch.full_like(t, t_end), t + h), t)
        return t_new, torch.where(accept.unsqueeze(1), y_prop, y), active & ~done

    assert ex03.check_mask_update(ignores_active) is ex03.mask_update
    out = capsys.readouterr().out
    assert "wrong nobody active: nothing moves" in out and "combine the two masks" in out


def test_solver_that_never_rejects_fails(capsys):
    def never_rejects(f, y0, t_end, rtol, atol, first_step):
        t = torch.zeros(y0.shape[0], dtype=y0.dtype)
        h, y = torch.full_like(t, first_step), y0
        active = torch.ones(y0.shape[0], dtype=torch.bool)
        n = torch.zeros(y0.shape[0], dtype=torch.long)
        while bool(active.any()):
            h_try = torch.where(active, torch.minimum(h, t_end - t), torch.zeros_like(h))
            y1, _ = ex03.rk_step(f, t, y, h_try, TABLEAUX["rkf45"])
            n += active.long()
            t, y, active = ex03.mask_update(t, y, y1, h_try, t_end, torch.ones_like(active), active)
            h = 10 * h_try
        return y, n

    assert ex03.check_batched_rkf45(never_rejects) is ex03.batched_rkf45
    out = capsys.readouterr().out
    assert "FAILED" in out and "y_end" in out and "rejected" in out


# --------------------------------------------------------------------------------------------------
# the wrong answers a learner found passing, and answers written differently that must pass
# --------------------------------------------------------------------------------------------------


def _rkf45_counting(count_accepted_only: bool):
    def solver(f, y0, t_end, rtol, atol, first_step):
        t = torch.zeros(y0.shape[0], dtype=y0.dtype)
        h, y = torch.full_like(t, first_step), y0
        active = torch.ones(y0.shape[0], dtype=torch.bool)
        n = torch.zeros(y0.shape[0], dtype=torch.long)
        while bool(active.any()):
            h_try = torch.where(active, torch.minimum(h, t_end - t), torch.zeros_like(h))
            y1, err = ex03.rk_step(f, t, y, h_try, TABLEAUX["rkf45"])
            ratio = (err / (atol + rtol * torch.maximum(y.abs(), y1.abs()))).pow(2).mean(dim=1).sqrt()
            n += (active & (ratio <= 1)).long() if count_accepted_only else active.long()
            h = ex03.next_step_size(h_try, ratio, TABLEAUX["rkf45"].error_order)
            t, y, active = ex03.mask_update(t, y, y1, h_try, t_end, ratio <= 1, active)
        return y, n
    return solver


def test_counting_accepted_instead_of_attempted_steps_fails_and_says_so(capsys):
    assert ex03.check_batched_rkf45(_rkf45_counting(True)) is ex03.batched_rkf45
    out = capsys.readouterr().out
    assert "wrong square-wave forcing" in out and "are the ACCEPTED steps" in out


def test_a_differently_written_batched_rkf45_passes(capsys):
    """Per-sample loop bookkeeping with Python ints and an infinity-norm-free RMS written with norm()."""
    def other(f, y0, t_end, rtol, atol, first_step):
        b, n = y0.shape
        t = torch.zeros(b, dtype=y0.dtype)
        h = first_step * torch.ones(b, dtype=y0.dtype)
        y, done = y0.clone(), torch.zeros(b, dtype=torch.bool)
        steps = torch.zeros(b, dtype=torch.int64)
        while not bool(done.all()):
            h_try = (t_end - t).clamp(max=h).masked_fill(done, 0.0)
            y1, err = ex03.rk_step(f, t, y, h_try, TABLEAUX["rkf45"])
            ratio = torch.linalg.vector_norm(err / (atol + rtol * torch.maximum(y.abs(), y1.abs())), dim=1) / n**0.5
            steps[~done] += 1
            h = ex03.next_step_size(h_try, ratio, TABLEAUX["rkf45"].error_order)
            t, y, active = ex03.mask_update(t, y, y1, h_try, t_end, ratio <= 1, ~done)
            done = ~active
        return y, steps

    assert ex03.check_batched_rkf45(other) is other
    assert "passed 6/6" in capsys.readouterr().out


def test_masking_that_does_not_snap_to_t_end_fails_on_its_case(capsys):
    def no_snap(t, y, y_prop, h, t_end, accept, active):
        move = accept & active
        finishes = move & (h >= t_end - t)
        return torch.where(move, t + h, t), torch.where(move[:, None], y_prop, y), active & ~finishes

    assert ex03.check_mask_update(no_snap) is ex03.mask_update
    out = capsys.readouterr().out
    assert "wrong finishing time exactly t_end although t + h rounds" in out
    assert "must be exactly t_end = 0.3, got 0.30000000000000004" in out


def test_masking_written_with_arithmetic_masks_passes(capsys):
    def arithmetic(t, y, y_prop, h, t_end, accept, active):
        move = torch.logical_and(accept, active)
        finishes = torch.logical_and(move, t_end - t <= h)
        m = move.to(y.dtype)
        t_new = torch.where(finishes, torch.as_tensor(t_end, dtype=t.dtype), t + m * h)
        return t_new, y + m[:, None] * (y_prop - y), torch.logical_and(active, torch.logical_not(finishes))

    assert ex03.check_mask_update(arithmetic) is arithmetic
    assert "passed 7/7" in capsys.readouterr().out


def test_the_shipped_adaptive_solve_bug_fails_only_where_steps_are_rejected(capsys):
    _, accepted, rejected = ex03.adaptive_solve(ex03._rotation, torch.tensor([1.0, 0.5], dtype=F64), 1.0, 1e-3, 1e-3,
                                                0.05)
    assert rejected == 0 and accepted > 0  # the case labelled "no step is rejected" really has none
    assert ex03.check_adaptive_solve(ex03.buggy_adaptive_solve) is ex03.adaptive_solve
    out = capsys.readouterr().out
    assert "ok    loose tolerance, small first step: no step is rejected" in out
    assert "wrong first step far too large: rejected steps must leave the state alone: y_end" in out
    assert "the state y" in out  # the last hint stage names the variable


def test_an_adaptive_solve_repaired_differently_passes(capsys):
    def repaired(f, y0, t_end, rtol=1e-6, atol=1e-6, first_step=0.1):
        tab = TABLEAUX["rkf45"]
        t, y, h, acc, rej = 0.0, y0, float(first_step), 0, 0
        while t < t_end:
            h = min(h, t_end - t)
            y1, err = ex03.rk_step(f, t, y, h, tab)
            ratio = torch.sqrt(torch.mean((err / (atol + rtol * torch.maximum(y.abs(), y1.abs()))) ** 2))
            if ratio > 1:
                rej += 1
            else:
                t, y, acc = (t_end if h >= t_end - t else t + h), y1, acc + 1
            h = ex03.next_step_size(torch.tensor([h], dtype=y0.dtype), ratio.reshape(1), tab.error_order).item()
        return y, acc, rej

    assert ex03.check_adaptive_solve(repaired) is repaired
    assert "passed 4/4" in capsys.readouterr().out


def test_solver_settings_open_task_measures_both_targets(capsys):
    assert ex03.check_solver_settings(lambda: {}) is ex03.solver_settings  # the defaults cost too many NFE
    out = capsys.readouterr().out
    assert "ok    error at T at most 1e-06" in out and "wrong at most 500 function evaluations: nfe =" in out
    assert ex03.check_solver_settings(lambda: {"method": "dopri5", "rtol": 1e-6, "atol": 1e-6}) is ex03.solver_settings
    assert "wrong error at T at most 1e-06: error =" in capsys.readouterr().out
    assert ex03.check_solver_settings(lambda: {"method": "rk4", "step_size": 0.1}) is ex03.solver_settings
    assert "wrong only method, rtol, atol and options are set" in capsys.readouterr().out
    assert ex03.check_solver_settings(lambda: [("method", "dopri8")]) is ex03.solver_settings
    assert "return a dict" in capsys.readouterr().out


def test_other_settings_that_meet_the_targets_pass(capsys):
    other = functools.partial(dict, method="dopri8", rtol=1e-8, atol=1e-9)
    assert ex03.check_solver_settings(other) is other
    assert "passed 3/3" in capsys.readouterr().out


def test_staged_hints_on_a_wrong_mask_update(capsys):
    checking.reset_hints(already_failed=0)
    bad = lambda t, y, yp, h, te, acc, act: (t, y, act)  # noqa: E731 - nobody ever moves
    for stage in (1, 2):
        ex03.check_mask_update(bad)
        out = capsys.readouterr().out
        assert f"[stage {stage} of 2]" in out and "torch.where(move" not in out
    ex03.show_answer(4)
    assert "def mask_update" in capsys.readouterr().out
