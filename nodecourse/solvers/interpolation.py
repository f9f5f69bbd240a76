"""Dense output: a polynomial in ``x = (t - t0) / dt`` through one accepted step.

Output times inside a step are served from this polynomial instead of by shortening steps to hit
them, so the step sequence, and the cost, do not depend on how many outputs are asked for.
"""
from __future__ import annotations

from typing import Optional

import torch


def fit(y0: torch.Tensor, y1: torch.Tensor, f0: torch.Tensor, f1: torch.Tensor, dt: torch.Tensor,
        y_mid: Optional[torch.Tensor] = None) -> list[torch.Tensor]:
    """Coefficients ``[p0, p1, ...]`` (each ``[B, N]``) with ``p(x) = sum_k p_k x^k``.

    The polynomial matches ``y0``, ``y1`` and the slopes ``dt * f0``, ``dt * f1`` at the ends (a cubic
    Hermite interpolant); with ``y_mid``, the state at the midpoint, it is the quartic that also passes
    through it (Shampine 1986), which keeps Dormand-Prince's dense output fourth-order accurate.
    ``dt`` is ``[B, 1]``.
    """
    slope0 = dt * f0
    d = y1 - y0 - slope0          # what the linear part misses at x = 1
    e = dt * f1 - slope0          # p'(1) - p'(0)
    if y_mid is None:
        cubic = e - 2 * d
        return [y0, slope0, d - cubic, cubic]
    m = y_mid - y0 - 0.5 * slope0  # what the linear part misses at x = 1/2
    quartic = 16 * m - 8 * d + 2 * e
    cubic = e - 2 * d - 2 * quartic
    return [y0, slope0, d - cubic - quartic, cubic, quartic]


def evaluate(coeffs: list[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """``p(x)`` by Horner's rule; ``x`` is ``[W, B, 1]`` (W output times), the result ``[W, B, N]``."""
    total = coeffs[-1]
    for c in reversed(coeffs[:-1]):
        total = c + x * total
    return total


def dense_weights(tableau) -> list[list[float]]:
    """The interpolant of :func:`fit` written in the step's stages: ``D`` (``[S', 4]``, Python floats) with

        y(t0 + x dt) = y0 + dt * sum_j (sum_p D[j][p] x^(p+1)) k_j,

    where ``k_j`` are the ``S`` stages and, for a method that is not First-Same-As-Last, ``k_S`` is the
    field at the step's end (``S' = S + 1``). The same polynomial as :func:`fit`, but evaluated for
    many output times and samples at once with two matrix products instead of a fit per step.
    """
    if "dense" in tableau._cache:
        return tableau._cache["dense"]
    from fractions import Fraction
    s = tableau.n_stages
    width = s if tableau.fsal else s + 1

    def unit(j):
        return [Fraction(int(i == j)) for i in range(width)]

    def lin(*terms):  # sum of scalar * vector
        return [sum((a * v[i] for a, v in terms), Fraction(0)) for i in range(width)]

    slope0 = unit(0)
    slope1 = unit(s - 1) if tableau.fsal else unit(s)
    rise = list(tableau.b) + [Fraction(0)] * (width - s)     # (y1 - y0) / dt
    d = lin((1, rise), (-1, slope0))
    e = lin((1, slope1), (-1, slope0))
    if tableau.b_mid is None:
        cubic = lin((1, e), (-2, d))
        quartic = [Fraction(0)] * width
    else:
        mid = list(tableau.b_mid) + [Fraction(0)] * (width - s)
        m = lin((1, mid), (Fraction(-1, 2), slope0))
        quartic = lin((16, m), (-8, d), (2, e))
        cubic = lin((1, e), (-2, d), (-2, quartic))
    square = lin((1, d), (-1, cubic), (-1, quartic))
    tableau._cache["dense"] = [[float(c[j]) for c in (slope0, square, cubic, quartic)] for j in range(width)]
    return tableau._cache["dense"]


def stage_weights_at(dense_rows: list[list[float]], x: float) -> list[tuple[int, float]]:
    """The interpolant of :func:`dense_weights` at one ``x`` in ``[0, 1]``, as the nonzero weights on the
    stages, ``w_j = sum_p D[j][p] x^(p+1)`` (Python floats): ``y(t0 + x dt) = y0 + dt sum_j w_j k_j``."""
    powers = (x, x * x, x ** 3, x ** 4)
    pairs = [(j, sum(d * p for d, p in zip(row, powers))) for j, row in enumerate(dense_rows)]
    return [(j, w) for j, w in pairs if w != 0.0]
