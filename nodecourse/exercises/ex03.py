"""Checkers for notebook 03 (ODE solvers): convergence orders, a third-order Runge-Kutta method derived
from the order conditions, the step-size controller, the masking of finished samples and a batched
adaptive RKF45.

Each ``check_*`` runs the learner's function against the reference below on several cases, prints a
report and returns the function to go on with (the learner's when every case passed, else the
reference). The references are public so a notebook can also call them directly; ``rk_step`` is the
lecture's step from any tableau, extended to one time and one step size per sample.
"""
from __future__ import annotations

import functools
import math
import numbers
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Callable, Optional, Sequence, Union

import torch

from nodecourse.solvers import TABLEAUX, ButcherTableau

from .checking import Case, Target, check_function, check_target, close, one_thread, require_callable
from .checking import answers_for

__all__ = ["show_answer",
    "convergence_order",
    "rk_step",
    "third_order_tableau",
    "next_step_size",
    "mask_update",
    "batched_rkf45",
    "check_convergence_order",
    "check_third_order_tableau",
    "check_next_step_size",
    "check_mask_update",
    "check_batched_rkf45",
    "adaptive_solve",
    "buggy_adaptive_solve",
    "check_adaptive_solve",
    "solver_settings",
    "check_solver_settings",
    "OPEN_TASKS",
]

OPEN_TASKS = ("check_solver_settings",)

Field = Callable[[Any, torch.Tensor], torch.Tensor]
Time = Union[float, torch.Tensor]


# --------------------------------------------------------------------------------------------------
# references
# --------------------------------------------------------------------------------------------------


def convergence_order(step_sizes: Sequence[float] | torch.Tensor, errors: Sequence[float] | torch.Tensor) -> float:
    """The slope of the least-squares line through ``(log h, log error)``: the measured order ``p``.

    ``step_sizes`` and ``errors`` are 1-D of the same length (at least 2), all positive; if
    ``error ~ C h^p`` the slope is ``p``. A fit through all points is less sensitive to one noisy
    point than the slope between the two ends.
    """
    h = torch.as_tensor(step_sizes, dtype=torch.float64).reshape(-1)
    e = torch.as_tensor(errors, dtype=torch.float64).reshape(-1)
    if h.numel() != e.numel() or h.numel() < 2:
        raise ValueError(
            f"step_sizes and errors need the same length, at least 2; got {h.numel()} and {e.numel()}."
        )
    if bool((h <= 0).any()) or bool((e <= 0).any()):
        raise ValueError("step sizes and errors must be positive to take logarithms; drop zero errors first.")
    x, y = h.log(), e.log()
    x_c = x - x.mean()
    return float((x_c * (y - y.mean())).sum() / (x_c * x_c).sum())


def _step_like(h: Time, y: torch.Tensor) -> torch.Tensor:
    """``h`` as a tensor that broadcasts against ``y``: a scalar, or ``[B, 1, ...]`` for one step per sample."""
    h_y = torch.as_tensor(h, dtype=y.dtype, device=y.device)
    if h_y.dim() == 1:
        h_y = h_y.reshape(-1, *([1] * (y.dim() - 1)))
    return h_y


def rk_step(f: Field, t: Time, y: torch.Tensor, h: Time,
            tableau: ButcherTableau) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """One explicit Runge-Kutta step of ``tableau`` from ``(t, y)`` with step ``h``.

    ``t`` and ``h`` are floats, 0-d tensors, or ``[B]`` tensors (one per sample, then ``y`` is
    ``[B, ...]``). Stage ``i`` evaluates ``k_i = f(t + c_i h, y + h sum_j a_ij k_j)``; the step returns
    ``(y1, err)`` with ``y1 = y + h sum_i b_i k_i`` and ``err = h sum_i (b_i - b_embedded_i) k_i``, the
    difference of the two embedded solutions (``None`` when the tableau has no ``b_embedded``).
    """
    if not isinstance(tableau, ButcherTableau):
        raise TypeError(f"tableau must be a ButcherTableau (e.g. TABLEAUX['rk4']), got {type(tableau).__name__}.")
    h_y = _step_like(h, y)
    k: list[torch.Tensor] = []
    for i in range(tableau.n_stages):
        y_i = y + h_y * sum(float(a_ij) * k_j for a_ij, k_j in zip(tableau.a[i], k))
        k.append(f(t + float(tableau.c[i]) * h, y_i))
    y1 = y + h_y * sum(float(b_i) * k_i for b_i, k_i in zip(tableau.b, k))
    if tableau.b_embedded is None:
        return y1, None
    err = h_y * sum(float(b_i - bl_i) * k_i for b_i, bl_i, k_i in zip(tableau.b, tableau.b_embedded, k))
    return y1, err


