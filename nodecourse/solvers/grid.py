"""The stepping grid of a fixed-step solve: its times, and each step's stage times as tensors.

The grid is, as in torchdiffeq: the output times themselves when no ``step_size`` is given;
``t0 + k h`` (last point set to the end time) for a ``step_size`` h; or what a user's
``grid_constructor(func, y0, t)`` returns. The grid is built from ``t`` with tensor operations, so
gradients flow to the output times.

``func`` gets each stage's time as a tensor; the grid makes them all at once, before the first step
(:class:`Grid`). On a small problem that is most of a solve's fixed cost: making 301 tensors for the
100 steps of an rk4 solve takes about 0.1 ms, 0.3 ms when the caches are cold. A training loop solves on
the same ``t`` and ``step_size`` over and over, so the grids of the last few such solves are kept and
reused (:func:`stepping_grid`); their tensors are handed to ``func`` again, which must not change ``t``
in place (torchdiffeq hands it views of its own grid too).
"""
from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import torch

from .checks import SolverError
from .problem import FlatProblem
from .rk_step import nonzero_weights, scaled
from .tableaux import ButcherTableau

MAX_GRID_STEPS = 1_000_000  # default cap: a step size that would need more is almost surely a slip
RECENT_GRIDS = 8            # grids kept for solves that repeat one
CACHED_STEPS = 1_000        # a longer grid is not kept: each stage time is a tensor object of about 0.6 kB,
                            # so 8 kept rk4 grids of 1,000 steps (3,001 times each) hold about 15 MB


@dataclass
class Grid:
    """A stepping grid: ``times`` ``[G + 1]``, internal and increasing (a tensor, so gradients reach the
    output times), the same times as host floats ``values``, and step g's stage times ``stage_times[g]``
    (0-d tensors, or ``[B]`` per sample, in the dtype ``func`` sees), made with or without ``perturb``."""

    times: torch.Tensor
    values: list[float]
    stage_times: list[Sequence[torch.Tensor]]
    perturb: bool

    @property
    def n_steps(self) -> int:
        return len(self.values) - 1


def grid_on(problem: FlatProblem, tableau: ButcherTableau, times: torch.Tensor, perturb: bool) -> Grid:
    """The :class:`Grid` on ``times`` ``[G + 1]`` for ``tableau``'s stages (see :func:`stage_times`)."""
    return Grid(times, times.detach().tolist(), stage_times(problem, tableau, times, perturb), perturb)


_recent: "OrderedDict[tuple, Grid]" = OrderedDict()


def stepping_grid(problem: FlatProblem, tableau: ButcherTableau, step_size: Optional[float],
                  grid_constructor: Optional[Callable], max_steps: int, perturb: bool) -> Grid:
    """The :class:`Grid` a solve steps on (see the module docstring). A ``step_size`` grid whose times
    need no gradient is the same as one of the last :data:`RECENT_GRIDS` solves' when its ends, step,
    dtypes, device and the method's stage fractions are, and then it is that one."""
    key = _reuse_key(problem, tableau, step_size, grid_constructor, max_steps, perturb)
    grid = _recent.get(key) if key is not None else None
    if grid is not None:
        _recent.move_to_end(key)
        return grid
    grid = grid_on(problem, tableau, base_grid(problem, step_size, grid_constructor, max_steps), perturb)
    if key is not None and grid.n_steps <= CACHED_STEPS:
        _recent[key] = grid
        if len(_recent) > RECENT_GRIDS:
            _recent.popitem(last=False)
    return grid


def forget_recent_grids() -> None:
    """Drop the kept grids (they are small; this is for measuring a solve that builds its own)."""
    _recent.clear()


def _reuse_key(problem: FlatProblem, tableau: ButcherTableau, step_size: Optional[float],
               grid_constructor: Optional[Callable], max_steps: int, perturb: bool) -> Optional[tuple]:
    """What makes two solves' grids the same, or ``None`` for a grid that is not kept: one from the output
    times or a ``grid_constructor``, one whose times carry a gradient or are not a plain tensor (a
    subclass, a ``torch.func`` transform's), one made in inference mode (its tensors could not be saved
    for a later backward pass), or while ``torch.jit.trace`` or ``torch.compile`` records the solve."""
    t = problem.t
    if (step_size is None or grid_constructor is not None or t.requires_grad or not _plain_tensor(t)
            or torch.is_inference_mode_enabled() or torch._C._get_tracing_state() or torch.compiler.is_compiling()):
        return None
    return (tuple(nonzero_weights(tableau)["c"]), problem.ends, step_size, max_steps, perturb, t.dtype,
            problem.dtype, problem.device, problem.batch if problem.per_sample else None)


def _plain_tensor(t: torch.Tensor) -> bool:
    """Whether ``t`` is a ``torch.Tensor`` itself, not a subclass or a ``torch.func`` transform's wrapper."""
    wrapped = getattr(torch._C._functorch, "is_functorch_wrapped_tensor", None)
    return type(t) is torch.Tensor and wrapped is not None and not wrapped(t)


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
        return constructed_grid(problem, grid_constructor)
    if step_size is None:
        return t
    ends = t.detach()[::len(t) - 1]  # the first and the last time (a view)
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


def constructed_grid(problem: FlatProblem, grid_constructor: Callable) -> torch.Tensor:
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


def check_grid_size(n_steps: int, max_steps: int) -> None:
    if n_steps > max_steps:
        raise SolverError(f"The grid has {n_steps:,} steps, more than max_num_steps={max_steps:,}; "
                          f"pass options={{'max_num_steps': {n_steps + 1}}} if you mean it.")


def step_sizes(problem: FlatProblem, grid: torch.Tensor) -> list[torch.Tensor]:
    """The step sizes of the grid as tensors (0-d, or ``[B]`` per sample)."""
    sizes = grid[1:] - grid[:-1]
    if problem.per_sample:
        sizes = sizes.unsqueeze(1).expand(-1, problem.batch)
    return list(sizes.unbind())


def stage_times(problem: FlatProblem, tableau: ButcherTableau, grid: torch.Tensor,
                 perturb: bool) -> list[Sequence[torch.Tensor]]:
    """``t_g + c_i (t_{g+1} - t_g)`` for every step g and stage i, made once (0-d tensors, or ``[B]``
    per sample) in the dtype ``func`` sees, so the stepping loop creates no time tensors.

    A stage at ``c = 0`` or ``c = 1`` is at a grid point: one tensor serves as one step's last stage time
    and the next one's first (rk4: 301 tensors for 100 steps instead of 400; making and freeing a 0-d
    tensor costs about 1 us), and stages with the same ``c`` share theirs. With ``perturb`` the two sides
    of a grid point differ, so every stage gets its own.
    """
    if perturb:
        return perturbed_stage_times(problem, tableau, grid)
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


def perturbed_stage_times(problem: FlatProblem, tableau: ButcherTableau,
                           grid: torch.Tensor) -> list[Sequence[torch.Tensor]]:
    """:func:`stage_times` with ``perturb``: a step's first stage just after its start, a stage at its
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


def end_times(problem: FlatProblem, grid: torch.Tensor, perturb: bool) -> list[torch.Tensor]:
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
