"""The checkers of 05_regression: references agree with independent computations, a correct answer
passes, plausible wrong answers fail with a useful message, an unattempted exercise hands back the
reference, and bad input gets a clear error."""
from __future__ import annotations


import numpy as np
import pytest
import torch
from torch import nn

from nodecourse.config import seed_everything
from nodecourse.data import cubic_regression
from nodecourse.exercises import ex05
from nodecourse.exercises import checking
from nodecourse.models import MLP, ODEBlock, ODEFunc, ResNet
from nodecourse.train import train


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


def test_build_odenet_has_the_sizes_of_the_original_example():
    model = ex05.build_odenet()
    assert sum(p.numel() for p in model.parameters()) == (2 * 25 + 25) + (25 * 1 + 1)
    assert sum(p.numel() for p in ex05.build_odenet(8).parameters()) == (2 * 8 + 8) + (8 + 1)
    assert model(torch.zeros(7, 1)).shape == (7, 1)
    assert (model.method, model.rtol, model.atol, model.t1) == ("dopri5", 1e-3, 1e-3, 1.0)


def test_build_odenet_with_euler_is_a_hand_written_euler_loop_over_state_and_time():
    torch.manual_seed(0)
    model = ex05.build_odenet(hidden=6, method="euler", step_size=0.25)
    net = model.func.net
    x = torch.linspace(-2, 2, 5).unsqueeze(1)
    state, t = x.clone(), 0.0
    with torch.no_grad():
        for _ in range(4):
            state = state + 0.25 * net(torch.cat([state, torch.full_like(state, t)], dim=1))
            t += 0.25
        torch.testing.assert_close(model(x), state, rtol=0, atol=1e-6)
    assert model.nfe_forward == 4


def test_build_odenet_with_dopri5_agrees_with_an_accurate_solve():
    torch.manual_seed(1)
    model = ex05.build_odenet(hidden=10).double()
    x = torch.linspace(-3, 3, 9, dtype=torch.float64).unsqueeze(1)
    net = model.func.net
    state, n = x.clone(), 2000  # RK4 with 2000 steps: error far below 1e-8
    with torch.no_grad():
        f = lambda t, s: net(torch.cat([s, torch.full_like(s, t)], dim=1))  # noqa: E731
        for k in range(n):
            t, h = k / n, 1 / n
            k1 = f(t, state)
            k2 = f(t + h / 2, state + h / 2 * k1)
            k3 = f(t + h / 2, state + h / 2 * k2)
            k4 = f(t + h, state + h * k3)
            state = state + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        torch.testing.assert_close(model(x), state, rtol=0, atol=1e-2)  # dopri5 at tolerance 1e-3


def test_training_step_is_gradient_descent_and_returns_the_loss_before_the_update():
    torch.manual_seed(2)
    model = MLP([1, 4, 1])
    x, y = cubic_regression()
    before = [p.detach().clone() for p in model.parameters()]
    loss_before = ((model(x) - y) ** 2).mean()
    grads = torch.autograd.grad(loss_before, list(model.parameters()))
    returned = ex05.training_step(model, torch.optim.SGD(model.parameters(), lr=0.1), x, y)
    assert isinstance(returned, float) and returned == pytest.approx(loss_before.item(), rel=1e-6)
    for p, p0, g in zip(model.parameters(), before, grads):
        torch.testing.assert_close(p.detach(), p0 - 0.1 * g, rtol=1e-6, atol=1e-7)


def test_extrapolation_errors_of_the_identity_match_numpy():
    grid = np.linspace(-3.0, 3.0, 100, dtype=np.float32).astype(np.float64)
    squared = (grid**3 + 0.1 * grid - grid) ** 2
    inside = np.abs(grid) <= 2
    got = ex05.extrapolation_errors(nn.Identity())
    assert got == pytest.approx((squared[inside].mean(), squared[~inside].mean()), rel=1e-5)


def test_extrapolation_errors_use_the_models_dtype():
    torch.manual_seed(3)
    model = MLP([1, 5, 1]).double()
    grid = torch.linspace(-4.0, 4.0, 31, dtype=torch.float64).unsqueeze(1)
    with torch.no_grad():
        squared = ((model(grid) - grid**3 - 0.1 * grid) ** 2).squeeze(1)
    inside = grid.squeeze(1).abs() <= 2
    got = ex05.extrapolation_errors(model, -4.0, 4.0, 31)
    assert got == pytest.approx((squared[inside].mean().item(), squared[~inside].mean().item()), rel=1e-12)