def third_order_tableau(c2: Union[Fraction, float], c3: Union[Fraction, float]) -> ButcherTableau:
    """The explicit three-stage Runge-Kutta method of order 3 with the nodes ``c = (0, c2, c3)``.

    With the nodes fixed, the order conditions ``sum b_i c_i = 1/2`` and ``sum b_i c_i^2 = 1/3`` are two
    linear equations in ``b2, b3``; ``sum b_i = 1`` gives ``b1``, ``sum b_i a_ij c_j = b3 a32 c2 = 1/6``
    gives ``a32``, and the row sums give ``a21 = c2``, ``a31 = c3 - a32``. The method is unique when
    ``c2, c3 != 0``, ``c2 != c3`` and ``c2 != 2/3``; otherwise there is none (or a family): ValueError.
    ``Fraction`` nodes give exact coefficients, floats give floats.
    """
    for name, node in (("c2", c2), ("c3", c3)):
        if isinstance(node, bool) or not isinstance(node, numbers.Real) or not math.isfinite(node):
            raise TypeError(f"{name} must be a finite number (a Fraction or a float), got {node!r}.")
    if c2 == 0 or c3 == 0 or c2 == c3:
        raise ValueError(f"the nodes 0, {c2}, {c3} do not determine a unique third-order method: the two "
                         f"conditions on b2, b3 are singular when c2 or c3 is 0 or c2 = c3.")
    b2 = (3 * c3 - 2) / (6 * c2 * (c3 - c2))
    b3 = (2 - 3 * c2) / (6 * c3 * (c3 - c2))
    if b3 == 0:
        raise ValueError(f"no third-order method has the nodes 0, {c2}, {c3}: c2 = 2/3 forces b3 = 0, and then "
                         f"b3 a32 c2 = 1/6 cannot hold.")
    a32 = 1 / (6 * b3 * c2)
    return ButcherTableau(f"order 3, c = (0, {c2}, {c3})", c=[c2 - c2, c2, c3], a=[[], [c2], [c3 - a32, a32]],
                          b=[1 - b2 - b3, b2, b3], order=3)


def next_step_size(h: torch.Tensor, ratio: torch.Tensor, order: int, safety: float = 0.9,
                   ifactor: float = 10.0, dfactor: float = 0.2) -> torch.Tensor:
    """The next step size ``[B]`` from the current one ``h`` ``[B]`` and the error ratio ``[B]``.

    ``ratio = ||err / scale||`` (<= 1: the step is accepted). The error behaves like ``C h^order``, so
    the step that would just meet the tolerance is ``h ratio^(-1/order)``; the controller takes
    ``h * clamp(safety * ratio^(-1/order), dfactor, ifactor)``, never shrinks after an accepted step
    (factor at least 1), and shrinks by ``dfactor`` when the ratio is NaN (the trial step blew up).
    """
    h = torch.as_tensor(h)
    ratio = torch.as_tensor(ratio, dtype=h.dtype, device=h.device)
    if isinstance(order, bool) or not isinstance(order, int) or order < 1:
        raise ValueError(f"order must be a positive integer (the tableau's error_order), got {order!r}.")
    factor = safety * ratio ** (-1.0 / order)  # ratio = 0 gives inf, clamped to ifactor below
    factor = torch.where(ratio <= 1, factor.clamp(1.0, ifactor), factor.clamp(dfactor, ifactor))
    factor = torch.where(torch.isnan(ratio), torch.full_like(factor, dfactor), factor)
    return h * factor


