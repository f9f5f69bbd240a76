"""torchdiffeq code runs unchanged: each torchdiffeq behaviour checked against torchdiffeq on the same problem."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torchdiffeq

import nodecourse

FIXED = ["euler", "midpoint", "heun2", "rk4"]


def spiral(t, y):
    """A linear, time-dependent field: dy/dt = A(t) y."""
    a = torch.stack([torch.stack([-0.1 + 0 * t, 2.0 + t]), torch.stack([-2.0 - t, -0.1 + 0 * t])])
    return y @ a.T.to(y.dtype)


class Jump(torch.nn.Module):
    """dy/dt = 1 before t = 0.5, 3 from then on (a field with a jump at a grid point); records its times."""

    def __init__(self):
        super().__init__()
        self.times = []

    def forward(self, t, y):
        self.times.append(float(t))
        return torch.where(t < 0.5, torch.ones_like(y), 3 * torch.ones_like(y))


@pytest.mark.parametrize("method", FIXED)
def test_fixed_step_without_step_size_steps_on_the_output_times(method):
    y0 = torch.tensor([[1.0, 0.5]], dtype=torch.float64)
    t = torch.tensor([0.0, 0.1, 0.25, 0.3, 0.7, 1.0], dtype=torch.float64)
    ours = nodecourse.odeint(spiral, y0, t, method=method)
    theirs = torchdiffeq.odeint(spiral, y0, t, method=method)
    torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("method", FIXED)
def test_grid_constructor_gives_the_grid(method):
    def grid(func, y0, t):
        return torch.linspace(float(t[0]), float(t[-1]), 17, dtype=t.dtype)

    y0 = torch.tensor([[1.0, 0.5]], dtype=torch.float64)
    t = torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64)
    ours = nodecourse.odeint(spiral, y0, t, method=method, options={"grid_constructor": grid})
    theirs = torchdiffeq.odeint(spiral, y0, t, method=method, options={"grid_constructor": grid})
    torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-12)  # outputs on grid points: same states


def test_grid_constructor_backwards_in_time():
    def grid(func, y0, t):
        return torch.linspace(float(t[0]), float(t[-1]), 9, dtype=t.dtype)

    y0 = torch.tensor([[1.0, 0.5]], dtype=torch.float64)
    t = torch.tensor([1.0, 0.5, 0.0], dtype=torch.float64)
    ours = nodecourse.odeint(spiral, y0, t, method="rk4", options={"grid_constructor": grid})
    theirs = torchdiffeq.odeint(spiral, y0, t, method="rk4", options={"grid_constructor": grid})
    torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("method", ["euler", "rk4"])
def test_perturb_evaluates_each_side_of_a_jump_at_a_grid_point(method):
    y0 = torch.zeros(1, dtype=torch.float64)
    t = torch.tensor([0.0, 1.0], dtype=torch.float64)
    options = {"step_size": 0.25, "perturb": True}
    ours_field, their_field = Jump(), Jump()
    ours = nodecourse.odeint(ours_field, y0, t, method=method, options=options)
    theirs = torchdiffeq.odeint(their_field, y0, t, method=method, options=options)
    torch.testing.assert_close(ours, theirs)
    assert ours_field.times == their_field.times
    assert 0.5 not in ours_field.times and np.nextafter(0.5, 1.0) in ours_field.times
    exact = 0.5 * 1 + 0.5 * 3
    assert abs(float(ours[-1]) - exact) < 1e-12, "perturbed steps integrate the jump exactly"


@pytest.mark.parametrize("method", FIXED + ["dopri5", "bosh3"])
def test_func_sees_t_in_the_states_dtype(method):
    """A float64 t (from np.linspace, say) with a float32 state: func gets float32 t, as in torchdiffeq."""
    seen = set()

    def field(t, y):
        seen.add(t.dtype)
        return -y + torch.cat([t.expand(y.shape[0], 1), y[:, 1:]], dim=1)

    y0 = torch.ones(4, 2)
    t = torch.from_numpy(np.linspace(0.0, 1.0, 5))
    options = {"step_size": 0.125} if method in FIXED else None  # output times on the grid
    ours = nodecourse.odeint(field, y0, t, method=method, options=options)
    theirs = torchdiffeq.odeint(field, y0, t, method=method, options=options)
    assert seen == {torch.float32} and ours.dtype == torch.float32
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4)


def loss(odeint, t, **kwargs):
    y0 = torch.tensor([[1.0, 0.5]], dtype=torch.float64)
    return odeint(spiral, y0, t, **kwargs).pow(2).sum()


@pytest.mark.parametrize("method", FIXED)
def test_gradients_reach_the_output_times_on_the_output_grid(method):
    """Without step_size both step on the output times: the same discrete solution, the same gradients."""
    def grad(odeint):
        t = torch.tensor([0.0, 0.4, 1.0], dtype=torch.float64, requires_grad=True)
        loss(odeint, t, method=method).backward()
        return t.grad

    torch.testing.assert_close(grad(nodecourse.odeint), grad(torchdiffeq.odeint), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("method", ["midpoint", "heun2", "rk4"])
def test_gradients_reach_the_output_times_with_a_step_size(method):
    """With a step size and interp="exact", compared with central differences of a tight dopri5 solve
    (every output is a solver state; interpolated outputs are compared with torchdiffeq's in
    test_fixed_grid.py)."""
    t = torch.tensor([0.0, 0.4, 1.0], dtype=torch.float64, requires_grad=True)
    loss(nodecourse.odeint, t, method=method, options={"step_size": 0.01, "interp": "exact"}).backward()
    exact = []
    for i in range(3):
        shift = torch.zeros(3, dtype=torch.float64)
        shift[i] = 1e-6
        up, down = (loss(torchdiffeq.odeint, t.detach() + s, rtol=1e-12, atol=1e-12) for s in (shift, -shift))
        exact.append(float(up - down) / 2e-6)
    torch.testing.assert_close(t.grad, torch.tensor(exact, dtype=torch.float64), rtol=1e-3, atol=1e-3)


def test_gradient_for_the_end_time_is_the_field_there():
    """d y(t1) / d t1 = f(t1, y(t1)): checked on an exact solution."""
    t = torch.tensor([0.0, 1.0], dtype=torch.float64, requires_grad=True)
    y0 = torch.tensor([2.0], dtype=torch.float64)
    y = nodecourse.odeint(lambda t, y: -y, y0, t, method="rk4", options={"step_size": 0.01})
    y[-1].sum().backward()
    assert abs(float(t.grad[1]) - (-2.0 * np.exp(-1.0))) < 1e-6


def test_a_callable_adjoint_norm_gets_torchdiffeqs_arguments():
    """torchdiffeq hands an adjoint norm ``(t, y, adj_y, *adj_params)``; the gradients stay right."""
    torch.manual_seed(0)
    field = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2)).double()
    field_t = lambda t, y: field(y)  # noqa: E731
    params = tuple(field.parameters())
    seen = []

    def norm(parts):
        seen.append(tuple(p.shape for p in parts))
        t, y, adj_y, *adj_params = parts
        return max(p.abs().max() for p in (t, y, adj_y, *adj_params))

    def grads(odeint_adjoint):
        y0 = torch.tensor([[1.0, -0.5]], dtype=torch.float64, requires_grad=True)
        t = torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64)
        out = odeint_adjoint(field_t, y0, t, adjoint_params=params, adjoint_options={"norm": norm})
        return torch.autograd.grad(out.pow(2).sum(), (y0, *params))

    ours = grads(nodecourse.odeint_adjoint)
    assert seen and seen[0] == ((), (1, 2), (1, 2), *(p.shape for p in params))
    theirs = grads(torchdiffeq.odeint_adjoint)
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


class Recorder(torch.nn.Module):
    """A field that records every callback torchdiffeq defines, with the step's start time and size."""

    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(2, 2).double()
        self.calls = []
        for name in ("callback_step", "callback_accept_step", "callback_reject_step"):
            for suffix in ("", "_adjoint"):
                self._record(name + suffix)

    def _record(self, name):
        def callback(t0, y0, dt):
            self.calls.append((name, round(float(t0), 9), round(float(dt), 9), tuple(y0.shape) if torch.is_tensor(y0)
                               else len(y0)))
        object.__setattr__(self, name, callback)

    def forward(self, t, y):
        return torch.tanh(self.linear(y)) * (1 + t)


