"""The solvers against exact solutions, Runge-Kutta theory and torchdiffeq."""
from __future__ import annotations

import math
from fractions import Fraction

import pytest
import torch
import torchdiffeq

from nodecourse import odeint, solve
from nodecourse.solvers import ADAPTIVE_METHODS, FIXED_METHODS, TABLEAUX

# A damped rotation: y' = A y has the exact solution y(t) = expm(A t) y0.
A = torch.tensor([[-0.1, 2.0], [-2.0, -0.1]], dtype=torch.float64)


def linear(t, y):
    return y @ A.T


def exact_linear(y0: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return torch.stack([y0 @ torch.linalg.matrix_exp(A * ti).T for ti in t])


Y0 = torch.tensor([[1.0, 0.0], [0.3, -0.7], [-0.2, 0.4]], dtype=torch.float64)


# --- Runge-Kutta theory -------------------------------------------------------------------------
def _order_conditions(tab, weights):
    """Residuals of the order conditions up to order 4 for the given weights (Butcher 2016, Sec. 31)."""
    s = tab.n_stages
    a = [list(row) + [Fraction(0)] * (s - len(row)) for row in tab.a]
    c = list(tab.c)
    b = list(weights)
    ac = [sum(a[i][j] * c[j] for j in range(s)) for i in range(s)]
    conditions = {
        1: [sum(b) - 1],
        2: [sum(bi * ci for bi, ci in zip(b, c)) - Fraction(1, 2)],
        3: [sum(bi * ci ** 2 for bi, ci in zip(b, c)) - Fraction(1, 3),
            sum(bi * x for bi, x in zip(b, ac)) - Fraction(1, 6)],
        4: [sum(bi * ci ** 3 for bi, ci in zip(b, c)) - Fraction(1, 4),
            sum(b[i] * c[i] * ac[i] for i in range(s)) - Fraction(1, 8),
            sum(b[i] * sum(a[i][j] * c[j] ** 2 for j in range(s)) for i in range(s)) - Fraction(1, 12),
            sum(b[i] * sum(a[i][j] * ac[j] for j in range(s)) for i in range(s)) - Fraction(1, 24)],
    }
    return conditions


@pytest.mark.parametrize("name", list(TABLEAUX))
def test_tableaux_satisfy_order_conditions(name):
    tab = TABLEAUX[name]
    tol = 1e-15  # exact but for dopri8, whose published rationals meet the conditions to about 1e-17
    for i in range(tab.n_stages):  # row sums equal the stage times
        assert abs(sum(tab.a[i], Fraction(0)) - tab.c[i]) < tol
    conditions = _order_conditions(tab, tab.b)
    for order in range(1, min(tab.order, 4) + 1):
        assert all(abs(r) < tol for r in conditions[order]), (name, order)
    if tab.order < 4:  # and the order is not higher than claimed
        assert any(r != 0 for r in conditions[tab.order + 1])
    if tab.adaptive:  # the embedded solution has order error_order - 1
        embedded = _order_conditions(tab, tab.b_embedded)
        assert all(abs(r) < tol for order in range(1, min(tab.error_order, 5)) for r in embedded[order]), name


# --- convergence orders -------------------------------------------------------------------------
@pytest.mark.parametrize("method,order", [("euler", 1), ("midpoint", 2), ("heun2", 2), ("rk4", 4)])
def test_fixed_step_convergence_order(method, order):
    t = torch.tensor([0.0, 2.0], dtype=torch.float64)
    exact = exact_linear(Y0, t)[-1]
    steps = [0.1, 0.05, 0.025]
    errors = [(odeint(linear, Y0, t, method=method, options={"step_size": h})[-1] - exact).abs().max().item()
              for h in steps]
    measured = [math.log2(e0 / e1) for e0, e1 in zip(errors, errors[1:])]
    assert all(abs(m - order) < 0.15 for m in measured), measured


@pytest.mark.parametrize("method", FIXED_METHODS)
def test_fixed_step_lands_on_unaligned_output_times(method):
    # with interp="exact", outputs off the h-grid are real solver states, so the method keeps its order there
    t = torch.tensor([0.0, 0.333, 0.717, 1.0], dtype=torch.float64)  # off the grid for both step sizes
    exact = exact_linear(Y0, t)
    errors = [(odeint(linear, Y0, t, method=method, options={"step_size": h, "interp": "exact"}) - exact)
              .abs().max().item() for h in (0.02, 0.01)]
    order = TABLEAUX[method].order
    assert math.log2(errors[0] / errors[1]) > order - 0.3


# --- adaptive methods meet their tolerance ---------------------------------------------------------
@pytest.mark.parametrize("method", ADAPTIVE_METHODS)
@pytest.mark.parametrize("direction", [1, -1])
def test_adaptive_meets_tolerance_forward_and_backward(method, direction):
    """Error control bounds the error made in each step by the tolerance; on a contracting flow the
    global error is at most the sum of the local errors (Hairer, Norsett and Wanner, Sec. II.3)."""
    # a dense output grid; dopri8's outputs between steps come from a fourth-order quartic whose error
    # exceeds the tolerance over its long steps (torchdiffeq's too: test_dropin), so it is held to its step ends
    t = direction * torch.linspace(0, 3, 2 if method == "dopri8" else 61, dtype=torch.float64)
    exact = exact_linear(Y0, t)
    errors = []
    # fehlberg2's estimate dt/512 (k1 - k3) is only trustworthy once steps are small
    tolerances = (1e-7, 1e-10) if method == "fehlberg2" else (1e-3, 1e-6)
    for tol in tolerances:
        budget = {"max_num_steps": 10**6}  # a second-order method at 1e-10 takes tens of thousands of steps
        sol = solve(linear, Y0, t, rtol=tol, atol=tol, method=method, options=budget)
        assert sol.ys.shape == (len(t), *Y0.shape)
        error = (sol.ys - exact).abs().max().item()
        # RMS-norm control: each step's max-norm error <= sqrt(numel) * tol * (1 + |y|)
        per_step = math.sqrt(Y0.numel()) * tol * (1 + exact.abs().max().item())
        assert error < sol.stats.n_accepted * per_step, (method, tol, error, sol.stats)
        errors.append(error)
    assert errors[1] < errors[0] / 50  # a 1000x tighter tolerance buys a much smaller error


def test_dopri5_global_error_close_to_tolerance():
    t = torch.linspace(0, 3, 61, dtype=torch.float64)
    for tol in (1e-4, 1e-7, 1e-10):
        error = (odeint(linear, Y0, t, rtol=tol, atol=tol) - exact_linear(Y0, t)).abs().max().item()
        assert error < 10 * tol, (tol, error)


def test_tighter_tolerance_costs_more_and_is_more_accurate():
    t = torch.tensor([0.0, 5.0], dtype=torch.float64)
    exact = exact_linear(Y0, t)[-1]
    loose = solve(linear, Y0, t, rtol=1e-4, atol=1e-4)
    tight = solve(linear, Y0, t, rtol=1e-9, atol=1e-9)
    assert tight.stats.nfe > loose.stats.nfe
    assert (tight.ys[-1] - exact).abs().max() < (loose.ys[-1] - exact).abs().max()


def test_tuple_state_matches_separate_solves():
    # y' = A y and z' = -z solved together as a tuple
    def both(t, state):
        y, z = state
        return linear(t, y), -z

    z0 = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    t = torch.linspace(0, 2, 5, dtype=torch.float64)
    ys, zs = odeint(both, (Y0, z0), t, rtol=1e-9, atol=1e-9)
    assert ys.shape == (5, *Y0.shape) and zs.shape == (5, 3)
    assert torch.allclose(ys, exact_linear(Y0, t), atol=1e-7)
    assert torch.allclose(zs, z0 * torch.exp(-t)[:, None], atol=1e-7)
    ys_fixed, zs_fixed = odeint(both, (Y0, z0), t, method="rk4", options={"step_size": 0.01})
    assert torch.allclose(zs_fixed, z0 * torch.exp(-t)[:, None], atol=1e-8)


def test_time_dependent_field_and_float32():
    # y' = cos(t) y  ->  y = y0 exp(sin t)
    y0 = torch.tensor([1.0, -2.0])
    t = torch.linspace(0, 4, 9)
    ys = odeint(lambda t, y: torch.cos(t) * y, y0, t, rtol=1e-6, atol=1e-7)
    assert ys.dtype == torch.float32
    assert torch.allclose(ys, y0 * torch.exp(torch.sin(t))[:, None], atol=1e-4)


def test_float64_in_float64_out_and_single_time():
    y0 = torch.ones(3, dtype=torch.float64)
    assert odeint(lambda t, y: -y, y0, torch.tensor([0.0, 1.0])).dtype == torch.float64
    only = odeint(lambda t, y: -y, y0, torch.tensor([0.5]))
    assert only.shape == (1, 3) and torch.equal(only[0], y0)


# --- agreement with torchdiffeq in the same process -------------------------------------------
class Counter:
    """Wraps a vector field and counts its calls."""

    def __init__(self, f):
        self.f, self.n = f, 0

    def __call__(self, t, y):
        self.n += 1
        return self.f(t, y)


@pytest.mark.parametrize("method", FIXED_METHODS)
def test_fixed_step_agrees_with_torchdiffeq_to_roundoff(method):
    t = torch.linspace(0, 2, 11, dtype=torch.float64)
    ours = odeint(linear, Y0, t, method=method, options={"step_size": 0.05})
    theirs = torchdiffeq.odeint(linear, Y0, t, method=method, options={"step_size": 0.05})
    assert (ours - theirs).abs().max() < 1e-13


@pytest.mark.parametrize("tol", [1e-3, 1e-6, 1e-9])
def test_dopri5_agrees_with_torchdiffeq(tol):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.Tanh(), torch.nn.Linear(16, 2)).double()
    field = lambda t, y: net(y)  # noqa: E731
    y0 = torch.randn(8, 2, dtype=torch.float64)
    t = torch.linspace(0, 3, 7, dtype=torch.float64)
    ours = solve(field, y0, t, rtol=tol, atol=tol)
    counter = Counter(field)
    theirs = torchdiffeq.odeint(counter, y0, t, rtol=tol, atol=tol, method="dopri5")
    assert (ours.ys - theirs).abs().max() < max(tol, 1e-12) * 10
    assert abs(ours.stats.nfe - counter.n) <= 0.1 * counter.n


