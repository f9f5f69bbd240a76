"""Checkers of notebook 02: the references are right, wrong answers fail with a hint, unattempted ones
hand back the reference, and bad input gets a clear error."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from nodecourse import odeint
from nodecourse.exercises import ex02
from nodecourse.exercises import checking
from nodecourse.models import MLP, ODEFunc, ResNet

F64 = torch.float64


@pytest.fixture(autouse=True)
def _last_hint_stage():
    """Each test sees the last (most specific) hint stage on a failure, whatever ran before it; the staging
    itself is tested in test_checker_contract.py."""
    checking.reset_hints(already_failed=10)
    yield
    checking.reset_hints(already_failed=0)


def _mlp(sizes, seed=0, dtype=F64):
    torch.manual_seed(seed)
    return MLP(sizes).to(dtype)


# --------------------------------------------------------------------------------------------------
# the references against independent computations
# --------------------------------------------------------------------------------------------------


def test_euler_step_is_the_first_order_taylor_step():
    a = torch.tensor([[0.0, 1.0], [-2.0, -0.3]], dtype=F64)
    y = torch.tensor([[1.0, 2.0], [0.5, -1.0]], dtype=F64)
    got = ex02.euler_step(lambda t, y: y @ a.T + t, 0.4, y, 0.1)
    torch.testing.assert_close(got, y + 0.1 * (y @ a.T + 0.4), rtol=0, atol=1e-15)


def test_euler_trajectory_equals_the_package_euler_solver():
    f = lambda t, y: torch.stack([y[..., 1], -torch.sin(y[..., 0])], dim=-1) + 0.1 * t  # noqa: E731
    y0 = torch.tensor([[1.0, 0.0], [2.0, -0.5], [0.1, 0.3]], dtype=F64)
    for t in (torch.linspace(0.0, 2.0, 21, dtype=F64), torch.linspace(1.0, -0.5, 16, dtype=F64)):
        h = abs(float(t[1] - t[0]))
        expected = odeint(f, y0, t, method="euler", options={"step_size": h})
        torch.testing.assert_close(ex02.euler_trajectory(f, y0, t), expected, rtol=0, atol=1e-12)


def test_euler_trajectory_is_exact_for_a_constant_field_on_an_uneven_grid():
    c = torch.tensor([0.5, -2.0], dtype=F64)
    t = torch.tensor([0.3, 0.35, 0.9, 1.0, 2.5], dtype=F64)
    y0 = torch.tensor([1.0, 1.0], dtype=F64)
    got = ex02.euler_trajectory(lambda t, y: c.expand_as(y), y0, t)
    torch.testing.assert_close(got, y0 + (t - t[0])[:, None] * c, rtol=0, atol=1e-14)


def test_euler_trajectory_converges_with_order_one_to_the_exact_solution():
    errors, hs = [], []
    for n in (20, 40, 80, 160, 320):
        t = torch.linspace(0.0, 1.0, n + 1, dtype=F64)
        ys = ex02.euler_trajectory(lambda t, y: -y, torch.ones(1, dtype=F64), t)
        errors.append(abs(float(ys[-1, 0]) - math.exp(-1.0)))
        hs.append(1.0 / n)
    slope = np.polyfit(np.log(hs), np.log(errors), 1)[0]
    assert abs(slope - 1.0) < 0.05


def test_euler_trajectory_of_one_time_is_the_initial_state():
    y0 = torch.randn(3, 2, dtype=F64)
    got = ex02.euler_trajectory(lambda t, y: y, y0, torch.zeros(1, dtype=F64))
    assert got.shape == (1, 3, 2) and torch.equal(got[0], y0)


def test_euler_trajectory_rejects_bad_input():
    with pytest.raises(TypeError, match="floating-point tensor"):
        ex02.euler_trajectory(lambda t, y: y, torch.ones(2, dtype=torch.long), torch.linspace(0, 1, 3))
    with pytest.raises(ValueError, match="1-D grid"):
        ex02.euler_trajectory(lambda t, y: y, torch.ones(2), torch.zeros(2, 2))


@pytest.mark.parametrize("step_size", [1.0, 0.25])
def test_resnet_forward_matches_resnet_with_shared_and_depth_variant_weights(step_size):
    mlp = _mlp([2, 16, 2], seed=1)
    x = torch.randn(7, 2, dtype=F64)
    shared = ResNet(mlp, depth=4, step_size=step_size)
    torch.testing.assert_close(ex02.resnet_forward([mlp] * 4, x, step_size), shared.trajectory(x),
                               rtol=0, atol=1e-13)
    variant = ResNet(mlp, depth=3, shared=False, step_size=step_size)
    with torch.no_grad():
        for p in variant.parameters():
            p.add_(0.2 * torch.randn_like(p))
    blocks = [variant.block(layer) for layer in range(3)]
    torch.testing.assert_close(ex02.resnet_forward(blocks, x, step_size), variant.trajectory(x), rtol=0, atol=1e-13)
    torch.testing.assert_close(ex02.resnet_forward(variant.blocks, x, step_size), variant.trajectory(x),
                               rtol=0, atol=1e-13)


def test_resnet_forward_rejects_a_lone_mlp():
    with pytest.raises(TypeError, match=r"list of modules.*\[mlp\] \* depth"):
        ex02.resnet_forward(_mlp([2, 4, 2]), torch.zeros(1, 2, dtype=F64))


@pytest.mark.parametrize("depth", [1, 5])
def test_resnet_as_euler_reproduces_the_resnet_hidden_states(depth):
    mlp = _mlp([3, 8, 3], seed=2)
    x = torch.randn(4, 3, dtype=F64)
    got = ex02.resnet_as_euler(mlp, x, depth)
    assert got.shape == (depth + 1, 4, 3)
    torch.testing.assert_close(got, ResNet(mlp, depth).trajectory(x), rtol=0, atol=1e-12)


def test_resnet_as_euler_rejects_a_bad_depth():
    with pytest.raises(ValueError, match="positive integer"):
        ex02.resnet_as_euler(_mlp([2, 4, 2]), torch.zeros(1, 2, dtype=F64), 0)


def _linear_field(seed=3):
    """A bias-free linear field f(y) = W y: its ResNet is (I + h W)^L and its flow is exp(T W)."""
    mlp = _mlp([2, 2], seed=seed)
    with torch.no_grad():
        mlp[0].bias.zero_()
    return mlp, mlp[0].weight.detach()


def test_continuous_limit_gaps_match_matrix_powers_and_the_matrix_exponential():
    mlp, w = _linear_field()
    x = torch.randn(5, 2, dtype=F64)
    T, depths = 1.5, [1, 3, 10, 40]
    flow = x @ torch.linalg.matrix_exp(T * w).T
    expected = torch.stack([(x @ torch.linalg.matrix_power(torch.eye(2, dtype=F64) + (T / L) * w, L).T - flow)
                            .abs().max() for L in depths])
    torch.testing.assert_close(ex02.continuous_limit_gaps(mlp, x, T, depths), expected, rtol=1e-7, atol=1e-12)


def test_continuous_limit_gaps_shrink_like_one_over_depth():
    mlp = _mlp([2, 16, 2], seed=4)
    depths = [4, 8, 16, 32, 64]
    gaps = ex02.continuous_limit_gaps(mlp, torch.randn(8, 2, dtype=F64), 1.0, depths)
    assert gaps.shape == (5,) and gaps.dtype == F64
    slope = np.polyfit(np.log(depths), np.log(gaps.numpy()), 1)[0]
    assert abs(slope + 1.0) < 0.05


@pytest.mark.parametrize("T, depths, error, match", [
    (1.0, [], ValueError, "non-empty list of positive integers"),
    (1.0, [2, 0], ValueError, "non-empty list of positive integers"),
    (1.0, [2.5], ValueError, "non-empty list of positive integers"),
    (0.0, [2], ValueError, "positive end time"),
])
def test_continuous_limit_gaps_rejects_bad_input(T, depths, error, match):
    with pytest.raises(error, match=match):
        ex02.continuous_limit_gaps(_mlp([2, 4, 2]), torch.zeros(1, 2, dtype=F64), T, depths)
    with pytest.raises(TypeError, match="floating-point tensor"):
        ex02.continuous_limit_gaps(_mlp([2, 4, 2]), torch.zeros(1, 2, dtype=torch.long), 1.0, [2])


# --------------------------------------------------------------------------------------------------
# the checkers: right, wrong, not attempted
# --------------------------------------------------------------------------------------------------


def test_euler_step_without_h_or_at_the_wrong_time_fails(capsys):
    assert ex02.check_euler_step(lambda f, t, y, h: y + f(t, y)) is ex02.euler_step
    out = capsys.readouterr().out
    assert "wrong h = 2" in out and "scale it by h" in out
    ex02.check_euler_step(lambda f, t, y, h: y + h * f(t + h, y))
    out = capsys.readouterr().out
    assert "wrong time-dependent field" in out and "ok    rotation" in out


def test_euler_step_that_loses_float64_fails_with_a_dtype_message(capsys):
    ex02.check_euler_step(lambda f, t, y, h: ex02.euler_step(f, t, y, h).float())
    assert "expected dtype torch.float64" in capsys.readouterr().out


def test_euler_trajectory_with_a_uniform_step_or_without_y0_fails(capsys):
    def uniform_h(f, y0, t):
        h = t[1] - t[0] if len(t) > 1 else 0.0
        ys = [y0]
        for k in range(len(t) - 1):
            ys.append(ys[-1] + h * f(t[0] + k * h, ys[-1]))
        return torch.stack(ys)

    def no_y0(f, y0, t):
        return ex02.euler_trajectory(f, y0, t)[1:]

    assert ex02.check_euler_trajectory(uniform_h) is ex02.euler_trajectory
    out = capsys.readouterr().out
    assert "wrong an uneven grid" in out and "ok    y' = -y" in out and "h = t[k+1] - t[k]" in out
    ex02.check_euler_trajectory(no_y0)
    out = capsys.readouterr().out
    assert "expected shape (11, 1), got (10, 1)" in out and "FAILED 0/7" in out


def test_resnet_forward_without_skip_or_with_one_block_fails(capsys):
    def no_skip(blocks, y0, step_size=1.0):
        ys = [y0]
        for block in blocks:
            ys.append(step_size * block(ys[-1]))
        return torch.stack(ys)

    def first_block_only(blocks, y0, step_size=1.0):
        return ex02.resnet_forward([blocks[0]] * len(blocks), y0, step_size)

    ex02.check_resnet_forward(no_skip)
    assert "FAILED 0/6" in capsys.readouterr().out
    ex02.check_resnet_forward(first_block_only)
    out = capsys.readouterr().out
    assert "wrong depth-variant weights" in out and "ok    shared weights" in out


def test_resnet_as_euler_with_only_the_end_time_or_another_solver_fails(capsys):
    def end_only(mlp, y0, depth):
        t = torch.tensor([0.0, depth], dtype=y0.dtype)
        return odeint(ODEFunc(mlp), y0, t, method="euler", options={"step_size": 1.0})

    def dopri5(mlp, y0, depth):
        return odeint(ODEFunc(mlp), y0, torch.arange(depth + 1, dtype=y0.dtype))

    ex02.check_resnet_as_euler(end_only)
    out = capsys.readouterr().out
    assert "expected shape (4, 5, 2), got (2, 5, 2)" in out and "torch.arange(depth + 1" in out
    ex02.check_resnet_as_euler(dopri5)
    assert "values differ from the reference" in capsys.readouterr().out


def test_gaps_with_step_one_over_l_or_a_loose_reference_fail(capsys):
    def step_one_over_l(mlp, y0, T, depths):
        return ex02.continuous_limit_gaps(mlp, y0, 1.0, depths) if T == 1.0 else \
            torch.stack([(ResNet(mlp, L, step_size=1.0 / L)(y0)
                          - odeint(ODEFunc(mlp), y0, torch.tensor([0.0, T], dtype=F64), rtol=1e-10, atol=1e-12)[-1])
                         .abs().max() for L in depths])

    def loose_reference(mlp, y0, T, depths):
        reference = odeint(ODEFunc(mlp), y0, torch.tensor([0.0, T], dtype=F64), rtol=1e-3, atol=1e-3)[-1]
        return torch.stack([(ResNet(mlp, L, step_size=T / L)(y0) - reference).abs().max() for L in depths])

    assert ex02.check_continuous_limit_gaps(step_one_over_l) is ex02.continuous_limit_gaps
    out = capsys.readouterr().out
    assert "wrong T = 0.5" in out and "ok    L = 2, 4, 8" in out and "step_size=T / L" in out
    ex02.check_continuous_limit_gaps(loose_reference)
    assert "your gaps / the reference's" in capsys.readouterr().out


def test_gaps_as_a_list_of_floats_are_accepted(capsys):
    def as_list(mlp, y0, T, depths):
        return [float(g) for g in ex02.continuous_limit_gaps(mlp, y0, T, depths)]

    assert ex02.check_continuous_limit_gaps(as_list) is not ex02.continuous_limit_gaps
    assert "passed 5/5" in capsys.readouterr().out


# --- exercise 6 (find the bug) and exercise 7 (predict) -------------------------------------------


def test_the_shipped_euler_solve_bug_fails_on_time_dependent_fields(capsys):
    assert ex02.check_euler_solve(ex02.buggy_euler_solve) is ex02.euler_solve
    out = capsys.readouterr().out
    assert "ok    an autonomous field" in out and "wrong a time-dependent field" in out
    assert "t0 + k h" in out


def test_an_euler_solve_that_carries_its_own_clock_passes(capsys):
    def own_clock(f, y0, t0, t1, n_steps):
        t, y = t0, y0
        h = (t1 - t0) / n_steps
        for _ in range(n_steps):
            y, t = y + h * f(t, y), t + h
        return y

    assert ex02.check_euler_solve(own_clock) is own_clock
    assert "passed 4/4" in capsys.readouterr().out


def test_an_euler_solve_with_one_step_too_few_fails(capsys):
    def short(f, y0, t0, t1, n_steps):
        h = (t1 - t0) / n_steps
        y = y0
        for k in range(n_steps - 1):
            y = y + h * f(t0 + k * h, y)
        return y

    assert ex02.check_euler_solve(short) is ex02.euler_solve
    assert "wrong one step: exactly y0 + h f(t0, y0)" in capsys.readouterr().out


def test_error_ratio_prediction(capsys):
    truth = ex02.check_error_ratio_prediction(None, verbose=False)
    assert 3.5 < truth < 4.5
    ex02.check_error_ratio_prediction(16.0)  # a second-order guess
    out = capsys.readouterr().out
    assert "FAILED" in out and "first order" in out
    ex02.check_error_ratio_prediction(4)
    assert "passed" in capsys.readouterr().out
