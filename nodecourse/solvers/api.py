"""``odeint`` (a drop-in for ``torchdiffeq.odeint``) and ``solve`` (the same, with statistics)."""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence, Union

import torch

from .adaptive import _short, integrate_adaptive, nonfinite_samples
from .checks import (SolverError, all_finite, check_callable, check_method, check_options, check_sample_times,
                     check_t, check_tolerances, check_y0)
from . import scipy_solver
from .events import integrate_until_event
from .fixed_grid import MAX_GRID_STEPS, integrate_fixed
from .problem import FlatProblem
from .stats import SolveStats
from .tableaux import TABLEAUX

State = Union[torch.Tensor, Sequence[torch.Tensor]]


@dataclass
class Solution:
    """The result of :func:`solve`: ``ys`` shaped ``[len(t), *y0.shape]`` (a tuple for a tuple state),
    the output times ``t`` and the solve's :class:`SolveStats`."""

    ys: Union[torch.Tensor, tuple]
    t: torch.Tensor
    stats: SolveStats


def solve(func: Callable, y0: State, t: Any, rtol: float = 1e-7, atol: float = 1e-9,
          method: str = "dopri5", options: Optional[dict] = None) -> Solution:
    """Solve ``dy/dt = func(t, y)``, ``y(t[0]) = y0`` and report what it cost.

    Same arguments as :func:`odeint`. With ``options={"per_sample": True}`` dim 0 of the state is a
    batch of independent problems: each sample keeps its own step size, ``func`` receives ``t`` of
    shape ``[batch]``, and the statistics are ``[batch]`` tensors. Then ``t`` may also be ``[batch, T]``,
    each sample's own output times (irregular time series); ``ys[j, b]`` is sample ``b`` at ``t[b, j]``.
    """
    return solve_recording_steps(func, y0, t, rtol, atol, method, options, None)


def solve_recording_steps(func: Callable, y0: State, t: Any, rtol: float, atol: float, method: str,
                          options: Optional[dict], record: Optional[list]) -> Solution:
    """:func:`solve`; a per-sample adaptive solve also appends each iteration's
    :class:`per_sample.StepRecord` to ``record`` (the checkpoints :mod:`nodecourse.adjoint_checkpoint` replays)."""
    options, is_tuple, parts, t = _checked_inputs(func, y0, t, rtol, atol, method, options)
    per_sample = bool(options.pop("per_sample", False))
    if t.dim() == 2:
        check_sample_times(t, parts, per_sample, method)
    if sum(p.numel() for p in parts) == 0:  # an empty batch: nothing to integrate, every output is empty
        ys = tuple(p.unsqueeze(0).expand(t.shape[-1], *p.shape).clone() for p in parts)
        batch = parts[0].shape[0] if per_sample and parts[0].dim() > 0 else None
        zero = torch.zeros(batch, dtype=torch.long, device=parts[0].device) if batch is not None else 0
        return Solution(ys=ys if is_tuple else ys[0], t=t, stats=SolveStats(zero, zero, zero, zero, 0))
    problem = FlatProblem(func, parts, is_tuple, t, per_sample)
    tableau = TABLEAUX.get(method)  # None for scipy_solver
    _warn_unused_callbacks(problem, tableau, method)
    if tableau is None:
        flat_outputs, stats = scipy_solver.integrate_scipy(problem, float(rtol), float(atol), options)
    elif tableau.adaptive:
        flat_outputs, stats = integrate_adaptive(problem, tableau, float(rtol), float(atol), options, record)
    else:
        step_size = options.get("step_size")
        flat_outputs, stats = integrate_fixed(
            problem, tableau, None if step_size is None else float(step_size), options.get("grid_constructor"),
            options.get("perturb", False), options.get("compile", False),
            int(options.get("max_num_steps", MAX_GRID_STEPS)), options.get("interp", "linear"))
        _check_finite(problem, flat_outputs, t)
    flat = flat_outputs if torch.is_tensor(flat_outputs) else torch.stack(flat_outputs)
    ys = problem.to_user(problem.unflatten(flat, lead=(len(flat),)))
    return Solution(ys=ys, t=t, stats=stats)


