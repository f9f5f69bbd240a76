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
