"""Fixed-step integration on a grid that lands on every output time.

The grid is, as in torchdiffeq: the output times themselves when no ``step_size`` is given;
``t0 + k h`` (last point clipped to the end time) for a ``step_size`` h; or what a user's
``grid_constructor(func, y0, t)`` returns. Output times that fall between grid points are inserted
into the grid, so every output is a true solver state rather than an interpolation, and the method
keeps its order at every output. The grid is built from ``t`` with tensor operations, so gradients
flow to the output times.
"""
from __future__ import annotations

import math
from typing import Callable, Optional

import torch

from . import compiled, steps
from .checks import SolverError
from .problem import FlatProblem
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
    """The grid before the output times are merged in, as increasing internal times ``[G]``."""
    t = problem.t
    if grid_constructor is not None:
        return _constructed_grid(problem, grid_constructor)
    if step_size is None:
        return t
    span = float(t[-1].detach() - t[0].detach())
    n = int(math.ceil(span / step_size - 1e-9))
    if n > max_steps:
        raise SolverError(
            f"step_size={step_size:g} over a time span of {span:g} needs {n:,} steps, more than "
            f"max_num_steps={max_steps:,}: the step size is probably a slip (check its units). If you "
            f"really mean it, pass options={{'max_num_steps': {n}}}.")
    ks = torch.arange(n, dtype=t.dtype, device=t.device)
    return torch.cat([t[:1] + ks * step_size, t[-1:]])


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


def integrate_fixed(problem: FlatProblem, tableau: ButcherTableau, step_size: Optional[float] = None,
                    grid_constructor: Optional[Callable] = None, perturb: bool = False, compile: bool = False,
                    max_steps: int = MAX_GRID_STEPS) -> tuple[list, SolveStats]:
    """Solve on the fixed grid; returns the ``[B, N]`` states at the output times and the statistics.

    ``perturb`` evaluates a step's first stage just after its start time and a stage at its end just
    before the end (the next representable value), so a field with jumps at grid points sees each
    side once, as torchdiffeq's ``perturb`` option does. With ``compile``, each step runs as one
    compiled graph (:mod:`compiled`).
    """
    y = problem.y0
    if len(problem.t) == 1:
        return [y], SolveStats.zeros(problem)
    base = base_grid(problem, step_size, grid_constructor, max_steps)
    grid_values, out_index, source = merge_outputs(problem.t.detach().tolist(), base.detach().tolist())
    grid = torch.cat([base, problem.t])[torch.tensor(source, device=base.device)]
    if len(grid_values) - 1 > max_steps:
        raise SolverError(f"The grid has {len(grid_values) - 1:,} steps, more than max_num_steps={max_steps:,}; "
                          f"pass options={{'max_num_steps': {len(grid_values)}}} if you mean it.")
    stage_times = _stage_times(problem, tableau, grid, perturb)
    differentiable = grid.requires_grad  # then step sizes are tensors, so gradients reach the times
    sizes = _step_sizes(problem, grid) if (compile or differentiable) else None
    if compile:  # the first step runs eagerly: it checks func's output before anything is traced
        step = compiled.CompiledStep(steps.fixed_step, problem.func)
        field = problem.traceable_field()
    outputs = [y]
    next_out = 1
    evaluate, flat_shape = problem, y.shape
    for g in range(len(grid_values) - 1):
        times = stage_times[g]
        if problem.callbacks:
            problem.callback("callback_step", grid[g], y, grid[g + 1] - grid[g])
        if compile and g > 0:
            y = step(field, tableau, times[0], sizes[g], y)
        else:
            h = sizes[g] if differentiable else grid_values[g + 1] - grid_values[g]
            y = steps.fixed_step(evaluate, tableau, times[0], h, y, times)
        if g == 0 and not compile and problem.direct() is not None:  # func checked: step in the user's shape
            evaluate, y = problem.direct(), y.reshape(problem.shapes[0])
        if next_out < len(out_index) and out_index[next_out] == g + 1:
            outputs.append(y.reshape(flat_shape))
            next_out += 1
    n_steps = len(grid_values) - 1
    stats = SolveStats.fixed(problem, n_steps=n_steps, nfe=n_steps * tableau.n_stages)
    return outputs, stats


def _step_sizes(problem: FlatProblem, grid: torch.Tensor) -> list[torch.Tensor]:
    """The step sizes of the grid as tensors (0-d, or ``[B]`` per sample)."""
    sizes = grid[1:] - grid[:-1]
    if problem.per_sample:
        sizes = sizes.unsqueeze(1).expand(-1, problem.batch)
    return list(sizes.unbind())


def _stage_times(problem: FlatProblem, tableau: ButcherTableau, grid: torch.Tensor,
                 perturb: bool) -> list[list[torch.Tensor]]:
    """``t_g + c_i (t_{g+1} - t_g)`` for every step g and stage i, made once (0-d tensors, or ``[B]``
    per sample) in the dtype ``func`` sees, so the stepping loop creates no time tensors."""
    start, end = grid[:-1], grid[1:]
    c = torch.tensor([float(ci) for ci in tableau.c], dtype=grid.dtype, device=grid.device)
    times = start.unsqueeze(1) + c.unsqueeze(0) * (end - start).unsqueeze(1)     # [G, S]
    at_end = (c == 1).expand_as(times)
    times = torch.where(at_end, end.unsqueeze(1).expand_as(times), times)
    times = times.to(problem.dtype)
    if perturb:
        times = torch.cat([_next_after(times[:, :1], +1), times[:, 1:]], dim=1)
        times = torch.where(at_end, _next_after(times, -1), times)
    if problem.per_sample:
        times = times.unsqueeze(2).expand(-1, -1, problem.batch)                   # [G, S, B]
    return [list(row.unbind()) for row in times.unbind()]


def _next_after(times: torch.Tensor, direction: int) -> torch.Tensor:
    """The next representable value after each time, up (+1) or down (-1); differentiable as identity."""
    moved = torch.nextafter(times.detach(), torch.full_like(times, direction * math.inf))
    return times + (moved - times.detach())
