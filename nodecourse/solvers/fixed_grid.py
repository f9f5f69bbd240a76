"""Fixed-step integration on a grid, with the output times between grid points interpolated.

The grid is, as in torchdiffeq: the output times themselves when no ``step_size`` is given;
``t0 + k h`` (last point set to the end time) for a ``step_size`` h; or what a user's
``grid_constructor(func, y0, t)`` returns. The solver steps on the grid only. An output time
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

The grid is built from ``t`` with tensor operations, so gradients flow to the output times, also
through the interpolant.

Where this differs from torchdiffeq (on a smooth field the outputs agree to round-off): its ``"cubic"`` evaluates the
field at a step's end once per output, so its cost grows with the outputs; with ``perturb`` it takes
that field at the end time itself, here just before it (the side the step integrated). An output
exactly on a grid point is that grid state in both, but torchdiffeq's ``"linear"`` returns the state
itself, so that output time gets no gradient; here it gets the interpolant's: the step's slope.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import torch

from . import compiled, plain_steps, steps
from .checks import SolverError
from .problem import FlatProblem
from .rk_step import Step, nonzero_weights, rk_step, scaled
from .stats import SolveStats
from .tableaux import ButcherTableau

MAX_GRID_STEPS = 1_000_000  # default cap: a step size that would need more is almost surely a slip


def merge_outputs(t_out: list[float], base: list[float]) -> tuple[list[float], list[int], list[int]]:
    """Merge the output times into the (increasing) base grid.

    Returns the grid's values, for each output time its index in the grid, and for each grid point
    where it comes from: ``k`` for ``base[k]``, ``len(base) + j`` for output time ``j`` (an output
    time within rounding of a base point replaces it).
    """
    tol = 1e-9 * max(base[-1] - base[0], 1e-300)
    grid: list[float] = []
    source: list[int] = []
    out_index: list[int] = []
    j, m, n = 0, len(t_out), len(base)
    for k, p in enumerate(base):
        while j < m and t_out[j] < p - tol:  # an output strictly between grid points
            grid.append(t_out[j]), source.append(n + j), out_index.append(len(grid) - 1)
            j += 1
        if j < m and abs(t_out[j] - p) <= tol:  # an output on a grid point: use the output time
            grid.append(t_out[j]), source.append(n + j), out_index.append(len(grid) - 1)
            j += 1
        elif not grid or p > grid[-1]:
            grid.append(p), source.append(k)
    return grid, out_index, source


def base_grid(problem: FlatProblem, step_size: Optional[float], grid_constructor: Optional[Callable],
              max_steps: int) -> torch.Tensor:
    """The stepping grid (before any output times are inserted), as increasing internal times ``[G + 1]``."""
    t = problem.t
    if grid_constructor is not None:
        return _constructed_grid(problem, grid_constructor)
    if step_size is None:
        return t
    ends = t.detach()[[0, -1]] if len(t) > 2 else t.detach()
    span = float(torch.diff(ends))  # in t's dtype, as torchdiffeq's
    # The span carries the rounding of its end times (float32: about 1e-7 of their size), so a span of k
    # steps may read as k + 3e-7 steps: that slack is not worth a sliver of an extra step (torchdiffeq
    # takes none either); the last grid point is t[-1] itself. (At most 1% of a step: a step that small
    # next to the times is below their resolution anyway, and the count stays the span's.)
    largest = max(abs(v) for v in ends.tolist())
    slack = min(0.01, 1e-9 + 2 * torch.finfo(t.dtype).eps * largest / step_size)
    n = max(1, int(math.ceil(span / step_size - slack)))
    if n > max_steps:
        raise SolverError(
            f"step_size={step_size:g} over a time span of {span:g} needs {n:,} steps, more than "
            f"max_num_steps={max_steps:,}: the step size is probably a slip (check its units). If you "
            f"really mean it, pass options={{'max_num_steps': {n}}}.")
    ks = torch.arange(n, dtype=t.dtype, device=t.device)
    return torch.cat([t[:1] + scaled(ks, step_size), t[-1:]])


def _constructed_grid(problem: FlatProblem, grid_constructor: Callable) -> torch.Tensor:
    """A user's ``grid_constructor(func, y0, t)``, called with the user's ``t``, checked and made internal."""
    user_t = problem.t * problem.direction if problem.direction < 0 else problem.t
    grid = grid_constructor(problem.func, problem.to_user(problem.unflatten(problem.y0)), user_t)
    if not torch.is_tensor(grid) or grid.dim() != 1 or len(grid) < 2:
        raise ValueError("grid_constructor(func, y0, t) must return a 1-D tensor of at least two times, got "
                         f"{type(grid).__name__}{tuple(grid.shape) if torch.is_tensor(grid) else ''}.")
    grid = grid.to(problem.t.device, problem.time_dtype) * problem.direction
    first, last = float(grid[0].detach()), float(grid[-1].detach())
    if first != float(problem.t[0].detach()) or last != float(problem.t[-1].detach()):
        raise ValueError(f"grid_constructor's grid must start at t[0] and end at t[-1]; it runs from "
                         f"{first * problem.direction:g} to {last * problem.direction:g}.")
    if len(grid) > 2 and not bool((grid[1:] > grid[:-1]).all()):
        raise ValueError("grid_constructor's grid must be strictly monotone, in the direction of t.")
    return grid


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
    base = base_grid(problem, step_size, grid_constructor, max_steps)
    if interp == "exact" or (step_size is None and grid_constructor is None):
        outputs, n_steps, extra = _solve_inserted(problem, tableau, base, perturb, compile, max_steps)
    else:
        _check_grid_size(len(base) - 1, max_steps)
        outputs, n_steps, extra = _solve_interpolated(problem, tableau, base, interp, perturb, compile)
    return outputs, SolveStats.fixed(problem, n_steps=n_steps, nfe=n_steps * tableau.n_stages + extra)


def _check_grid_size(n_steps: int, max_steps: int) -> None:
    if n_steps > max_steps:
        raise SolverError(f"The grid has {n_steps:,} steps, more than max_num_steps={max_steps:,}; "
                          f"pass options={{'max_num_steps': {n_steps + 1}}} if you mean it.")


def _solve_inserted(problem: FlatProblem, tableau: ButcherTableau, base: torch.Tensor, perturb: bool,
                    compile: bool, max_steps: int) -> tuple[torch.Tensor, int, int]:
    """``interp="exact"``: every output time becomes a grid point. Returns the outputs ``[T, B, N]``,
    the number of steps and the number of extra evaluations (none)."""
    grid_values, out_index, source = merge_outputs(problem.t.detach().tolist(), base.detach().tolist())
    grid = torch.cat([base, problem.t])[torch.tensor(source, device=base.device)]
    _check_grid_size(len(grid_values) - 1, max_steps)
    run = _march(problem, tableau, grid, perturb, compile, _Keep(states=set(out_index)))
    return torch.stack([run.states[g] for g in out_index]), len(grid_values) - 1, 0


def _solve_interpolated(problem: FlatProblem, tableau: ButcherTableau, grid: torch.Tensor, interp: str,
                        perturb: bool, compile: bool) -> tuple[torch.Tensor, int, int]:
    """Step on ``grid`` (``[G + 1]`` internal times) and interpolate every output time but the first.

    Returns the outputs ``[T, B, N]``, the number of steps ``G`` and the number of extra evaluations.
    """
    n_steps = len(grid) - 1
    if len(problem.t) == 2 and interp == "linear" and not grid.requires_grad:  # the one output is the last state
        last = _march(problem, tableau, grid, perturb, compile, _Keep({n_steps})).states[n_steps]
        return torch.stack([problem.y0, last]), n_steps, 0
    s_out = problem.t[1:]                                                               # [W]
    step_of = (torch.searchsorted(grid.detach(), s_out.detach()) - 1).clamp_(0, n_steps - 1)  # [W]
    used = sorted(set(step_of.tolist()))  # the steps holding an output (a step (t_g, t_g+1] holds t_g+1)
    keep = _Keep(states=set(used) | {g + 1 for g in used})
    if interp == "cubic":
        keep.slopes = set(used) if perturb else set(used) | {g + 1 for g in used if g + 1 < n_steps}
        keep.end_slopes = set(used) if perturb else {n_steps - 1}
    run = _march(problem, tableau, grid, perturb, compile, keep)
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


def _march(problem: FlatProblem, tableau: ButcherTableau, grid: torch.Tensor, perturb: bool, compile: bool,
           keep: _Keep) -> _Marched:
    """Step along ``grid`` (``[G + 1]`` increasing internal times) from ``problem.y0`` and keep what
    ``keep`` asks for (see :class:`_Marched`)."""
    grid_values = grid.detach().tolist()
    stage_times = _stage_times(problem, tableau, grid, perturb)
    end_times = _end_times(problem, grid, perturb) if keep.end_slopes else None
    differentiable = grid.requires_grad  # then step sizes are tensors, so gradients reach the times
    sizes = _step_sizes(problem, grid) if (compile or differentiable) else None
    step_fn = _step_with_slope if keep.slopes else steps.fixed_step
    if compile:  # the first step runs eagerly: it checks func's output before anything is traced
        step = compiled.CompiledStep(step_fn, problem.func)
        traced = problem.traceable_field()
    y, evaluate, flat_shape = problem.y0, problem, problem.y0.shape
    run = _Marched({0: y} if 0 in keep.states else {}, {}, {})
    if (not compile and not differentiable and not problem.callbacks and not keep.slopes and not keep.end_slopes
            and plain_steps.plain_steps_apply(tableau)):
        return _march_plain(problem, tableau, grid_values, stage_times, keep)
    for g in range(len(grid_values) - 1):
        times = stage_times[g]
        if problem.callbacks:
            problem.callback("callback_step", grid[g], y, grid[g + 1] - grid[g])
        if compile and g > 0:
            result = step(traced, tableau, times[0], sizes[g], y)
        else:
            h = sizes[g] if differentiable else grid_values[g + 1] - grid_values[g]
            result = step_fn(evaluate, tableau, times[0], h, y, times)
        y, f0 = result if keep.slopes else (result, None)
        if g in keep.slopes:
            run.slopes[g] = f0.reshape(flat_shape)
        if g == 0 and not compile and problem.direct() is not None:  # func checked: step in the user's shape
            evaluate, y = problem.direct(), y.reshape(problem.shapes[0])
        if g + 1 in keep.states:
            run.states[g + 1] = y.reshape(flat_shape)
        if g in keep.end_slopes:
            run.end_slopes[g] = evaluate(end_times[g], y).reshape(flat_shape)
    return run


def _march_plain(problem: FlatProblem, tableau: ButcherTableau, grid_values: list[float],
                 stage_times: list[Sequence[torch.Tensor]], keep: _Keep) -> _Marched:
    """:func:`_march` where each step needs only its stages (:mod:`plain_steps`): the first step through
    ``problem``, which checks func's output, the others on the user's state shape where that is allowed."""
    y, flat_shape = problem.y0, problem.y0.shape
    run = _Marched({0: y} if 0 in keep.states else {}, {}, {})
    y = plain_steps.march(problem, problem._wrong_output, tableau, y, grid_values, stage_times, range(1),
                          keep.states, run.states, flat_shape)
    call = problem
    if problem.direct() is not None:
        call, y = problem.call, y.reshape(problem.shapes[0])
    plain_steps.march(call, problem._wrong_output, tableau, y, grid_values, stage_times,
                      range(1, len(grid_values) - 1), keep.states, run.states, flat_shape)
    return run


def _step_with_slope(evaluate: Callable, tableau: ButcherTableau, t: torch.Tensor, h: Step, y: torch.Tensor,
                     stage_times: Optional[Sequence[torch.Tensor]] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`steps.fixed_step` that also returns the field at the step's start (its first stage), ``[B, N]``."""
    f0 = evaluate(t, y)
    y1, _, _ = rk_step(evaluate, tableau, t, y, f0, h, stage_times)
    return y1, f0


