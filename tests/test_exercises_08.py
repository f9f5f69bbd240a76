"""The checkers of 08_depth_variance_and_control: references agree with independent computations, a
correct answer passes, plausible wrong answers fail with a useful message, an unattempted exercise hands
back the reference."""
from __future__ import annotations

import math

import pytest
import torch

from nodecourse import odeint
from nodecourse.exercises import ex08
from nodecourse.exercises import checking
from nodecourse.models import MLP, ODEFunc
from nodecourse.models.controlled import DataControlledField, RescaledField
from nodecourse.models.depth_variant import GalerkinLinear

from helpers import assert_checker_rejects as _fails

DT = torch.float64


@pytest.fixture(autouse=True)
def _last_hint_stage():
    """Each test sees the last (most specific) hint stage on a failure, whatever ran before it; the staging
    itself is tested in test_checker_contract.py."""
    checking.reset_hints(already_failed=10)
    yield
    checking.reset_hints(already_failed=0)


def _not_attempted(*args, **kwargs):
    raise NotImplementedError("Exercise")


# --- the references against independent computations ---------------------------------------------

def test_fourier_basis_matches_the_formula_term_by_term():
    s = torch.tensor([0.0, 0.2, 0.9, 1.7], dtype=DT)
    phi = ex08.fourier_basis(s, 3, period=1.5)
    assert phi.shape == (4, 7)
    for i, si in enumerate(s.tolist()):
        w = 2 * math.pi / 1.5
        expected = [1.0] + [math.cos(k * w * si) for k in (1, 2, 3)] + [math.sin(k * w * si) for k in (1, 2, 3)]
        assert phi[i].tolist() == pytest.approx(expected, abs=1e-12)


def test_galerkin_linear_matches_the_package_layer():
    torch.manual_seed(0)
    layer = GalerkinLinear(3, 2, basis="fourier", order=2, period=2.0).to(DT)
    with torch.no_grad():
        layer.weight_coeffs.normal_()
        layer.bias_coeffs.normal_()
    x = torch.randn(5, 3, dtype=DT)
    for s in (0.0, 0.4, 1.3):
        s = torch.tensor(s, dtype=DT)
        torch.testing.assert_close(ex08.galerkin_linear(x, s, layer.weight_coeffs, layer.bias_coeffs, 2.0), layer(s, x))


def test_controlled_dynamics_matches_the_package_field():
    torch.manual_seed(1)
    field = DataControlledField(2, 3, hidden_size=(8,)).to(DT)
    h, x = torch.randn(4, 2, dtype=DT), torch.randn(4, 3, dtype=DT)
    got = ex08.controlled_dynamics(field.net, torch.tensor(0.0), (h, x))
    expected = field(torch.tensor(0.0), (h, x))
    torch.testing.assert_close(got[0], expected[0])
    assert torch.equal(got[1], torch.zeros_like(x))


def test_integral_loss_dynamics_integrates_the_running_cost():
    torch.manual_seed(2)
    func = ODEFunc(MLP([2, 8, 2])).to(DT)
    h0 = torch.randn(3, 2, dtype=DT)
    t = torch.linspace(0.0, 1.0, 401, dtype=DT)
    h, L = odeint(lambda s, st: ex08.integral_loss_dynamics(func, ex08._circle_cost, s, st),
                  (h0, torch.zeros(3, dtype=DT)), t, rtol=1e-10, atol=1e-12)
    cost = torch.stack([ex08._circle_cost(s, hs) for s, hs in zip(t, h)])      # [401, 3] along the solution
    trapezoid = ((cost[1:] + cost[:-1]) / 2 * (t[1] - t[0])).sum(0)
    torch.testing.assert_close(L[-1], trapezoid, rtol=1e-5, atol=1e-7)


