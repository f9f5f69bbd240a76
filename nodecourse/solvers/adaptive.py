"""Adaptive Runge-Kutta integration with error control, shared or per-sample step sizes.

One loop serves both modes. The state is ``[B, N]`` with ``B = 1`` when the whole batch shares one
step size (what torchdiffeq does) and ``B = batch`` in per-sample mode, where every sample keeps its
own time, step size and accept/reject decision and finished samples are masked out. The only
device-to-host transfer per step is one small vector that says whether anyone is still running and
which output times the step covered.
"""
from __future__ import annotations

import bisect
from typing import Callable

import torch

from . import interpolation
from .checks import SolverError
from .norms import make_norm
from .problem import FlatProblem
from .rk_step import rk_step
from .stats import SolveStats
from .tableaux import ButcherTableau

DEFAULTS = {"safety": 0.9, "ifactor": 10.0, "dfactor": 0.2, "max_num_steps": 2**31 - 1}


def initial_step(problem: FlatProblem, t0: torch.Tensor, y0: torch.Tensor, f0: torch.Tensor,
                 rtol: float, atol: float, error_order: int, norm: Callable) -> torch.Tensor:
    """A first step size ``[B]`` from the starting scale of ``y`` and ``f``.

    The algorithm of Hairer, Norsett and Wanner, Solving ODEs I, Sec. II.4: take the step for which
    an explicit Euler step changes ``y`` by 1% of its scale, then correct it with a second-derivative
    estimate from one extra evaluation so the local error is about the tolerance.
    """
    y0, f0 = y0.detach(), f0.detach()  # the first step is a choice, not part of the graph
    scale = atol + rtol * y0.abs()
    d0, d1 = norm(y0 / scale), norm(f0 / scale)
    h0 = torch.where((d0 < 1e-5) | (d1 < 1e-5), torch.full_like(d0, 1e-6), 0.01 * d0 / d1)
    y1 = y0 + h0.unsqueeze(1) * f0
    f1 = problem(t0 + h0.to(t0.dtype), y1)
    d2 = norm((f1 - f0) / scale) / h0
    d_max = torch.maximum(d1, d2)
    h1 = torch.where(d_max <= 1e-15, torch.clamp(h0 * 1e-3, min=1e-6),
                     (0.01 / d_max) ** (1.0 / error_order))
    return torch.minimum(100 * h0, h1).to(t0.dtype).detach()