@pytest.mark.parametrize("method, options", [("rk4", {"step_size": 0.3}), ("dopri5", None), ("bosh3", None)])
@pytest.mark.parametrize("backwards", [False, True])
def test_callbacks_are_called_as_torchdiffeq_calls_them(method, options, backwards):
    t = torch.tensor([0.0, 1.0], dtype=torch.float64)
    t = t.flip(0) if backwards else t
    y0 = torch.tensor([[1.0, -0.5]], dtype=torch.float64)
    ours, theirs = Recorder(), Recorder()
    theirs.load_state_dict(ours.state_dict())
    kwargs = dict(method=method, options=options, rtol=1e-6, atol=1e-8)
    nodecourse.odeint(ours, y0, t, **kwargs)
    torchdiffeq.odeint(theirs, y0, t, **kwargs)
    assert ours.calls and [c[0] for c in ours.calls] == [c[0] for c in theirs.calls]
    for mine, their in zip(ours.calls, theirs.calls):
        assert mine[1:3] == pytest.approx(their[1:3], abs=1e-7) and mine[3] == their[3]


def test_adjoint_callbacks_are_called_on_the_reverse_solve():
    field = Recorder()
    y0 = torch.tensor([[1.0, -0.5]], dtype=torch.float64, requires_grad=True)
    out = nodecourse.odeint_adjoint(field, y0, torch.tensor([0.0, 1.0], dtype=torch.float64), method="rk4",
                                    options={"step_size": 0.25})
    forward_calls = [c[0] for c in field.calls]
    assert forward_calls == ["callback_step"] * 4
    out.sum().backward()
    reverse = [c for c in field.calls[4:]]
    assert [c[0] for c in reverse] == ["callback_step_adjoint"] * 4
    assert [c[1] for c in reverse] == [1.0, 0.75, 0.5, 0.25] and all(c[2] == 0.25 for c in reverse)


