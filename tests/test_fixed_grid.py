"""Fixed-step solves step on their grid and interpolate the output times between grid points, as
torchdiffeq does (``options["interp"]``: "linear", "cubic"), or insert them into the grid ("exact")."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torchdiffeq
from torch.overrides import TorchFunctionMode

from nodecourse import odeint, solve
from nodecourse.solvers import grid as grids
from nodecourse.solvers.grid import forget_recent_grids

METHODS = ["euler", "midpoint", "heun2", "heun3", "rk4"]
OFF_GRID = [0.0, 0.13, 0.37, 0.91, 1.234, 1.75]  # none of them on the h = 0.1 grid t0 + k h


def field(t, y):
    """A nonlinear, time-dependent field on ``[..., 2]`` states."""
    return torch.stack([y[..., 1] * (1 + 0.3 * torch.sin(t)), -torch.sin(y[..., 0]) - 0.1 * y[..., 1]], dim=-1)


def pair_field(t, state):
    """``field`` on a tuple state ``(position [B], velocity [B])``."""
    dy = field(t, torch.stack(state, dim=-1))
    return dy[..., 0], dy[..., 1]


class Counted:
    """A field that counts its calls."""

    def __init__(self, f=field):
        self.f, self.calls = f, 0

    def __call__(self, t, y):
        self.calls += 1
        return self.f(t, y)


def _y0(dtype=torch.float64):
    return torch.tensor([[1.0, 0.5], [0.2, -0.3], [-0.4, 0.8]], dtype=dtype)


def _times(dtype=torch.float64, backwards=False):
    t = torch.tensor(OFF_GRID, dtype=dtype)
    return t.flip(0) if backwards else t


# --- the same outputs as torchdiffeq --------------------------------------------------------------
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("interp", ["linear", "cubic"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("backwards", [False, True])
def test_outputs_between_grid_points_equal_torchdiffeqs(method, interp, dtype, backwards):
    """Both step on t0 + k h and interpolate the same way: round-off apart."""
    y0, t = _y0(dtype), _times(dtype, backwards)
    options = {"step_size": 0.1, "interp": interp}
    ours = odeint(field, y0, t, method=method, options=options)
    theirs = torchdiffeq.odeint(field, y0, t, method=method, options=options)
    tol = 1e-13 if dtype == torch.float64 else 1e-6
    torch.testing.assert_close(ours, theirs, rtol=tol, atol=tol)


def test_linear_is_the_default_as_in_torchdiffeq():
    y0, t = _y0(), _times()
    ours = odeint(field, y0, t, method="rk4", options={"step_size": 0.1})
    theirs = torchdiffeq.odeint(field, y0, t, method="rk4", options={"step_size": 0.1})
    torch.testing.assert_close(ours, theirs, rtol=1e-13, atol=1e-13)
    assert not torch.equal(ours, odeint(field, y0, t, method="rk4", options={"step_size": 0.1, "interp": "exact"}))


@pytest.mark.parametrize("interp", ["linear", "cubic"])
@pytest.mark.parametrize("backwards", [False, True])
def test_a_tuple_state_equals_torchdiffeqs(interp, backwards):
    state = (torch.tensor([1.0, 0.2, -0.4], dtype=torch.float64), torch.tensor([0.5, -0.3, 0.8], dtype=torch.float64))
    t = _times(backwards=backwards)
    options = {"step_size": 0.1, "interp": interp}
    ours = odeint(pair_field, state, t, method="rk4", options=options)
    theirs = torchdiffeq.odeint(pair_field, state, t, method="rk4", options=options)
    for o, th in zip(ours, theirs):
        assert o.shape == (len(t), 3)
        torch.testing.assert_close(o, th, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("interp", ["linear", "cubic"])
@pytest.mark.parametrize("backwards", [False, True])
def test_a_grid_constructor_grid_is_interpolated_like_torchdiffeqs(interp, backwards):
    def grid(func, y0, t):
        return torch.linspace(float(t[0]), float(t[-1]), 8, dtype=t.dtype)  # steps of 0.25: outputs off it

    y0, t = _y0(), _times(backwards=backwards)
    options = {"grid_constructor": grid, "interp": interp}
    ours = odeint(field, y0, t, method="rk4", options=options)
    theirs = torchdiffeq.odeint(field, y0, t, method="rk4", options=options)
    torch.testing.assert_close(ours, theirs, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("method", ["euler", "rk4"])
@pytest.mark.parametrize("interp", ["linear", "cubic"])
def test_perturb_with_interpolation_equals_torchdiffeqs_on_a_smooth_field(method, interp):
    """On a smooth field the perturbed times change the field by round-off only; with "cubic" our end
    slope is the field just before the step's end, torchdiffeq's the field at it: still round-off."""
    y0, t = _y0(), _times()
    options = {"step_size": 0.1, "interp": interp, "perturb": True}
    ours = odeint(field, y0, t, method=method, options=options)
    theirs = torchdiffeq.odeint(field, y0, t, method=method, options=options)
    torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-12)


# --- the interpolants against independent references ------------------------------------------
def _grid_states(method, t_grid, **options):
    """Our solver states at the grid points themselves (outputs on grid points are the states)."""
    return odeint(field, _y0(), torch.tensor(t_grid, dtype=torch.float64), method=method,
                  options={"step_size": 0.1, **options})


def _hermite(x, dt, y0, y1, f0, f1):
    """The cubic Hermite polynomial on [0, 1] through y0, y1 with slopes dt f0, dt f1 (numpy)."""
    return ((2 * x ** 3 - 3 * x ** 2 + 1) * y0 + (x ** 3 - 2 * x ** 2 + x) * dt * f0
            + (-2 * x ** 3 + 3 * x ** 2) * y1 + (x ** 3 - x ** 2) * dt * f1)


@pytest.mark.parametrize("method", ["midpoint", "rk4"])
def test_cubic_is_the_hermite_cubic_between_two_grid_states(method):
    grid = [0.0, 0.1, 0.2, 0.3, 0.4]
    states = _grid_states(method, grid).numpy()
    for t_out in (0.33, 0.37, 0.399):
        ours = odeint(field, _y0(), torch.tensor([0.0, t_out, 0.4], dtype=torch.float64), method=method,
                      options={"step_size": 0.1, "interp": "cubic"})[1].numpy()
        y0, y1 = states[3], states[4]
        f0 = field(torch.tensor(0.3, dtype=torch.float64), torch.from_numpy(y0)).numpy()
        f1 = field(torch.tensor(0.4, dtype=torch.float64), torch.from_numpy(y1)).numpy()
        x = (t_out - 0.3) / (0.4 - 0.3)
        np.testing.assert_allclose(ours, _hermite(x, 0.1, y0, y1, f0, f1), rtol=1e-13, atol=1e-13)


def test_linear_is_the_straight_line_between_two_grid_states():
    states = _grid_states("rk4", [0.0, 0.1, 0.2, 0.3, 0.4]).numpy()
    ours = odeint(field, _y0(), torch.tensor([0.0, 0.37, 0.4], dtype=torch.float64), method="rk4",
                  options={"step_size": 0.1})[1].numpy()
    x = (0.37 - 0.3) / 0.1
    np.testing.assert_allclose(ours, states[3] + x * (states[4] - states[3]), rtol=1e-13, atol=1e-13)


def test_cubic_with_perturb_uses_each_steps_own_side_of_a_jump():
    """dy/dt = 1 before t = 0.5 and 3 from then on, with a jump at a grid point: the step (0.4, 0.5]
    sees slope 1 at both ends (the field just before 0.5), so its cubic is the exact line."""
    def jump(t, y):
        return torch.where(t < 0.5, torch.ones_like(y), 3 * torch.ones_like(y))

    y0 = torch.zeros(1, dtype=torch.float64)
    t = torch.tensor([0.0, 0.45, 0.5, 0.55, 1.0], dtype=torch.float64)
    ours = odeint(jump, y0, t, method="rk4", options={"step_size": 0.1, "interp": "cubic", "perturb": True})
    exact = torch.tensor([[0.0], [0.45], [0.5], [0.5 + 3 * 0.05], [0.5 + 3 * 0.5]], dtype=torch.float64)
    torch.testing.assert_close(ours, exact, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("method, interp, order", [("rk4", "linear", 2), ("rk4", "cubic", 4), ("rk4", "exact", 4),
                                                   ("heun3", "cubic", 3), ("midpoint", "linear", 2)])
def test_order_at_output_times_between_grid_points(method, interp, order):
    """Linear interpolation is second-order accurate, the cubic fourth: with it rk4 keeps its order."""
    a = torch.tensor([[-0.1, 2.0], [-2.0, -0.1]], dtype=torch.float64)
    t = torch.tensor([0.0, 0.333, 0.717, 1.0], dtype=torch.float64)
    exact = torch.stack([_y0() @ torch.linalg.matrix_exp(a * ti).T for ti in t])
    errors = [float((odeint(lambda s, y: y @ a.T, _y0(), t, method=method,
                            options={"step_size": h, "interp": interp}) - exact).abs().max()) for h in (0.02, 0.01)]
    assert math.log2(errors[0] / errors[1]) > order - 0.35


def test_exact_makes_every_output_a_true_solver_state():
    """With "exact", y(0.37) is the state of a solve that ends at 0.37: steps 0, 0.1, 0.2, 0.3, 0.37."""
    y0 = _y0()
    ours = odeint(field, y0, torch.tensor([0.0, 0.37, 0.91, 1.75], dtype=torch.float64), method="rk4",
                  options={"step_size": 0.1, "interp": "exact"})
    alone = odeint(field, y0, torch.tensor([0.0, 0.37], dtype=torch.float64), method="rk4",
                   options={"step_size": 0.1, "interp": "exact"})
    assert torch.equal(ours[1], alone[-1])


# --- cost --------------------------------------------------------------------------------------
def _nfe(t, h, interp="linear", perturb=False):
    f = Counted(lambda s, y: -y)
    stats = solve(f, torch.ones(1, 2), t, method="rk4", options={"step_size": h, "interp": interp,
                                                                   "perturb": perturb}).stats
    assert stats.nfe == f.calls, "the reported NFE is the number of calls"
    return stats.nfe


def test_nfe_depends_on_the_grid_only_not_on_the_number_of_outputs():
    dense, sparse = torch.linspace(0, 300, 1201), torch.linspace(0, 300, 3)
    assert _nfe(dense, 0.25) == _nfe(sparse, 0.25) == 4 * 1200
    assert _nfe(dense, 0.5) == _nfe(sparse, 0.5) == 4 * 600  # half the steps, half the cost
    assert _nfe(dense, 0.5, "cubic") == _nfe(sparse, 0.5, "cubic") == 4 * 600 + 1  # + the field at the end
    assert _nfe(dense, 0.5, "exact") == 4 * 1200  # every output time a grid point


def test_cubic_with_perturb_evaluates_the_field_once_more_per_step_holding_an_output():
    t = torch.tensor([0.0, 0.13, 0.17, 0.37, 0.5])  # outputs in the steps ending at 0.2, 0.4 and 0.5
    assert _nfe(t, 0.1, "cubic", perturb=True) == 4 * 5 + 3


class _OpCount(TorchFunctionMode):
    """Counts the torch operations called inside it."""

    def __init__(self):
        super().__init__()
        self.n = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.n += 1
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("interp", ["linear", "cubic"])
def test_the_number_of_tensor_operations_does_not_grow_with_the_outputs(interp):
    """All outputs are interpolated at once: 1,000 and 10,000 outputs on the same grid cost the same ops
    (each solve builds its grid: a kept one would spare the second its operations)."""
    counts = []
    for n_out in (1_000, 10_000):
        forget_recent_grids()
        with _OpCount() as ops:
            odeint(lambda t, y: -y, torch.ones(4, 2), torch.linspace(0, 5, n_out + 1), method="rk4",
                   options={"step_size": 0.1, "interp": interp})
        counts.append(ops.n)
    assert counts[0] == counts[1]


def test_without_a_step_size_the_grid_is_the_output_times_and_nothing_is_interpolated():
    y0, t = _y0(), _times()
    results = [solve(field, y0, t, method="rk4", options={"interp": interp}) for interp in ("linear", "cubic", "exact")]
    assert all(torch.equal(r.ys, results[0].ys) for r in results)
    assert {r.stats.nfe for r in results} == {4 * (len(t) - 1)}


# --- gradients ---------------------------------------------------------------------------------
def _net():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2)).double()


@pytest.mark.parametrize("method", ["euler", "heun3", "rk4"])
@pytest.mark.parametrize("interp", ["linear", "cubic"])
@pytest.mark.parametrize("backwards", [False, True])
def test_gradients_for_y0_parameters_and_t_equal_torchdiffeqs(method, interp, backwards):
    net = _net()

    def grads(solver):
        y0 = _y0().requires_grad_(True)
        t = _times(backwards=backwards).requires_grad_(True)
        ys = solver(lambda s, y: net(y) * (1 + 0.3 * torch.sin(s)), y0, t, method=method,
                    options={"step_size": 0.1, "interp": interp})
        return torch.autograd.grad((ys ** 2).sum() + ys[..., 0].sum(), (y0, t, *net.parameters()))

    for ours, theirs in zip(grads(odeint), grads(torchdiffeq.odeint)):
        torch.testing.assert_close(ours, theirs, rtol=1e-11, atol=1e-11)


@pytest.mark.parametrize("interp", ["linear", "cubic"])
def test_gradients_pass_gradcheck(interp):
    """Autograd through the grid and the interpolant agrees with finite differences of the solve itself."""
    def run(y0, t):
        return odeint(field, y0, t, method="rk4", options={"step_size": 0.1, "interp": interp})

    t = torch.tensor(OFF_GRID, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(run, (_y0().requires_grad_(True), t), eps=1e-7, atol=1e-6)


def test_t_gradient_at_an_output_on_a_grid_point():
    """An output exactly on a grid point (t = 0.5 = 5 h) is that grid state, and the interpolant of the
    step ending there still gives its time a gradient: the step's slope (y5 - y4) / h for "linear"
    (torchdiffeq returns the grid state itself there, so its gradient is zero), the field for "cubic"."""
    states = _grid_states("rk4", [0.0, 0.4, 0.5])
    for interp, slope in (("linear", (states[2] - states[1]) / 0.1),
                          ("cubic", field(torch.tensor(0.5, dtype=torch.float64), states[2]))):
        t = torch.tensor([0.0, 0.5, 1.75], dtype=torch.float64, requires_grad=True)
        ys = odeint(field, _y0(), t, method="rk4", options={"step_size": 0.1, "interp": interp})
        torch.testing.assert_close(ys[1].detach(), states[2], rtol=1e-14, atol=1e-14)  # a solve with t.grad steps with tensor sizes
        ys[1].sum().backward()
        torch.testing.assert_close(t.grad[1], slope.sum(), rtol=1e-12, atol=1e-12)


# --- per-sample mode, compile, bad input -------------------------------------------------------
@pytest.mark.parametrize("interp", ["linear", "cubic", "exact"])
def test_per_sample_solves_interpolate_like_the_shared_solve(interp):
    y0, t = _y0(), _times()
    options = {"step_size": 0.1, "interp": interp}
    shared = solve(field, y0, t, method="rk4", options=options)
    per_sample = solve(field, y0, t, method="rk4", options={**options, "per_sample": True})
    torch.testing.assert_close(per_sample.ys, shared.ys, rtol=1e-14, atol=1e-14)
    assert per_sample.stats.nfe.tolist() == [shared.stats.nfe] * len(y0)


def test_compiled_steps_interpolate_like_eager_ones():
    y0, t = _y0(), _times()
    options = {"step_size": 0.1, "interp": "cubic"}
    eager = odeint(field, y0, t, method="rk4", options=options)
    compiled = odeint(field, y0, t, method="rk4", options={**options, "compile": True})
    torch.testing.assert_close(compiled, eager, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("interp", ["quadratic", "Linear", None, 1])
def test_an_unknown_interp_is_refused_naming_the_choices(interp):
    with pytest.raises(ValueError, match=r"options\['interp'\] must be one of 'linear', 'cubic', 'exact'"):
        odeint(field, _y0(), _times(), method="rk4", options={"step_size": 0.1, "interp": interp})


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("t_end", [0.05, 0.1, 0.3, 2.7, 1 / 3])
def test_a_float32_span_takes_no_sliver_step(t_end, dtype):
    """float32 holds 0.1 as 0.10000000149: the span is 2.00000003 steps of 0.05, and that rounding must not
    cost a third step 7e-10 long (four more evaluations of rk4). The step count and the result are
    torchdiffeq's, which builds its grid in the time dtype."""
    calls = []

    def decay(t, y):
        calls.append(t)
        return -y

    y0, t = torch.ones(1, dtype=dtype), torch.tensor([0.0, t_end], dtype=dtype)
    options = {"step_size": 0.05}
    solution = solve(decay, y0, t, method="rk4", options=options)
    theirs = torchdiffeq.odeint(decay, y0, t, method="rk4", options=options)
    assert solution.stats.n_steps == math.ceil(round(t_end / 0.05, 6)) == len(calls) // 4 // 2
    assert (solution.ys[-1] - theirs[-1]).abs().max() <= 4 * torch.finfo(dtype).eps
    assert abs(float(solution.ys[-1]) - math.exp(-t_end)) < 1e-6


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_a_span_shorter_than_the_step_still_takes_one_step(dtype):
    y0 = torch.ones(1, dtype=dtype)
    for t_end in (1e-9, 1e-4, 0.049):
        solution = solve(lambda t, y: -y, y0, torch.tensor([0.0, t_end], dtype=dtype), method="rk4",
                         options={"step_size": 0.05})
        assert solution.stats.n_steps == 1
        assert abs(float(solution.ys[-1]) - math.exp(-t_end)) < 1e-7


