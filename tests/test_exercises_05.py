"""The checkers of 05_regression: references agree with independent computations; every requirement of
an exercise's statement has a labelled case, and the plausible wrong answers fail on the case that names
their mistake; answers written differently from the reference pass; hints come in stages that never show
the answer's code; bad input gets a clear error."""
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

from helpers import failing_answer, hint_stages, answer_lines


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
# staged hints that never give the answer away
# --------------------------------------------------------------------------------------------------

CHECKERS = [ex05.check_build_odenet, ex05.check_training_step, ex05.check_extrapolation_errors,
            ex05.check_train_with_solver, ex05.check_regression_loss]


@pytest.mark.parametrize("checker", CHECKERS, ids=[c.__name__ for c in CHECKERS])
def test_hints_come_in_two_or_three_stages_without_the_answers_code(checker, capsys):
    seen, _ = hint_stages(checker, capsys)
    stages = [text for _, _, text in seen[:seen[0][1]]]
    assert 2 <= len(stages) <= 3 and len(set(stages)) == len(stages)
    answer = answer_lines("05_regression_exercises.py", (ex05.build_odenet, ex05.training_step, ex05.train_with_solver, ex05.regression_loss))
    for stage in stages:
        leaked = [ln for ln in answer if ln in stage]
        assert not leaked, f"hint stage shows the answer's code: {leaked}"
        assert "zero_grad()" not in stage and "time_dependent=True" not in stage and "torch.no_grad()" not in stage


def test_the_answer_comes_only_on_request(capsys):
    checking.reset_hints(already_failed=0)
    ex05.check_training_step(failing_answer)
    out = capsys.readouterr().out
    assert "[stage 1 of 2]" in out and "optimizer.step()" not in out and "show_answer('05.2')" in out
    ex05.show_answer(2)
    assert "optimizer.zero_grad()" in capsys.readouterr().out


# --------------------------------------------------------------------------------------------------
# exercise 1: build the ODE-Net
# --------------------------------------------------------------------------------------------------


def _odenet(hidden=25, method="dopri5", step_size=None, *, time=True, activation=nn.Tanh, tol=1e-3,
            options=None, fixed_method=None):
    opts = options(step_size) if options else (None if step_size is None else {"step_size": step_size})
    field = ODEFunc(MLP([1 + time, hidden, 1], activation=activation), time_dependent=time)
    if fixed_method and step_size is None:  # the method passed in is used only with a step size
        method = fixed_method
    return ODEBlock(field, t1=1.0, method=method, rtol=tol, atol=tol, options=opts)


def _builder(**differences):
    """A build_odenet with the given differences from the statement."""
    def build(hidden=25, method="dopri5", step_size=None):
        return _odenet(hidden, method, step_size, **differences)
    return build


def test_an_odenet_that_ignores_time_fails_on_its_case(capsys):
    assert ex05.check_build_odenet(_builder(time=False)) is ex05.build_odenet
    out = capsys.readouterr().out
    assert "wrong the time is an input: the ODEFunc appends t to the state: the dynamics ignore the time" in out
    assert "ok    at rtol = atol = 1e-3" in out


def test_other_tolerances_fail_on_the_tolerance_case(capsys):
    ex05.check_build_odenet(_builder(tol=1e-6))
    out = capsys.readouterr().out
    assert "wrong at rtol = atol = 1e-3: (rtol, atol) is (1e-06, 1e-06), expected (0.001, 0.001)" in out
    assert "ok    the time is an input" in out


def test_relu_units_fail_on_the_activation_case_only(capsys):
    ex05.check_build_odenet(_builder(activation=nn.ReLU))
    out = capsys.readouterr().out
    assert "wrong tanh units: the reference's weights give the reference's outputs (hidden = 12): with the " \
           "reference's weights the outputs differ" in out
    assert "ok    the field is MLP([2, hidden, 1])" in out and "FAILED 7/9" in out


def test_a_method_that_is_not_passed_on_fails(capsys):
    ex05.check_build_odenet(_builder(fixed_method="dopri5"))
    out = capsys.readouterr().out
    assert "wrong solved with the method it is given (bosh3): the method is 'dopri5', expected the one passed in" in out


def test_a_step_size_option_for_every_method_fails_on_the_adaptive_case(capsys):
    ex05.check_build_odenet(_builder(options=lambda h: {"step_size": h}))
    out = capsys.readouterr().out
    assert "wrong an adaptive method gets options=None (dopri5, no step size): options is {'step_size': None}" in out
    assert "ok    a fixed-step method gets options" in out


def test_a_resnet_instead_of_an_odenet_fails(capsys):
    ex05.check_build_odenet(lambda hidden=25, method="dopri5", step_size=None: ResNet(MLP([1, hidden, 1]), 3))
    out = capsys.readouterr().out
    assert "FAILED 0/9" in out and "expected an ODEBlock (from nodecourse.models), got ResNet" in out


