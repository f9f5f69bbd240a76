"""One adaptive Runge-Kutta solve, start to finish, in one file, as notebook 03 builds it.

The package's solver spreads this algorithm over modules written for speed (:mod:`.adaptive`,
:mod:`.steps`, :mod:`.rk_step`, :mod:`.control`, :mod:`.interpolation`). Here it is in plain Python
over torch tensors, in the order one step happens:

1. the Butcher tableau: stage times ``c``, stage weights ``a``, weights ``b`` of the solution kept,
   ``b_hat`` of the embedded one, and ``q = error_order`` for the controller;
2. the first step size (Hairer, Norsett & Wanner, Solving ODEs I, Sec. II.4);
3. a trial step: the stages ``k_i = f(t + c_i h, y + h sum_j a_ij k_j)``, the new state
   ``y1 = y + h sum_i b_i k_i`` and the error estimate ``err = h sum_i (b_i - b_hat_i) k_i``;
4. the error ratio ``r = RMS(err / (atol + rtol max(|y|, |y1|)))``: accept the step when ``r <= 1``;
5. the controller: ``h_new = h clamp(0.9 r^(-1/q), 0.2, 10)``, never shrinking after an accepted step;
6. dense output: the output times inside an accepted step are read off a polynomial through it
   (cubic Hermite, or the quartic through the midpoint of Shampine (1986) for Dormand & Prince (1980)).

The whole state, of any shape, is one ODE with one shared step (the package's default mode, as in
torchdiffeq). A decreasing ``t`` is solved forward in ``s = -t``, ``dy/ds = -f(-s, y)``, as the package
does. No options, callbacks, events, per-sample steps or compilation: :func:`nodecourse.solve` has them.
``tests/test_textbook.py`` checks that the package takes exactly these steps and returns these outputs in
float64 (in float32 it keeps time as a float32 tensor, so the two may part by round-off).
"""
from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Callable, Sequence

import torch

from .checks import SolverError
from .tableaux import ADAPTIVE_METHODS, TABLEAUX, ButcherTableau

__all__ = ["StepRecord", "textbook_solve"]

SAFETY, IFACTOR, DFACTOR = 0.9, 10.0, 0.2  # the controller's constants: the package's defaults (and torchdiffeq's)


@dataclass
class StepRecord:
    """One trial step: from time ``t`` by ``dt`` (the notebook's h; negative when time runs backward), with
    error ratio ``error_ratio``; ``accepted`` when that ratio was at most 1."""
    t: float
    dt: float
    error_ratio: float
    accepted: bool


def embedded_weights(tab: ButcherTableau) -> Sequence[Fraction]:
    """``b_hat``, the weights of the embedded solution (the one line that names the tableau's field)."""
    return tab.b_embedded


def weighted_sum(k: list[torch.Tensor], weights: Sequence[Fraction], dt: float) -> torch.Tensor:
    """``dt * sum_j w_j k_j`` over the stages ``k`` (each shaped like the state). Zero weights are
    skipped and ``dt`` is folded into each weight, as the package does, so the two round alike."""
    total = torch.zeros_like(k[0])
    for k_j, w_j in zip(k, weights):
        if w_j != 0:
            total.add_(k_j, alpha=float(w_j) * dt)  # total += (w_j dt) k_j
    return total


def stage_state(y: torch.Tensor, k: list[torch.Tensor], weights: Sequence[Fraction], dt: float) -> torch.Tensor:
    """A stage's input ``y + dt * sum_j w_j k_j``, each term added to ``y`` in turn, as the package does
    (one tensor operation fewer than :func:`weighted_sum` then ``+``; this rounding does not accumulate)."""
    state = y.clone()
    for k_j, w_j in zip(k, weights):
        if w_j != 0:
            state.add_(k_j, alpha=float(w_j) * dt)  # state += (w_j dt) k_j
    return state


def rms_norm(x: torch.Tensor) -> torch.Tensor:
    """``sqrt(mean(x^2))`` over every entry, 0-d: the whole batch counts as one sample."""
    return torch.linalg.vector_norm(x) / math.sqrt(x.numel())


