"""The checkers of 08_depth_variance_and_control: references agree with independent computations; every
exercise's plausible wrong answers fail on the case that names the mistake, and an answer written
differently from the reference passes; hints come in stages and never show the answer; the solutions
notebook says whose function its later cells ran."""
from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import torch

from nodecourse import odeint
from nodecourse.exercises import ex08
from nodecourse.exercises import checking
from nodecourse.models import MLP, ODEFunc
from nodecourse.models.controlled import DataControlledField, RescaledField
from nodecourse.models.depth_variant import GalerkinLinear

from helpers import assert_checker_rejects as _fails
from helpers import failing_answer, hint_stages, answer_calls

DT = torch.float64


@pytest.fixture(autouse=True)
def _last_hint_stage():
    """Each test sees the last (most specific) hint stage on a failure, whatever ran before it; the staging
    itself is tested in test_hints_come_in_stages_and_never_show_the_answer (and test_checker_contract.py)."""
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


# --- the checkers: staged hints that never show the answer, honest labels in the notebook ----------

CHECKERS = [
    (ex08.check_fourier_basis, ex08.fourier_basis),
    (ex08.check_galerkin_linear, ex08.galerkin_linear),
    (ex08.check_controlled_dynamics, ex08.controlled_dynamics),
    (ex08.check_integral_loss_dynamics, ex08.integral_loss_dynamics),
    (ex08.check_rescaled_dynamics, ex08.rescaled_dynamics),
    (ex08.check_depth_weight, ex08.depth_weight),
]


@pytest.mark.parametrize("checker, reference", CHECKERS, ids=[c.__name__ for c, _ in CHECKERS])
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


def test_the_solutions_notebook_says_whose_function_each_later_cell_ran():
    """Prints and plot titles after an exercise name the function's owner with who(), never 'your'/'mine'."""
    source = (Path(__file__).resolve().parents[1] / "solutions" / "08_depth_variance_and_control_exercises.py").read_text()
    code = [ln for ln in source.splitlines() if not ln.lstrip().startswith("#")]
    labelled = [ln for ln in code if re.search(r"print\(|title=|label=", ln)]
    assert not [ln for ln in labelled if re.search(r"\b(your|yours|mine|ours)\b", ln, re.IGNORECASE)]
    for name in ("fourier_basis", "galerkin_linear", "controlled_dynamics", "integral_loss_dynamics",
                 "rescaled_dynamics"):
        assert f"who({name})" in source, name


def _fails_on(checker, wrong, capsys, label, *phrases):
    """The checker rejects ``wrong``; the case named ``label`` is among the failed ones, and each phrase shows."""
    out = _fails(checker, wrong, capsys, *phrases)
    assert f"wrong {label}" in out, out
    return out


def _passes(checker, answer, capsys):
    assert checker(answer) is answer
    out = capsys.readouterr().out
    assert "passed" in out and "FAILED" not in out, out


# --- exercise 1: the Fourier basis ----------------------------------------------------------------


def test_fourier_basis_interleaved_fails_on_the_order(capsys):
    def interleaved(s, n, period=1.0):   # (1, cos1, sin1, cos2, sin2, ...)
        angle = 2 * math.pi / period * s.unsqueeze(-1) * torch.arange(1, n + 1, dtype=s.dtype)
        pairs = torch.stack([torch.cos(angle), torch.sin(angle)], dim=-1).flatten(-2)
        return torch.cat([torch.ones_like(s).unsqueeze(-1), pairs], dim=-1)
    out = _fails_on(ex08.check_fourier_basis, interleaved, capsys, "the order: the constant, then cos 1..n",
                    "the right functions in the wrong order", "[stage 2 of 2]")
    assert "ok    harmonics k = 1 .. n" in out  # one harmonic: nothing to interleave


def test_fourier_basis_without_two_pi_fails_on_the_frequency(capsys):
    def no_two_pi(s, n, period=1.0):
        angle = s.unsqueeze(-1) * torch.arange(1, n + 1, dtype=s.dtype) / period
        return torch.cat([torch.ones_like(s).unsqueeze(-1), torch.cos(angle), torch.sin(angle)], dim=-1)
    _fails_on(ex08.check_fourier_basis, no_two_pi, capsys, "w = 2 pi / period (period 2)", "values differ")


