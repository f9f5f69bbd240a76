"""The checkers of 04_adjoint_method: references agree with independent computations, a correct answer
passes, plausible wrong answers fail with a useful message, an unattempted exercise hands back the
reference."""
from __future__ import annotations

import pytest
import torch

from nodecourse import odeint, odeint_adjoint
from nodecourse.exercises import ex04
from nodecourse.exercises import checking
from nodecourse.models import MLP, ODEFunc

from helpers import assert_checker_rejects as _fails


@pytest.fixture(autouse=True)
def _last_hint_stage():
    """Each test sees the last (most specific) hint stage on a failure, whatever ran before it; the staging
    itself is tested in test_checker_contract.py."""
    checking.reset_hints(already_failed=10)
    yield
    checking.reset_hints(already_failed=0)


def _field(sizes, seed=0, time_dependent=False):
    torch.manual_seed(seed)
    return ODEFunc(MLP(sizes), time_dependent=time_dependent).double()


def _not_attempted(*args, **kwargs):
    raise NotImplementedError("Exercise")


# --- the references against independent computations ---------------------------------------------

def test_adjoint_linear_matches_autograd_through_the_solver():
    torch.manual_seed(0)
    A = torch.randn(3, 3, dtype=torch.float64)
    h0 = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    c = torch.randn(4, 3, dtype=torch.float64)
    t = torch.tensor([0.5, 1.7], dtype=torch.float64)
    h1 = odeint(lambda s, h: h @ A.T, h0, t, rtol=1e-11, atol=1e-12)[-1]
    (expected,) = torch.autograd.grad((c * h1).sum(), h0)  # L = sum c * h(t1): a(t1) = c
    assert torch.allclose(ex04.adjoint_linear(A, c, 0.5, 1.7), expected, rtol=1e-8, atol=1e-10)
    assert torch.allclose(ex04.adjoint_linear(A, c[0], 0.5, 1.7), expected[0], rtol=1e-8, atol=1e-10)


def test_augmented_dynamics_matches_explicit_jacobians():
    field = _field([3, 16, 2], seed=1, time_dependent=True)
    h, a, t = torch.randn(3, 2, dtype=torch.float64), torch.randn(3, 2, dtype=torch.float64), torch.tensor(0.3)
    f, a_dot, g_dot = ex04.augmented_dynamics(field, t, h, a)
    assert torch.allclose(f, field(t, h))
    jac = torch.autograd.functional.jacobian(lambda x: field(t, x), h)  # [3, 2, 3, 2]
    assert torch.allclose(a_dot, -torch.einsum("bi,bicj->cj", a, jac), atol=1e-12)
    names = [name for name, _ in field.named_parameters()]
    for name, p, g in zip(names, field.parameters(), g_dot):
        jac_p = torch.autograd.functional.jacobian(
            lambda w: torch.func.functional_call(field, {name: w}, (t, h)), p.detach())
        assert torch.allclose(g, -torch.einsum("bi,bi...->...", a, jac_p), atol=1e-12), name
    assert all(p.grad is None for p in field.parameters())


def test_augmented_dynamics_gives_zeros_for_unused_parameters():
    field = ex04._WithUnusedParameter()
    _, _, g_dot = ex04.augmented_dynamics(field, torch.tensor(0.0), torch.ones(2, 2, dtype=torch.float64),
                                          torch.ones(2, 2, dtype=torch.float64))
    names = [name for name, _ in field.named_parameters()]
    assert torch.equal(g_dot[names.index("unused")], torch.zeros(3, dtype=torch.float64))
    assert all(g.abs().sum() > 0 for name, g in zip(names, g_dot) if name != "unused")


def test_saved_bytes_counts_what_backward_needs():
    x = torch.randn(100, requires_grad=True)
    assert ex04.saved_bytes(lambda: torch.tanh(x)) == 100 * 4  # tanh saves its output
    y = torch.randn(10, 10, dtype=torch.float64, requires_grad=True)
    assert ex04.saved_bytes(lambda: y * y) == 10 * 10 * 8  # the same tensor twice: one storage
    assert ex04.saved_bytes(lambda: y.detach() * 2) == 0
    # backprop through rk4 grows linearly with the step count
    field = _field([2, 8, 2], seed=2)
    y0 = torch.randn(4, 2, dtype=torch.float64, requires_grad=True)
    t = torch.tensor([0.0, 1.0], dtype=torch.float64)
    steps = (10, 20, 40)
    sizes = [ex04.saved_bytes(lambda: odeint(field, y0, t, method="rk4", options={"step_size": 1 / n}))
             for n in steps]
    per_step = [(sizes[i + 1] - sizes[i]) / (steps[i + 1] - steps[i]) for i in range(2)]
    assert per_step[0] == pytest.approx(per_step[1], rel=0.02) and per_step[0] > 0
    assert sizes[2] > 3.5 * sizes[0]