class Kink(torch.nn.Module):
    """dy/dt = -y before t = 0.5 and +2y after: a jump in the field at 0.5; counts evaluations."""

    def __init__(self):
        super().__init__()
        self.nfe = 0

    def forward(self, t, y):
        self.nfe += 1
        return torch.where(t < 0.5, -y, 2 * y)


@pytest.mark.parametrize("option", ["step_t", "jump_t"])
@pytest.mark.parametrize("backwards", [False, True])
def test_step_t_and_jump_t_land_on_their_times_as_in_torchdiffeq(option, backwards):
    t = torch.tensor([0.0, 1.0], dtype=torch.float64)
    t, where = (t.flip(0), torch.tensor([0.5])) if backwards else (t, torch.tensor([0.5]))
    y0 = torch.ones(1, dtype=torch.float64)
    ours, theirs = Kink(), Kink()
    kwargs = dict(method="dopri5", rtol=1e-8, atol=1e-10, options={option: where.double()})
    y_ours = nodecourse.odeint(ours, y0, t, **kwargs)
    y_theirs = torchdiffeq.odeint(theirs, y0, t, **kwargs)
    torch.testing.assert_close(y_ours, y_theirs, rtol=1e-9, atol=1e-12)
    assert ours.nfe == theirs.nfe
    if option == "jump_t" and not backwards:  # the next step starts from the field's far side: exact
        exact = float(np.exp(-0.5) * np.exp(2 * 0.5))
        assert abs(float(y_ours[-1]) - exact) < 1e-6


def test_landing_on_a_jump_saves_work_over_stepping_across_it():
    plain, jump = Kink(), Kink()
    t = torch.tensor([0.0, 1.0], dtype=torch.float64)
    y0 = torch.ones(1, dtype=torch.float64)
    nodecourse.odeint(plain, y0, t, rtol=1e-8, atol=1e-10)
    nodecourse.odeint(jump, y0, t, rtol=1e-8, atol=1e-10, options={"jump_t": [0.5]})
    assert jump.nfe < plain.nfe


def test_step_t_and_jump_t_must_not_overlap():
    with pytest.raises(ValueError, match="must not share"):
        nodecourse.odeint(Kink(), torch.ones(1), torch.tensor([0.0, 1.0]),
                          options={"step_t": [0.5], "jump_t": [0.5]})


