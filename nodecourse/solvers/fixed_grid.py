"""Fixed-step integration on a grid, with the output times between grid points interpolated.

The solver steps on the grid (:mod:`.grid`: the output times, ``t0 + k h`` for a ``step_size`` h, or a
``grid_constructor``'s) only. An output time
between two grid points is served, as in torchdiffeq, by interpolating over the step that holds it
(``options["interp"]``):

- ``"linear"`` (the default): the straight line between the two grid states, second-order accurate;
- ``"cubic"``: the cubic Hermite polynomial through the two grid states with the field's values
  there as slopes, fourth-order accurate, so rk4 keeps its order at every output;
- ``"exact"``: no interpolation: every output time is inserted into the grid as an extra grid point,
  so every output is a true solver state (each inserted time splits a step in two).

Cost: with ``"linear"`` a solve costs ``steps x stages`` evaluations of ``func`` whatever the number of
outputs; ``"cubic"`` adds one (the field at the end time; the field at every other grid point is
the next step's first stage); with ``perturb`` (a field that jumps at grid points) it adds one per
step holding an output instead, the field just before the step's end. All outputs are interpolated
at once after the last step, in a few tensor operations. With ``"exact"`` every inserted output adds
a step. Without ``step_size`` or ``grid_constructor`` the grid is the output times, so nothing is
interpolated and the three choices give the same result.

Gradients flow to the output times through the grid and the interpolant.

Where this differs from torchdiffeq (on a smooth field the outputs agree to round-off): its ``"cubic"`` evaluates the
field at a step's end once per output, so its cost grows with the outputs; with ``perturb`` it takes
that field at the end time itself, here just before it (the side the step integrated). An output
exactly on a grid point is that grid state in both, but torchdiffeq's ``"linear"`` returns the state
itself, so that output time gets no gradient; here it gets the interpolant's: the step's slope.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import torch

from . import compiled, plain_steps, steps
from .grid import (MAX_GRID_STEPS, Grid, base_grid, check_grid_size, end_times, merge_outputs, stage_times, step_sizes,
                   stepping_grid)
from .problem import FlatProblem
from .rk_step import Step, rk_step
from .stats import SolveStats
from .tableaux import ButcherTableau


@dataclass
class _Keep:
    """What the stepping loop keeps: grid states (by grid index), the field at a step's start (its first
    stage, by step), and the steps at whose end the field is evaluated once more (extra evaluations)."""

    states: set[int]
    slopes: set[int] = field(default_factory=set)
    end_slopes: set[int] = field(default_factory=set)


@dataclass
class _Marched:
    """What the stepping loop kept, each ``[B, N]``: grid states by grid index, the field at a step's
    start by step, the field at a step's end by step (for the steps in ``_Keep.end_slopes``)."""

    states: dict[int, torch.Tensor]
    slopes: dict[int, torch.Tensor]
    end_slopes: dict[int, torch.Tensor]


def integrate_fixed(problem: FlatProblem, tableau: ButcherTableau, step_size: Optional[float] = None,
                    grid_constructor: Optional[Callable] = None, perturb: bool = False, compile: bool = False,
                    max_steps: int = MAX_GRID_STEPS, interp: str = "linear") -> tuple[torch.Tensor, SolveStats]:
    """Solve on the fixed grid; returns the states at the ``T`` output times, ``[T, B, N]``, and the statistics.

    ``interp`` says how output times between grid points are served (see the module docstring):
    ``"linear"``, ``"cubic"`` or ``"exact"``. ``perturb`` evaluates a step's first stage just after
    its start time and a stage at its end just before the end (the next representable value), so a
    field with jumps at grid points sees each side once, as torchdiffeq's ``perturb`` option does.
    With ``compile``, each step runs as one compiled graph (:mod:`compiled`).
    """
    if len(problem.t) == 1:
        return problem.y0.unsqueeze(0), SolveStats.zeros(problem)
    if interp == "exact" or (step_size is None and grid_constructor is None):
        base = base_grid(problem, step_size, grid_constructor, max_steps)
        outputs, n_steps, extra = _solve_inserted(problem, tableau, base, perturb, compile, max_steps)
    else:
        grid = stepping_grid(problem, tableau, step_size, grid_constructor, max_steps, perturb)
        check_grid_size(grid.n_steps, max_steps)
        outputs, n_steps, extra = _solve_interpolated(problem, tableau, grid, interp, perturb, compile)
    return outputs, SolveStats.fixed(problem, n_steps=n_steps, nfe=n_steps * tableau.n_stages + extra)