def test_train_with_solver_fits_and_counts_stages_times_steps():
    loss, nfe = ex05.train_with_solver("euler", 0.25, n_iters=300)
    x, y = cubic_regression()
    seed_everything(0)
    untrained = ((ex05.build_odenet(method="euler", step_size=0.25)(x) - y) ** 2).mean().item()
    assert nfe == 4  # one Euler stage, four steps of 0.25
    assert loss < ex05.LOSS_BAR < untrained / 20


@pytest.mark.parametrize("kwargs, match", [
    ({"hidden": 0}, "hidden must be a positive integer"),
    ({"method": "rk5"}, "unknown method 'rk5'; choose one of"),
    ({"method": "euler"}, "needs a step size"),
])
def test_build_odenet_rejects_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ex05.build_odenet(**kwargs)


@pytest.mark.parametrize("args, match", [((-3.0, 3.0, 1), "n must be an integer >= 2"),
                                         ((3.0, -3.0, 10), "lo < hi")])
def test_extrapolation_errors_rejects_bad_input(args, match):
    with pytest.raises(ValueError, match=match):
        ex05.extrapolation_errors(nn.Identity(), *args)


# --------------------------------------------------------------------------------------------------
# the checkers: right, wrong, not attempted
# --------------------------------------------------------------------------------------------------


# --- exercise 1 ------------------------------------------------------------------------------------

def test_an_odenet_that_ignores_time_fails(capsys):
    def no_time(hidden=25, method="dopri5", step_size=None):
        options = None if step_size is None else {"step_size": step_size}
        return ODEBlock(ODEFunc(MLP([1, hidden, 1])), rtol=1e-3, atol=1e-3, method=method, options=options)

    assert ex05.check_build_odenet(no_time) is ex05.build_odenet
    out = capsys.readouterr().out
    assert "the dynamics ignore the time" in out and "time_dependent=True" in out


def test_an_odenet_with_other_tolerances_or_activation_fails(capsys):
    def tight(hidden=25, method="dopri5", step_size=None):
        options = None if step_size is None else {"step_size": step_size}
        return ODEBlock(ODEFunc(MLP([2, hidden, 1]), time_dependent=True), method=method, rtol=1e-6,
                        atol=1e-6, options=options)

    ex05.check_build_odenet(tight)
    assert "rtol is 1e-06, expected 0.001" in capsys.readouterr().out

    def relu(hidden=25, method="dopri5", step_size=None):
        options = None if step_size is None else {"step_size": step_size}
        return ODEBlock(ODEFunc(MLP([2, hidden, 1], activation=nn.ReLU), time_dependent=True),
                        rtol=1e-3, atol=1e-3, method=method, options=options)

    ex05.check_build_odenet(relu)
    out = capsys.readouterr().out
    assert "FAILED 0/4" in out and "with the reference's weights the outputs differ" in out


def test_a_resnet_instead_of_an_odenet_fails(capsys):
    ex05.check_build_odenet(lambda hidden=25, method="dopri5", step_size=None: ResNet(MLP([1, hidden, 1]), 3))
    assert "expected an ODEBlock (from nodecourse.models), got ResNet" in capsys.readouterr().out


# --- exercise 2 ------------------------------------------------------------------------------------

def test_a_step_without_zero_grad_fails_only_when_steps_repeat(capsys):
    def no_zero_grad(model, optimizer, x, y):
        loss = nn.functional.mse_loss(model(x), y)
        loss.backward()
        optimizer.step()
        return loss.item()

    assert ex05.check_training_step(no_zero_grad) is ex05.training_step
    out = capsys.readouterr().out
    assert "ok    one SGD step" in out and "wrong three SGD steps in a row" in out
    assert "zero_grad" in out  # the hint


def test_a_step_returning_the_loss_after_the_update_fails(capsys):
    def loss_after(model, optimizer, x, y):
        ex05.training_step(model, optimizer, x, y)
        return nn.functional.mse_loss(model(x), y).item()

    ex05.check_training_step(loss_after)
    assert "the returned losses" in capsys.readouterr().out


def test_a_hand_written_sgd_update_fails_on_adam(capsys):
    def manual_sgd(model, optimizer, x, y):
        model.zero_grad()
        loss = nn.functional.mse_loss(model(x), y)
        loss.backward()
        with torch.no_grad():
            for p in model.parameters():
                p -= 0.01 * p.grad
        return loss.item()

    ex05.check_training_step(manual_sgd)
    out = capsys.readouterr().out
    assert "ok    one SGD step" in out and "wrong two Adam steps" in out and "parameters after" in out