@pytest.mark.parametrize("shape, dtype, n_checkpoints, solver", [
    ((16, 2), torch.float32, 0, {}),
    ((16, 2), torch.float32, 7, {"method": "rk4", "options": {"step_size": 0.01}}),
    ((3,), torch.float64, 5, {"rtol": 1e-9, "atol": 1e-9}),
    ((2, 3, 4), torch.float64, 12, {"method": "bosh3"}),
])
def test_checkpointed_bytes_is_what_the_meter_measures_whatever_the_solver(shape, dtype, n_checkpoints, solver):
    """Measured on a field and with solvers the checker does not use: only the shapes and the dtype count."""
    field = _field([shape[-1], 12, shape[-1]], seed=5).to(dtype)
    y0 = torch.randn(*shape, dtype=dtype)
    t = torch.linspace(-1.0, 2.0, n_checkpoints + 2, dtype=dtype)
    measured = ex04.saved_bytes(lambda: odeint_adjoint(field, y0, t, **solver))
    assert ex04.checkpointed_bytes(y0, n_checkpoints) == measured
    assert isinstance(ex04.checkpointed_bytes(y0, n_checkpoints), int)


def test_checkpointed_bytes_by_hand_and_against_backprop():
    y0 = torch.zeros(16, 2)  # 12 outputs of 32 numbers and a time, 4 bytes each
    assert ex04.checkpointed_bytes(y0, 10) == 12 * 33 * 4
    assert ex04.checkpointed_bytes(y0.double(), 0) == 2 * 33 * 8
    field = _field([2, 32, 2], seed=6).float()
    t = torch.tensor([0.0, 1.0])
    per_step = ex04.saved_bytes(lambda: odeint(field, y0, t, method="rk4", options={"step_size": 0.01})) / 100
    assert per_step > 10 * (ex04.checkpointed_bytes(y0, 1) - ex04.checkpointed_bytes(y0, 0))


def test_adjoint_gradients_match_backprop():
    field = _field([3, 16, 2], seed=3, time_dependent=True)
    h0 = torch.randn(5, 2, dtype=torch.float64, requires_grad=True)
    target = torch.randn(5, 2, dtype=torch.float64)
    for t0, t1 in ((0.0, 1.2), (1.0, 0.2)):
        h1 = odeint(field, h0, torch.tensor([t0, t1], dtype=torch.float64), rtol=1e-11, atol=1e-12)[-1]
        loss = (h1 - target).pow(2).sum()
        expected = torch.autograd.grad(loss, (h0, *field.parameters()))
        grad_h1 = 2 * (h1 - target).detach()
        grad_h0, grad_params = ex04.adjoint_gradients(field, h0.detach(), t0, t1, grad_h1, rtol=1e-11, atol=1e-12)
        for got, exp in zip((grad_h0, *grad_params), expected):
            assert torch.allclose(got, exp, rtol=1e-7, atol=1e-9)


# --- the checkers ---------------------------------------------------------------------------------


def _copy(fn):
    """A distinct function object that behaves like ``fn`` (to tell 'learner kept' from 'reference')."""
    def learner(*args, **kwargs):
        return fn(*args, **kwargs)
    return learner


def test_adjoint_linear_without_transpose_fails(capsys):
    def no_transpose(A, a1, t0, t1):  # uses expm(A) where expm(A^T) belongs
        return a1 @ torch.linalg.matrix_exp(A.T * (t1 - t0))
    _fails(ex04.check_adjoint_linear, no_transpose, capsys, "values differ", "mind the transpose")


def test_adjoint_linear_with_the_wrong_time_direction_fails(capsys):
    def wrong_sign(A, a1, t0, t1):
        return a1 @ torch.linalg.matrix_exp(A * (t0 - t1))
    _fails(ex04.check_adjoint_linear, wrong_sign, capsys, "values differ")