@pytest.mark.parametrize("options", [{"step_size": 0.05}, None])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_heun3_agrees_with_torchdiffeq(options, dtype):
    y0 = torch.tensor([[1.0, 0.5], [0.2, -1.0]], dtype=dtype)
    t = torch.linspace(0.0, 2.0, 9, dtype=dtype)
    ours = nodecourse.odeint(spiral, y0, t, method="heun3", options=options)
    theirs = torchdiffeq.odeint(spiral, y0, t, method="heun3", options=options)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(ours, theirs, rtol=tol, atol=tol)


@pytest.mark.parametrize("rtol", [1e-4, 1e-6])
def test_adaptive_heun_meets_its_tolerance_like_torchdiffeqs(rtol):
    """torchdiffeq reuses the second stage, the field at the Euler state, as the next step's first
    stage; we evaluate the field at the accepted state instead (one more evaluation a step, but the
    step starts from the right slope). So the two are compared on their error against the exact solution."""
    def decay(t, y):
        return -y * (1 + t)

    y0 = torch.tensor([1.0, 2.0], dtype=torch.float64)
    t = torch.linspace(0.0, 2.0, 9, dtype=torch.float64)
    exact = y0 * torch.exp(-(t + t ** 2 / 2)).unsqueeze(1)
    ours = nodecourse.odeint(decay, y0, t, method="adaptive_heun", rtol=rtol, atol=rtol * 1e-2)
    theirs = torchdiffeq.odeint(decay, y0, t, method="adaptive_heun", rtol=rtol, atol=rtol * 1e-2)
    ours_error, their_error = float((ours - exact).abs().max()), float((theirs - exact).abs().max())
    assert ours_error < 20 * rtol and ours_error < 3 * their_error


@pytest.mark.parametrize("callback", ["callback_accept_step", "callback_reject_step"])
def test_callbacks_a_fixed_step_solve_never_calls_are_warned_about(callback):
    field = Recorder()
    with pytest.warns(UserWarning, match=f"{callback}.*never accepts or rejects"):
        nodecourse.odeint(field, torch.ones(1, 2, dtype=torch.float64), torch.tensor([0.0, 1.0]), method="rk4")


class SampleRecorder(Recorder):
    """:class:`Recorder` for per-sample solves, where ``t`` is ``[batch]``."""

    def forward(self, t, y):
        return torch.tanh(self.linear(y)) * (1 + t.unsqueeze(-1))


def test_a_per_sample_fixed_step_solve_calls_callback_step_and_warns_only_of_the_others():
    """Per-sample fixed steps share one grid, so they call callback_step once per step, and the warning
    names only the callbacks that are never called; per-sample adaptive solves call none and say so."""
    field = SampleRecorder()
    with pytest.warns(UserWarning, match="callback_accept_step, callback_reject_step.*never accepts") as caught:
        nodecourse.odeint(field, torch.ones(3, 2, dtype=torch.float64), torch.tensor([0.0, 1.0]), method="rk4",
                          options={"step_size": 0.25, "per_sample": True})
    assert not any("callback_step," in str(w.message) for w in caught)
    assert [c[:3] for c in field.calls] == [("callback_step", s, 0.25) for s in (0.0, 0.25, 0.5, 0.75)]
    with pytest.warns(UserWarning, match="callback_accept_step, callback_reject_step, callback_step.*per-sample"):
        nodecourse.odeint(SampleRecorder(), torch.ones(3, 2, dtype=torch.float64), torch.tensor([0.0, 1.0]),
                          options={"per_sample": True})


@pytest.mark.parametrize("method, options", [("dopri5", None), ("bosh3", None), ("adaptive_heun", None),
                                             ("rk4", {"step_size": 0.01, "interp": "cubic"}),
                                             ("euler", {"step_size": 0.01})])
@pytest.mark.parametrize("backwards", [False, True])
def test_event_fn_stops_where_torchdiffeq_stops(method, options, backwards):
    """y' = -y from y(0) = 1 (or y' = y backwards in time): the event y = 0.5 is at |t| = ln 2."""
    y0 = torch.tensor([1.0, 3.0], dtype=torch.float64)
    t = torch.tensor([0.0, -1.0 if backwards else 1.0], dtype=torch.float64)
    field = (lambda t, y: y) if backwards else (lambda t, y: -y)

    def event_fn(t, y):
        return y[0] - 0.5

    t_ours, y_ours = nodecourse.odeint(field, y0, t, method=method, options=options, event_fn=event_fn)
    t_theirs, y_theirs = torchdiffeq.odeint(field, y0, t, method=method, options=options, event_fn=event_fn)
    exact = -np.log(2.0) if backwards else np.log(2.0)
    tol = 5e-3 if method == "euler" else 1e-5
    assert abs(float(t_ours) - exact) < tol and abs(float(t_ours) - float(t_theirs)) < 1e-4  # torchdiffeq's own tol
    assert y_ours.shape == (2, 2) and torch.equal(y_ours[0], y0)
    torch.testing.assert_close(y_ours[-1], torch.tensor([0.5, 1.5], dtype=torch.float64), rtol=tol, atol=tol)