@pytest.mark.parametrize("shape", [(), (3,), (2, 3), (2, 1, 3, 2)])
@pytest.mark.parametrize("method", ["dopri5", "rk4", "euler"])
def test_states_of_any_shape_agree_with_torchdiffeq(shape, method):
    """The stepper works on the user's shape directly; interior outputs come from dense output."""
    y0 = torch.linspace(-1, 1, max(1, math.prod(shape)), dtype=torch.float64).reshape(shape)
    field = lambda t, y: -0.7 * y + torch.sin(y) * torch.cos(t)  # noqa: E731
    t = torch.linspace(0, 2, 6, dtype=torch.float64)
    kwargs = dict(options={"step_size": 0.1}) if method != "dopri5" else dict(rtol=1e-9, atol=1e-9)
    ours = odeint(field, y0, t, method=method, **kwargs)
    theirs = torchdiffeq.odeint(field, y0, t, method=method, **kwargs)
    assert ours.shape == (6, *shape)
    assert (ours - theirs).abs().max() < 1e-12  # the same steps and interpolant: round-off only


# --- per-sample steps ------------------------------------------------------------------------------
def _stiffness_batch():
    """Decay rates from 0.1 to 30: the fast samples need small steps, the slow ones do not."""
    rates = torch.logspace(-1, math.log10(30.0), 8, dtype=torch.float64)
    y0 = torch.ones(8, 1, dtype=torch.float64)
    field = lambda t, y: -rates[:, None] * y * (1 + 0.5 * torch.cos(torch.as_tensor(t)).reshape(-1, 1))  # noqa: E731
    exact = lambda t: torch.exp(-rates[:, None] * (t + 0.5 * torch.sin(t)))  # noqa: E731
    return rates, y0, field, exact


