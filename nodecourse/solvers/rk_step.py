"""One explicit Runge-Kutta step, driven by a Butcher tableau, on a ``[B, N]`` state.

The stage derivatives live in one ``[S, B*N]`` buffer, so every stage's combination
``y0 + dt * sum_j a_ij k_j`` is a single matrix-vector product (``addmv``) instead of a Python loop
of small operations: on the small problems of a course that loop, not the network, is the cost.
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence, Union

import torch

from .tableaux import ButcherTableau


class _WriteStage(torch.autograd.Function):
    """``buffer[index] = value`` that autograd can differentiate through.

    Each row is written once per step and read only after it is written, so skipping autograd's
    version check is safe; the backward hands row ``index`` of the gradient to ``value``.
    """

    @staticmethod
    def forward(ctx, buffer: torch.Tensor, value: torch.Tensor, index: int) -> torch.Tensor:
        ctx.index = index
        buffer.data[index] = value
        return buffer

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad, grad[ctx.index], None


def write_stage(buffer: torch.Tensor, value: torch.Tensor, index: int) -> torch.Tensor:
    """Store a flattened stage derivative in row ``index`` of the ``[S, M]`` buffer."""
    value = value.reshape(-1)
    if value.requires_grad or buffer.requires_grad:
        return _WriteStage.apply(buffer, value, index)
    buffer[index] = value
    return buffer


Step = Union[float, torch.Tensor]


def combine(y0: torch.Tensor, stages: torch.Tensor, weights: torch.Tensor, dt: Step) -> torch.Tensor:
    """``y0 + dt * sum_j weights[j] * stages[j]``; ``y0`` ``[B, N]``, ``stages`` ``[S', B*N]``,
    ``dt`` a float (shared step) or a ``[B]`` tensor (one step per sample)."""
    if isinstance(dt, float):
        return torch.addmv(y0.reshape(-1), stages.t(), weights, alpha=dt).view_as(y0)
    increment = torch.mv(stages.t(), weights).view_as(y0)
    return torch.addcmul(y0, dt.to(y0.dtype).unsqueeze(1), increment)


def rk_step(func: Callable, tableau: ButcherTableau, t0: torch.Tensor, y0: torch.Tensor, f0: torch.Tensor,
            dt: Step, stage_times: Optional[Sequence[torch.Tensor]] = None
            ) -> tuple[torch.Tensor, Optional[torch.Tensor], torch.Tensor]:
    """Advance ``y0`` (``[B, N]``, at times ``t0``) by the step ``dt``.

    ``dt`` is a float when the batch shares one step, or a ``[B]`` tensor per sample;
    ``stage_times`` may give the times ``t0 + c_i dt`` precomputed. Returns ``(y1, error, stages)``:
    the propagated solution, the embedded error estimate (``None`` for fixed-step methods) and the
    ``[S, B*N]`` stage derivatives. ``f0 = func(t0, y0)`` is passed in, so a First-Same-As-Last
    method costs ``S - 1`` evaluations a step.
    """
    coef = tableau.tensors(y0.dtype, y0.device)
    S = tableau.n_stages
    stages = write_stage(y0.new_empty(S, y0.numel()), f0, 0)
    y1 = None
    for i in range(1, S):
        if stage_times is not None:
            ti = stage_times[i]
        else:
            ci = coef["c"][i]
            ti = t0 + dt if ci == 1.0 else t0 + ci * dt
        yi = combine(y0, stages[:i], coef["a"][i], dt)
        stages = write_stage(stages, func(ti, yi), i)
        y1 = yi
    if not tableau.fsal:
        y1 = combine(y0, stages, coef["b"], dt)
    error = None
    if tableau.adaptive:
        error = torch.mv(stages.t(), coef["err"]).view_as(y0)
        error = error * dt if isinstance(dt, float) else error * dt.to(y0.dtype).unsqueeze(1)
    return y1, error, stages