def odeint(func: Callable, y0: State, t: Any, rtol: float = 1e-7, atol: float = 1e-9,
           method: str = "dopri5", options: Optional[dict] = None, *,
           event_fn: Optional[Callable] = None) -> Union[torch.Tensor, tuple]:
    """Solve ``dy/dt = func(t, y)`` from ``y(t[0]) = y0`` and return the states at the times ``t``.

    A drop-in for ``torchdiffeq.odeint``: ``t`` is 1-D and strictly increasing or decreasing, the
    result is ``[len(t), *y0.shape]`` (a tuple of such for a tuple ``y0``); ``func`` gets ``t`` in the
    state's dtype. Methods: ``euler``, ``midpoint``, ``heun2``, ``heun3``, ``rk4`` (fixed step, see
    below), ``adaptive_heun``, ``fehlberg2``, ``bosh3``, ``rkf45``, ``dopri5``, ``dopri8`` (adaptive;
    options ``first_step``, ``max_num_steps`` (default 50,000), ``safety``, ``ifactor``, ``dfactor``,
    ``norm``, ``step_t``, ``jump_t``, ``min_step``, ``max_step``, ``per_sample``) and ``scipy_solver``
    (SciPy's ``solve_ivp``, ``options={"solver": "LSODA"}``, for stiff problems); with ``per_sample``,
    ``first_step`` may be a ``[batch]`` tensor, each sample's own first step. Any Runge-Kutta method also takes
    ``options={"compile": True}``: each step runs as one ``torch.compile`` graph. ``func``'s
    ``callback_step``, ``callback_accept_step`` and ``callback_reject_step`` are called as in
    torchdiffeq. Differentiable by backprop through the solver (``t`` included); see
    :func:`nodecourse.odeint_adjoint` for the constant-memory adjoint.

    Fixed steps run on a grid: the output times, or ``t[0] + k h`` (the last point set to ``t[-1]``)
    with ``options={"step_size": h}``, or the grid ``{"grid_constructor": fn}`` returns; options
    ``perturb``, ``max_num_steps`` and ``interp``. As in torchdiffeq, an output time between grid points
    is interpolated over the step that holds it: ``interp="linear"`` (the default; second order) or
    ``"cubic"`` (the Hermite cubic through the two grid states with the field there as slopes; keeps
    rk4's fourth order). The cost is the grid's: ``steps x stages`` evaluations (one more for
    ``"cubic"``; with ``perturb``, one more per step holding an output), however many outputs.
    ``interp="exact"`` inserts every output time into the grid instead, so every output is a true
    solver state, at one more step per output between grid points.

    With ``event_fn``, as in torchdiffeq: integrate from ``t[0]`` towards ``t[1]`` (``t`` of two times,
    the second giving only the direction) until ``event_fn(t, y)`` changes sign, and return
    ``(t_event, [y0, y(t_event)])``; :func:`nodecourse.odeint_event` also differentiates ``t_event``.
    """
    if event_fn is not None:
        return _until_event(func, y0, t, rtol, atol, method, options, event_fn)
    return solve(func, y0, t, rtol=rtol, atol=atol, method=method, options=options).ys


def _checked_inputs(func, y0, t, rtol, atol, method, options):
    """Every argument of a solve checked: the options (a copy), whether ``y0`` is a tuple, its tensors, and ``t``."""
    check_callable(func)
    check_method(method)
    options = check_options(method, options)
    check_tolerances(rtol, atol)
    parts = check_y0(y0)
    return options, isinstance(y0, (tuple, list)), parts, check_t(t, parts[0].dtype, parts[0].device)


def _until_event(func, y0, t, rtol, atol, method, options, event_fn):
    check_callable(event_fn)
    options, is_tuple, parts, t = _checked_inputs(func, y0, t, rtol, atol, method, options)
    if method not in TABLEAUX:
        raise ValueError(f"event_fn works with the Runge-Kutta methods ({', '.join(TABLEAUX)}), not {method!r}.")
    if len(t) != 2:
        raise ValueError(f"With event_fn, t holds two times: the start and any later (or earlier) time that "
                         f"gives the direction; got {len(t)}. Or use nodecourse.odeint_event(func, y0, t0, ...).")
    problem = FlatProblem(func, parts, is_tuple, t, bool(options.pop("per_sample", False)))
    event_s, y_event = integrate_until_event(problem, TABLEAUX[method], float(rtol), float(atol), options, event_fn)
    flat = torch.stack([problem.y0, y_event.reshape(problem.y0.shape)])
    return (event_s * problem.direction).to(t.dtype), problem.to_user(problem.unflatten(flat, lead=(2,)))


def _warn_unused_callbacks(problem: FlatProblem, tableau, method: str) -> None:
    """Callbacks that this solve will never call get a warning (as in torchdiffeq), not silence."""
    if tableau is None or (problem.per_sample and tableau.adaptive):
        unused = set(problem.callbacks)
        why = f"{method} steps inside SciPy" if tableau is None else "per-sample adaptive solves call no callbacks"
    else:
        unused = {"callback_accept_step", "callback_reject_step"} & set(problem.callbacks) if not tableau.adaptive \
            else set()
        why = f"the fixed-step method {method!r} never accepts or rejects a step"
    if unused:
        warnings.warn(f"func has {', '.join(sorted(unused))}, which this solve will not call: {why}.", stacklevel=3)


def _check_finite(problem: FlatProblem, outputs: torch.Tensor, t: torch.Tensor) -> None:
    """Fixed-step solves do not look at the state while stepping; check the ``[T, B, N]`` outputs once at
    the end (one sum, however many outputs)."""
    if all_finite(outputs):
        return
    finite = torch.isfinite(outputs).flatten(1).all(1)
    first = int((~finite).nonzero()[0])
    samples = nonfinite_samples(problem, outputs[first])
    raise SolverError(
        f"The solution became NaN/inf by t={float(t[first]):g} (output {first}), in samples "
        f"{_short(samples)}. The step size is probably too large for these dynamics (explicit methods "
        f"blow up when h exceeds their stability limit), or func returns invalid values: try a smaller "
        f"step_size or an adaptive method."
    )