def test_per_sample_steps_meet_tolerance_with_fewer_steps():
    rates, y0, field, exact = _stiffness_batch()
    t = torch.linspace(0, 2, 5, dtype=torch.float64)
    tol = 1e-6
    shared = solve(field, y0, t, rtol=tol, atol=tol)
    per_sample = solve(field, y0, t, rtol=tol, atol=tol, options={"per_sample": True})
    truth = torch.stack([exact(ti) for ti in t])
    assert (per_sample.ys - truth).abs().max() < 20 * tol
    steps = per_sample.stats.n_steps
    assert steps.shape == (8,)
    assert steps.float().mean() < 0.8 * shared.stats.n_steps  # far fewer on average
    assert per_sample.stats.nfe.sum() < 0.8 * 8 * shared.stats.nfe  # less work per sample in total
    assert steps[0] < steps[-1]  # the slow sample takes fewer steps than the fast one
    # each sample on its own gives the same step count as it gets in the batch
    alone = solve(lambda t, y: field(t, y.expand(8, 1))[:1], y0[:1], t, rtol=tol, atol=tol)
    assert alone.stats.n_steps == int(steps[0])


def test_per_sample_time_argument_has_batch_shape():
    seen = []

    def field(t, y):
        seen.append(tuple(t.shape))
        return -y

    solve(field, torch.ones(4, 2), torch.tensor([0.0, 1.0]), options={"per_sample": True})
    assert set(seen) == {(4,)}