class _WithCallback:
    """``field`` with a ``callback_step`` that records each step's start: a solve with a callback takes the
    general stepping loop, so this is that loop's result for the plain loop's to be compared with."""

    def __init__(self):
        self.starts = []

    def __call__(self, t, y):
        return field(t, y)

    def callback_step(self, t0, y0, dt):
        self.starts.append(float(t0))


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("per_sample", [False, True])
@pytest.mark.parametrize("times", [[0.0, 2.0], OFF_GRID, [2.0, 0.0]])
def test_the_plain_stepping_loop_equals_the_general_one_bit_for_bit(method, dtype, per_sample, times):
    """The plain loop (``plain_steps``: no callbacks, float steps) against the general one (forced by a
    callback), on a time-dependent field: the same operations in the same order give identical outputs."""
    y0, t = _y0().to(dtype), torch.tensor(times, dtype=dtype)
    options = {"step_size": 0.1, "per_sample": per_sample}
    general_field = _WithCallback()
    general = solve(general_field, y0, t, method=method, options=options)
    plain = solve(field, y0, t, method=method, options=options)
    assert general_field.starts, "the general loop ran (it calls callback_step)"
    assert torch.equal(plain.ys, general.ys)
    assert torch.equal(torch.as_tensor(plain.stats.nfe), torch.as_tensor(general.stats.nfe))