def test_an_odenet_built_another_way_passes(capsys):
    def other(hidden=25, method="dopri5", step_size=None):
        net = nn.Sequential(nn.Linear(2, hidden), nn.Tanh(), nn.Linear(hidden, 1))
        kwargs = {"options": {"step_size": step_size}} if step_size else {}
        return ODEBlock(ODEFunc(net, time_dependent=True), 1, method, 0.001, 0.001, **kwargs)

    assert ex05.check_build_odenet(other) is other
    assert "passed 9/9" in capsys.readouterr().out


# --------------------------------------------------------------------------------------------------
# exercise 2: one training step
# --------------------------------------------------------------------------------------------------


def test_a_step_without_zero_grad_fails_only_when_steps_repeat(capsys):
    def no_zero_grad(model, optimizer, x, y):
        loss = nn.functional.mse_loss(model(x), y)
        loss.backward()
        optimizer.step()
        return loss.item()

    assert ex05.check_training_step(no_zero_grad) is ex05.training_step
    out = capsys.readouterr().out
    assert "ok    exactly one SGD step per call" in out
    assert "wrong three steps in a row: old gradients are cleared (zero_grad): the first step matches, but after " \
           "3 steps the parameters differ" in out


def test_a_step_returning_the_loss_after_the_update_fails(capsys):
    def loss_after(model, optimizer, x, y):
        ex05.training_step(model, optimizer, x, y)
        return nn.functional.mse_loss(model(x), y).item()

    ex05.check_training_step(loss_after)
    out = capsys.readouterr().out
    assert "wrong returns the loss computed BEFORE the update: it returned" in out
    assert "the loss AFTER the update" in out
    assert "ok    exactly one SGD step per call" in out


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
    assert "ok    exactly one SGD step" in out and "wrong steps the optimizer it is given (two Adam steps" in out


def test_a_summed_squared_error_fails_on_the_mean_case(capsys):
    def summed(model, optimizer, x, y):
        optimizer.zero_grad()
        loss = ((model(x) - y) ** 2).sum()
        loss.backward()
        optimizer.step()
        return loss.item()

    ex05.check_training_step(summed)
    out = capsys.readouterr().out
    assert "wrong the loss is the MEAN squared error over the 10 points (not the sum): the returned loss is 10 " \
           "times the mean squared error" in out


def test_a_step_returning_a_tensor_or_nothing_fails_on_the_type(capsys):
    def tensor_loss(model, optimizer, x, y):
        optimizer.zero_grad()
        loss = nn.functional.mse_loss(model(x), y)
        loss.backward()
        optimizer.step()
        return loss

    assert ex05.check_training_step(tensor_loss) is ex05.training_step
    out = capsys.readouterr().out
    assert "wrong returns a Python float: it returned a Tensor" in out and "FAILED 6/7" in out

    def returns_none(model, optimizer, x, y):
        ex05.training_step(model, optimizer, x, y)

    ex05.check_training_step(returns_none)
    out = capsys.readouterr().out
    assert "wrong returns the loss computed BEFORE the update: the returned loss must be a number, got NoneType" in out


def test_a_step_written_another_way_passes(capsys):
    def other(model, optimizer, x, y):
        model.zero_grad(set_to_none=True)
        residual = model(x) - y
        loss = (residual * residual).sum() / residual.numel()
        loss.backward()
        optimizer.step()
        return float(loss.detach())

    assert ex05.check_training_step(other) is other
    assert "passed 7/7" in capsys.readouterr().out


# --------------------------------------------------------------------------------------------------
# exercise 3: interpolation against extrapolation
# --------------------------------------------------------------------------------------------------


def _errors(kind="squared", inside=lambda x: x.abs() <= 2, dtype=None, grad=False, as_tensors=False):
    """An extrapolation_errors with one deliberate difference from the statement."""
    def fn(model, lo=-3.0, hi=3.0, n=100):
        param = next(model.parameters(), None)
        grid = torch.linspace(lo, hi, n, dtype=dtype or (param.dtype if param is not None else torch.float32))
        grid = grid.unsqueeze(1)
        with torch.enable_grad() if grad else torch.no_grad():
            diff = (model(grid) - (grid**3 + 0.1 * grid)).detach().squeeze(1)
        err = diff**2 if kind == "squared" else diff.abs()
        mask = inside(grid.squeeze(1))
        pair = err[mask].mean(), err[~mask].mean()
        return pair if as_tensors else (pair[0].item(), pair[1].item())
    return fn


