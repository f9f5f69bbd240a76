"""How a model's ODE solve is differentiated: the one ``adjoint`` setting every model takes.

- ``adjoint=False``: backpropagate through the solver's operations. The exact gradient of the computed
  solution; memory grows with the number of steps (every stage is kept for backward).
- ``adjoint=True`` (or ``"adjoint"``): solve the adjoint ODE backwards (Chen et al. 2018). Memory does not
  grow with the steps; the gradient is that of the exact flow, up to the reverse solve's own error, and
  the reverse solve usually costs more evaluations than the forward one.
- ``adjoint="checkpoint"``: keep one state per forward step and backpropagate through one replayed step
  at a time (the adaptive checkpoint adjoint of Zhuang et al. 2020). The same gradient as ``False``, in
  about the forward's evaluations, with one stored state per step instead of every stage. Adaptive
  methods only: a fixed-step solve already stores little, and ``False`` gives it the same gradient.
"""
from __future__ import annotations

from typing import Any, Callable, Optional, Sequence, Union

import torch

from nodecourse.adjoint import odeint_adjoint
from nodecourse.solvers import ADAPTIVE_METHODS, odeint

__all__ = ["Adjoint", "check_adjoint", "check_adjoint_options", "solve_model"]

Adjoint = Union[bool, str]
"""``False``, ``True`` (same as ``"adjoint"``) or ``"checkpoint"``: see the module docstring."""


def check_adjoint(adjoint: Adjoint, method: Optional[str] = None) -> Adjoint:
    """The setting as ``False``, ``True`` or ``"checkpoint"``; a clear error for anything else, and for
    ``"checkpoint"`` with a fixed-step ``method``."""
    if isinstance(adjoint, str):
        if adjoint == "adjoint":
            return True
        if adjoint == "checkpoint":
            if method is not None and method not in ADAPTIVE_METHODS:
                raise ValueError(
                    f"adjoint='checkpoint' replays an adaptive solve's steps, but method={method!r} takes fixed "
                    f"steps: use adjoint=False (backprop through fixed steps gives the same exact gradient) or "
                    f"an adaptive method ({', '.join(ADAPTIVE_METHODS)}).")
            return "checkpoint"
    elif adjoint is not None and adjoint in (False, True):  # bool, or 0/1
        return bool(adjoint)
    raise ValueError(
        f"adjoint must be False (backprop through the solver), True (solve the adjoint ODE backwards, constant "
        f"memory) or 'checkpoint' (replay the forward steps, one state per step); got {adjoint!r}.")


def check_adjoint_options(adjoint: Adjoint, adjoint_options: Optional[dict]) -> None:
    """Refuse settings for a reverse solve that ``adjoint`` does not run."""
    if adjoint == "checkpoint" and adjoint_options:
        raise ValueError("adjoint_options set the adjoint's reverse solve, which adjoint='checkpoint' does not "
                         "run: remove them, or use adjoint=True.")


def solve_model(func: Callable, y0: Any, t: torch.Tensor, adjoint: Adjoint, *,
                adjoint_params: Optional[Sequence[torch.Tensor]] = None,
                adjoint_options: Optional[dict] = None, **solver: Any):
    """``odeint(func, y0, t, **solver)`` differentiated as ``adjoint`` says: ``[len(t), *y0.shape]`` (or a
    tuple for a tuple state). ``adjoint_params`` default to ``func``'s parameters; ``adjoint_options``
    set the adjoint's reverse solve and have no meaning for the other two settings."""
    adjoint = check_adjoint(adjoint, solver.get("method"))
    if adjoint is False:
        return odeint(func, y0, t, **solver)
    check_adjoint_options(adjoint, adjoint_options)
    if adjoint == "checkpoint":
        return odeint_adjoint(func, y0, t, adjoint_params=adjoint_params, gradient="checkpoint", **solver)
    return odeint_adjoint(func, y0, t, adjoint_params=adjoint_params, adjoint_options=adjoint_options, **solver)
