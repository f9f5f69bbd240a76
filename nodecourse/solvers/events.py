"""Solving until an event: integrate until ``event_fn(t, y)`` changes sign, then locate the root.

``odeint(func, y0, t, event_fn=g)`` (torchdiffeq's interface) integrates from ``t[0]`` in the direction
of ``t[1]``, without stopping at ``t[1]``, until ``g(t, y(t))`` changes sign, finds the crossing time by
bisection on the step's dense output, and returns ``(t_event, [y0, y(t_event)])``.
:func:`odeint_event` adds the gradient of the event time by the implicit function theorem: with
``g(T, y(T)) = 0``, ``dT = -(dg/dt + dg/dy . f)^-1 (dg/dy . dy|_T + dg/dtheta)``.
"""
from __future__ import annotations

from typing import Any, Callable, Optional

import torch

from . import interpolation, steps
from .adaptive import DEFAULTS, _dense_output, initial_step
from .checks import SolverError
from .control import Control
from .norms import make_norm
from .problem import FlatProblem
from .rk_step import midpoint
from .tableaux import ButcherTableau

__all__ = ["integrate_until_event", "odeint_event"]

BISECTION_STEPS = 60  # halves a step to below float64 resolution


def integrate_until_event(problem: FlatProblem, tableau: ButcherTableau, rtol: float, atol: float,
                          options: dict, event_fn: Callable) -> tuple[torch.Tensor, torch.Tensor]:
    """The internal event time (0-d) and the flat state there ``[1, N]``, for a shared-step solve.
    The state is differentiable (through the steps and the dense output); the time is found by bisection."""
    if problem.per_sample:
        raise ValueError("event_fn needs one step size for the whole batch: drop per_sample.")
    event = _Event(problem, event_fn)
    t, y = problem.t[0], problem.y0
    f = problem(t, y)
    sign0 = event.sign(t, y)
    if tableau.adaptive:
        return _adaptive_until(problem, tableau, rtol, atol, options, event, t, y, f, sign0)
    return _fixed_until(problem, tableau, options, event, t, y, f, sign0)