def _step_sizes(problem: FlatProblem, grid: torch.Tensor) -> list[torch.Tensor]:
    """The step sizes of the grid as tensors (0-d, or ``[B]`` per sample)."""
    sizes = grid[1:] - grid[:-1]
    if problem.per_sample:
        sizes = sizes.unsqueeze(1).expand(-1, problem.batch)
    return list(sizes.unbind())


def _stage_times(problem: FlatProblem, tableau: ButcherTableau, grid: torch.Tensor,
                 perturb: bool) -> list[Sequence[torch.Tensor]]:
    """``t_g + c_i (t_{g+1} - t_g)`` for every step g and stage i, made once (0-d tensors, or ``[B]``
    per sample) in the dtype ``func`` sees, so the stepping loop creates no time tensors.

    A stage at ``c = 0`` or ``c = 1`` is at a grid point: one tensor serves as one step's last stage time
    and the next one's first (rk4: 301 tensors for 100 steps instead of 400; making and freeing a 0-d
    tensor costs about 1 us), and stages with the same ``c`` share theirs. With ``perturb`` the two sides
    of a grid point differ, so every stage gets its own.
    """
    if perturb:
        return _perturbed_stage_times(problem, tableau, grid)
    n_steps = len(grid) - 1
    cs = nonzero_weights(tableau)["c"]
    inner = sorted({c for c in cs if c not in (0.0, 1.0)})
    times = grid
    if inner:
        start = grid[:-1]
        key = ("inner c", grid.dtype, grid.device)
        if key not in tableau._cache:
            tableau._cache[key] = torch.tensor(inner, dtype=grid.dtype, device=grid.device)
        c = tableau._cache[key]
        times = torch.cat([grid, (start.unsqueeze(1) + c.unsqueeze(0) * (grid[1:] - start).unsqueeze(1)).reshape(-1)])
    times = times.to(problem.dtype)
    if problem.per_sample:
        times = times.unsqueeze(1).expand(-1, problem.batch)
    flat = times.unbind()
    columns = [flat[0:n_steps] if c == 0.0 else flat[1:n_steps + 1] if c == 1.0
               else flat[n_steps + 1 + inner.index(c)::len(inner)] for c in cs]
    return list(zip(*columns))