def test_fourier_basis_with_harmonics_from_zero_fails(capsys):
    def from_zero(s, n, period=1.0):  # k = 0 .. n-1: cos 0 = 1 repeats the constant, the top harmonic is lost
        angle = 2 * math.pi / period * s.unsqueeze(-1) * torch.arange(n, dtype=s.dtype)
        return torch.cat([torch.ones_like(s).unsqueeze(-1), torch.cos(angle), torch.sin(angle)], dim=-1)
    _fails_on(ex08.check_fourier_basis, from_zero, capsys, "harmonics k = 1 .. n")


def test_fourier_basis_without_the_constant_fails_on_the_shape(capsys):
    def no_constant(s, n, period=1.0):
        angle = 2 * math.pi / period * s.unsqueeze(-1) * torch.arange(1, n + 1, dtype=s.dtype)
        return torch.cat([torch.cos(angle), torch.sin(angle)], dim=-1)
    _fails_on(ex08.check_fourier_basis, no_constant, capsys, "n = 0: only the constant", "expected shape [4, 1]")


def test_fourier_basis_stacked_along_the_first_dimension_fails(capsys):
    def first_dim(s, n, period=1.0):
        k = torch.arange(1, n + 1, dtype=s.dtype)
        angle = 2 * math.pi / period * k.reshape(-1, *([1] * s.dim())) * s
        return torch.cat([torch.ones_like(s).unsqueeze(0), torch.cos(angle), torch.sin(angle)], dim=0)
    out = _fails_on(ex08.check_fourier_basis, first_dim, capsys, "a grid of depths [2, 3]: the basis on a new last "
                    "dimension", "expected shape [2, 3, 3], got [3, 2, 3]")
    assert "ok    one depth (a 0-d s)" in out


def test_fourier_basis_in_float32_for_float64_depths_fails_on_the_dtype(capsys):
    def float32(s, n, period=1.0):
        return ex08.fourier_basis(s.float(), n, period)
    _fails_on(ex08.check_fourier_basis, float32, capsys, "float64 depths give a float64 basis",
              "expected dtype torch.float64")


def test_fourier_basis_built_column_by_column_passes(capsys):
    def columns(s, n, period=1.0):
        w = 2 * math.pi / period
        cols = [torch.ones_like(s)] + [torch.cos(k * w * s) for k in range(1, n + 1)] \
            + [torch.sin(k * w * s) for k in range(1, n + 1)]
        return torch.stack(cols, dim=-1)
    _passes(ex08.check_fourier_basis, columns, capsys)


# --- exercise 2: a Galerkin linear layer ----------------------------------------------------------


def test_galerkin_linear_with_only_the_constant_term_fails(capsys):
    def constant_only(x, s, A, c, period=1.0):
        return x @ A[0].T + c[0]
    _fails_on(ex08.check_galerkin_linear, constant_only, capsys, "every basis term counts", "values differ")