def test_the_plain_loop_takes_the_steps_of_an_uneven_grid():
    """A grid constructor's uneven grid (each step its own size, so its own plan) against a hand-written rk4."""
    grid = torch.tensor([0.0, 0.1, 0.35, 0.4, 1.0], dtype=torch.float64)
    y0 = _y0().double()
    ys = odeint(field, y0, grid[[0, -1]], method="rk4", options={"grid_constructor": lambda f, y, t: grid})
    y = y0
    for a, b in zip(grid[:-1], grid[1:]):
        h = b - a
        k1 = field(a, y)
        k2 = field(a + h / 3, y + h * k1 / 3)
        k3 = field(a + 2 * h / 3, y + h * (k2 - k1 / 3))
        k4 = field(b, y + h * (k1 - k2 + k3))
        y = y + h * (k1 + 3 * k2 + 3 * k3 + k4) / 8
    assert torch.allclose(ys[-1], y, rtol=0, atol=1e-14)


def test_a_wrong_output_shape_late_in_the_plain_loop_is_an_error():
    """The plain loop checks each output's shape as the first step's checked one did."""
    calls = []

    def changer(t, y):
        calls.append(1)
        return -y if len(calls) <= 9 else (-y).T.reshape(y.shape[::-1])

    with pytest.raises(ValueError, match=r"returned shape \(2, 3\) but the state has shape \(3, 2\)"):
        odeint(changer, torch.ones(3, 2), torch.tensor([0.0, 1.0]), method="rk4", options={"step_size": 0.1})