def test_rescaled_dynamics_matches_the_package_field_and_per_sample_solves():
    torch.manual_seed(3)
    func = ODEFunc(MLP([2, 8, 1]), time_dependent=True).to(DT)
    h, T = torch.randn(4, 1, dtype=DT), torch.rand(4, 1, dtype=DT) + 0.5
    sigma = torch.tensor(0.6, dtype=DT)
    torch.testing.assert_close(ex08.rescaled_dynamics(func, sigma, (h, T))[0], RescaledField(func)(sigma, (h, T))[0])
    end = odeint(lambda sg, st: ex08.rescaled_dynamics(func, sg, st), (h, T), torch.tensor([0.0, 1.0], dtype=DT),
                 rtol=1e-10, atol=1e-12)[0][-1]
    for i in range(4):
        alone = odeint(func, h[i], torch.cat([torch.zeros(1, dtype=DT), T[i]]), rtol=1e-10, atol=1e-12)[-1]
        torch.testing.assert_close(end[i], alone)


# --- the checkers ---------------------------------------------------------------------------------

CHECKERS = [
    (ex08.check_fourier_basis, ex08.fourier_basis),
    (ex08.check_galerkin_linear, ex08.galerkin_linear),
    (ex08.check_controlled_dynamics, ex08.controlled_dynamics),
    (ex08.check_integral_loss_dynamics, ex08.integral_loss_dynamics),
    (ex08.check_rescaled_dynamics, ex08.rescaled_dynamics),
]


def _copy(fn):
    """A distinct function object that behaves like ``fn`` (to tell 'learner kept' from 'reference')."""
    def learner(*args, **kwargs):
        return fn(*args, **kwargs)
    return learner


def test_checkers_leave_the_global_random_stream_alone(capsys):
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    for checker, reference in CHECKERS:
        checker(_copy(reference))
    assert torch.equal(torch.rand(3), expected)


def test_fourier_basis_interleaved_fails(capsys):
    def interleaved(s, n, period=1.0):   # (1, cos1, sin1, cos2, sin2, ...)
        angle = 2 * math.pi / period * s.unsqueeze(-1) * torch.arange(1, n + 1, dtype=s.dtype)
        pairs = torch.stack([torch.cos(angle), torch.sin(angle)], dim=-1).flatten(-2)
        return torch.cat([torch.ones_like(s).unsqueeze(-1), pairs], dim=-1)
    _fails(ex08.check_fourier_basis, interleaved, capsys, "values differ", "then all cosines")


def test_fourier_basis_without_two_pi_fails(capsys):
    def no_two_pi(s, n, period=1.0):
        angle = s.unsqueeze(-1) * torch.arange(1, n + 1, dtype=s.dtype) / period
        return torch.cat([torch.ones_like(s).unsqueeze(-1), torch.cos(angle), torch.sin(angle)], dim=-1)
    _fails(ex08.check_fourier_basis, no_two_pi, capsys, "values differ")


def test_fourier_basis_without_the_constant_fails(capsys):
    def no_constant(s, n, period=1.0):
        angle = 2 * math.pi / period * s.unsqueeze(-1) * torch.arange(1, n + 1, dtype=s.dtype)
        return torch.cat([torch.cos(angle), torch.sin(angle)], dim=-1)
    _fails(ex08.check_fourier_basis, no_constant, capsys, "expected shape")


def test_galerkin_linear_with_only_the_constant_term_fails(capsys):
    def constant_only(x, s, A, c, period=1.0):
        return x @ A[0].T + c[0]
    _fails(ex08.check_galerkin_linear, constant_only, capsys, "values differ", "not only the constant one")