def initial_step(field: Callable, s0: float, y0: torch.Tensor, f0: torch.Tensor, rtol: float, atol: float,
                 q: int) -> float:
    """The first step size, by the algorithm of Hairer, Norsett & Wanner (Solving ODEs I, Sec. II.4).

    ``h0`` is the Euler step that changes ``y`` by 1% of its scale. One more evaluation at
    ``(s0 + h0, y0 + h0 f0)`` estimates the second derivative ``d2``, and ``h1`` is the step whose
    local error, about ``max(d1, d2) h^q``, would be 1% of the tolerance. The answer is the smaller of
    ``100 h0`` and ``h1``. The first step is a choice, not part of the result: no gradient flows here.
    """
    y0, f0 = y0.detach(), f0.detach()
    scale = atol + rtol * y0.abs()
    d0, d1 = float(rms_norm(y0 / scale)), float(rms_norm(f0 / scale))  # sizes of y and dy/dt, in tolerances
    h0 = 1e-6 if d0 < 1e-5 or d1 < 1e-5 else 0.01 * d0 / d1
    f1 = field(s0 + h0, y0 + h0 * f0).detach()
    d2 = float(rms_norm((f1 - f0) / scale)) / h0  # about |d^2y/dt^2|
    d_max = max(d1, d2)
    h1 = max(h0 * 1e-3, 1e-6) if d_max <= 1e-15 else (0.01 / d_max) ** (1.0 / q)
    return min(100 * h0, h1)


def fit_interpolant(y: torch.Tensor, y1: torch.Tensor, f: torch.Tensor, f1: torch.Tensor, dt: float,
                    y_mid: torch.Tensor | None) -> list[torch.Tensor]:
    """Coefficients ``[p0, p1, ...]`` (state-shaped) of ``p(x) = sum_k p_k x^k``, ``x = (s - s_step) / dt``.

    ``p`` matches ``y``, ``y1`` and the slopes ``dt f``, ``dt f1`` at both ends (cubic Hermite); given
    the state at the step's midpoint it is the quartic that also passes through it (Shampine 1986),
    which keeps Dormand-Prince's dense output fourth-order accurate.
    """
    slope0 = dt * f
    d = y1 - y - slope0  # what the linear part misses at x = 1
    e = dt * f1 - slope0  # p'(1) - p'(0)
    if y_mid is None:
        cubic = e - 2 * d
        return [y, slope0, d - cubic, cubic]
    m = y_mid - y - 0.5 * slope0  # what the linear part misses at x = 1/2
    quartic = 16 * m - 8 * d + 2 * e
    cubic = e - 2 * d - 2 * quartic
    return [y, slope0, d - cubic - quartic, cubic, quartic]


