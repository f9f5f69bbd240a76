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
    weights (row i has i entries), ``b`` the weights of the propagated solution and ``b_embedded``
    those of the embedded solution the error is estimated against (adaptive methods only), of lower
    order except for rkf45, which propagates its fourth-order solution. ``order`` is the order of the
    propagated solution; ``error_order`` is min(order, embedded order) + 1, the exponent used by the
    step-size controller. ``b_mid`` gives the solution at the step's midpoint for dense output.
    """

    name: str
    c: Sequence[F]
    a: Sequence[Sequence[F]]
    b: Sequence[F]
    order: int
    b_embedded: Optional[Sequence[F]] = None
    error_order: Optional[int] = None
    b_mid: Optional[Sequence[F]] = None
    _cache: dict = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        s = len(self.c)
        assert len(self.a) == s and all(len(row) == i for i, row in enumerate(self.a))
        assert len(self.b) == s and (self.b_embedded is None or len(self.b_embedded) == s)

    @property
    def n_stages(self) -> int:
        return len(self.c)

    @property
    def adaptive(self) -> bool:
        return self.b_embedded is not None

    @property
    def b_low(self) -> Optional[Sequence[F]]:
        """The old name of :attr:`b_embedded` (misleading for rkf45, whose embedded solution is the higher-order one)."""
        import warnings
        warnings.warn("ButcherTableau.b_low is now b_embedded.", DeprecationWarning, stacklevel=2)
        return self.b_embedded

    @property
    def lands_on_last_time(self) -> bool:
        """Whether a solve shortens its last step to end exactly on the final time. Steps normally run
        past it and serve it from the dense output, as torchdiffeq does; where the interpolant is well
        below the method's order (rkf45's cubic Hermite, dopri8's fourth-order quartic) a long last step
        would lose accuracy there, so those methods land on it."""
        return self.order >= 4 and (self.b_mid is None or self.order > 5)

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
    b_embedded=[F(0), F(1)],
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
    b_embedded=[F(1, 256), F(255, 256), F(0)],
    order=2,
    error_order=2,
)

# Bogacki and Shampine (1989), 3(2) pair with FSAL.
_BOSH3 = ButcherTableau(
    "bosh3",
    c=[F(0), F(1, 2), F(3, 4), F(1)],
    a=[[], [F(1, 2)], [F(0), F(3, 4)], [F(2, 9), F(1, 3), F(4, 9)]],
    b=[F(2, 9), F(1, 3), F(4, 9), F(0)],
    b_embedded=[F(7, 24), F(1, 4), F(1, 3), F(1, 8)],
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
    b_embedded=[F(16, 135), F(0), F(6656, 12825), F(28561, 56430), F(-9, 50), F(2, 55)],
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
    b_embedded=[F(1951, 21600), F(0), F(22642, 50085), F(451, 720), F(-12231, 42400), F(649, 6300), F(1, 60)],
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

# Prince and Dormand, "High order embedded Runge-Kutta formulae", J. Comput. Appl. Math. 7(1), 1981, 67-75:
# RK8(7)13M, propagating the eighth-order solution; the seventh-order one estimates the error. The paper's
# rational coefficients satisfy the order conditions and the row sums (c) to about 1e-16, not exactly.
# Stages 12 and 13 both sit at the step's end, but the last is not the field at (t1, y1) (b_13 = 1/4), so the
# method is not FSAL: f(t1, y1) is one more evaluation, 13 a step, as in torchdiffeq's 14-stage FSAL form.
# b_mid: the midpoint conditions sum_j b_mid_j Phi_j(tau) = (1/2)^|tau| / gamma(tau) are linear in b_mid.
# Those of order <= 5 (17 trees) have rank 9 on the 13 stages and are consistent (residual 2e-16); with order
# 6 they are not (least-squares residual 3e-6). Stored: their float64 minimum-norm solution (the tests check
# it), which puts no weight on stages 2-5.
_DOPRI8 = ButcherTableau(
    "dopri8",
    c=[F(0), F(1, 18), F(1, 12), F(1, 8), F(5, 16), F(3, 8), F(59, 400), F(93, 200), F(5490023248, 9719169821),
       F(13, 20), F(1201146811, 1299019798), F(1), F(1)],
    a=[
        [],
        [F(1, 18)],
        [F(1, 48), F(1, 16)],
        [F(1, 32), F(0), F(3, 32)],
        [F(5, 16), F(0), F(-75, 64), F(75, 64)],
        [F(3, 80), F(0), F(0), F(3, 16), F(3, 20)],
        [F(29443841, 614563906), F(0), F(0), F(77736538, 692538347), F(-28693883, 1125000000),
         F(23124283, 1800000000)],
        [F(16016141, 946692911), F(0), F(0), F(61564180, 158732637), F(22789713, 633445777),
         F(545815736, 2771057229), F(-180193667, 1043307555)],
        [F(39632708, 573591083), F(0), F(0), F(-433636366, 683701615), F(-421739975, 2616292301),
         F(100302831, 723423059), F(790204164, 839813087), F(800635310, 3783071287)],
        [F(246121993, 1340847787), F(0), F(0), F(-37695042795, 15268766246), F(-309121744, 1061227803),
         F(-12992083, 490766935), F(6005943493, 2108947869), F(393006217, 1396673457), F(123872331, 1001029789)],
        [F(-1028468189, 846180014), F(0), F(0), F(8478235783, 508512852), F(1311729495, 1432422823),
         F(-10304129995, 1701304382), F(-48777925059, 3047939560), F(15336726248, 1032824649),
         F(-45442868181, 3398467696), F(3065993473, 597172653)],
        [F(185892177, 718116043), F(0), F(0), F(-3185094517, 667107341), F(-477755414, 1098053517),
         F(-703635378, 230739211), F(5731566787, 1027545527), F(5232866602, 850066563),
         F(-4093664535, 808688257), F(3962137247, 1805957418), F(65686358, 487910083)],
        [F(403863854, 491063109), F(0), F(0), F(-5068492393, 434740067), F(-411421997, 543043805),
         F(652783627, 914296604), F(11173962825, 925320556), F(-13158990841, 6184727034),
         F(3936647629, 1978049680), F(-160528059, 685178525), F(248638103, 1413531060), F(0)],
    ],
    b=[F(14005451, 335480064), F(0), F(0), F(0), F(0), F(-59238493, 1068277825), F(181606767, 758867731),
       F(561292985, 797845732), F(-1041891430, 1371343529), F(760417239, 1151165299), F(118820643, 751138087),
       F(-528747749, 2220607170), F(1, 4)],
    b_embedded=[F(13451932, 455176623), F(0), F(0), F(0), F(0), F(-808719846, 976000145),
                F(1757004468, 5645159321), F(656045339, 265891186), F(-3867574721, 1518517206),
                F(465885868, 322736535), F(53011238, 667516719), F(2, 45), F(0)],
    order=8,
    error_order=8,
    b_mid=[F("0.04074193371540611"), F(0), F(0), F(0), F(0), F("0.14571307319487717"), F("0.2349738958592368"),
           F("0.07726659760202685"), F("0.015751445954632775"), F("-0.0151923676978161"),
           F("-2.853629381382098e-05"), F("0.00038697883272503303"), F("0.00038697883272503303")],
)

TABLEAUX: dict[str, ButcherTableau] = {
    tab.name: tab for tab in (_EULER, _MIDPOINT, _HEUN2, _HEUN3, _RK4, _ADAPTIVE_HEUN, _FEHLBERG2, _BOSH3, _RKF45,
                              _DOPRI5, _DOPRI8)
}
FIXED_METHODS = tuple(name for name, tab in TABLEAUX.items() if not tab.adaptive)
ADAPTIVE_METHODS = tuple(name for name, tab in TABLEAUX.items() if tab.adaptive)
METHODS = FIXED_METHODS + ADAPTIVE_METHODS