def test_swapped_errors_fail_on_the_order_case(capsys):
    ex05.check_extrapolation_errors(lambda *args, **kwargs: _errors()(*args, **kwargs)[::-1])
    out = capsys.readouterr().out
    assert "wrong returns (MSE inside, MSE outside) in that order (the identity map): the two errors are swapped" in out


def test_absolute_errors_fail_on_the_squared_case(capsys):
    ex05.check_extrapolation_errors(_errors(kind="absolute"))
    out = capsys.readouterr().out
    assert "wrong mean SQUARED errors against x^3 + 0.1 x (a ResNet): these are mean ABSOLUTE errors" in out


def test_a_strict_inside_fails_only_where_the_grid_hits_two(capsys):
    ex05.check_extrapolation_errors(_errors(inside=lambda x: x.abs() < 2))
    out = capsys.readouterr().out
    assert "wrong x = -2 and x = 2 count as inside (|x| <= 2): 9 points on [-4, 4]: the points x = -2 and x = 2 " \
           "were counted as outside" in out
    assert "FAILED 8/9" in out


def test_a_float64_grid_fails_on_a_model_without_parameters(capsys):
    ex05.check_extrapolation_errors(_errors(dtype=torch.float64))
    out = capsys.readouterr().out
    assert "wrong a model without parameters gets a float32 grid [n, 1] on the CPU: raised TypeError" in out


def test_predicting_with_gradients_on_fails(capsys):
    ex05.check_extrapolation_errors(_errors(grad=True))
    out = capsys.readouterr().out
    assert "wrong predicts without building a graph: raised RuntimeError" in out and "FAILED 8/9" in out


def test_tensors_instead_of_floats_fail_on_the_type_case(capsys):
    ex05.check_extrapolation_errors(_errors(as_tensors=True))
    out = capsys.readouterr().out
    assert "wrong returns two Python floats: got a Tensor" in out and "FAILED 8/9" in out


def test_extrapolation_errors_written_with_a_loop_pass(capsys):
    def loop(model, lo=-3.0, hi=3.0, n=100):
        params = list(model.parameters())
        dtype = params[0].dtype if params else torch.float32
        grid = torch.linspace(lo, hi, n, dtype=dtype).reshape(n, 1)
        with torch.inference_mode():
            pred = model(grid)[:, 0].tolist()
        inside, outside = [], []
        for x, p in zip(grid[:, 0].tolist(), pred):
            (inside if abs(x) <= 2 else outside).append((p - x**3 - 0.1 * x) ** 2)
        return sum(inside) / len(inside), sum(outside) / len(outside)

    assert ex05.check_extrapolation_errors(loop) is loop
    assert "passed 9/9" in capsys.readouterr().out


# --------------------------------------------------------------------------------------------------
# exercise 4: train with another solver
# --------------------------------------------------------------------------------------------------


def _trainer(n_iters_used=None, seeded=True, fixed_seed=None, optimizer="adam", nfe="forward", as_tensor=False):
    """A train_with_solver with one deliberate difference from the statement."""
    def fn(method, step_size=None, n_iters=300, seed=0):
        if seeded:
            seed_everything(seed if fixed_seed is None else fixed_seed)
        model = ex05.build_odenet(method=method, step_size=step_size)
        x, y = cubic_regression()
        history = train(model, nn.MSELoss(), (x, y), n_iters_used or n_iters, lr=0.01, optimizer=optimizer,
                        progress=False)
        with torch.no_grad():
            loss = nn.functional.mse_loss(model(x), y)
        count = model.nfe_forward if nfe == "forward" else sum(history.nfe_forward)
        return (loss, torch.tensor(count)) if as_tensor else (loss.item(), count)
    return fn


def test_an_nfe_summed_over_training_fails(capsys):
    assert ex05.check_train_with_solver(_trainer(nfe="sum")) is ex05.train_with_solver
    out = capsys.readouterr().out
    assert "wrong the NFE of ONE forward pass of the trained model, stages x steps: RK4, h = 0.5 costs 4 x 2 = 8: " \
           "NFE" in out
    assert "wrong an adaptive method: Dopri5's NFE of one forward pass is near the reference's (seed 1): NFE" in out
    assert "not a sum over training" in out
    assert "costs 4 stages x 2 steps = 8" in out


def test_a_seed_that_is_not_used_fails_on_the_seeding_case(capsys):
    ex05.check_train_with_solver(_trainer(fixed_seed=0))
    out = capsys.readouterr().out
    assert "wrong seeded with seed_everything(seed): seed 2 twice gives the same result, seed 3 another: seed and " \
           "seed + 1 gave the same result" in out

    ex05.check_train_with_solver(_trainer(seeded=False))
    assert "the same seed gave two different results" in capsys.readouterr().out