def mask_update(t: torch.Tensor, y: torch.Tensor, y_prop: torch.Tensor, h: torch.Tensor, t_end: float,
                accept: torch.Tensor, active: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Advance the samples whose step was accepted, and retire those that reached ``t_end``.

    ``t``, ``h`` ``[B]``: times and the steps just tried (already clipped so ``t + h <= t_end``);
    ``y``, ``y_prop`` ``[B, N]``: states and the proposed states; ``accept``, ``active`` ``[B]`` bool.
    A sample moves only when it is active and its step was accepted; it finishes when that step
    covered the rest of the interval (``h >= t_end - t``), and then its time is exactly ``t_end``.
    Returns the new ``(t, y, active)``.
    """
    for name, mask in (("accept", accept), ("active", active)):
        if not torch.is_tensor(mask) or mask.dtype != torch.bool:
            raise TypeError(f"{name} must be a bool tensor [B], got {getattr(mask, 'dtype', type(mask).__name__)}.")
    move = accept & active
    reaches = h >= t_end - t
    t_new = torch.where(move, torch.where(reaches, torch.full_like(t, t_end), t + h), t)
    y_new = torch.where(move.reshape(-1, *([1] * (y.dim() - 1))), y_prop, y)
    return t_new, y_new, active & ~(move & reaches)


def batched_rkf45(f: Field, y0: torch.Tensor, t_end: float, rtol: float, atol: float,
                  first_step: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Solve ``dy/dt = f(t, y)`` from ``t = 0`` to ``t_end`` with RKF45, one step size per sample.

    ``y0`` is ``[B, N]``; ``f`` receives ``t`` of shape ``[B]``. Each loop iteration tries one step for
    every active sample (clipped to end at ``t_end``), accepts it where the RMS norm of
    ``err / (atol + rtol * max(|y|, |y1|))`` over the sample's entries is at most 1, updates the step
    sizes and masks out the samples that are done; it returns when none is active. Returns
    ``(y(t_end) [B, N], attempted steps per sample [B])``.
    """
    if not torch.is_tensor(y0) or y0.dim() != 2 or not y0.is_floating_point():
        raise ValueError("y0 must be a floating [B, N] tensor (a batch of B states with N entries each).")
    if not t_end > 0 or not first_step > 0:
        raise ValueError(f"t_end and first_step must be positive, got t_end={t_end!r}, first_step={first_step!r}.")
    y, attempted, _ = _rkf45_counts(f, y0, t_end, rtol, atol, first_step)
    return y, attempted


def _rkf45_counts(f: Field, y0: torch.Tensor, t_end: float, rtol: float, atol: float,
                  first_step: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`batched_rkf45` with the accepted steps per sample as well: ``(y_end, attempted, accepted)``."""
    tableau = TABLEAUX["rkf45"]
    batch = y0.shape[0]
    t = torch.zeros(batch, dtype=y0.dtype, device=y0.device)
    h = torch.full_like(t, float(first_step))
    y = y0
    active = torch.ones(batch, dtype=torch.bool, device=y0.device)
    n_steps = torch.zeros(batch, dtype=torch.long, device=y0.device)
    n_accepted = torch.zeros_like(n_steps)
    while bool(active.any()):
        h_try = torch.where(active, torch.minimum(h, t_end - t), torch.zeros_like(h))
        y_prop, err = rk_step(f, t, y, h_try, tableau)
        scale = atol + rtol * torch.maximum(y.abs(), y_prop.abs())
        ratio = (err / scale).pow(2).mean(dim=1).sqrt()
        accept = ratio <= 1
        n_steps += active.long()
        n_accepted += (active & accept).long()
        h = next_step_size(h_try, ratio, tableau.error_order)
        t, y, active = mask_update(t, y, y_prop, h_try, t_end, accept, active)
    return y, n_steps, n_accepted


def adaptive_solve(f: Field, y0: torch.Tensor, t_end: float, rtol: float = 1e-6, atol: float = 1e-6,
                   first_step: float = 0.1) -> tuple[torch.Tensor, int, int]:
    """Adaptive RKF45 for one state ``y0`` ``[N]`` from ``t = 0`` to ``t_end``: ``(y_end, accepted, rejected)``.

    A rejected step changes nothing but the step size: neither the time nor the state moves."""
    tableau = TABLEAUX["rkf45"]
    t, y, h = 0.0, y0, float(first_step)
    accepted = rejected = 0
    while t < t_end:
        h = min(h, t_end - t)
        y1, err = rk_step(f, t, y, h, tableau)
        ratio = (err / (atol + rtol * torch.maximum(y.abs(), y1.abs()))).pow(2).mean().sqrt()
        t_next = t_end if h >= t_end - t else t + h
        if ratio <= 1:
            t, y = t_next, y1
            accepted += 1
        else:
            rejected += 1
        h = float(next_step_size(torch.tensor([h], dtype=y0.dtype), ratio.reshape(1), tableau.error_order))
    return y, accepted, rejected


def buggy_adaptive_solve(f: Field, y0: torch.Tensor, t_end: float, rtol: float = 1e-6, atol: float = 1e-6,
                         first_step: float = 0.1) -> tuple[torch.Tensor, int, int]:
    """Exercise 6 ships this broken copy of :func:`adaptive_solve` for the learner to repair."""
    tableau = TABLEAUX["rkf45"]
    t, y, h = 0.0, y0, float(first_step)
    accepted = rejected = 0
    while t < t_end:
        h = min(h, t_end - t)
        y1, err = rk_step(f, t, y, h, tableau)
        ratio = (err / (atol + rtol * torch.maximum(y.abs(), y1.abs()))).pow(2).mean().sqrt()
        t_next, y = (t_end if h >= t_end - t else t + h), y1
        if ratio <= 1:
            t = t_next
            accepted += 1
        else:
            rejected += 1
        h = float(next_step_size(torch.tensor([h], dtype=y0.dtype), ratio.reshape(1), tableau.error_order))
    return y, accepted, rejected


def solver_settings() -> dict:
    """Exercise 7 (open task): keyword arguments for ``nodecourse.solve`` that reach the target."""
    return {"method": "dopri8", "rtol": 1e-7, "atol": 1e-8}


# --------------------------------------------------------------------------------------------------
# test problems
# --------------------------------------------------------------------------------------------------


def _column(t: Time, y: torch.Tensor) -> torch.Tensor:
    """``t`` as a tensor that broadcasts against ``y``: a scalar, or ``[B, 1]`` for per-sample times."""
    t = torch.as_tensor(t, dtype=y.dtype, device=y.device)
    return t.reshape(-1, 1) if t.dim() == 1 else t


def _rotation(t: Time, y: torch.Tensor) -> torch.Tensor:
    """A damped rotation ``[..., 2]``, autonomous."""
    x, v = y[..., 0], y[..., 1]
    return torch.stack([-0.1 * x - v, x - 0.1 * v], dim=-1)


def _forced(t: Time, y: torch.Tensor) -> torch.Tensor:
    """``y' = -y + sin(3 t) + t``: time-dependent, so the stage times ``t + c_i h`` matter."""
    s = _column(t, y) if y.dim() > 1 else torch.as_tensor(t, dtype=y.dtype)
    return -y + torch.sin(3 * s) + s


def _van_der_pol(mu: torch.Tensor) -> Field:
    def field(t: Time, y: torch.Tensor) -> torch.Tensor:
        x, v = y[:, 0], y[:, 1]
        return torch.stack([v, mu * (1 - x**2) * v - x], dim=1)
    return field


def _decay(rates: torch.Tensor) -> Field:
    def field(t: Time, y: torch.Tensor) -> torch.Tensor:
        return -rates.reshape(-1, 1) * y
    return field


def _matches(expected: Any, got: Any, rtol: float = 1e-5, atol: float = 1e-6) -> Optional[str]:
    """The one comparison of this module: ``None`` when ``got`` matches ``expected``, else why not. A dtype
    mismatch is said plainly before the values are compared (with :func:`checking.close`)."""
    if torch.is_tensor(expected) and torch.is_tensor(got) and got.dtype != expected.dtype:
        return f"expected dtype {expected.dtype}, got {got.dtype}"
    return close(expected, got, rtol=rtol, atol=atol)


# --------------------------------------------------------------------------------------------------
# checkers
# --------------------------------------------------------------------------------------------------


def check_convergence_order(fn: Callable[..., float], verbose: bool = True) -> Callable[..., float]:
    """Exercise 1: the least-squares slope of log error against log step size."""
    require_callable("check_convergence_order", fn)
    h = torch.tensor([0.4, 0.2, 0.1, 0.05, 0.025], dtype=torch.float64)
    wiggle = torch.tensor([1.3, 0.8, 1.1, 0.7, 1.4], dtype=torch.float64)
    cases = [
        Case("exact power law e = 3 h^2", (h, 3 * h**2)),
        Case("exact power law e = 0.01 h^4, as Python lists", (h.tolist(), (0.01 * h**4).tolist())),
        Case("noisy e = h^1 * wiggle (a fit, not the two end points)", (h, h * wiggle)),
        Case("step sizes in increasing order", (h.flip(0), (2 * h**3 * wiggle).flip(0))),
        Case("only two points", (h[:2], 5 * h[:2] ** 5)),
        Case("float32 errors", (h.float(), (h**2 * wiggle).float())),
    ]
    hint = ["the measured order must use every point: a slope through the first and last point alone is thrown "
            "off by one noisy error; and it must not depend on the order of the points or their container.",
            "fit the line y = p x + c to x = log h, y = log error by least squares (centre x and y first, or "
            "numpy.polyfit), and return p as a Python float."]

    compare = functools.partial(_matches, rtol=1e-6, atol=1e-9)

    result, _ = check_function("Exercise 1 (convergence order)", fn, convergence_order, cases, hint=hint,
                               compare=compare, verbose=verbose)
    return result


@dataclass
class _Raised:
    """What a call ended with when it raised the ValueError the statement asks for."""

    message: str


def _outcome(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` whose ValueError becomes a value, so a checker can compare "raises" like any result."""
    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ValueError as exc:
            return _Raised(str(exc))
    return call


def _order3_conditions(b: Sequence[float], c: Sequence[float],
                       a: Sequence[Sequence[float]]) -> list[tuple[str, float, float]]:
    """``(condition, value, target)`` for the four order conditions of orders 1 to 3 (the lecture's table)."""
    s = len(c)
    ac = [sum(a[i][j] * c[j] for j in range(i)) for i in range(s)]
    return [("order 1: sum_i b_i = 1", sum(b), 1.0),
            ("order 2: sum_i b_i c_i = 1/2", sum(bi * ci for bi, ci in zip(b, c)), 0.5),
            ("order 3: sum_i b_i c_i^2 = 1/3", sum(bi * ci**2 for bi, ci in zip(b, c)), 1 / 3),
            ("order 3: sum_ij b_i a_ij c_j = 1/6", sum(bi * x for bi, x in zip(b, ac)), 1 / 6)]


def _compare_tableau(expected: Any, got: Any) -> Optional[str]:
    """Name the first property of the statement that ``got`` misses, in the statement's order."""
    if isinstance(expected, _Raised):
        if isinstance(got, _Raised):
            return None
        return "no unique third-order method has these nodes: raise a ValueError instead of returning a result"
    if isinstance(got, _Raised):
        return f"raised ValueError ({got.message}), but these nodes have exactly one third-order method"
    if not isinstance(got, ButcherTableau):
        return f"return a ButcherTableau (from nodecourse.solvers), got {type(got).__name__}"
    if got.n_stages != 3:
        return f"expected three stages, got {got.n_stages}"
    try:
        c = [float(x) for x in got.c]
        a = [[float(x) for x in row] for row in got.a]
        b = [float(x) for x in got.b]
    except (TypeError, ValueError) as exc:
        return f"the coefficients must be numbers (Fractions or floats): {exc}"
    want_c = [float(x) for x in expected.c]
    if any(abs(x - y) > 1e-12 for x, y in zip(c, want_c)):
        return f"nodes c: expected {[round(x, 6) for x in want_c]}, got {[round(x, 6) for x in c]}"
    for i in (1, 2):
        if abs(sum(a[i]) - c[i]) > 1e-10:
            return (f"row {i + 1} of a sums to {sum(a[i]):.6g}, not to its node c_{i + 1} = {c[i]:.6g}: each "
                    f"stage's weights must add up to its node")
    for condition, value, target in _order3_conditions(b, c, a):
        if abs(value - target) > 1e-10:
            return f"the order condition {condition} fails: your weights give {value:.6g}"
    if got.order != 3:
        return f"the tableau's order field says {got.order!r}; the method has order 3"
    want = [*(float(x) for x in expected.b), *(float(x) for row in expected.a for x in row)]
    have = [*b, *(x for row in a for x in row)]
    return None if all(abs(x - y) <= 1e-10 for x, y in zip(have, want)) else \
        "the coefficients differ from the one third-order method with these nodes"


def check_third_order_tableau(fn: Callable[..., ButcherTableau], verbose: bool = True) -> Callable[..., ButcherTableau]:
    """Exercise 2: the three-stage method of order 3 with given nodes, from the order conditions."""
    require_callable("check_third_order_tableau", fn)
    F = Fraction
    cases = [
        Case("Heun's nodes 1/3, 2/3 (one of the weights is 0)", (F(1, 3), F(2, 3))),
        Case("Kutta's nodes 1/2, 1 (a31 is negative: the rows of a must sum to c)", (F(1, 2), F(1))),
        Case("nodes 1, 1/2 (c3 < c2)", (F(1), F(1, 2))),
        Case("float nodes 0.4, 0.8", (0.4, 0.8)),
        Case("nodes 1/2, 1/2: no unique method, a ValueError is expected", (F(1, 2), F(1, 2))),
        Case("nodes 2/3, 1: no third-order method, a ValueError is expected", (F(2, 3), F(1))),
    ]
    hint = ["the failed case names the first property your tableau misses: its nodes, a row of a that does not "
            "sum to its node, or one of the four order conditions of orders 1 to 3 (check that one by hand for "
            "those nodes); for the last two cases, when is there no method, or more than one?",
            "with the nodes fixed, the two conditions with c_i and c_i^2 involve b2 and b3 only; the condition "
            "with a_ij c_j then fixes a32, and the row sums fix the rest. Where those equations have no unique "
            "solution, there is no unique method."]
    _, report = check_function("Exercise 2 (a third-order method from the order conditions)", _outcome(fn),
                               _outcome(third_order_tableau), cases, hint=hint, compare=_compare_tableau,
                               verbose=verbose, answer=third_order_tableau)
    return fn if report.ok else third_order_tableau


def check_next_step_size(fn: Callable[..., torch.Tensor], verbose: bool = True) -> Callable[..., torch.Tensor]:
    """Exercise 3: the step-size controller."""
    require_callable("check_next_step_size", fn)
    f64 = torch.float64
    ratios = torch.tensor([0.0, 1e-6, 0.05, 0.5, 0.95, 1.0, 1.2, 4.0, 1e6], dtype=f64)
    h = torch.linspace(0.01, 0.5, len(ratios), dtype=f64)
    nan = torch.tensor([0.5, float("nan"), 2.0], dtype=f64)
    cases = [
        Case("order 5, ratios from 0 to 1e6", (h, ratios, 5)),
        Case("order 3 (bosh3)", (h, ratios, 3)),
        Case("accepted steps never shrink (ratio 0.95, 1.0)", (h[4:6], ratios[4:6], 5)),
        Case("safety=0.8, ifactor=5, dfactor=0.1", (h, ratios, 5), {"safety": 0.8, "ifactor": 5.0, "dfactor": 0.1}),
        Case("a NaN ratio (the trial step blew up)", (h[:3], nan, 5)),
        Case("float32", (h.float(), ratios.float(), 4)),
    ]
    hint = ["the failed case names the rule: a NaN ratio, the clamp limits, or an accepted step whose successor "
            "got smaller.",
            "an accepted step (ratio <= 1) clamps the factor safety * ratio^(-1/order) to [1, ifactor], a rejected "
            "one to [dfactor, ifactor]; NaN compares False with everything, so handle it separately."]

    def compare(expected: torch.Tensor, got: Any) -> Optional[str]:
        return _matches(expected, got, rtol=1e-6 if expected.dtype == f64 else 1e-5, atol=1e-12)

    result, _ = check_function("Exercise 3 (step-size controller)", fn, next_step_size, cases, hint=hint,
                               compare=compare, verbose=verbose)
    return result


def check_mask_update(fn: Callable[..., tuple], verbose: bool = True) -> Callable[..., tuple]:
    """Exercise 4: advance accepted samples, retire the finished ones."""
    require_callable("check_mask_update", fn)
    f64 = torch.float64
    gen = torch.Generator().manual_seed(3)
    t = torch.tensor([0.0, 0.5, 0.9, 0.95, 1.0, 0.2], dtype=f64)
    t_end = 1.0
    h = torch.minimum(torch.tensor([0.3, 0.2, 0.4, 0.05, 0.1, 0.1], dtype=f64), t_end - t)
    h[4] = 0.0  # a sample that finished earlier tries no step
    y = torch.randn(6, 3, generator=gen, dtype=f64)
    y_prop = y + 0.1 * torch.randn(6, 3, generator=gen, dtype=f64)
    accept = torch.tensor([True, False, True, True, True, True])
    active = torch.tensor([True, True, True, True, False, True])
    all_done = torch.zeros(6, dtype=torch.bool)
    t_late = torch.tensor([1.5, 2.0, 2.9], dtype=f64)
    h_late = torch.tensor([0.5, 0.25, 0.1], dtype=f64)
    t_round = torch.tensor([0.1, 0.2, 0.0], dtype=f64)  # 0.1 + (0.3 - 0.1) = 0.30000000000000004
    cases = [
        Case("a mix of accepted, rejected, finishing and finished samples", (t, y, y_prop, h, t_end, accept, active)),
        Case("every step rejected: nothing moves", (t, y, y_prop, h, t_end, ~accept, active)),
        Case("nobody active: nothing moves", (t, y, y_prop, h, t_end, accept, all_done)),
        Case("steps that land on t_end exactly (time snapped to t_end)",
             (t_late, y[:3], y_prop[:3], 3.0 - t_late, 3.0, accept[:3] | True, active[:3] | True)),
        Case("steps short of t_end", (t_late, y[:3], y_prop[:3], h_late * 0.5, 3.0, accept[:3] | True,
                                      active[:3] | True)),
        Case("finishing time exactly t_end although t + h rounds (0.1 + 0.2 is not 0.3)",
             (t_round, y[:3], y_prop[:3], torch.tensor([0.2, 0.1, 0.3], dtype=f64), 0.3,
              accept[:3] | True, active[:3] | True)),
        Case("float32 states [6, 3]", (t.float(), y.float(), y_prop.float(), h.float(), t_end, accept, active)),
    ]
    hint = ["each failed case is one rule of the statement: who moves (active AND accepted), who keeps t and y, "
            "who finishes (a step that covers the rest of the interval), and that a finished sample's time is "
            "exactly t_end.",
            "combine the two masks before moving anyone; decide 'finishes' from h >= t_end - t, not from t + h; "
            "torch.where(mask, new, old) keeps the others (reshape the mask to [B, 1] for y)."]

    def compare(expected: tuple, got: Any) -> Optional[str]:
        if not isinstance(got, (tuple, list)) or len(got) != 3:
            return f"return a triple (t, y, active), got {type(got).__name__}"
        e_t, g_t = expected[0], got[0]
        if torch.is_tensor(g_t) and g_t.shape == e_t.shape and g_t.dtype == e_t.dtype and not torch.equal(g_t, e_t):
            if bool(torch.allclose(g_t, e_t, rtol=1e-9, atol=1e-12)):
                i = int((g_t != e_t).nonzero()[0])
                return (f"t: a finished sample's time must be exactly t_end = {e_t[i].item()!r}, got "
                        f"{g_t[i].item()!r} (t + h rounds): set it to t_end, do not add")
        for what, e, g in (("t", expected[0], got[0]), ("y", expected[1], got[1])):
            why = _matches(e, g, rtol=1e-6, atol=1e-12)
            if why:
                return f"{what}: {why}"
        e, g = expected[2], got[2]
        if not torch.is_tensor(g) or g.dtype != torch.bool or g.shape != e.shape:
            return f"active: expected a bool tensor of shape {tuple(e.shape)}"
        if not torch.equal(e, g):
            return f"active: expected {e.tolist()}, got {g.tolist()}"
        return None

    result, _ = check_function("Exercise 4 (masking finished samples)", fn, mask_update, cases, hint=hint,
                               compare=compare, verbose=verbose)
    return result


def check_batched_rkf45(fn: Callable[..., tuple], verbose: bool = True) -> Callable[..., tuple]:
    """Exercise 5: the batched adaptive RKF45 with per-sample steps and masking.

    Solutions may differ from the reference in small choices (e.g. how the last step is clipped), so
    the states must agree to a few times the tolerance and the step counts to within 20% (or 2).
    """
    require_callable("check_batched_rkf45", fn)
    f64 = torch.float64
    rates = torch.logspace(-1, 1, 5, dtype=f64)
    mus = torch.tensor([0.2, 1.0, 4.0], dtype=f64)
    vdp_y0 = torch.tensor([[2.0, 0.0]] * 3, dtype=f64)
    cases = [
        Case("decay rates 0.1 ... 10, tol 1e-6", (_decay(rates), torch.ones(5, 1, dtype=f64), 2.0, 1e-6, 1e-6, 0.01)),
        Case("Van der Pol, mu = 0.2, 1, 4, tol 1e-5", (_van_der_pol(mus), vdp_y0, 3.0, 1e-5, 1e-5, 0.01)),
        Case("one sample", (_decay(rates[2:3]), torch.full((1, 1), 3.0, dtype=f64), 1.5, 1e-7, 1e-7, 0.1)),
        Case("float32, tol 1e-4", (_van_der_pol(mus.float()), vdp_y0.float(), 2.0, 1e-4, 1e-4, 0.05)),
        Case("square-wave forcing: most trial steps are rejected, n_steps counts every attempt",
             (_square_wave, torch.tensor([[1.0], [0.0], [-2.0]], dtype=f64), 2.0, 1e-6, 1e-6, 0.01)),
        Case("the answer's dtypes: y_end like y0, n_steps an integer tensor",
             (_decay(rates[:2]), torch.ones(2, 1, dtype=f64), 0.5, 1e-6, 1e-6, 0.1)),
    ]
    hint = ["the failed case names the property: the state at t_end (each sample within its tolerance), or "
            "n_steps, the number of ATTEMPTED steps per sample, rejected ones included.",
            "a sample counts a step in every loop iteration while it is active, whether its trial step is "
            "accepted or not; it stops counting once mask_update retires it. y_end needs the error ratio per "
            "sample (RMS over its own entries only) and the clipped step, so no sample steps past t_end."]

    def compare(expected: tuple, got: Any) -> Optional[str]:
        if not isinstance(got, (tuple, list)) or len(got) != 2:
            return f"return a pair (y_end, n_steps), got {type(got).__name__}"
        (y_ref, n_ref, n_acc), (y_got, n_got) = expected, got
        why = _matches(y_ref, y_got, rtol=1e-3, atol=1e-4 if y_ref.dtype == f64 else 1e-3)
        if why:
            return f"y_end: {why}"
        if not torch.is_tensor(n_got) or n_got.is_floating_point() or n_got.dtype == torch.bool:
            return f"n_steps: expected an integer tensor [B], got {getattr(n_got, 'dtype', type(n_got).__name__)}"
        if n_got.shape != n_ref.shape:
            return f"n_steps: expected one count per sample, shape {tuple(n_ref.shape)}, got {tuple(n_got.shape)}"

        def near(n: torch.Tensor) -> bool:
            slack = torch.clamp(0.2 * n.double(), min=2.0)
            return not bool(((n_got.double() - n.double()).abs() > slack).any())

        if near(n_ref):
            return None
        if near(n_acc):
            return (f"n_steps: {n_got.tolist()} are the ACCEPTED steps (the attempted ones are {n_ref.tolist()}); "
                    f"count every trial step of an active sample, rejected ones too")
        return f"n_steps: expected about {n_ref.tolist()} attempted steps, got {n_got.tolist()}"

    _, report = check_function("Exercise 5 (batched adaptive RKF45)", fn, _rkf45_counts, cases, hint=hint,
                               compare=compare, verbose=verbose, answer=batched_rkf45)
    return fn if report.ok else batched_rkf45


def _square_wave(t: Time, y: torch.Tensor) -> torch.Tensor:
    """``y' = -y + sign(sin(4 pi t))``: a jump every 0.25, where the controller rejects step after step."""
    s = _column(t, y)
    return -y + torch.sign(torch.sin(4 * math.pi * s))


def check_adaptive_solve(fn: Callable[..., tuple], verbose: bool = True) -> Callable[..., tuple]:
    """Exercise 6 (find the bug): the repaired :func:`buggy_adaptive_solve`."""
    require_callable("check_adaptive_solve", fn)
    f64 = torch.float64
    y_rot = torch.tensor([1.0, 0.5], dtype=f64)
    cases = [
        Case("loose tolerance, small first step: no step is rejected",
             (_rotation, y_rot, 1.0, 1e-3, 1e-3, 0.05)),
        Case("first step far too large: rejected steps must leave the state alone",
             (_rotation, y_rot, 1.0, 1e-8, 1e-8, 1.0)),
        Case("time-dependent field, tol 1e-7", (_forced, torch.tensor([0.5, -1.0], dtype=f64), 2.0, 1e-7, 1e-7, 0.5)),
        Case("float32 state, tol 1e-5", (_rotation, y_rot.float(), 3.0, 1e-5, 1e-5, 0.8)),
    ]
    hint = ["it is right when no step is rejected and wrong as soon as one is: look at what a rejected trial "
            "step changes in the loop's variables.",
            "after a rejected step only h may change; the time stays, and so must the state y: y1 is only a "
            "proposal until the step is accepted."]

    def compare(expected: tuple, got: Any) -> Optional[str]:
        if not isinstance(got, (tuple, list)) or len(got) != 3:
            return f"return a triple (y_end, accepted, rejected), got {type(got).__name__}"
        single = expected[0].dtype == torch.float32
        why = _matches(expected[0], got[0], rtol=1e-4 if single else 1e-6, atol=1e-5 if single else 1e-8)
        if why:
            return f"y_end: {why}"
        for what, e, g in (("accepted", expected[1], got[1]), ("rejected", expected[2], got[2])):
            if abs(int(g) - e) > 1:
                return f"{what}: expected {e} steps, got {int(g)}"
        return None

    return check_function("Exercise 6 (find the bug: an adaptive solve)", fn, adaptive_solve, cases, hint=hint,
                          compare=compare, verbose=verbose)[0]


SETTINGS_PROBLEM = {"A": [[-0.1, -2.0], [2.0, -0.1]], "y0": [1.0, 0.5], "T": 10.0}
SETTINGS_TARGETS = {"error": 1e-6, "nfe": 500}


def measure_solver_settings(fn: Callable[[], dict]) -> dict:
    """Solve the damped rotation of exercise 7 with ``nodecourse.solve(**fn())``: its error at T and NFE."""
    from nodecourse import solve

    settings = fn()
    if not isinstance(settings, dict):
        raise TypeError(f"return a dict of keyword arguments for nodecourse.solve, got {type(settings).__name__}")
    allowed = {"method", "rtol", "atol", "options"}
    requirements = [("only method, rtol, atol and options are set",
                     None if set(settings) <= allowed else f"also set {sorted(set(settings) - allowed)}")]
    A = torch.tensor(SETTINGS_PROBLEM["A"], dtype=torch.float64)
    y0 = torch.tensor(SETTINGS_PROBLEM["y0"], dtype=torch.float64)
    T = SETTINGS_PROBLEM["T"]
    exact = torch.linalg.matrix_exp(A * T) @ y0
    kwargs = {k: v for k, v in settings.items() if k in allowed}
    solution = solve(lambda t, y: y @ A.T, y0, torch.tensor([0.0, T], dtype=torch.float64), **kwargs)
    error = (solution.ys[-1] - exact).norm().item()
    return {"error": error, "nfe": int(solution.stats.nfe), "requirements": requirements}


def check_solver_settings(fn: Callable[[], dict], verbose: bool = True) -> Callable[[], dict]:
    """Exercise 7 (open task): reach the error target within the NFE budget."""
    require_callable("check_solver_settings", fn)
    targets = [Target(f"error at T at most {SETTINGS_TARGETS['error']:g}", "error", SETTINGS_TARGETS["error"]),
               Target(f"at most {SETTINGS_TARGETS['nfe']} function evaluations", "nfe", SETTINGS_TARGETS["nfe"])]
    hint = ["both numbers matter: a tighter tolerance buys accuracy with evaluations, a looser one the other "
            "way round. Look at which target you miss and by how much.",
            "for a fixed method, the error per step shrinks like h^(p+1), so a method of higher order p reaches the "
            "same error with fewer, longer steps, each of which costs more stages; compare the methods in "
            "nodecourse.solvers.TABLEAUX by order and by stages."]
    with one_thread():
        return check_target("Exercise 7 (open task: accuracy within an NFE budget)", fn, solver_settings,
                            measure_solver_settings, targets, hint=hint, verbose=verbose)[0]


show_answer = answers_for("03")
