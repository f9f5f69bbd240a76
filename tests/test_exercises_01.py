"""Checkers of notebook 01: the references are right, wrong answers fail with a hint, unattempted ones
hand back the reference, and bad input gets a clear error."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from nodecourse.exercises import ex01
from nodecourse.exercises import checking

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


def test_damped_pendulum_matches_the_equations_written_out():
    y = torch.tensor([[0.3, -1.2], [2.9, 0.4], [-1.0, 0.0]], dtype=F64)
    out = ex01.damped_pendulum(0.0, y, g_over_l=4.0, damping=0.5)
    for (theta, omega), (dtheta, domega) in zip(y.tolist(), out.tolist()):
        assert dtheta == pytest.approx(omega)
        assert domega == pytest.approx(-4.0 * math.sin(theta) - 0.5 * omega)
    assert out.shape == y.shape and out.dtype == F64


def test_picard_iterates_of_y_prime_equals_y_are_taylor_polynomials():
    t = torch.linspace(0.0, 1.0, 2001, dtype=F64)
    y0 = torch.ones(1, 1, dtype=F64)
    for k in range(4):
        taylor = sum(t**j / math.factorial(j) for j in range(k + 1))
        got = ex01.picard_iteration(lambda s, y: y, y0, t, k)[:, 0, 0]
        assert torch.allclose(got, taylor, atol=1e-6), k  # trapezoid error O(h^2) on the polynomials


def test_picard_fixed_point_is_the_implicit_trapezoid_rule():
    """For y' = lam y the converged grid iteration solves y_{i+1} = y_i (1 + h lam/2) / (1 - h lam/2)."""
    lam, n = -1.5, 11
    t = torch.linspace(0.0, 1.0, n, dtype=F64)
    h = 1.0 / (n - 1)
    exact = ((1 + h * lam / 2) / (1 - h * lam / 2)) ** torch.arange(n, dtype=F64)
    got = ex01.picard_iteration(lambda s, y: lam * y, torch.ones(1, dtype=F64), t, 80)[:, 0]
    assert torch.allclose(got, exact, atol=1e-12)


def test_lower_bound_never_exceeds_and_approaches_the_spectral_norm():
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(2, 2, generator=gen, dtype=F64)
    sigma = torch.linalg.svdvals(a)[0].item()
    x1, x2 = torch.randn(20000, 2, generator=gen, dtype=F64), torch.randn(20000, 2, generator=gen, dtype=F64)
    few = ex01.lipschitz_lower_bound(lambda x: x @ a.T, x1[:5], x2[:5])
    many = ex01.lipschitz_lower_bound(lambda x: x @ a.T, x1, x2)
    assert few <= many <= sigma * (1 + 1e-12)
    assert many > 0.999 * sigma
    # the pair along the top right singular vector attains the constant exactly
    v = torch.linalg.svd(a).Vh[0]
    assert ex01.lipschitz_lower_bound(lambda x: x @ a.T, v[None], torch.zeros(1, 2, dtype=F64)) == pytest.approx(sigma)


def _power_iteration_norm(w: torch.Tensor, steps: int = 500) -> float:
    v = torch.ones(w.shape[1], dtype=w.dtype)
    for _ in range(steps):
        v = w.T @ (w @ v)
        v = v / v.norm()
    return (w @ v).norm().item()


def test_upper_bound_of_one_linear_layer_is_its_largest_singular_value():
    torch.manual_seed(0)
    layer = nn.Linear(4, 3).double()
    got = ex01.lipschitz_upper_bound(nn.Sequential(layer))
    assert got == pytest.approx(_power_iteration_norm(layer.weight.detach()), rel=1e-8)


def test_upper_bound_dominates_jacobian_norms_and_counts_activations():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(2, 32), nn.Tanh(), nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 2)).double()
    upper = ex01.lipschitz_upper_bound(model)
    x = 3 * torch.randn(500, 2, dtype=F64)
    jac = torch.func.vmap(torch.func.jacrev(model))(x)
    assert torch.linalg.matrix_norm(jac, ord=2).max().item() <= upper
    with_sigmoid = nn.Sequential(model[0], nn.Sigmoid(), model[2])
    plain = nn.Sequential(model[0], nn.Identity(), model[2])
    assert ex01.lipschitz_upper_bound(with_sigmoid) == pytest.approx(0.25 * ex01.lipschitz_upper_bound(plain))
    leaky = nn.Sequential(model[0], nn.LeakyReLU(2.0), model[2])
    assert ex01.lipschitz_upper_bound(leaky) == pytest.approx(2.0 * ex01.lipschitz_upper_bound(plain))


# --------------------------------------------------------------------------------------------------
# the checkers: right, wrong, not attempted
# --------------------------------------------------------------------------------------------------


def test_small_angle_pendulum_fails_on_large_angles(capsys):
    def small_angle(t, y, g_over_l=1.0, damping=0.0):
        return torch.stack([y[..., 1], -g_over_l * y[..., 0] - damping * y[..., 1]], dim=-1)

    assert ex01.check_damped_pendulum(small_angle) is ex01.damped_pendulum
    out = capsys.readouterr().out
    assert "wrong large angles" in out and "sin(theta)" in out


def test_pendulum_that_loses_float64_fails_with_a_dtype_message(capsys):
    def float32_only(t, y, g_over_l=1.0, damping=0.0):
        return ex01.damped_pendulum(t, y, g_over_l, damping).float()

    ex01.check_damped_pendulum(float32_only)
    assert "expected dtype torch.float64" in capsys.readouterr().out