# --- grids kept for repeated solves --------------------------------------------------------------
class _TimesSeen:
    """``field`` that records the time tensors it is called with."""

    def __init__(self):
        self.times = []

    def __call__(self, t, y):
        self.times.append(t)
        return field(t, y)


def _stage_times_of(t, step_size=0.1, dtype=torch.float32, method="rk4", **options):
    """The solution and the time tensors func saw, for a solve on ``t``'s ``step_size`` grid."""
    seen = _TimesSeen()
    ys = odeint(seen, _y0().to(dtype), t, method=method, options={"step_size": step_size, **options})
    return ys, seen.times


def test_a_solve_on_the_grid_of_a_recent_one_reuses_its_stage_times_and_gives_the_same_result():
    forget_recent_grids()
    t = torch.tensor([0.0, 2.0])
    first, first_times = _stage_times_of(t)
    again, again_times = _stage_times_of(torch.tensor([0.0, 2.0]))  # another tensor with the same times
    assert all(a is b for a, b in zip(first_times, again_times)) and len(again_times) == 4 * 20
    forget_recent_grids()
    built, built_times = _stage_times_of(t)
    assert not any(a is b for a, b in zip(first_times, built_times))
    assert torch.equal(again, first) and torch.equal(built, first)
    assert [float(a) for a in built_times] == [float(a) for a in first_times]