def test_a_step_returning_a_tensor_passes_and_one_returning_nothing_fails(capsys):
    def tensor_loss(model, optimizer, x, y):
        optimizer.zero_grad()
        loss = nn.functional.mse_loss(model(x), y)
        loss.backward()
        optimizer.step()
        return loss

    assert ex05.check_training_step(tensor_loss) is tensor_loss
    capsys.readouterr()

    def returns_none(model, optimizer, x, y):
        ex05.training_step(model, optimizer, x, y)

    ex05.check_training_step(returns_none)
    assert "the returned loss must be a number (e.g. loss.item()), got NoneType" in capsys.readouterr().out


# --- exercise 3 ------------------------------------------------------------------------------------

def test_swapped_or_absolute_errors_fail(capsys):
    ex05.check_extrapolation_errors(lambda *args, **kwargs: ex05.extrapolation_errors(*args, **kwargs)[::-1])
    assert "the two errors are swapped" in capsys.readouterr().out

    def absolute(model, lo=-3.0, hi=3.0, n=100):
        grid = torch.linspace(lo, hi, n).unsqueeze(1)
        with torch.no_grad():
            err = (model(grid.to(next(model.parameters(), grid).dtype)) - grid**3 - 0.1 * grid).abs().squeeze(1)
        inside = grid.squeeze(1).abs() <= 2
        return err[inside].mean().item(), err[~inside].mean().item()

    ex05.check_extrapolation_errors(absolute)
    out = capsys.readouterr().out
    assert "FAILED 0/6" in out and "the MSE inside (|x| <= 2)" in out


# --- exercise 4 ------------------------------------------------------------------------------------

def test_an_nfe_summed_over_training_fails(capsys):
    def summed(method, step_size=None, n_iters=300, seed=0):
        seed_everything(seed)
        model = ex05.build_odenet(method=method, step_size=step_size)
        history = train(model, nn.MSELoss(), cubic_regression(), n_iters, lr=0.01, progress=False)
        return history.loss[-1], sum(history.nfe_forward)

    assert ex05.check_train_with_solver(summed) is ex05.train_with_solver
    out = capsys.readouterr().out
    assert "costs 1 stages x 4 steps = 4" in out and "not a sum over training" in out


def test_an_undertrained_model_fails_with_the_bar(capsys):
    ex05.check_train_with_solver(lambda method, step_size=None, n_iters=300, seed=0:
                                 ex05.train_with_solver(method, step_size, 5, seed))
    out = capsys.readouterr().out
    assert "FAILED 0/3" in out and f"is not below {ex05.LOSS_BAR}" in out


def test_checker_returns_pairs_only(capsys):
    ex05.check_train_with_solver(lambda *args, **kwargs: 0.01)
    assert "expected a pair (final_loss, nfe), got float" in capsys.readouterr().out


# --- exercise 5 (find the bug) and exercise 6 (predict) -------------------------------------------


def test_the_shipped_regression_loss_bug_fails_on_vector_targets(capsys):
    assert ex05.check_regression_loss(ex05.buggy_regression_loss) is ex05.regression_loss
    out = capsys.readouterr().out
    assert "ok    targets [N, 1], like the predictions" in out and "wrong targets [N] (a plain vector" in out
    assert "broadcasts to [N, N]" in out


def test_a_regression_loss_written_with_mse_loss_passes(capsys):
    def other(pred, y):
        return torch.nn.functional.mse_loss(pred.squeeze(-1), y.reshape(-1))

    assert ex05.check_regression_loss(other) is other
    assert "passed 4/4" in capsys.readouterr().out


def test_a_regression_loss_that_sums_fails(capsys):
    def summed(pred, y):
        return ((pred - y.reshape(pred.shape)) ** 2).sum()

    assert ex05.check_regression_loss(summed) is ex05.regression_loss
    assert "wrong targets [N, 1], like the predictions: values differ" in capsys.readouterr().out


def test_rk4_nfe_prediction(capsys):
    assert ex05.check_rk4_nfe_prediction(None, verbose=False) == 40
    ex05.check_rk4_nfe_prediction(10)  # one evaluation per step: Euler's count
    out = capsys.readouterr().out
    assert "FAILED" in out and "4 stages" in out
    ex05.check_rk4_nfe_prediction(40)
    assert "passed" in capsys.readouterr().out
