"""One step of each kind, written once: the eager loops call these functions, and with
``options={"compile": True}`` :mod:`compiled` traces the very same ones into one graph per step.

``evaluate(t, y)`` is the vector field on the solver's state: the checked :class:`FlatProblem`, the
user's ``func`` itself, or a :class:`compiled.FlatField`.
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence, Union

import torch

from .control import Control, Tolerance, decide, error_ratio, trial_times
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
    of a First-Same-As-Last method), the ``[1]`` error ratio and the stage derivatives. ``stage_times``
    may give the stages' times (see :func:`rk_step`).
    """
    y1, error, stages = rk_step(evaluate, tableau, t, y, f, dt, stage_times)
    f1 = stages[-1] if nonzero_weights(tableau)["fsal"] else evaluate(t1, y1)
    return y1, f1, error_ratio(norm, error, y, y1, rtol, atol, 1), stages


def per_sample_trial(evaluate: Callable, tableau: ButcherTableau, norm: Callable, control: Control, clip_last: bool,
                     c: torch.Tensor, t: torch.Tensor, dt: torch.Tensor, y: torch.Tensor, f: torch.Tensor,
                     active: torch.Tensor, nonfinite: torch.Tensor, steps: torch.Tensor, accepted: torch.Tensor,
                     t_end: Union[float, torch.Tensor], rtol: Tolerance, atol: Tolerance):
    """One trial step with a step size per sample, and every sample's decision.

    ``c`` is the tableau's stage times ``[S, 1]``; the state ``[B, N]``, times and steps ``[B]``.
    Returns ``(state, trial, summary)``: the next ``(y, f, t, dt, active, nonfinite, steps, accepted)``,
    the trial ``(y1, f1, stages, t1, dt, accept, stalled)`` that dense output and error messages need,
    and the summary vector of :func:`control.decide`.
    """
    dt, t1 = trial_times(t, dt, t_end, clip_last)
    stage_times = list(torch.addcmul(t, c, dt).unbind())  # [S, 1] x [B] -> S times [B]
    y1, error, stages = rk_step(evaluate, tableau, t, y, f, dt, stage_times)
    f1 = stages[-1] if nonzero_weights(tableau)["fsal"] else evaluate(t1, y1)
    ratio = error_ratio(norm, error, y, y1, rtol, atol, y.shape[0])
    accept, stalled, nonfinite, running, dt_next, steps, accepted, summary = decide(
        control, ratio, t, t1, dt, t_end, active, nonfinite, steps, accepted)
    keep = accept.unsqueeze(1)
    state = (torch.where(keep, y1, y), torch.where(keep, f1, f), torch.where(accept, t1, t), dt_next, running,
             nonfinite, steps, accepted)
    return state, (y1, f1, stages, t1, dt, accept, stalled), summary