def test_augmented_dynamics_without_the_minus_sign_fails(capsys):
    def plus_sign(func, t, h, a):
        f, a_dot, g_dot = ex04.augmented_dynamics(func, t, h, a)
        return f, -a_dot, tuple(-g for g in g_dot)
    _fails(ex04.check_augmented_dynamics, plus_sign, capsys, "a_dot has the opposite sign", "-a df/dh")


def test_augmented_dynamics_with_none_for_unused_parameters_fails(capsys):
    def keeps_none(func, t, h, a):
        params = tuple(func.parameters())
        with torch.enable_grad():
            h = h.detach().requires_grad_(True)
            f = func(t, h)
            vjps = torch.autograd.grad(f, (h, *params), grad_outputs=-a, allow_unused=True)
        return f.detach(), vjps[0], vjps[1:]
    _fails(ex04.check_augmented_dynamics, keeps_none, capsys, "unused parameter", "expected a tensor, got NoneType")


def test_augmented_dynamics_using_backward_is_reported(capsys):
    def with_backward(func, t, h, a):
        h = h.detach().requires_grad_(True)
        f = func(t, h)
        f.backward(-a)
        grads = tuple(p.grad.clone() for p in func.parameters())
        return f.detach(), h.grad, grads
    _fails(ex04.check_augmented_dynamics, with_backward, capsys, "use torch.autograd.grad")


def test_checkpointed_bytes_without_the_times_fails_and_says_so(capsys):
    def states_only(y0, n_checkpoints):
        return (n_checkpoints + 2) * y0.numel() * y0.element_size()
    _fails(ex04.check_checkpointed_bytes, states_only, capsys, "the output times are saved too")


def test_checkpointed_bytes_without_the_two_ends_fails_and_says_so(capsys):
    def checkpoints_only(y0, n_checkpoints):
        return n_checkpoints * (y0.numel() + 1) * y0.element_size()
    _fails(ex04.check_checkpointed_bytes, checkpoints_only, capsys,
           "wrong a batch [16, 2] of float32 states, no checkpoints (the two ends only): measured 264 bytes, you "
           "predicted 0, which is 0 outputs' worth; this solve returns 2 outputs", "[stage 2 of 2]")


def test_checkpointed_bytes_with_four_bytes_per_number_fails_on_float64_only(capsys):
    def float32_only(y0, n_checkpoints):
        return (n_checkpoints + 2) * (y0.numel() + 1) * 4
    out = _fails(ex04.check_checkpointed_bytes, float32_only, capsys,
                 "wrong float64 states [8, 3], 3 checkpoints", "takes 8 bytes, not 4")
    assert "ok    a batch of images [4, 1, 6, 6], 2 checkpoints" in out and "FAILED 4/5" in out


def test_checkpointed_bytes_as_a_float_fails(capsys):
    def as_float(y0, n_checkpoints):
        return (n_checkpoints + 2) * (y0.numel() + 1) * y0.element_size() / 1.0
    _fails(ex04.check_checkpointed_bytes, as_float, capsys, "return the number of bytes as an int, got float")


def test_checkpointed_bytes_written_with_tensors_passes(capsys):
    """Builds the times and the output tensor the solve keeps, empty, and asks them their sizes."""
    def by_the_tensors(y0, n_checkpoints):
        t = torch.empty(n_checkpoints + 2, dtype=y0.dtype)
        outputs = y0.new_empty((len(t), *y0.shape))
        return sum(x.untyped_storage().nbytes() for x in (t, outputs))

    assert ex04.check_checkpointed_bytes(by_the_tensors) is by_the_tensors
    assert "passed 5/5" in capsys.readouterr().out


def test_adjoint_gradients_without_the_backward_solve_fails(capsys):
    def forward_in_time(func, h0, t0, t1, grad_h1, rtol=1e-9, atol=1e-10):
        # integrates the augmented system from t0 to t1 instead of backwards
        params = tuple(func.parameters())

        def dynamics(s, state):
            f, a_dot, g_dot = ex04.augmented_dynamics(func, s, state[0], state[1])
            return (f, a_dot, *g_dot)

        t = torch.tensor([t0, t1], dtype=h0.dtype)
        out = odeint(dynamics, (h0, grad_h1, *[torch.zeros_like(p) for p in params]), t, rtol=rtol, atol=atol)
        return out[1][-1], tuple(o[-1] for o in out[2:])
    _fails(ex04.check_adjoint_gradients, forward_in_time, capsys, "values differ", "runs to t0")