def test_odeint_event_differentiates_the_event_time():
    """y' = -k y, y(0) = y0, event y = 1/2: T = ln(2 y0) / k, so dT/dy0 = 1/(k y0), dT/dk = -ln(2 y0)/k^2."""
    k = torch.tensor(1.5, dtype=torch.float64, requires_grad=True)
    y0 = torch.tensor([2.0], dtype=torch.float64, requires_grad=True)

    def field(t, y):
        return -k * y

    t_event, solution = nodecourse.odeint_event(field, y0, torch.tensor(0.0, dtype=torch.float64),
                                                event_fn=lambda t, y: y.sum() - 0.5, rtol=1e-10, atol=1e-12)
    assert abs(float(t_event) - np.log(4.0) / 1.5) < 1e-8
    d_y0, d_k = torch.autograd.grad(t_event, (y0, k), retain_graph=True)
    assert abs(float(d_y0) - 1 / (1.5 * 2.0)) < 1e-6
    assert abs(float(d_k) + np.log(4.0) / 1.5 ** 2) < 1e-6
    # the state at the event is pinned at 1/2 whatever y0 is: its gradient vanishes
    (g,) = torch.autograd.grad(solution[-1].sum(), y0, allow_unused=True)
    assert abs(float(g)) < 1e-6


def test_event_errors_are_clear():
    with pytest.raises(ValueError, match="t holds two times"):
        nodecourse.odeint(lambda t, y: -y, torch.ones(1), torch.linspace(0, 1, 3), event_fn=lambda t, y: y.sum())
    with pytest.raises(ValueError, match="needs options=\\{'step_size': h\\}"):
        nodecourse.odeint(lambda t, y: -y, torch.ones(1), torch.tensor([0.0, 1.0]), method="rk4",
                          event_fn=lambda t, y: y.sum() - 0.5)
    with pytest.raises(ValueError, match="must return one number"):
        nodecourse.odeint(lambda t, y: -y, torch.ones(2), torch.tensor([0.0, 1.0]), event_fn=lambda t, y: y - 0.5)


def test_odeint_adjoint_with_an_event_matches_odeint_event():
    field = torch.nn.Linear(1, 1).double()
    torch.nn.init.constant_(field.weight, -1.2)
    torch.nn.init.constant_(field.bias, 0.1)

    def run(solver):
        y0 = torch.tensor([2.0], dtype=torch.float64, requires_grad=True)
        t = torch.tensor([0.0, 1.0], dtype=torch.float64)
        if solver == "adjoint":
            event_t, sol = nodecourse.odeint_adjoint(lambda t, y: field(y), y0, t, event_fn=lambda t, y: y.sum() - 0.5,
                                                     adjoint_params=tuple(field.parameters()), rtol=1e-10, atol=1e-12)
        else:
            event_t, sol = nodecourse.odeint_event(lambda t, y: field(y), y0, t[0], event_fn=lambda t, y: y.sum() - 0.5,
                                                   rtol=1e-10, atol=1e-12)
        return [float(event_t)] + [float(g) for g in torch.autograd.grad(event_t + sol[-1].sum(),
                                                                         (y0, *field.parameters()))]

    assert run("adjoint") == pytest.approx(run("odeint"), rel=1e-5, abs=1e-7)