class _Event:
    """``event_fn`` seen on the solver's internal time and flat state."""

    def __init__(self, problem: FlatProblem, event_fn: Callable):
        self.problem, self.event_fn = problem, event_fn

    def __call__(self, s: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        value = self.event_fn(self.problem.user_time(s), self.problem.to_user(self.problem.unflatten(y)))
        if not torch.is_tensor(value) or value.numel() != 1:
            raise ValueError("event_fn(t, y) must return one number (a tensor with a single element): the event "
                             "happens where it changes sign.")
        return value.reshape(())

    def sign(self, s: torch.Tensor, y: torch.Tensor) -> float:
        return float(torch.sign(self(s, y).detach()))


def _adaptive_until(problem, tableau, rtol, atol, options, event, t, y, f, sign0):
    opts = {**DEFAULTS, **{k: v for k, v in options.items() if v is not None}}
    control = Control(float(opts["safety"]), float(opts["ifactor"]), float(opts["dfactor"]),
                      -1.0 / tableau.error_order, int(opts["max_num_steps"]))
    norm = make_norm(opts.get("norm"), problem)
    dt = float(opts["first_step"]) if "first_step" in opts else \
        float(initial_step(problem, t.reshape(1), y, f, rtol, atol, tableau.error_order, norm)[0])
    for n_steps in range(1, control.max_num_steps + 2):
        control.check_steps(n_steps, problem, t)
        if not float(t) + dt != float(t):
            raise SolverError(f"Step size underflow at t={float(problem.user_time(t)):.6g} while looking for the "
                              f"event: the solution may blow up before event_fn changes sign.")
        t1 = t + dt
        y1, f1, ratio, stages = steps.shared_trial(problem, tableau, norm, t, t1, dt, y, f, rtol, atol)
        ratio = float(ratio)
        if ratio <= 1.0:
            if event.sign(t1, y1) != sign0:
                y_mid = midpoint(tableau, y, stages, dt)
                return _bisect(event, lambda s: _dense_output(y, y1, f, f1, y_mid, dt, t, s.reshape(1, 1))[0],
                               t, t1, sign0, atol)
            t, y, f = t1, y1, f1
        dt *= control.factor(ratio)
    raise AssertionError("unreachable: check_steps stops the loop")  # pragma: no cover


def _fixed_until(problem, tableau, options, event, t, y, f, sign0):
    if options.get("step_size") is None:
        raise ValueError("Event handling with a fixed-step method needs options={'step_size': h}: without "
                         "output times there is no grid to step on.")
    h = float(options["step_size"])
    max_steps = int(options.get("max_num_steps", 1_000_000))
    start = float(t.detach())
    for k in range(1, max_steps + 1):
        t1 = t.new_tensor(start + k * h)  # t0 + k h, not a running sum: no drift in float32
        y1 = steps.fixed_step(problem, tableau, t, float(t1 - t), y)
        f1 = problem(t1, y1)
        if event.sign(t1, y1) != sign0:
            h_k = float(t1 - t)
            coeffs = interpolation.fit(y, y1, f, f1, torch.as_tensor(h_k, dtype=y.dtype, device=y.device), None)
            return _bisect(event, lambda s: interpolation.evaluate(coeffs, ((s - t) / h_k).to(y.dtype)), t, t1,
                           sign0, 0.0)  # the cubic Hermite between the two states
        t, y, f = t1, y1, f1
    raise SolverError(f"No event within max_num_steps={max_steps:,} steps of size {h:g}: event_fn never changed "
                      f"sign. Check event_fn, or raise options['max_num_steps'].")


def _bisect(event: _Event, state_at: Callable, t0: torch.Tensor, t1: torch.Tensor, sign0: float,
            tol: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The time in ``(t0, t1]`` where the event's sign changes, to within ``tol`` (or round-off), and the
    state there from ``state_at(s)``."""
    lo, hi = t0.detach(), t1.detach()
    for _ in range(BISECTION_STEPS):
        if float(hi - lo) <= max(tol, 4 * torch.finfo(hi.dtype).eps * max(abs(float(hi)), 1.0)):
            break
        mid = (lo + hi) / 2
        if event.sign(mid, state_at(mid).detach()) == sign0:
            lo = mid
        else:
            hi = mid
    return hi, state_at(hi)


def odeint_event(func: Callable, y0: Any, t0: Any, *, event_fn: Callable, reverse_time: bool = False,
                 odeint_interface: Optional[Callable] = None, **kwargs):
    """Solve ``dy/dt = func(t, y)`` from ``(t0, y0)`` until ``event_fn(t, y)`` changes sign, as
    ``torchdiffeq.odeint_event``: returns ``(t_event, solution)`` with ``solution = [y0, y(t_event)]``.

    ``t_event`` is differentiable: its gradient (and the extra gradient it gives the final state)
    comes from the implicit function theorem applied to ``event_fn(t_event, y(t_event)) = 0``.
    ``reverse_time`` integrates towards earlier times; other keywords go to ``odeint``.
    """
    from .api import odeint

    odeint_interface = odeint if odeint_interface is None else odeint_interface
    t0 = torch.as_tensor(t0).reshape(-1)[:1]
    t0 = t0 if torch.is_floating_point(t0) else t0.double()
    t = torch.cat([t0, t0.detach() + (-1.0 if reverse_time else 1.0)])
    event_t, solution = odeint_interface(func, y0, t, event_fn=event_fn, **kwargs)
    return with_event_time_gradient(func, event_fn, event_t, solution)


def with_event_time_gradient(func: Callable, event_fn: Callable, event_t: torch.Tensor, solution: Any):
    """``(event_t, solution)`` with the implicit-function gradient of the event time attached to the
    event time and to the last state of ``solution`` (``[2, ...]``, or a tuple of such)."""
    is_tuple = isinstance(solution, tuple)
    parts = solution if is_tuple else (solution,)
    params = tuple(p for p in getattr(event_fn, "parameters", lambda: [])() if p.requires_grad)
    rerouted = _EventTimeGradient.apply(func, event_fn, is_tuple, len(parts), event_t,
                                        *(p[-1] for p in parts), *params)
    event_t, finals = rerouted[0], rerouted[1:1 + len(parts)]
    parts = tuple(torch.cat([p[:-1], final.unsqueeze(0)]) for p, final in zip(parts, finals))
    return event_t, (parts if is_tuple else parts[0])


class _EventTimeGradient(torch.autograd.Function):
    """Identity forward on ``(t_event, *y_event)``; backward adds the implicit-function gradient of the
    event time to the state's and the parameters' gradients."""

    @staticmethod
    def forward(ctx, func, event_fn, is_tuple, n_parts, event_t, *tensors):
        ctx.func, ctx.event_fn, ctx.is_tuple, ctx.n_parts = func, event_fn, is_tuple, n_parts
        ctx.save_for_backward(event_t, *tensors)
        return (event_t.clone(), *(x.clone() for x in tensors[:n_parts]))

    @staticmethod
    def backward(ctx, grad_t, *grad_states):
        event_t, *saved = ctx.saved_tensors
        n = ctx.n_parts
        states, params = saved[:n], saved[n:]
        grad_t = torch.zeros_like(event_t) if grad_t is None else grad_t
        grad_states = [torch.zeros_like(s) if g is None else g for s, g in zip(states, grad_states)]
        with torch.enable_grad():
            t = event_t.detach().requires_grad_(True)
            ys = tuple(s.detach().requires_grad_(True) for s in states)
            user_y = ys if ctx.is_tuple else ys[0]
            f = ctx.func(t, user_y)
            f = tuple(f) if ctx.is_tuple else (f,)
            c = ctx.event_fn(t, user_y).reshape(())
            dc = torch.autograd.grad(c, (t, *ys, *params), allow_unused=True, retain_graph=True)
        dc = [torch.zeros_like(x) if d is None else d for x, d in zip((t, *ys, *params), dc)]
        dc_dt, dc_dy, dc_dparams = dc[0], dc[1:1 + n], dc[1 + n:]
        dcdt = dc_dt + sum((d * fi.detach()).sum() for d, fi in zip(dc_dy, f))  # total derivative along the flow
        if float(dcdt.abs()) < 1e-12:
            raise SolverError("event_fn crosses zero tangentially at the event (its derivative along the solution "
                              "is 0), so the event time has no gradient there.")
        total = grad_t + sum((g * fi.detach()).sum() for g, fi in zip(grad_states, f))  # dL/dT along the flow
        scale = -total / dcdt
        new_grad_states = tuple(g + scale * d for g, d in zip(grad_states, dc_dy))
        grad_params = tuple(scale * d for d in dc_dparams)
        return (None, None, None, None, None, *new_grad_states, *grad_params)