def test_a_fixed_number_of_iterations_fails_on_the_iterations_case(capsys):
    ex05.check_train_with_solver(_trainer(n_iters_used=100))  # a fixed count, whatever n_iters says
    out = capsys.readouterr().out
    assert "wrong Adam at learning rate 0.01 for n_iters iterations: after 150 the loss is near the reference's: " \
           "after 150 iterations the loss is" in out
    assert "ok    an adaptive method: Dopri5's NFE" in out


def test_plain_sgd_fails_the_bar_and_the_iterations_case(capsys):
    ex05.check_train_with_solver(_trainer(optimizer="sgd"))
    out = capsys.readouterr().out
    assert f"wrong trained: the loss ends below LOSS_BAR = {ex05.LOSS_BAR} after 300 iterations (Euler, h = 0.25): " \
           "final loss" in out
    assert "wrong Adam at learning rate 0.01 for n_iters iterations" in out and "FAILED 4/6" in out


def test_tensors_instead_of_numbers_fail_on_the_type_case(capsys):
    ex05.check_train_with_solver(_trainer(as_tensor=True))
    out = capsys.readouterr().out
    assert "wrong returns a Python float and an int: got (Tensor, Tensor)" in out and "FAILED 5/6" in out


def test_a_pair_is_required(capsys):
    ex05.check_train_with_solver(lambda *args, **kwargs: 0.01)
    assert "expected a pair (final_loss, nfe), got float" in capsys.readouterr().out


def test_a_training_loop_written_by_hand_passes(capsys):
    def by_hand(method, step_size=None, n_iters=300, seed=0):
        seed_everything(seed)
        model = ex05.build_odenet(25, method, step_size)
        x, y = cubic_regression()
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
        for _ in range(n_iters):
            optimizer.zero_grad()
            nn.functional.mse_loss(model(x), y).backward()
            optimizer.step()
        with torch.inference_mode():
            final = float(((model(x) - y) ** 2).mean())
        return final, int(model.nfe_forward)

    assert ex05.check_train_with_solver(by_hand) is by_hand
    assert "passed 6/6" in capsys.readouterr().out


# --------------------------------------------------------------------------------------------------
# exercise 5 (find the bug) and exercise 6 (predict)
# --------------------------------------------------------------------------------------------------


def test_the_shipped_regression_loss_bug_fails_on_vector_targets(capsys):
    assert ex05.check_regression_loss(ex05.buggy_regression_loss) is ex05.regression_loss
    out = capsys.readouterr().out
    assert "ok    targets [N, 1], like the predictions (the author's test)" in out
    assert "wrong targets [N], a plain vector of labels: the same loss: this is the mean over every (prediction, " \
           "target) PAIR" in out


def test_a_regression_loss_that_sums_fails_on_the_mean_case(capsys):
    assert ex05.check_regression_loss(lambda p, y: ((p - y.reshape(p.shape)) ** 2).sum()) is ex05.regression_loss
    assert "wrong the MEAN of the squared errors (not the sum): the loss is 10 times" in capsys.readouterr().out


def test_a_regression_loss_returning_a_float_fails_on_the_tensor_case(capsys):
    ex05.check_regression_loss(lambda p, y: ((p - y.reshape(p.shape)) ** 2).mean().item())
    out = capsys.readouterr().out
    assert "wrong returns a scalar tensor the gradient flows through" in out and "FAILED 5/6" in out


def test_a_regression_loss_that_always_adds_a_column_fails_on_column_targets(capsys):
    ex05.check_regression_loss(lambda p, y: ((p - y.unsqueeze(-1)) ** 2).mean())
    out = capsys.readouterr().out
    assert "wrong targets [N, 1], like the predictions (the author's test)" in out
    assert "ok    targets [N], a plain vector of labels" in out


@pytest.mark.parametrize("other", [
    lambda p, y: torch.nn.functional.mse_loss(p.squeeze(-1), y.reshape(-1)),
    lambda p, y: (p.flatten() - y.flatten()).pow(2).mean(),
    lambda p, y: ((p - y.view_as(p)) ** 2).sum() / p.shape[0],
], ids=["mse_loss", "flatten", "view_as"])
def test_regression_losses_repaired_another_way_pass(other, capsys):
    assert ex05.check_regression_loss(other) is other
    assert "passed 6/6" in capsys.readouterr().out


def test_rk4_nfe_prediction(capsys):
    assert ex05.check_rk4_nfe_prediction(None, verbose=False) == 40
    for wrong in (10, 60):  # one evaluation per step (Euler's count); six stages per step (Dopri5's)
        ex05.check_rk4_nfe_prediction(wrong)
        out = capsys.readouterr().out
        assert "FAILED" in out and f"you predicted {wrong}, measured 40" in out and "4 stages" in out
    ex05.check_rk4_nfe_prediction(40)
    assert "passed" in capsys.readouterr().out
