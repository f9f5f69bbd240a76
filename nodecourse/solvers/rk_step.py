"""One explicit Runge-Kutta step, driven by a Butcher tableau, on a ``[B, N]`` state."""
from __future__ import annotations

from typing import Callable, Optional

import torch

from .tableaux import ButcherTableau


def rk_step(func: Callable, tableau: ButcherTableau, t0: torch.Tensor, y0: torch.Tensor,
            f0: torch.Tensor, dt: torch.Tensor) -> tuple[torch.Tensor, Optional[torch.Tensor], list]:
    """Advance ``y0`` (``[B, N]``, at times ``t0`` ``[B]``) by steps ``dt`` ``[B]``.

    Returns ``(y1, error, stages)``: the propagated solution, the embedded error estimate
    (``None`` for fixed-step methods) and the list of stage derivatives ``k_i`` (``[B, N]`` each).
    ``f0 = func(t0, y0)`` is passed in, so a First-Same-As-Last method costs ``S - 1`` evaluations.
    """
    coef = tableau.tensors(y0.dtype, y0.device)
    dt_y = dt.to(y0.dtype).unsqueeze(1)  # [B, 1]
    k = [f0]
    for i in range(1, tableau.n_stages):
        ci = coef["c"][i]
        ti = t0 + ci * dt if ci != 1.0 else t0 + dt
        yi = y0 + dt_y * _combine(coef["a"][i], k)
        k.append(func(ti, yi))
    if tableau.fsal:
        y1 = yi
    else:
        y1 = y0 + dt_y * _combine(coef["b"], k)
    error = dt_y * _combine(coef["err"], k) if tableau.adaptive else None
    return y1, error, k


def _combine(weights: torch.Tensor, k: list) -> torch.Tensor:
    """``sum_j weights[j] * k[j]`` as one contraction over the stacked stages."""
    if len(k) == 1:
        return weights[0] * k[0]
    return torch.tensordot(weights[: len(k)], torch.stack(k), dims=1)