def test_galerkin_linear_without_transpose_fails_on_a_non_square_layer(capsys):
    def no_transpose(x, s, A, c, period=1.0):
        phi = ex08.fourier_basis(s.to(x.dtype), (A.shape[0] - 1) // 2, period)
        return x @ torch.einsum("k,koi->oi", phi, A) + phi @ c
    _fails_on(ex08.check_galerkin_linear, no_transpose, capsys, "a layer from 3 inputs to 2 outputs: A_k is [out, in]",
              "raised RuntimeError")


def test_galerkin_linear_with_a_constant_bias_fails(capsys):
    def constant_bias(x, s, A, c, period=1.0):
        phi = ex08.fourier_basis(s.to(x.dtype), (A.shape[0] - 1) // 2, period)
        return x @ torch.einsum("k,koi->oi", phi, A).T + c[0]
    out = _fails_on(ex08.check_galerkin_linear, constant_bias, capsys, "the bias varies with depth too")
    assert "ok    every basis term counts" in out  # its bias coefficients are zero


def test_galerkin_linear_ignoring_the_period_fails(capsys):
    def period_one(x, s, A, c, period=1.0):
        return ex08.galerkin_linear(x, s, A, c)
    out = _fails_on(ex08.check_galerkin_linear, period_one, capsys, "the given period (period 2)")
    assert "ok    a layer from 3 inputs to 2 outputs" in out


def test_galerkin_linear_as_a_loop_and_functional_linear_passes(capsys):
    def loop(x, s, A, c, period=1.0):
        phi = fourier_basis_loop(s, (A.shape[0] - 1) // 2, period).to(x.dtype)
        W = sum(phi[k] * A[k] for k in range(A.shape[0]))
        b = sum(phi[k] * c[k] for k in range(A.shape[0]))
        return torch.nn.functional.linear(x, W, b)

    def fourier_basis_loop(s, n, period):
        w = 2 * math.pi / period
        return torch.stack([torch.ones_like(s)] + [torch.cos(k * w * s) for k in range(1, n + 1)]
                           + [torch.sin(k * w * s) for k in range(1, n + 1)])
    _passes(ex08.check_galerkin_linear, loop, capsys)


# --- exercise 3: data-controlled dynamics ---------------------------------------------------------


def test_controlled_dynamics_with_x_first_fails_on_the_order(capsys):
    def x_first(net, s, state):
        h, x = state
        return net(torch.cat([x, h], dim=-1)), torch.zeros_like(x)
    _fails_on(ex08.check_controlled_dynamics, x_first, capsys, "the network sees [h, x]: the state first",
              "dh/ds: values differ")


def test_controlled_dynamics_moving_the_input_fails(capsys):
    def moves_x(net, s, state):
        h, x = state
        return net(torch.cat([h, x], dim=-1)), x
    out = _fails_on(ex08.check_controlled_dynamics, moves_x, capsys, "dx/ds is zero and shaped like x",
                    "dx/ds: values differ")
    assert "ok    the network sees [h, x]" not in out  # x is never zero in these cases: every case fails


def test_controlled_dynamics_without_the_pair_fails(capsys):
    def only_f(net, s, state):
        h, x = state
        return net(torch.cat([h, x], dim=-1))
    _fails_on(ex08.check_controlled_dynamics, only_f, capsys, "returns the pair (dh/ds, dx/ds)",
              "return the pair (dh/ds, dx/ds)")


def test_controlled_dynamics_with_a_scalar_zero_fails_on_the_shape(capsys):
    def scalar_zero(net, s, state):
        h, x = state
        return net(torch.cat([h, x], dim=-1)), torch.zeros(())
    _fails_on(ex08.check_controlled_dynamics, scalar_zero, capsys, "dx/ds is zero and shaped like x",
              "dx/ds: expected shape [3, 2], got []")


def test_controlled_dynamics_with_hstack_and_zero_times_x_passes(capsys):
    def other(net, s, state):
        return net(torch.hstack(state)), 0 * state[1]
    _passes(ex08.check_controlled_dynamics, other, capsys)


# --- exercise 4: integral-loss dynamics -----------------------------------------------------------


def test_integral_loss_dynamics_returning_the_integral_fails(capsys):
    def returns_L(func, cost, s, state):
        h, L = state
        return func(s, h), L
    _fails_on(ex08.check_integral_loss_dynamics, returns_L, capsys, "dL/ds is the running cost whatever L is",
              "dL/ds: values differ")


def test_integral_loss_dynamics_adding_the_integral_fails(capsys):
    def adds_L(func, cost, s, state):
        h, L = state
        return func(s, h), cost(s, h) + L
    out = _fails_on(ex08.check_integral_loss_dynamics, adds_L, capsys, "dL/ds is the running cost whatever L is")
    assert "ok    returns the pair (f(s, h), l(s, h))" in out  # L = 0 there


def test_integral_loss_dynamics_summing_over_the_batch_fails(capsys):
    def summed(func, cost, s, state):
        h, _ = state
        return func(s, h), cost(s, h).sum()
    _fails_on(ex08.check_integral_loss_dynamics, summed, capsys, "one cost per sample: dL/ds is [B]",
              "dL/ds: expected shape [3], got []")


def test_integral_loss_dynamics_at_depth_zero_fails_for_a_depth_variant_field(capsys):
    def at_zero(func, cost, s, state):
        h, _ = state
        return func(torch.zeros_like(s), h), cost(torch.zeros_like(s), h)
    out = _fails_on(ex08.check_integral_loss_dynamics, at_zero, capsys, "a depth-variant field and cost, both at depth")
    assert "ok    one cost per sample" in out  # a cost of |h| alone, at s = 0


def test_integral_loss_dynamics_by_indexing_passes(capsys):
    def other(func, cost, s, state):
        return tuple(g(s, state[0]) for g in (func, cost))
    _passes(ex08.check_integral_loss_dynamics, other, capsys)


# --- exercise 5: rescaled dynamics ----------------------------------------------------------------


def test_rescaled_dynamics_without_the_factor_T_fails(capsys):
    def no_factor(func, sigma, state):
        h, T = state
        return func(sigma * T.reshape(-1), h), torch.zeros_like(T)
    _fails_on(ex08.check_rescaled_dynamics, no_factor, capsys, "the factor T: dh/dsigma = T f", "dh/dsigma: values differ")


def test_rescaled_dynamics_at_the_wrong_depth_fails_for_depth_variant_fields(capsys):
    def unscaled_time(func, sigma, state):
        h, T = state
        return T * func(sigma, h), torch.zeros_like(T)
    out = _fails_on(ex08.check_rescaled_dynamics, unscaled_time, capsys, "func is called at the depths T sigma")
    assert "ok    the factor T: dh/dsigma = T f (an autonomous field)" in out


def test_rescaled_dynamics_with_depths_of_shape_B_1_fails(capsys):
    def column_depths(func, sigma, state):
        h, T = state
        return T * func(sigma * T, h), torch.zeros_like(T)
    out = _fails_on(ex08.check_rescaled_dynamics, column_depths, capsys, "func receives the depths as a [B] tensor",
                    "it needs one depth per sample, a [B] = [4] tensor")
    assert "ok    the factor T" in out  # an autonomous field ignores the depth


def test_rescaled_dynamics_moving_T_fails(capsys):
    def moves_T(func, sigma, state):
        h, T = state
        return T * func(sigma * T.reshape(-1), h), T
    _fails_on(ex08.check_rescaled_dynamics, moves_T, capsys, "dT/dsigma is zero and shaped like T",
              "dT/dsigma: values differ")


def test_rescaled_dynamics_written_differently_passes(capsys):
    def other(func, sigma, state):
        h, T = state
        depths = T[:, 0] * sigma
        return func(depths, h).mul(T), 0 * T
    _passes(ex08.check_rescaled_dynamics, other, capsys)


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
    assert "wrong the given period (period 2)" in capsys.readouterr().out


def test_depth_weight_returning_the_transpose_fails(capsys):
    def transposed(s, weight_coeffs, period=1.0):
        phi = ex08.fourier_basis(s, (weight_coeffs.shape[0] - 1) // 2, period)
        return torch.einsum("k,koi->io", phi, weight_coeffs)

    out = _fails_on(ex08.check_depth_weight, transposed, capsys,
                    "non-symmetric square coefficients [5, 2, 2]: A_k, not its transpose", "values differ")
    assert "ok    symmetric coefficient matrices" in out


def test_galerkin_parameter_prediction(capsys):
    assert ex08.check_galerkin_parameters_prediction(None, verbose=False) == 30
    ex08.check_galerkin_parameters_prediction(6)  # nn.Linear(2, 2)
    out = capsys.readouterr().out
    assert "FAILED" in out and "five times" in out
    ex08.check_galerkin_parameters_prediction(30)
    assert "passed" in capsys.readouterr().out