def _perturbed_stage_times(problem: FlatProblem, tableau: ButcherTableau,
                           grid: torch.Tensor) -> list[Sequence[torch.Tensor]]:
    """:func:`_stage_times` with ``perturb``: a step's first stage just after its start, a stage at its
    end just before it."""
    start, end = grid[:-1], grid[1:]
    c = torch.tensor([float(ci) for ci in tableau.c], dtype=grid.dtype, device=grid.device)
    times = start.unsqueeze(1) + c.unsqueeze(0) * (end - start).unsqueeze(1)     # [G, S]
    at_end = (c == 1).expand_as(times)
    times = torch.where(at_end, end.unsqueeze(1).expand_as(times), times).to(problem.dtype)
    times = torch.cat([_next_after(times[:, :1], +1), times[:, 1:]], dim=1)
    times = torch.where(at_end, _next_after(times, -1), times)
    if problem.per_sample:
        times = times.unsqueeze(2).expand(-1, -1, problem.batch)                   # [G, S, B]
    n_stages = times.shape[1]
    flat = times.reshape(-1, *times.shape[2:]).unbind()   # one unbind for the whole table, sliced per step
    return [flat[g * n_stages:(g + 1) * n_stages] for g in range(times.shape[0])]


def _end_times(problem: FlatProblem, grid: torch.Tensor, perturb: bool) -> list[torch.Tensor]:
    """Each step's end time (0-d tensors, or ``[B]`` per sample) in the dtype ``func`` sees; with
    ``perturb`` just before it, where the step's own last stage looks (the field's left limit)."""
    times = grid[1:].to(problem.dtype)
    if perturb:
        times = _next_after(times, -1)
    if problem.per_sample:
        times = times.unsqueeze(1).expand(-1, problem.batch)
    return list(times.unbind())


def _next_after(times: torch.Tensor, direction: int) -> torch.Tensor:
    """The next representable value after each time, up (+1) or down (-1); differentiable as identity."""
    moved = torch.nextafter(times.detach(), torch.full_like(times, direction * math.inf))
    return times + (moved - times.detach())