def test_per_sample_backward_in_time_and_gradients():
    t = torch.linspace(0, -2, 5, dtype=torch.float64)
    back = odeint(linear, Y0, t, rtol=1e-8, atol=1e-10, options={"per_sample": True})
    assert (back - exact_linear(Y0, t)).abs().max() < 1e-6
    # gradients flow through the masked per-sample solve: d y(1) / d y0 = exp(-k (1 + 0.5 sin 1))
    rates, y0, field, exact = _stiffness_batch()
    y0g = y0.clone().requires_grad_(True)
    one = torch.tensor([0.0, 1.0], dtype=torch.float64)
    out = odeint(field, y0g, one, rtol=1e-9, atol=1e-10, options={"per_sample": True})[-1]
    (grad,) = torch.autograd.grad(out.sum(), y0g)
    assert torch.isfinite(grad).all()
    assert torch.allclose(grad, exact(torch.tensor(1.0, dtype=torch.float64)), rtol=1e-5)


def test_dense_output_does_not_change_the_steps():
    # asking for more outputs must not change the step sequence (outputs come from interpolation)
    few = solve(linear, Y0, torch.tensor([0.0, 3.0], dtype=torch.float64), rtol=1e-6, atol=1e-6)
    many = solve(linear, Y0, torch.linspace(0, 3, 301, dtype=torch.float64), rtol=1e-6, atol=1e-6)
    assert few.stats.nfe == many.stats.nfe
    assert torch.allclose(few.ys[-1], many.ys[-1], atol=1e-14)


def test_statistics_add_up():
    sol = solve(linear, Y0, torch.tensor([0.0, 5.0], dtype=torch.float64), rtol=1e-6, atol=1e-6)
    s = sol.stats
    assert s.n_steps == s.n_accepted + s.n_rejected
    assert s.nfe == 2 + 6 * s.n_steps  # dopri5 is FSAL: 6 new evaluations a step, plus the start
    counter = Counter(linear)
    assert solve(counter, Y0, torch.tensor([0.0, 5.0], dtype=torch.float64), rtol=1e-6, atol=1e-6).stats.nfe == counter.n


def test_backprop_through_solver_matches_finite_differences():
    torch.manual_seed(1)
    w = torch.randn(2, 2, dtype=torch.float64, requires_grad=True)
    y0 = torch.randn(3, 2, dtype=torch.float64, requires_grad=True)
    t = torch.tensor([0.0, 0.7, 1.5], dtype=torch.float64)

    def loss(w, y0):
        ys = odeint(lambda t, y: torch.tanh(y @ w), y0, t, rtol=1e-10, atol=1e-12)
        return (ys ** 2).sum()

    assert torch.autograd.gradcheck(loss, (w, y0), eps=1e-6, atol=1e-5)


def test_float32_round_off_stays_small_over_many_steps():
    """A slow drift y' = 0.2 on y near 3.3 in float32: each step adds a small increment to a large state.
    Adding the increment once per step keeps the round-off to a few ulps of y after 155 steps."""
    t = torch.tensor([1.0, 2.5555556])
    y = odeint(lambda t, y: torch.full_like(y, 0.2), torch.tensor([3.2]), t, method="rk4",
               options={"step_size": 0.01})
    exact = 3.2 + 0.2 * (2.5555556 - 1.0)
    assert abs(float(y[-1]) - exact) < 2e-5