def test_a_learner_exception_is_reported_not_raised(capsys):
    def broken(A, a1, t0, t1):
        return a1 @ A @ None
    _fails(ex04.check_adjoint_linear, broken, capsys, "raised TypeError")


# --- bad input ------------------------------------------------------------------------------------


def test_reference_input_errors():
    with pytest.raises(ValueError, match="square matrix"):
        ex04.adjoint_linear(torch.ones(2, 3), torch.ones(2), 0.0, 1.0)
    with pytest.raises(ValueError, match=r"a1 must be \[D\] or \[B, D\]"):
        ex04.adjoint_linear(torch.eye(2), torch.ones(3), 0.0, 1.0)
    with pytest.raises(TypeError, match="function of no arguments"):
        ex04.saved_bytes(torch.ones(2))
    with pytest.raises(TypeError, match="floating tensor"):
        ex04.checkpointed_bytes(torch.ones(2, dtype=torch.long), 1)
    with pytest.raises(ValueError, match="whole number >= 0"):
        ex04.checkpointed_bytes(torch.ones(2), -1)


def test_checker_hands_back_the_reference_and_notebook_can_go_on(capsys):
    """The function a checker returns is usable whatever the learner's state."""
    adjoint_linear = ex04.check_adjoint_linear(_not_attempted)
    capsys.readouterr()
    out = adjoint_linear(torch.zeros(2, 2), torch.ones(2), 0.0, 1.0)
    assert torch.equal(out, torch.ones(2))  # A = 0: the adjoint does not move


# --------------------------------------------------------------------------------------------------
# the wrong answers a learner found passing, the shipped bug, answers written differently
# --------------------------------------------------------------------------------------------------


def test_augmented_dynamics_without_enable_grad_fails_and_says_so(capsys):
    assert ex04.check_augmented_dynamics(ex04.buggy_augmented_dynamics) is ex04.augmented_dynamics
    out = capsys.readouterr().out
    assert "ok    MLP 2-16-2, float32, batch 5" in out  # right numbers when called from a cell
    assert "wrong called with autograd disabled" in out and "torch.enable_grad()" in out


def test_augmented_dynamics_returning_f_attached_fails_and_says_so(capsys):
    @torch.enable_grad()
    def attached(func, t, h, a):
        params = tuple(func.parameters())
        h = h.detach().requires_grad_(True)
        f = func(t, h)
        vjps = torch.autograd.grad(f, (h, *params), grad_outputs=-a, allow_unused=True, retain_graph=True)
        vjps = tuple(torch.zeros_like(x) if v is None else v for x, v in zip((h, *params), vjps))
        return f, vjps[0], vjps[1:]

    assert ex04.check_augmented_dynamics(attached) is ex04.augmented_dynamics
    out = capsys.readouterr().out
    assert "wrong f is returned detached" in out and "f is still attached to the graph" in out


def test_augmented_dynamics_written_differently_passes(capsys):
    """A with-block, separate products for the state and the parameters, and the sign applied afterwards."""
    def other(func, t, h, a):
        params = list(func.parameters())
        with torch.enable_grad():
            x = h.clone().detach().requires_grad_()
            out = func(t, x)
            grads = torch.autograd.grad(out, [x] + params, grad_outputs=a, allow_unused=True)
        grads = [-(g if g is not None else torch.zeros_like(p)) for g, p in zip(grads, [x] + params)]
        return out.detach(), grads[0], tuple(grads[1:])

    assert ex04.check_augmented_dynamics(other) is other
    assert "passed 6/6" in capsys.readouterr().out


def test_memory_prediction_passes_near_ten_and_fails_far_from_it(capsys):
    truth = ex04.check_memory_ratio_prediction(None, verbose=False)
    assert 9.0 < truth < 11.0
    ex04.check_memory_ratio_prediction(1.0)  # "the same memory": what the adjoint does, not backprop
    out = capsys.readouterr().out
    assert "FAILED" in out and "you predicted 1, measured" in out and "in proportion to the number of steps" in out
    ex04.check_memory_ratio_prediction(10)
    out = capsys.readouterr().out
    assert "passed" in out and "your first was 1" in out
    with pytest.raises(TypeError, match="predicted_ratio must be a number"):
        ex04.check_memory_ratio_prediction("ten")