@pytest.mark.parametrize("solver", ["LSODA", "RK45", "Radau", "BDF", "DOP853"])
@pytest.mark.parametrize("backwards", [False, True])
def test_scipy_solver_agrees_with_torchdiffeqs(solver, backwards):
    y0 = torch.tensor([[1.0, 0.5]], dtype=torch.float64)
    t = torch.linspace(0.0, 2.0, 6, dtype=torch.float64)
    t = t.flip(0) if backwards else t
    kwargs = dict(method="scipy_solver", options={"solver": solver}, rtol=1e-8, atol=1e-10)
    ours = nodecourse.odeint(spiral, y0, t, **kwargs)
    theirs = torchdiffeq.odeint(spiral, y0, t, **kwargs)
    exact = torchdiffeq.odeint(spiral, y0, t, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-7)  # same SciPy solve, up to its own tolerance
    torch.testing.assert_close(ours, exact, rtol=1e-5, atol=1e-6)


def test_scipy_solver_solves_a_stiff_problem_the_explicit_methods_give_up_on():
    t = torch.tensor([0.0, 1.0], dtype=torch.float64)
    y = nodecourse.solve(lambda t, y: -1e6 * (y - torch.cos(t)), torch.zeros(1, dtype=torch.float64), t,
                         method="scipy_solver", options={"solver": "Radau"}, rtol=1e-8, atol=1e-8)
    assert abs(float(y.ys[-1]) - np.cos(1.0)) < 1e-5 and y.stats.nfe < 2_000


def test_scipy_solver_gradients_through_the_adjoint():
    field = torch.nn.Linear(2, 2).double()
    y0 = torch.tensor([[1.0, -0.5]], dtype=torch.float64, requires_grad=True)
    t = torch.tensor([0.0, 1.0], dtype=torch.float64)
    grads = []
    for method in ("scipy_solver", "dopri5"):
        out = nodecourse.odeint_adjoint(lambda t, y: field(y), y0, t, method=method, rtol=1e-9, atol=1e-10,
                                        adjoint_params=tuple(field.parameters()))
        grads.append(torch.autograd.grad(out.pow(2).sum(), (y0, *field.parameters())))
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


def test_scipy_solver_options_are_checked():
    with pytest.raises(ValueError, match="must be one of LSODA"):
        nodecourse.odeint(spiral, torch.ones(1, 2), torch.tensor([0.0, 1.0]), method="scipy_solver",
                          options={"solver": "Euler"})


@pytest.mark.parametrize("min_step, max_step", [(0.0, float("inf")), (0.5, float("inf")), (0.0, 0.05), (0.2, 0.3)])
def test_min_step_and_max_step_bound_the_steps_as_in_torchdiffeq(min_step, max_step):
    counts = {}

    def counted(name):
        def field(t, y):
            counts[name] = counts.get(name, 0) + 1
            return spiral(t, y)
        return field

    y0 = torch.tensor([[1.0, 0.5]], dtype=torch.float64)
    t = torch.linspace(0.0, 3.0, 4, dtype=torch.float64)
    options = {"min_step": min_step, "max_step": max_step}
    ours = nodecourse.odeint(counted("ours"), y0, t, rtol=1e-7, atol=1e-9, options=options)
    theirs = torchdiffeq.odeint(counted("theirs"), y0, t, rtol=1e-7, atol=1e-9, options=dict(options))
    torch.testing.assert_close(ours, theirs, rtol=1e-9, atol=1e-9)
    assert counts["ours"] == counts["theirs"]


def test_min_step_above_max_step_is_refused():
    with pytest.raises(ValueError, match="0 <= min_step <= max_step"):
        nodecourse.odeint(spiral, torch.ones(1, 2), torch.tensor([0.0, 1.0]), options={"min_step": 1.0, "max_step": 0.5})


def test_event_fn_with_scipy_solver_is_refused_clearly():
    with pytest.raises(ValueError, match="event_fn works with the Runge-Kutta methods"):
        nodecourse.odeint(lambda t, y: -y, torch.ones(1), torch.tensor([0.0, 1.0]), method="scipy_solver",
                          event_fn=lambda t, y: y.sum() - 0.5)


# --- dopri8 ---------------------------------------------------------------------------------------
class _Decay(torch.nn.Module):
    """dy/dt = -rate t y, exactly y0 exp(-rate t^2 / 2); records the state at the start of each accepted step."""

    def __init__(self, rate=1.0):
        super().__init__()
        self.rate, self.starts = rate, []

    def forward(self, t, y):
        return -self.rate * t * y

    def exact(self, y0, t):
        return y0 * torch.exp(-self.rate * t.reshape(-1, *[1] * y0.dim()) ** 2 / 2)

    def callback_accept_step(self, t0, y0, dt):
        self.starts.append((t0.detach().clone(), y0.detach().clone()))