@pytest.mark.parametrize("change", ["end", "step", "dtype", "method", "perturb", "interp"])
def test_a_solve_on_another_grid_builds_its_own(change):
    forget_recent_grids()
    _, kept = _stage_times_of(torch.tensor([0.0, 2.0]))
    t, step, dtype, method, options = torch.tensor([0.0, 2.0]), 0.1, torch.float32, "rk4", {}
    if change == "end":
        t = torch.tensor([0.0, 2.05])
    elif change == "step":
        step = 0.2
    elif change == "dtype":
        t, dtype = t.double(), torch.float64
    elif change == "method":
        method = "midpoint"  # stages at 0 and 1/2 instead of 0, 1/3, 2/3 and 1
    elif change == "perturb":
        options = {"perturb": True}
    else:
        options = {"interp": "exact"}  # the output times inserted: a grid of its own, never kept
    ys, times = _stage_times_of(t, step, dtype, method, **options)
    assert not {id(a) for a in times} & {id(a) for a in kept}
    reference = torchdiffeq.odeint(field, _y0().to(dtype), t, method=method,
                                   options={"step_size": step, "perturb": change == "perturb"})
    assert torch.allclose(ys, reference, rtol=0, atol=1e-5)


def test_times_that_need_a_gradient_get_a_grid_of_their_own_each_solve():
    forget_recent_grids()
    t = torch.tensor([0.0, 2.0], requires_grad=True)
    _, first = _stage_times_of(t)
    _, second = _stage_times_of(t)
    assert not {id(a) for a in first} & {id(a) for a in second}
    assert not grids._recent


