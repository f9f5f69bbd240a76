"""Butcher tableaux of the explicit Runge-Kutta methods the course uses.

One dataclass describes every method; the steppers read nothing else. Coefficients are exact
fractions; the steppers turn them into Python floats once per tableau and keep them in ``_cache``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction as F
from typing import Optional, Sequence

__all__ = ["ButcherTableau", "TABLEAUX", "FIXED_METHODS", "ADAPTIVE_METHODS", "METHODS"]


@dataclass(frozen=True)
class ButcherTableau:
    """An explicit Runge-Kutta method.

    ``c`` are the stage times (fractions of the step), ``a`` the strictly lower-triangular stage
    weights (row i has i entries), ``b`` the weights of the propagated solution and ``b_low`` those
    of the embedded lower-order solution (adaptive methods only). ``order`` is the order of the
    propagated solution; ``error_order`` is min(order, embedded order) + 1, the exponent used by the
    step-size controller. ``b_mid`` gives the solution at the step's midpoint for dense output.
    """

    name: str
    c: Sequence[F]
    a: Sequence[Sequence[F]]
    b: Sequence[F]
    order: int
    b_low: Optional[Sequence[F]] = None
    error_order: Optional[int] = None
    b_mid: Optional[Sequence[F]] = None
    _cache: dict = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        s = len(self.c)
        assert len(self.a) == s and all(len(row) == i for i, row in enumerate(self.a))
        assert len(self.b) == s and (self.b_low is None or len(self.b_low) == s)

    @property
    def n_stages(self) -> int:
        return len(self.c)

    @property
    def adaptive(self) -> bool:
        return self.b_low is not None

    @property
    def fsal(self) -> bool:
        """First Same As Last: the last stage is evaluated at (t1, y1), so it is the next step's k1."""
        return self.c[-1] == 1 and list(self.a[-1]) + [F(0)] == list(self.b)


_EULER = ButcherTableau("euler", c=[F(0)], a=[[]], b=[F(1)], order=1)

_MIDPOINT = ButcherTableau(
    "midpoint", c=[F(0), F(1, 2)], a=[[], [F(1, 2)]], b=[F(0), F(1)], order=2
)

_HEUN2 = ButcherTableau(
    "heun2", c=[F(0), F(1)], a=[[], [F(1)]], b=[F(1, 2), F(1, 2)], order=2
)

# Heun's third-order method (Heun 1900): stages at 0, 1/3 and 2/3 of the step.
_HEUN3 = ButcherTableau(
    "heun3",
    c=[F(0), F(1, 3), F(2, 3)],
    a=[[], [F(1, 3)], [F(0), F(2, 3)]],
    b=[F(1, 4), F(0), F(3, 4)],
    order=3,
)

# Kutta's 3/8 rule, the variant torchdiffeq calls "rk4", so the two agree to round-off.
_RK4 = ButcherTableau(
    "rk4",
    c=[F(0), F(1, 3), F(2, 3), F(1)],
    a=[[], [F(1, 3)], [F(-1, 3), F(1)], [F(1), F(-1), F(1)]],
    b=[F(1, 8), F(3, 8), F(3, 8), F(1, 8)],
    order=4,
)

# Heun's method with an embedded first-order estimate, the pair torchdiffeq calls "adaptive_heun": the
# error estimate is the difference between the trapezoidal rule and the Euler step taken from the
# second stage's slope, (k1 - k2) dt / 2. The cheapest adaptive method, for fields that are cheap and rough.
# Not FSAL: the next step's first stage is the field at the accepted state (torchdiffeq reuses the second
# stage, the field at the Euler state, instead).
_ADAPTIVE_HEUN = ButcherTableau(
    "adaptive_heun",
    c=[F(0), F(1)],
    a=[[], [F(1)]],
    b=[F(1, 2), F(1, 2)],
    b_low=[F(0), F(1)],
    order=2,
    error_order=2,
    b_mid=[F(1, 2), F(0)],
)