def test_dopri8_matches_torchdiffeq_and_the_exact_solution():
    """Both take the same steps, whose end states are within the tolerance of the exact solution. Output
    times inside a step come from the quartic interpolant in both (fifth order, the midpoint from each one's
    own weights), so there both are off by about 1e-6, far above the tolerance, and about equally."""
    y0 = torch.tensor([[1.0, -0.5, 2.0]], dtype=torch.float64)
    t = torch.linspace(0.0, 3.0, 61, dtype=torch.float64)
    ours_field, their_field = _Decay(), _Decay()
    ours = nodecourse.odeint(ours_field, y0, t, rtol=1e-10, atol=1e-10, method="dopri8")
    theirs = torchdiffeq.odeint(their_field, y0, t, rtol=1e-10, atol=1e-10, method="dopri8")
    assert len(ours_field.starts) == len(their_field.starts) > 10
    for field in (ours_field, their_field):
        starts = torch.stack([s for s, _ in field.starts])
        states = torch.stack([y for _, y in field.starts])
        assert (states - field.exact(y0, starts)).abs().max() < 10 * 1e-10
    torch.testing.assert_close(torch.stack([s for s, _ in ours_field.starts]),
                               torch.stack([s for s, _ in their_field.starts]), rtol=1e-5, atol=1e-5)
    exact = ours_field.exact(y0, t)
    ours_error, their_error = (ours - exact).abs().max(), (theirs - exact).abs().max()
    assert ours_error < 2e-6 and their_error < 2e-6
    assert ours_error < 2 * their_error and their_error < 2 * ours_error


def test_dopri8_local_error_is_high_order():
    """One step's error shrinks like h^9 or faster (order 8); its embedded estimate like h^8 (order 7)."""
    from nodecourse.solvers import TABLEAUX
    from nodecourse.solvers.rk_step import rk_step

    def square(t, y):  # y(t) = y0 / (1 - y0 t)
        return y * y

    y0 = torch.tensor([[1.0], [0.5]], dtype=torch.float64)  # y0 h > 0: the error's Taylor terms share a sign
    t0 = torch.tensor(0.0, dtype=torch.float64)
    errors, estimates = [], []
    for h in (0.4, 0.2, 0.1):  # at h = 0.05 the error reaches round-off
        y1, estimate, _ = rk_step(square, TABLEAUX["dopri8"], t0, y0, square(t0, y0), h)
        errors.append((y1 - y0 / (1 - y0 * h)).abs().max().item())
        estimates.append(estimate.abs().max().item())
    assert all(np.log2(e0 / e1) > 8.5 for e0, e1 in zip(errors, errors[1:])), errors
    assert all(np.log2(e0 / e1) > 7.5 for e0, e1 in zip(estimates, estimates[1:])), estimates


def test_dopri8_per_sample():
    """Each sample keeps its own steps: as many as when solved alone, and its outputs near the exact ones."""
    rates = torch.tensor([[0.5], [2.0], [8.0]], dtype=torch.float64)
    y0 = torch.tensor([[1.0, -0.5], [0.3, 2.0], [-1.0, 0.2]], dtype=torch.float64)
    t = torch.linspace(0.0, 2.0, 41, dtype=torch.float64)
    sol = nodecourse.solve(lambda s, y: -rates * s.unsqueeze(1) * y, y0, t, rtol=1e-10, atol=1e-10,
                           method="dopri8", options={"per_sample": True})
    exact = y0 * torch.exp(-rates * t.reshape(-1, 1, 1) ** 2 / 2)
    assert sol.ys.shape == (41, 3, 2) and sol.stats.n_steps.shape == (3,)
    assert (sol.ys - exact).abs().max() < 2e-6  # the interpolant's error, as in shared mode
    for b in range(3):
        alone = nodecourse.solve(_Decay(rates[b].item()), y0[b:b + 1], t, rtol=1e-10, atol=1e-10, method="dopri8")
        assert int(sol.stats.n_steps[b]) == int(alone.stats.n_steps)
    assert sol.stats.n_steps[0] < sol.stats.n_steps[2]  # the fast sample needed more steps