def test_a_grid_made_in_inference_mode_is_not_kept_for_a_solve_that_trains():
    """Tensors made under ``torch.inference_mode`` cannot be saved for backward: a training step after
    an inference-mode solve on the same grid must still get gradients."""
    forget_recent_grids()
    weight = torch.tensor(0.5, requires_grad=True)
    t = torch.tensor([0.0, 1.0])
    with torch.inference_mode():
        odeint(lambda s, y: -weight * s * y, torch.ones(3), t, method="rk4", options={"step_size": 0.1})
    ys = odeint(lambda s, y: -weight * s * y, torch.ones(3), t, method="rk4", options={"step_size": 0.1})
    ys[-1].sum().backward()
    assert torch.allclose(weight.grad, torch.tensor(3 * -0.5 * math.exp(-0.25)), rtol=1e-6)  # d/dw 3 exp(-w/2)


def test_only_a_few_grids_are_kept_and_long_ones_not_at_all():
    forget_recent_grids()
    for k in range(grids.RECENT_GRIDS + 3):
        odeint(lambda t, y: -y, torch.ones(2), torch.tensor([0.0, 1.0 + k]), method="euler", options={"step_size": 0.5})
    assert len(grids._recent) == grids.RECENT_GRIDS
    forget_recent_grids()
    odeint(lambda t, y: -y, torch.ones(2), torch.tensor([0.0, 1.0]), method="euler",
           options={"step_size": 1.0 / (grids.CACHED_STEPS + 1)})
    assert not grids._recent