def textbook_solve(func: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], y0: torch.Tensor, t,
                   rtol: float = 1e-7, atol: float = 1e-9, method: str = "dopri5",
                   max_num_steps: int = 50_000) -> tuple[torch.Tensor, list[StepRecord]]:
    """Solve ``dy/dt = func(t, y)``, ``y(t[0]) = y0``, with one adaptive Runge-Kutta method.

    ``y0`` is one tensor of any shape (a batch ``[B, N]`` shares one step size), ``t`` the 1-D output
    times, strictly increasing or decreasing. Returns ``(ys, log)``: the states ``[len(t), *y0.shape]``
    and one :class:`StepRecord` per trial step, accepted or rejected. Raises :class:`SolverError` past
    ``max_num_steps`` trial steps or when the step size underflows.
    """
    if method not in ADAPTIVE_METHODS:
        raise ValueError(f"textbook_solve needs an adaptive method ({', '.join(ADAPTIVE_METHODS)}), got {method!r}.")
    # 1. The tableau.
    tab = TABLEAUX[method]
    c, a, b, b_hat, b_mid, q = tab.c, tab.a, tab.b, embedded_weights(tab), tab.b_mid, tab.error_order
    e = [b_i - b_hat_i for b_i, b_hat_i in zip(b, b_hat)]  # error weights, exact fractions
    # A method whose interpolant is well below its own order (rkf45's cubic, dopri8's quartic) would lose
    # accuracy over a long last step, so it shortens that step to land on the end time; the others step past it.
    clip_last = tab.lands_on_last_time

    t = torch.as_tensor(t, device=y0.device)
    if not t.is_floating_point() or y0.dtype == torch.float64:
        t = t.to(y0.dtype)
    if len(t) == 1:
        return torch.stack([y0]), []
    direction = 1.0 if t[-1] > t[0] else -1.0
    s_out = t * direction  # s = direction * t increases: the solver always runs forward in s
    s_list, s_end = s_out.tolist(), float(s_out[-1])

    def field(s: float, y: torch.Tensor) -> torch.Tensor:
        """dy/ds = direction * f(direction * s, y)."""
        f = func(torch.tensor(direction * s, dtype=y0.dtype, device=y0.device), y)
        return f if direction > 0 else -f

    # 2. The first step.
    s, y, f = s_list[0], y0, field(s_list[0], y0)
    dt = initial_step(field, s, y, f, rtol, atol, q)
    ys: list = [y0] + [None] * (len(s_list) - 1)
    log: list[StepRecord] = []
    while True:
        if len(log) >= max_num_steps:
            raise SolverError(
                f"textbook_solve took max_num_steps={max_num_steps:,} trial steps and got only to "
                f"t={direction * s:.6g}, not to t={direction * s_end:g}. The problem may be stiff, or the "
                f"tolerance tighter than it needs: loosen rtol/atol, shorten the time span, or raise max_num_steps.")
        if s + dt == s:
            raise SolverError(f"Step size underflow at t={direction * s:.6g} (dt={dt:.3g}): the error stays above "
                              f"the tolerance however small the step (a stiff or discontinuous problem?).")
        last = clip_last and dt >= s_end - s
        if last:
            dt = s_end - s
        s1 = s_end if last else s + dt

        # 3. A trial step: the stage loop, the new state and the error estimate.
        k = [f]  # k_1 = f(s, y), known from the previous step
        for i in range(1, len(c) - 1 if tab.fsal else len(c)):
            k.append(field(s + float(c[i]) * dt, stage_state(y, k, a[i], dt)))
        y1 = y + weighted_sum(k, b, dt)  # the increment first: one rounding at y's size per step
        if tab.fsal:  # First-Same-As-Last: the last stage is the field at the new state itself
            k.append(field(s + float(c[-1]) * dt, y1))
        # f(s1, y1) is the next step's k_1 and the dense output's end slope. A First-Same-As-Last method
        # (dopri5, bosh3) has it as its last stage; the others evaluate it with every trial, as the package does.
        f1 = k[-1] if tab.fsal else field(s1, y1)
        err = weighted_sum(k, e, dt)

        # 4. The error ratio and the decision.
        scale = atol + rtol * torch.maximum(y.abs(), y1.abs())
        ratio = rms_norm(err / scale).item() if bool(torch.isfinite(y1).all()) else math.nan
        accepted = ratio <= 1.0
        log.append(StepRecord(direction * s, direction * dt, ratio, accepted))
        if accepted:
            # 6. Dense output at the output times in (s, s1].
            j_lo, j_hi = bisect.bisect_right(s_list, s), bisect.bisect_right(s_list, s1)
            if j_hi > j_lo:
                y_mid = None if b_mid is None else y + weighted_sum(k, b_mid, dt)
                coeffs = fit_interpolant(y, y1, f, f1, dt, y_mid)
                for j in range(j_lo, j_hi):
                    x = ((s_out[j] - s) / dt).to(y.dtype)  # where the output falls in the step, 0 < x <= 1
                    value = coeffs[-1]
                    for p in reversed(coeffs[:-1]):  # Horner: p0 + x (p1 + x (p2 + ...))
                        value = p + x * value
                    ys[j] = value
            s, y, f = s1, y1, f1
            if s >= s_end:
                return torch.stack(ys), log

        # 5. The controller: the step that would give r = 1 is dt r^(-1/q); aim 10% lower, change 0.2x to 10x.
        if ratio != ratio:  # NaN: the trial produced inf or NaN, shrink as far as allowed
            factor = DFACTOR
        elif ratio == 0.0:  # no measurable error: grow as far as allowed
            factor = IFACTOR
        else:
            factor = min(IFACTOR, max(SAFETY * ratio ** (-1.0 / q), 1.0 if accepted else DFACTOR))
        dt = dt * factor
