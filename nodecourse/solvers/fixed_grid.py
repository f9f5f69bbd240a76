"""Fixed-step integration: steps of size ``h`` on the grid ``t0 + k h``, landing on every output time.

The grid is the one torchdiffeq uses (``t0 + k h``, last point clipped to the end time); output
times that fall between grid points are inserted into the grid, so every output is a true solver
state rather than a linear interpolation, and the method keeps its order at every output.
"""
from __future__ import annotations

import math

import torch

from . import compiled, steps
from .problem import FlatProblem
from .stats import SolveStats
from .tableaux import ButcherTableau


def make_grid(t_out: list[float], h: float) -> tuple[list[float], list[int]]:
    """Grid points (increasing) covering ``t_out`` and, for each output time, its index in the grid."""
    t0, t1 = t_out[0], t_out[-1]
    n = int(math.ceil((t1 - t0) / h - 1e-9))  # number of full or partial steps
    base = [t0 + k * h for k in range(n)] + [t1]
    tol = 1e-9 * max(h, abs(t1 - t0), 1e-300)
    grid: list[float] = []
    out_index: list[int] = []
    j, m = 0, len(t_out)
    for p in base:
        while j < m and t_out[j] < p - tol:  # an output strictly between grid points
            grid.append(t_out[j])
            out_index.append(len(grid) - 1)
            j += 1
        if j < m and abs(t_out[j] - p) <= tol:  # an output on a grid point: use the output time
            grid.append(t_out[j])
            out_index.append(len(grid) - 1)
            j += 1
        elif not grid or p > grid[-1]:
            grid.append(p)
    return grid, out_index


def integrate_fixed(problem: FlatProblem, tableau: ButcherTableau, step_size: float,
                    compile: bool = False) -> tuple[list, SolveStats]:
    """Solve on the fixed grid; returns the ``[B, N]`` states at the output times and the statistics.
    With ``compile``, each step runs as one compiled graph (:mod:`compiled`)."""
    t_out = problem.t.tolist()
    y = problem.y0
    if len(t_out) == 1:
        return [y], SolveStats.zeros(problem)
    grid_values, out_index = make_grid(t_out, step_size)
    stage_times = _stage_times(problem, tableau, grid_values)
    if compile:  # the first step runs eagerly: it checks func's output before anything is traced
        step = compiled.CompiledStep(steps.fixed_step, problem.func)
        field, sizes = problem.traceable_field(), _step_sizes(problem, grid_values)
    outputs = [y]
    next_out = 1
    evaluate, flat_shape = problem, y.shape
    for g in range(len(grid_values) - 1):
        times = stage_times[g]
        if compile and g > 0:
            y = step(field, tableau, times[0], sizes[g], y)
        else:
            y = steps.fixed_step(evaluate, tableau, times[0], grid_values[g + 1] - grid_values[g], y, times)
        if g == 0 and not compile and problem.direct() is not None:  # func checked: step in the user's shape
            evaluate, y = problem.direct(), y.reshape(problem.shapes[0])
        if next_out < len(out_index) and out_index[next_out] == g + 1:
            outputs.append(y.reshape(flat_shape))
            next_out += 1
    n_steps = len(grid_values) - 1
    stats = SolveStats.fixed(problem, n_steps=n_steps, nfe=n_steps * tableau.n_stages)
    return outputs, stats


def _step_sizes(problem: FlatProblem, grid: list[float]) -> list[torch.Tensor]:
    """The step sizes of the grid as tensors (0-d, or ``[B]`` per sample) for the compiled step."""
    sizes = torch.tensor([b - a for a, b in zip(grid[:-1], grid[1:])], dtype=problem.time_dtype,
                         device=problem.device)
    if problem.per_sample:
        sizes = sizes.unsqueeze(1).expand(-1, problem.batch)
    return list(sizes.unbind())


def _stage_times(problem: FlatProblem, tableau: ButcherTableau, grid: list[float]) -> list[list[torch.Tensor]]:
    """``t_g + c_i (t_{g+1} - t_g)`` for every step g and stage i, made once (0-d tensors, or ``[B]``
    per sample), so the stepping loop creates no time tensors."""
    start = torch.tensor(grid[:-1], dtype=problem.time_dtype, device=problem.device)
    step = torch.tensor(grid[1:], dtype=problem.time_dtype, device=problem.device) - start
    c = torch.tensor([float(ci) for ci in tableau.c], dtype=problem.time_dtype, device=problem.device)
    times = start.unsqueeze(1) + c.unsqueeze(0) * step.unsqueeze(1)          # [G, S]
    times[:, c == 1] = torch.tensor(grid[1:], dtype=problem.time_dtype, device=problem.device).unsqueeze(1)
    if problem.per_sample:
        times = times.unsqueeze(2).expand(-1, -1, problem.batch)             # [G, S, B]
    return [list(row.unbind()) for row in times.unbind()]