def _solve_inserted(problem: FlatProblem, tableau: ButcherTableau, base: torch.Tensor, perturb: bool,
                    compile: bool, max_steps: int) -> tuple[torch.Tensor, int, int]:
    """``interp="exact"``: every output time becomes a grid point. Returns the outputs ``[T, B, N]``,
    the number of steps and the number of extra evaluations (none)."""
    grid_values, out_index, source = merge_outputs(problem.t.detach().tolist(), base.detach().tolist())
    times = torch.cat([base, problem.t])[torch.tensor(source, device=base.device)]
    check_grid_size(len(grid_values) - 1, max_steps)
    grid = Grid(times, grid_values, stage_times(problem, tableau, times, perturb), perturb)
    run = _march(problem, tableau, grid, compile, _Keep(states=set(out_index)))
    return torch.stack([run.states[g] for g in out_index]), len(grid_values) - 1, 0


def _solve_interpolated(problem: FlatProblem, tableau: ButcherTableau, stepping: Grid, interp: str,
                        perturb: bool, compile: bool) -> tuple[torch.Tensor, int, int]:
    """Step on the grid and interpolate every output time but the first.

    Returns the outputs ``[T, B, N]``, the number of steps ``G`` and the number of extra evaluations.
    """
    n_steps, grid = stepping.n_steps, stepping.times
    if len(problem.t) == 2 and interp == "linear" and not grid.requires_grad:  # the one output is the last state
        last = _march(problem, tableau, stepping, compile, _Keep({n_steps})).states[n_steps]
        return torch.stack([problem.y0, last]), n_steps, 0
    s_out = problem.t[1:]                                                               # [W]
    step_of = (torch.searchsorted(grid.detach(), s_out.detach()) - 1).clamp_(0, n_steps - 1)  # [W]
    used = sorted(set(step_of.tolist()))  # the steps holding an output (a step (t_g, t_g+1] holds t_g+1)
    keep = _Keep(states=set(used) | {g + 1 for g in used})
    if interp == "cubic":
        keep.slopes = set(used) if perturb else set(used) | {g + 1 for g in used if g + 1 < n_steps}
        keep.end_slopes = set(used) if perturb else {n_steps - 1}
    run = _march(problem, tableau, stepping, compile, keep)
    row = torch.zeros(n_steps, dtype=torch.long, device=grid.device)
    row[used] = torch.arange(len(used), device=grid.device)
    rows = row[step_of]                                                                 # [W]
    start, end = grid[step_of], grid[step_of + 1]
    x = (s_out - start) / (end - start)                                                 # [W], in [0, 1]
    ends = _step_ends(run, used, rows)
    if interp == "linear":
        ys = linear_interpolant(x, *ends[:2])
    else:
        ys = hermite_interpolant(x, end - start, *ends)
    return torch.cat([problem.y0.unsqueeze(0), ys]), n_steps, len(keep.end_slopes)


def _step_ends(run: _Marched, used: list[int], rows: torch.Tensor) -> list[torch.Tensor]:
    """For each output, what its step's interpolant needs: ``[y_g, y_g+1]`` and, if kept, the field
    ``[f_g, f_g+1]`` at the step's start and end; each ``[W, B, N]`` (``rows`` ``[W]`` picks the step)."""
    ends = [torch.stack([run.states[g] for g in used]), torch.stack([run.states[g + 1] for g in used])]
    if run.slopes:
        at_end = [run.end_slopes[g] if g in run.end_slopes else run.slopes[g + 1] for g in used]
        ends += [torch.stack([run.slopes[g] for g in used]), torch.stack(at_end)]
    return [e[rows] for e in ends]


def linear_interpolant(x: torch.Tensor, y0: torch.Tensor, y1: torch.Tensor) -> torch.Tensor:
    """``y0 + x (y1 - y0)`` for ``x`` ``[W]`` (any float dtype) and ``y0``, ``y1`` ``[W, B, N]``.

    Exactly ``y0`` at ``x = 0`` and ``y1`` at ``x = 1`` (``torch.lerp``), differentiable in ``x``.
    """
    return torch.lerp(y0, y1, _column(x, y0))


