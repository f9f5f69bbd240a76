"""The shared-step and fixed-step trials, written once: the eager loops call these functions, and with
``options={"compile": True}`` :mod:`compiled` traces the very same ones into one graph per step (the
per-sample trial is :func:`per_sample.trial_step`).

``evaluate(t, y)`` is the vector field on the solver's state: the checked :class:`FlatProblem`, the
user's ``func`` itself, or a :class:`problem.FlatField` (compiled steps).
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence

import torch

from .control import Tolerance, error_ratio
from .rk_step import Step, nonzero_weights, rk_step
from .tableaux import ButcherTableau


def fixed_step(evaluate: Callable, tableau: ButcherTableau, t: torch.Tensor, h: Step, y: torch.Tensor,
               stage_times: Optional[Sequence[torch.Tensor]] = None) -> torch.Tensor:
    """One step of a fixed-step method from ``(t, y)`` of size ``h`` (a float, or a 0-d / ``[B]`` tensor)."""
    y1, _, _ = rk_step(evaluate, tableau, t, y, evaluate(t, y), h, stage_times)
    return y1


def shared_trial(evaluate: Callable, tableau: ButcherTableau, norm: Callable, t: torch.Tensor, t1: torch.Tensor,
                 dt: Step, y: torch.Tensor, f: torch.Tensor, rtol: Tolerance, atol: Tolerance,
                 stage_times: Optional[Sequence[torch.Tensor]] = None):
    """One trial step of size ``dt`` shared by the whole batch (a float, or a 0-d tensor when compiled).

    Returns ``(y1, f1, ratio, stages)``: the proposed state, the field at ``(t1, y1)`` (the last stage
    of a First-Same-As-Last method), the error ratio (0-d with the RMS norm, else ``[1]``) and the stage derivatives. ``stage_times``
    may give the stages' times (see :func:`rk_step`).
    """
    y1, error, stages = rk_step(evaluate, tableau, t, y, f, dt, stage_times)
    f1 = stages[-1] if nonzero_weights(tableau)["fsal"] else evaluate(t1, y1)
    return y1, f1, error_ratio(norm, error, y, y1, rtol, atol, None), stages