def test_left_riemann_picard_fails(capsys):
    def left_riemann(f, y0, t, n_iter):
        y = y0.expand(len(t), *y0.shape).clone()
        for _ in range(n_iter):
            velocities = torch.stack([f(t[i], y[i]) for i in range(len(t))])
            dt = (t[1:] - t[:-1]).reshape(-1, *[1] * y0.ndim)
            y = y0 + torch.cat([torch.zeros_like(y0)[None], torch.cumsum(velocities[:-1] * dt, 0)])
        return y

    assert ex01.check_picard_iteration(left_riemann) is ex01.picard_iteration
    out = capsys.readouterr().out
    assert "wrong y' = y, 6 iterations" in out and "cumulative_trapezoid" in out


def test_mean_ratio_and_unskipped_duplicates_fail_the_lower_bound(capsys):
    def mean_ratio(f, x1, x2):
        return ((f(x1) - f(x2)).norm(dim=1) / (x1 - x2).norm(dim=1)).mean()

    def no_skip(f, x1, x2):
        return ((f(x1) - f(x2)).norm(dim=1) / (x1 - x2).norm(dim=1)).max()

    ex01.check_lipschitz_lower_bound(mean_ratio)
    assert "take the max over pairs" in capsys.readouterr().out
    ex01.check_lipschitz_lower_bound(no_skip)
    out = capsys.readouterr().out
    assert "FAILED 5/6" in out and "divides by zero" in out


def test_frobenius_norm_and_missing_sigmoid_fail_the_upper_bound(capsys):
    def frobenius(model):
        bound = 1.0
        for layer in model:
            if isinstance(layer, nn.Linear):
                bound *= layer.weight.norm().item()
        return bound

    def ignores_activations(model):
        bound = 1.0
        for layer in model:
            if isinstance(layer, nn.Linear):
                bound *= torch.linalg.matrix_norm(layer.weight.detach(), ord=2).item()
        return bound

    ex01.check_lipschitz_upper_bound(frobenius)
    assert "FAILED 0/6" in capsys.readouterr().out
    ex01.check_lipschitz_upper_bound(ignores_activations)
    out = capsys.readouterr().out
    assert "wrong Sigmoid in the middle" in out and "too large" in out and "FAILED 5/6" in out


# --------------------------------------------------------------------------------------------------
# bad input
# --------------------------------------------------------------------------------------------------


def test_picard_rejects_bad_input():
    y0 = torch.ones(1, 1, dtype=F64)
    t = torch.linspace(0, 1, 5, dtype=F64)
    with pytest.raises(ValueError, match="n_iter must be an integer >= 0"):
        ex01.picard_iteration(lambda s, y: y, y0, t, -1)
    with pytest.raises(ValueError, match="1-D grid of at least 2 times"):
        ex01.picard_iteration(lambda s, y: y, y0, t[None], 2)
    with pytest.raises(TypeError, match="floating-point tensor"):
        ex01.picard_iteration(lambda s, y: y, torch.ones(1, dtype=torch.long), t, 2)


def test_lower_bound_rejects_bad_pairs():
    x = torch.randn(4, 2)
    with pytest.raises(ValueError, match="same shape"):
        ex01.lipschitz_lower_bound(torch.tanh, x, x[:3])
    with pytest.raises(ValueError, match="every pair has x1 == x2"):
        ex01.lipschitz_lower_bound(torch.tanh, x, x.clone())
    with pytest.raises(TypeError, match="must be tensors"):
        ex01.lipschitz_lower_bound(torch.tanh, x.tolist(), x)


def test_upper_bound_rejects_unknown_layers_and_non_sequential_models():
    with pytest.raises(ValueError, match="no Lipschitz constant known"):
        ex01.lipschitz_upper_bound(nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.1)))
    with pytest.raises(TypeError, match="must be an nn.Sequential"):
        ex01.lipschitz_upper_bound(nn.Linear(2, 2))


# --- exercise 5 (find the bug) and exercise 6 (predict) -------------------------------------------


def test_the_shipped_autonomous_field_bug_passes_only_where_t_equals_s(capsys):
    assert ex01.check_autonomous_field(ex01.buggy_autonomous_field) is ex01.autonomous_field
    out = capsys.readouterr().out
    assert "ok    the solver's t equals the state's time" in out
    assert "wrong g ignores the solver's t" in out and "last entry of the state" in out


def test_an_autonomous_field_that_reads_t_from_the_state_another_way_passes(capsys):
    def other(f):
        def g(t, z):
            s = z.narrow(-1, z.shape[-1] - 1, 1)
            dy = f(s, z[..., : z.shape[-1] - 1])
            return torch.cat([dy, s * 0 + 1], -1)
        return g

    assert ex01.check_autonomous_field(other) is other
    assert "passed 4/4" in capsys.readouterr().out


def test_an_autonomous_field_with_time_derivative_zero_fails(capsys):
    def frozen_clock(f):
        def g(t, z):
            y, s = z[..., :-1], z[..., -1:]
            return torch.cat([f(s, y), torch.zeros_like(s)], dim=-1)
        return g

    assert ex01.check_autonomous_field(frozen_clock) is ex01.autonomous_field
    assert "wrong an autonomous f: the time entry's derivative is 1" in capsys.readouterr().out


def test_area_prediction(capsys):
    truth = ex01.check_area_factor_prediction(None, verbose=False)
    assert truth == pytest.approx(math.exp(-1.0), rel=1e-3)
    ex01.check_area_factor_prediction(1.0)  # "the flow preserves area": true only without damping
    out = capsys.readouterr().out
    assert "FAILED" in out and "exp(-c t)" in out
    ex01.check_area_factor_prediction(0.37)
    assert "passed" in capsys.readouterr().out