@pytest.mark.parametrize("n_outputs", [2, 3, 6])
@pytest.mark.parametrize("method", ADAPTIVE_METHODS)
def test_output_times_are_differentiable_however_few(method, n_outputs):
    """y' = -y from y(0) = 2: d y(t_j) / d t_j = -y(t_j) = -2 exp(-t_j), whether a step serves one output
    time (the host's stage weights) or several (one fitted polynomial)."""
    t = torch.linspace(0.0, 1.3, n_outputs, dtype=torch.float64).requires_grad_(True)
    ys = odeint(lambda s, y: -y, torch.tensor([2.0], dtype=torch.float64), t, rtol=1e-8, atol=1e-10, method=method)
    (grad_t,) = torch.autograd.grad(ys.sum(), t)
    exact = -2 * torch.exp(-t.detach())
    exact[0] = 2 * torch.exp(-t.detach()[1:]).sum()  # moving t_0 shifts every later state: + y(t_j) each
    assert torch.allclose(grad_t, exact, rtol=1e-4, atol=1e-8), (grad_t, exact)


# --- an nn.Module field is called through forward only when its __call__ would do nothing more ----------
class _Decay(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.rate = torch.nn.Parameter(torch.tensor(-0.5, dtype=torch.float64))

    def forward(self, t, y):
        return self.rate * y


@pytest.mark.parametrize("per_sample", [False, True], ids=["shared", "per-sample"])
@pytest.mark.parametrize("method", ["dopri5", "rk4"])
def test_module_hooks_run_at_every_evaluation(method, per_sample):
    """A hook on the field (forward, forward pre-, or a global one) sees every evaluation the solver counts."""
    y0 = torch.linspace(0.5, 1.5, 6, dtype=torch.float64).reshape(3, 2)
    t = torch.linspace(0.0, 1.0, 6, dtype=torch.float64)  # on rk4's grid: no interpolation error
    options = {"per_sample": per_sample, **({"step_size": 0.1} if method == "rk4" else {})}
    for register in ("forward", "pre", "global"):
        field, seen = _Decay(), []
        if register == "forward":
            handle = field.register_forward_hook(lambda module, args, out: seen.append(args[0]))
        elif register == "pre":
            handle = field.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
        else:
            handle = torch.nn.modules.module.register_module_forward_hook(
                lambda module, args, out: seen.append(args[0]) if module is field else None)
        try:
            solution = solve(field, y0, t, method=method, options=options)
        finally:
            handle.remove()
        nfe = int(torch.as_tensor(solution.stats.n_calls).max()) if per_sample else solution.stats.nfe
        assert len(seen) == nfe > 0, register
        exact = y0 * torch.exp(-0.5 * t).reshape(-1, 1, 1)
        assert (solution.ys - exact).abs().max() < 1e-5


def test_hook_free_module_gives_the_results_of_a_plain_function():
    """Calling forward directly changes nothing but the cost: the same outputs, bit for bit, and gradients."""
    y0 = torch.linspace(0.5, 1.5, 6, dtype=torch.float64).reshape(3, 2)
    t = torch.linspace(0.0, 2.0, 5, dtype=torch.float64)
    field = _Decay()
    as_function = lambda t, y: field.rate * y  # noqa: E731
    for method in ("dopri5", "rk4"):
        options = {"step_size": 0.1} if method == "rk4" else None
        assert torch.equal(odeint(field, y0, t, method=method, options=options),
                           odeint(as_function, y0, t, method=method, options=options))
    odeint(field, y0, t)[-1].sum().backward()
    expected = (2.0 * y0 * torch.exp(torch.tensor(-1.0, dtype=torch.float64))).sum()  # d/dr of y0 e^{2r} at r = -1/2
    assert torch.allclose(field.rate.grad, expected, rtol=1e-6)


def test_plain_call_keeps_the_full_call_where_it_does_more():
    from nodecourse.solvers.problem import plain_call

    field = _Decay()
    assert plain_call(field) == field.forward
    handle = field.register_forward_hook(lambda *args: None)
    assert plain_call(field) is field
    handle.remove()
    assert plain_call(field) == field.forward

    class OwnCall(_Decay):
        def __call__(self, t, y):
            return 2 * super().__call__(t, y)

    own = OwnCall()
    assert plain_call(own) is own
    function = lambda t, y: y  # noqa: E731
    assert plain_call(function) is function