def integrate_adaptive(problem: FlatProblem, tableau: ButcherTableau, rtol: float, atol: float,
                       options: dict) -> tuple[list, SolveStats]:
    """Solve with step-size control; returns the ``[B, N]`` states at the output times and statistics."""
    opts = {**DEFAULTS, **{k: v for k, v in options.items() if v is not None}}
    safety, ifactor, dfactor = float(opts["safety"]), float(opts["ifactor"]), float(opts["dfactor"])
    max_num_steps = int(opts["max_num_steps"])
    norm = make_norm(opts.get("norm"), problem)
    exponent = -1.0 / tableau.error_order
    coef = tableau.tensors(problem.dtype, problem.device)

    s_out = problem.t
    s_list = s_out.tolist()
    t_end = s_list[-1]
    y = problem.y0
    outputs: list = [y] + [None] * (len(s_list) - 1)
    B = problem.batch
    if len(s_list) == 1:
        return outputs, SolveStats.zeros(problem)

    t = s_out[:1].expand(B).clone()
    f = problem(t, y)
    if "first_step" in opts:
        dt = torch.full((B,), float(opts["first_step"]), dtype=t.dtype, device=t.device)
        start_nfe = 1
    else:
        dt = initial_step(problem, t, y, f, rtol, atol, tableau.error_order, norm)
        start_nfe = 2
    evals_per_step = tableau.n_stages - (1 if tableau.fsal else 0)

    per_sample = problem.per_sample
    active = torch.ones(B, dtype=torch.bool, device=problem.device)
    counts = torch.zeros(3, B, dtype=torch.long, device=problem.device)  # steps, accepted, rejected
    inf = torch.tensor(float("inf"), dtype=t.dtype, device=t.device)
    nonfinite = torch.zeros(B, dtype=torch.bool, device=problem.device)
    n_iter = 0
    while True:
        n_iter += 1
        if n_iter > max_num_steps:
            raise SolverError(
                f"The solver took more than max_num_steps={max_num_steps} steps before reaching "
                f"t={_user_t(problem, t_end):g}. Loosen rtol/atol, check the dynamics for stiffness, "
                f"or raise options['max_num_steps']."
            )
        t1 = t + dt  # finished samples have dt = 0, so they stay put (and stay finite)
        y1, err, k = rk_step(problem, tableau, t, y, f, dt)
        f1 = k[-1] if tableau.fsal else problem(t1, y1)
        scale = atol + rtol * torch.maximum(y.abs(), y1.abs())
        ratio = norm(err / scale).detach()  # step sizes are chosen, not differentiated through
        ratio = torch.where(torch.isfinite(y1).all(dim=1), ratio, torch.full_like(ratio, float("nan")))
        accept = (ratio <= 1) & active
        # remember whether a trial since the last accepted step produced NaN/inf (for the error message)
        nonfinite = (nonfinite | torch.isnan(ratio)) & ~(accept & (t1 > t))

        factor = safety * ratio ** exponent
        factor = torch.where(ratio <= 1, factor.clamp(1.0, ifactor), factor.clamp(dfactor, ifactor))
        factor = torch.where(torch.isnan(ratio), torch.full_like(factor, dfactor), factor)

        finished = accept & (t1 >= t_end)
        running = active & ~finished
        dt_next = torch.where(running, dt * factor.to(dt.dtype), torch.zeros_like(dt))
        stalled = active & (t1 == t)
        t_lo = torch.where(accept, t, inf).amin()
        t_hi = torch.where(accept, t1, -inf).amax()
        counts += torch.stack([active, accept, active & ~accept]).long()
        summary = torch.stack([running.any().to(t.dtype), stalled.any().to(t.dtype), t_lo, t_hi])
        any_running, any_stalled, lo, hi = summary.tolist()  # the one host sync of the step

        if any_stalled:
            _raise_underflow(problem, t, dt, stalled, nonfinite, y, y1)
        j_lo, j_hi = bisect.bisect_right(s_list, lo), bisect.bisect_right(s_list, hi)
        if j_hi > j_lo:
            dt_y = dt.to(y.dtype).unsqueeze(1)
            y_mid = y + dt_y * torch.tensordot(coef["mid"], torch.stack(k), dims=1) if coef["mid"] is not None else None
            poly = interpolation.fit(y, y1, f, f1, dt_y, y_mid)
            s_w = s_out[j_lo:j_hi].unsqueeze(1)                                  # [W, 1]
            dt_safe = torch.where(dt == 0, torch.ones_like(dt), dt)  # no 0/0, even in masked lanes
            x = ((s_w - t.unsqueeze(0)) / dt_safe.unsqueeze(0)).to(y.dtype).unsqueeze(2)  # [W, B, 1]
            values = interpolation.evaluate(poly, x)                              # [W, B, N]
            if per_sample:
                inside = accept.unsqueeze(0) & (s_w > t.unsqueeze(0)) & (s_w <= t1.unsqueeze(0))
                for w, j in enumerate(range(j_lo, j_hi)):
                    previous = outputs[j] if outputs[j] is not None else torch.zeros_like(y)
                    outputs[j] = torch.where(inside[w].unsqueeze(1), values[w], previous)
            else:
                for w, j in enumerate(range(j_lo, j_hi)):
                    outputs[j] = values[w]

        if per_sample:
            keep = accept.unsqueeze(1)
            y, f, t = torch.where(keep, y1, y), torch.where(keep, f1, f), torch.where(accept, t1, t)
        elif hi > -float("inf"):  # the shared step was accepted
            y, f, t = y1, f1, t1
        dt = dt_next
        active = running
        if not any_running:
            break

    steps, accepted, rejected = counts
    if per_sample:
        nfe = start_nfe + steps * evals_per_step
        stats = SolveStats(nfe, steps, accepted, rejected, problem.nfe)
    else:
        stats = SolveStats(problem.nfe, int(steps), int(accepted), int(rejected), problem.nfe)
    return outputs, stats


def _user_t(problem: FlatProblem, s: float) -> float:
    return -s if problem.direction < 0 else s


def _raise_underflow(problem: FlatProblem, t: torch.Tensor, dt: torch.Tensor, stalled: torch.Tensor,
                     nonfinite: torch.Tensor, y: torch.Tensor, y1: torch.Tensor) -> None:
    samples = stalled.nonzero().flatten().tolist()
    first = samples[0]
    when = _user_t(problem, float(t[first]))
    bad_values = bool(nonfinite[stalled].any())
    size = float(y[first].abs().max())
    if not problem.per_sample:
        samples = nonfinite_samples(problem, y1) if bad_values else []
    which = f" for samples {_short(samples)}" if samples else ""
    if bad_values:
        cause = (" The vector field or the trial state became NaN/inf there: func returns invalid values "
                 "at these times or states.")
    elif size > 1e8:
        cause = (f" The state has grown to |y| = {size:.3g}: the solution probably blows up in finite "
                 "time here, so no step size can follow it.")
    else:
        cause = (" The error estimate stays above the tolerance however small the step: the problem may be "
                 "stiff or discontinuous there.")
    raise SolverError(
        f"Step size underflow at t={when:.6g}{which}: the step (dt={float(dt[first]):.3g}) became too "
        f"small to advance time.{cause} Try looser rtol/atol, float64, a shorter time span, or check func."
    )


def nonfinite_samples(problem: FlatProblem, y: torch.Tensor) -> list[int]:
    """Indices along dim 0 of the (first) state tensor whose entries are NaN or infinite."""
    first = problem.unflatten(y)[0]
    if first.dim() == 0:
        return [0] if not bool(torch.isfinite(first)) else []
    bad = ~torch.isfinite(first.reshape(first.shape[0], -1)).all(dim=1)
    return bad.nonzero().flatten().tolist()


def _short(items: list[int]) -> str:
    return f"{items[:20]}{' ...' if len(items) > 20 else ''}"