# Fehlberg's RK1(2) (NASA TR R-315, 1969), propagating the second-order solution as torchdiffeq
# does. Its error estimate, dt/512 (k1 - k3), is reliable only at tight tolerances: at loose ones it
# underestimates the error many times over, a lesson in why the solver is a hyperparameter.
_FEHLBERG2 = ButcherTableau(
    "fehlberg2",
    c=[F(0), F(1, 2), F(1)],
    a=[[], [F(1, 2)], [F(1, 256), F(255, 256)]],
    b=[F(1, 512), F(255, 256), F(1, 512)],
    b_low=[F(1, 256), F(255, 256), F(0)],
    order=2,
    error_order=2,
)

# Bogacki and Shampine (1989), 3(2) pair with FSAL.
_BOSH3 = ButcherTableau(
    "bosh3",
    c=[F(0), F(1, 2), F(3, 4), F(1)],
    a=[[], [F(1, 2)], [F(0), F(3, 4)], [F(2, 9), F(1, 3), F(4, 9)]],
    b=[F(2, 9), F(1, 3), F(4, 9), F(0)],
    b_low=[F(7, 24), F(1, 4), F(1, 3), F(1, 8)],
    order=3,
    error_order=3,
)

# Fehlberg (1969), RK4(5): propagates the fourth-order solution, the fifth-order one estimates the error.
_RKF45 = ButcherTableau(
    "rkf45",
    c=[F(0), F(1, 4), F(3, 8), F(12, 13), F(1), F(1, 2)],
    a=[
        [],
        [F(1, 4)],
        [F(3, 32), F(9, 32)],
        [F(1932, 2197), F(-7200, 2197), F(7296, 2197)],
        [F(439, 216), F(-8), F(3680, 513), F(-845, 4104)],
        [F(-8, 27), F(2), F(-3544, 2565), F(1859, 4104), F(-11, 40)],
    ],
    b=[F(25, 216), F(0), F(1408, 2565), F(2197, 4104), F(-1, 5), F(0)],
    b_low=[F(16, 135), F(0), F(6656, 12825), F(28561, 56430), F(-9, 50), F(2, 55)],
    order=4,
    error_order=5,
)

# Dormand and Prince (1980), RK5(4) with FSAL. The embedded fourth-order weights and the midpoint
# weights for dense output are those of Shampine (1986), "Some practical Runge-Kutta formulas"
# (also used by torchdiffeq); Dormand and Prince's own embedded weights, 5179/57600, 0, 7571/16695,
# 393/640, -92097/339200, 187/2100, 1/40, are equally fourth order but estimate a larger error.
_DOPRI5 = ButcherTableau(
    "dopri5",
    c=[F(0), F(1, 5), F(3, 10), F(4, 5), F(8, 9), F(1), F(1)],
    a=[
        [],
        [F(1, 5)],
        [F(3, 40), F(9, 40)],
        [F(44, 45), F(-56, 15), F(32, 9)],
        [F(19372, 6561), F(-25360, 2187), F(64448, 6561), F(-212, 729)],
        [F(9017, 3168), F(-355, 33), F(46732, 5247), F(49, 176), F(-5103, 18656)],
        [F(35, 384), F(0), F(500, 1113), F(125, 192), F(-2187, 6784), F(11, 84)],
    ],
    b=[F(35, 384), F(0), F(500, 1113), F(125, 192), F(-2187, 6784), F(11, 84), F(0)],
    b_low=[F(1951, 21600), F(0), F(22642, 50085), F(451, 720), F(-12231, 42400), F(649, 6300), F(1, 60)],
    order=5,
    error_order=5,
    b_mid=[
        F(6025192743, 30085553152) / 2,
        F(0),
        F(51252292925, 65400821598) / 2,
        F(-2691868925, 45128329728) / 2,
        F(187940372067, 1594534317056) / 2,
        F(-1776094331, 19743644256) / 2,
        F(11237099, 235043384) / 2,
    ],
)

TABLEAUX: dict[str, ButcherTableau] = {
    tab.name: tab for tab in (_EULER, _MIDPOINT, _HEUN2, _HEUN3, _RK4, _ADAPTIVE_HEUN, _FEHLBERG2, _BOSH3, _RKF45,
                              _DOPRI5)
}
FIXED_METHODS = tuple(name for name, tab in TABLEAUX.items() if not tab.adaptive)
ADAPTIVE_METHODS = tuple(name for name, tab in TABLEAUX.items() if tab.adaptive)
METHODS = FIXED_METHODS + ADAPTIVE_METHODS