def test_galerkin_linear_without_transpose_is_reported(capsys):
    def no_transpose(x, s, A, c, period=1.0):
        phi = ex08.fourier_basis(s.to(x.dtype), (A.shape[0] - 1) // 2, period)
        return x @ torch.einsum("k,koi->oi", phi, A) + phi @ c
    _fails(ex08.check_galerkin_linear, no_transpose, capsys, "raised RuntimeError")


def test_controlled_dynamics_with_x_first_fails(capsys):
    def x_first(net, s, state):
        h, x = state
        return net(torch.cat([x, h], dim=-1)), torch.zeros_like(x)
    _fails(ex08.check_controlled_dynamics, x_first, capsys, "values differ", "with h first")


def test_controlled_dynamics_moving_the_input_fails(capsys):
    def moves_x(net, s, state):
        h, x = state
        return net(torch.cat([h, x], dim=-1)), x
    _fails(ex08.check_controlled_dynamics, moves_x, capsys, "item 1", "zeros_like(x)")


def test_controlled_dynamics_without_the_tuple_fails(capsys):
    def only_f(net, s, state):
        h, x = state
        return net(torch.cat([h, x], dim=-1))
    _fails(ex08.check_controlled_dynamics, only_f, capsys, "expected a sequence of 2 items")


def test_integral_loss_dynamics_returning_the_integral_fails(capsys):
    def returns_L(func, cost, s, state):
        h, L = state
        return func(s, h), L
    _fails(ex08.check_integral_loss_dynamics, returns_L, capsys, "item 1", "the running cost itself")


def test_integral_loss_dynamics_summing_over_the_batch_fails(capsys):
    def summed(func, cost, s, state):
        h, _ = state
        return func(s, h), cost(s, h).sum()
    _fails(ex08.check_integral_loss_dynamics, summed, capsys, "expected shape")


def test_rescaled_dynamics_without_the_factor_T_fails(capsys):
    def no_factor(func, sigma, state):
        h, T = state
        return func(sigma * T.reshape(-1), h), torch.zeros_like(T)
    _fails(ex08.check_rescaled_dynamics, no_factor, capsys, "values differ", "multiply by T")


def test_rescaled_dynamics_at_the_wrong_depth_fails_for_depth_variant_fields(capsys):
    def unscaled_time(func, sigma, state):
        h, T = state
        return T * func(sigma, h), torch.zeros_like(T)
    returned = ex08.check_rescaled_dynamics(unscaled_time)
    out = capsys.readouterr().out
    assert returned is ex08.rescaled_dynamics
    assert "ok    autonomous field" in out and "wrong time-dependent field, sigma = 0.3" in out


# --- bad input ------------------------------------------------------------------------------------


def test_reference_input_errors():
    with pytest.raises(TypeError, match="floating tensor of depths"):
        ex08.fourier_basis(0.3, 2)
    with pytest.raises(ValueError, match="n_harmonics must be an integer >= 0"):
        ex08.fourier_basis(torch.tensor(0.3), -2)
    with pytest.raises(ValueError, match=r"odd K = 2 n \+ 1"):
        ex08.galerkin_linear(torch.zeros(2, 3), torch.tensor(0.0), torch.zeros(4, 2, 3), torch.zeros(4, 2))


def test_checker_hands_back_the_reference_and_notebook_can_go_on(capsys):
    fourier_basis = ex08.check_fourier_basis(_not_attempted)
    capsys.readouterr()
    expected = torch.tensor([[1.0, 1.0, 0.0], [1.0, -1.0, 0.0]])   # s = 0 and half a period
    torch.testing.assert_close(fourier_basis(torch.tensor([0.0, 0.5]), 1), expected, rtol=0, atol=1e-6)


# --- exercise 6 (find the bug) and exercise 7 (predict) -------------------------------------------


def test_the_shipped_depth_weight_bug_fails_on_non_symmetric_coefficients(capsys):
    assert ex08.check_depth_weight(ex08.buggy_depth_weight) is ex08.depth_weight
    out = capsys.readouterr().out
    assert "ok    symmetric coefficient matrices" in out
    assert "expected W(s) of shape [out, in] = [2, 3], got [3, 2]" in out and "einsum subscripts" in out


def test_depth_weight_as_a_tensordot_passes(capsys):
    def other(s, weight_coeffs, period=1.0):
        phi = ex08.fourier_basis(s, (weight_coeffs.shape[0] - 1) // 2, period)
        return (phi[:, None, None] * weight_coeffs).sum(dim=0)

    assert ex08.check_depth_weight(other) is other
    assert "passed 4/4" in capsys.readouterr().out


def test_depth_weight_ignoring_the_period_fails(capsys):
    def no_period(s, weight_coeffs, period=1.0):
        return ex08.depth_weight(s, weight_coeffs)

    assert ex08.check_depth_weight(no_period) is ex08.depth_weight
    assert "wrong period 2" in capsys.readouterr().out


def test_galerkin_parameter_prediction(capsys):
    assert ex08.check_galerkin_parameters_prediction(None, verbose=False) == 30
    ex08.check_galerkin_parameters_prediction(6)  # nn.Linear(2, 2)
    out = capsys.readouterr().out
    assert "FAILED" in out and "five times" in out
    ex08.check_galerkin_parameters_prediction(30)
    assert "passed" in capsys.readouterr().out