def hermite_interpolant(x: torch.Tensor, dt: torch.Tensor, y0: torch.Tensor, y1: torch.Tensor,
                        f0: torch.Tensor, f1: torch.Tensor) -> torch.Tensor:
    """The cubic Hermite polynomial through ``(0, y0)`` and ``(1, y1)`` with slopes ``dt f0``, ``dt f1``,
    at ``x`` ``[W]``; ``dt`` ``[W]`` the step sizes; states and fields ``[W, B, N]``.

    The basis weights are formed in the time dtype (as torchdiffeq does), then cast to the state's.
    """
    h00 = (1 + 2 * x) * (1 - x) * (1 - x)
    h10 = x * (1 - x) * (1 - x) * dt
    h01 = x * x * (3 - 2 * x)
    h11 = x * x * (x - 1) * dt
    return (_column(h00, y0) * y0 + _column(h10, y0) * f0) + (_column(h01, y0) * y1 + _column(h11, y0) * f1)


def _column(w: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``[W]`` weights as ``[W, 1, ..., 1]`` in ``like``'s dtype, to scale ``[W, B, N]`` rows."""
    return w.to(like.dtype).reshape((-1,) + (1,) * (like.dim() - 1))


def _march(problem: FlatProblem, tableau: ButcherTableau, grid: Grid, compile: bool, keep: _Keep) -> _Marched:
    """Step along ``grid`` from ``problem.y0`` and keep what ``keep`` asks for (see :class:`_Marched`)."""
    y, flat_shape = problem.y0, problem.y0.shape
    differentiable = grid.times.requires_grad  # then step sizes are tensors, so gradients reach the times
    if (not compile and not differentiable and not problem.callbacks and not keep.slopes and not keep.end_slopes
            and plain_steps.plain_steps_apply(tableau)):
        return _march_plain(problem, tableau, grid, keep)
    end_at = end_times(problem, grid.times, grid.perturb) if keep.end_slopes else None
    sizes = step_sizes(problem, grid.times) if (compile or differentiable) else None
    step_fn = _step_with_slope if keep.slopes else steps.fixed_step
    if compile:  # the first step runs eagerly: it checks func's output before anything is traced
        step = compiled.CompiledStep(step_fn, problem.func)
        traced = problem.traceable_field()
    evaluate = problem
    run = _Marched({0: y} if 0 in keep.states else {}, {}, {})
    for g in range(grid.n_steps):
        times = grid.stage_times[g]
        if problem.callbacks:
            problem.callback("callback_step", grid.times[g], y, grid.times[g + 1] - grid.times[g])
        if compile and g > 0:
            result = step(traced, tableau, times[0], sizes[g], y)
        else:
            h = sizes[g] if differentiable else grid.values[g + 1] - grid.values[g]
            result = step_fn(evaluate, tableau, times[0], h, y, times)
        y, f0 = result if keep.slopes else (result, None)
        if g in keep.slopes:
            run.slopes[g] = f0.reshape(flat_shape)
        if g == 0 and not compile and problem.direct() is not None:  # func checked: step in the user's shape
            evaluate, y = problem.direct(), y.reshape(problem.shapes[0])
        if g + 1 in keep.states:
            run.states[g + 1] = y.reshape(flat_shape)
        if g in keep.end_slopes:
            run.end_slopes[g] = evaluate(end_at[g], y).reshape(flat_shape)
    return run


def _march_plain(problem: FlatProblem, tableau: ButcherTableau, grid: Grid, keep: _Keep) -> _Marched:
    """:func:`_march` where each step needs only its stages (:mod:`plain_steps`): the first step through
    ``problem``, which checks func's output, the others on the user's state shape where that is allowed."""
    y, flat_shape = problem.y0, problem.y0.shape
    run = _Marched({0: y} if 0 in keep.states else {}, {}, {})
    y = plain_steps.march(problem, problem.reject_output, tableau, y, grid.values, grid.stage_times, range(1),
                          keep.states, run.states, flat_shape)
    call = problem
    if problem.direct() is not None:
        call, y = problem.call, y.reshape(problem.shapes[0])
    plain_steps.march(call, problem.reject_output, tableau, y, grid.values, grid.stage_times, range(1, grid.n_steps),
                      keep.states, run.states, flat_shape)
    return run


def _step_with_slope(evaluate: Callable, tableau: ButcherTableau, t: torch.Tensor, h: Step, y: torch.Tensor,
                     stage_times: Optional[Sequence[torch.Tensor]] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`steps.fixed_step` that also returns the field at the step's start (its first stage), ``[B, N]``."""
    f0 = evaluate(t, y)
    y1, _, _ = rk_step(evaluate, tableau, t, y, f0, h, stage_times)
    return y1, f0


