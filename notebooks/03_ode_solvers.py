# %% [markdown] slideshow={"slide_type": "skip"}
# Colab links appear here once the course's home repository is set (`make home`, see CONTRIBUTING.md).

# %% [markdown] slideshow={"slide_type": "slide"}
# # 03 · ODE solvers: Runge-Kutta methods, error control and cost
#
# Notebook 02 showed that a ResNet block is an Euler step and that Euler's error shrinks only like
# $O(h)$. A Neural ODE hands its forward pass to an ODE solver, so the solver decides how accurate
# the model is and how much it costs. This notebook opens that black box: we derive better methods,
# read them from their Butcher tableaux, measure their orders, build an adaptive solver with error
# control from scratch, and learn to count (and choose) what a solve costs.
#
# **Learning objectives**
# - derive the midpoint method and RK4, and write any explicit Runge-Kutta method as a Butcher tableau;
# - implement one generic Runge-Kutta step and measure convergence orders against an exact solution;
# - explain embedded pairs, error estimates, the scaled RMS error norm and the step-size controller;
# - implement an adaptive RKF45 from scratch and check it against `nodecourse.solve`;
# - measure cost in function evaluations (NFE) and pick the cheapest solver for a given accuracy;
# - solve a batch with one shared step or with one step size per sample (masking finished samples);
# - measure where a solve's time goes: the overhead factor, time / (NFE x one call of f).
#
# **Estimated time:** 90 minutes.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Setup
# On Colab the first cell installs `nodecourse`; everywhere it picks the device, seeds the random
# generators and reads fast mode (`NODECOURSE_FAST=1` shrinks training loops for the test suite).

# %%
import sys

COURSE_HOME = ""  # the course's GitHub repository; `make home` writes it
if "google.colab" in sys.modules:  # on Colab: install the course package from its home first
    import subprocess

    if not COURSE_HOME:
        raise RuntimeError("This copy of the course does not know its home repository, so nodecourse cannot be "
                           "installed here: a maintainer sets it with `make home` (see CONTRIBUTING.md), or you "
                           "install nodecourse with pip yourself and delete this check.")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", f"nodecourse @ git+{COURSE_HOME}"], check=True)

import matplotlib.pyplot as plt
import torch

from nodecourse.config import FAST, device, seed_everything

seed_everything(0)
DEVICE = device()
print(f"device: {DEVICE}, fast mode: {FAST}")

# %% [markdown]
# The rest of the imports. This notebook is about accuracy, so it computes in float64; Apple's MPS
# has no float64, so there we fall back to the CPU.

# %%
import math
from fractions import Fraction

import numpy as np

from nodecourse import odeint, solve
from nodecourse.claims import check, claim, report
from nodecourse.plotting import convergence_plot
from nodecourse.solvers import TABLEAUX

DEV = torch.device("cpu") if DEVICE.type == "mps" else DEVICE
F64 = {"dtype": torch.float64, "device": DEV}

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Hyperparameters
# The only cell the test suite changes: fast mode shrinks the experiments, nothing else.

# %% [markdown] slideshow={"slide_type": "notes"}
# Speaker notes (2 min with the setup). Fast mode shrinks the batch of section 8, the tolerance sweep and
# the timed repeats of section 9. The notebook computes in float64 so that measured slopes stay out of the
# round-off regime. Ask the room: what would RK4's measured slope do in float32 with tiny steps?

# %%
n_batch = 16 if FAST else 64  # samples in the batched solve of section 8
tightest = 7 if FAST else 10  # work-precision study: tolerances 1e-3 ... 10^-tightest
n_fixed = 4 if FAST else 6    # work-precision study: fixed-step runs with 100, 200, 400, ... steps
n_timing = 3 if FAST else 15  # timed repeats per solver in section 9

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 1. From Euler to the midpoint method
# We solve the initial value problem $\dot y = f(t, y)$, $y(t_0) = y_0$. Over one step the exact
# solution satisfies
# $$y(t+h) = y(t) + \int_t^{t+h} f(s, y(s))\,ds .$$
# Euler's method approximates the integral by the rectangle $h f(t, y(t))$: its *local* error (one
# step from the exact value) is $O(h^2)$, and over the $T/h$ steps of an interval the *global*
# error is $O(h)$.
#
# The midpoint rule $\int_t^{t+h} g \approx h\, g(t + h/2)$ is exact for linear integrands. It needs
# $y(t+h/2)$, which we do not have, so we estimate it with half an Euler step:
# $$k_1 = f(t, y), \qquad k_2 = f\big(t + \tfrac h2,\; y + \tfrac h2 k_1\big), \qquad y_1 = y + h k_2 .$$
#
# **Why this is second order.** Expand the exact solution with $\dot y = f$ and
# $\ddot y = f_t + f_y f$ (all evaluated at $(t, y)$):
# $$y(t+h) = y + h f + \tfrac{h^2}{2}\,(f_t + f_y f) + O(h^3).$$
# Expand the stage: $k_2 = f + \tfrac h2 f_t + \tfrac h2 f_y k_1 + O(h^2)$ with $k_1 = f$, so
# $$y_1 = y + h f + \tfrac{h^2}{2}(f_t + f_y f) + O(h^3).$$
# The two agree up to $h^2$: the local error is $O(h^3)$ and the global error $O(h^2)$.
# More generally, $k_2 = f(t + \alpha h, y + \alpha h k_1)$ and $y_1 = y + h(b_1 k_1 + b_2 k_2)$ match
# the expansion exactly when $b_1 + b_2 = 1$ and $b_2 \alpha = \tfrac12$: $\alpha = \tfrac12, b = (0, 1)$
# is the midpoint method, $\alpha = 1, b = (\tfrac12, \tfrac12)$ is Heun's method.

# %% [markdown] slideshow={"slide_type": "notes"}
# Speaker notes (12 min). The Taylor argument is the whole theory in small: match the expansion to order
# $p$, get local error $O(h^{p+1})$ and global error $O(h^p)$; everything after this is bookkeeping of the
# same idea. The two-stage family (midpoint, Heun) follows from $b_1 + b_2 = 1$, $b_2\alpha = \tfrac12$; the
# measured local slopes are 2 and 3. Common mistake: confusing local and global order (Euler: local
# $O(h^2)$, global $O(h)$). Ask the room: why does a local error $O(h^3)$ give a global error of only
# $O(h^2)$?

# %% [markdown]
# Our test problem throughout: a slowly decaying rotation $\dot y = A y$, whose exact solution is the
# matrix exponential $y(t) = e^{At} y_0$.

# %%
A = torch.tensor([[-0.1, -1.0], [1.0, -0.1]], **F64)
y0 = torch.tensor([1.0, 0.0], **F64)


def linear(t, y):
    """dy/dt = A y for a state [..., 2]."""
    return y @ A.T


def exact(t):
    """The exact solution e^{At} y0."""
    return torch.linalg.matrix_exp(A * t) @ y0


def fit_order(step_sizes, errors):
    """Slope of the least-squares line through (log h, log error)."""
    return float(np.polyfit(np.log(step_sizes), np.log(errors), 1)[0])


# %% [markdown]
# One step of each method from the exact $y_0$, for shrinking $h$: the local error of Euler should
# fall like $h^2$, that of the midpoint method like $h^3$.

# %%
def euler_step(f, t, y, h):
    return y + h * f(t, y)


def midpoint_step(f, t, y, h):
    k1 = f(t, y)
    k2 = f(t + h / 2, y + h / 2 * k1)
    return y + h * k2


hs = [0.2, 0.1, 0.05, 0.025]
local_euler = [float((euler_step(linear, 0.0, y0, h) - exact(h)).norm()) for h in hs]
local_mid = [float((midpoint_step(linear, 0.0, y0, h) - exact(h)).norm()) for h in hs]
claim("slope of Euler's local error", measured=fit_order(hs, local_euler), expected=2, tol=0.1, fmt=".3f")
claim("slope of the midpoint method's local error", measured=fit_order(hs, local_mid), expected=3, tol=0.1, fmt=".3f")


# %% [markdown] slideshow={"slide_type": "slide"}
# ## 2. The classical Runge-Kutta method (RK4)
# Simpson's rule integrates cubics exactly:
# $\int_t^{t+h} g \approx \tfrac h6\,\big(g(t) + 4 g(t+\tfrac h2) + g(t+h)\big)$.
# RK4 applies it to $g(s) = f(s, y(s))$, estimating the unknown states along the way: the midpoint
# value twice (first from $k_1$, then improved from $k_2$) and the end value from $k_3$:
# $$\begin{aligned}
# k_1 &= f(t, y), & k_2 &= f\big(t + \tfrac h2, y + \tfrac h2 k_1\big),\\
# k_3 &= f\big(t + \tfrac h2, y + \tfrac h2 k_2\big), & k_4 &= f(t + h, y + h k_3),\\
# y_1 &= y + \tfrac h6 (k_1 + 2k_2 + 2k_3 + k_4).
# \end{aligned}$$
# Matching the Taylor expansion up to $h^4$ takes eight conditions on the coefficients (section 3
# checks them all); RK4 meets them, so its local error is $O(h^5)$ and its global error $O(h^4)$,
# for four evaluations of $f$ per step.

# %% [markdown] slideshow={"slide_type": "notes"}
# Speaker notes (8 min). RK4 is Simpson's rule with estimated stage values: one step on $y' = \cos t$ *is*
# Simpson, and the local slope is 5. Common mistake: the stage times $t$ instead of $t + c_i h$, invisible
# on autonomous problems and wrong on time-dependent ones (try it on $y' = \cos t$). Ask the room: why does
# RK4 estimate the midpoint value twice?

# %%
def rk4_classic_step(f, t, y, h):
    k1 = f(t, y)
    k2 = f(t + h / 2, y + h / 2 * k1)
    k3 = f(t + h / 2, y + h / 2 * k2)
    k4 = f(t + h, y + h * k3)
    return y + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)


# when f does not depend on y, one RK4 step is exactly Simpson's rule
quad = rk4_classic_step(lambda t, y: torch.cos(torch.as_tensor(t, **F64)), 0.3, torch.zeros((), **F64), 0.5)
simpson = 0.5 / 6 * (math.cos(0.3) + 4 * math.cos(0.55) + math.cos(0.8))
local_rk4 = [float((rk4_classic_step(linear, 0.0, y0, h) - exact(h)).norm()) for h in hs]
print(f"RK4 on y' = cos t: {quad.item():.15f}, Simpson: {simpson:.15f}")
claim("|one RK4 step - Simpson's rule| on y' = cos t", measured=abs(quad.item() - simpson), at_most=1e-15)
claim("slope of RK4's local error", measured=fit_order(hs, local_rk4), expected=5, tol=0.1, fmt=".3f")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 3. Butcher tableaux
# Every explicit Runge-Kutta method with $s$ stages has the same shape:
# $$k_i = f\Big(t + c_i h,\; y + h \sum_{j<i} a_{ij} k_j\Big), \quad i = 1, \dots, s, \qquad
# y_1 = y + h \sum_i b_i k_i ,$$
# so a method *is* its coefficients, written as a Butcher tableau
# $\begin{array}{c|c} c & A \\ \hline & b^\top \end{array}$ with $A$ strictly lower triangular.
# `nodecourse.solvers.TABLEAUX` holds every method the course uses. Each is a `ButcherTableau` with
# the fields `c`, `a` (row $i$ has $i$ entries), `b`, the order, and for adaptive methods a second
# set of weights `b_embedded` and the `error_order` used by the step-size controller (section 5). `fsal`
# ("first same as last") says whether the last stage is $f(t+h, y_1)$, the next step's $k_1$.

# %% [markdown] slideshow={"slide_type": "notes"}
# Speaker notes (12 min). A method *is* its tableau: let learners read `TABLEAUX["rk4"]` and find the 3/8
# rule, not the classical RK4; both are fourth order and differ only on nonlinear problems (section 4 shows
# one step on Van der Pol). The eight order conditions up to order 4 are checked exactly on every tableau,
# with `error_order = min(p, p_hat) + 1`, and the generic `rk_step` matches `odeint` to 1e-15. Common
# mistake: thinking `b_embedded` is always the lower-order solution; in RKF45 the propagated `b` is fourth
# order and `b_embedded` fifth, and what matters is their difference. Ask the room: how many stages does a
# fourth-order method need at least?

# %%
print(f"{'method':10s} {'stages':>6s} {'order':>5s} {'adaptive':>8s} {'error_order':>11s} {'fsal':>5s}")
for name, tab in TABLEAUX.items():
    print(f"{name:10s} {tab.n_stages:6d} {tab.order:5d} {str(tab.adaptive):>8s} {str(tab.error_order):>11s} "
          f"{str(tab.fsal):>5s}")


def show_tableau(tab):
    width = max(len(str(x)) for row in [tab.c, tab.b, *tab.a] for x in row) + 1
    for ci, row in zip(tab.c, tab.a):
        print(f"{str(ci):>{width}} |" + "".join(f"{str(a):>{width}}" for a in row))
    print("-" * (width + 2 + width * tab.n_stages))
    print(" " * width + " |" + "".join(f"{str(b):>{width}}" for b in tab.b))


print("\nmidpoint:")
show_tableau(TABLEAUX["midpoint"])
print("\nrk4 (Kutta's 3/8 rule):")
show_tableau(TABLEAUX["rk4"])


# %% [markdown]
# The package's `rk4` is Kutta's *3/8 rule*, another fourth-order method (torchdiffeq's `rk4` is the
# same one), not the classical RK4 of section 2; the order conditions below say why both are fourth order.
#
# **Order conditions.** Expanding the stages as in section 1 shows that a method has order $p$
# when its coefficients satisfy (with $c_i = \sum_j a_{ij}$ and sums over all stages)
#
# | order | conditions |
# |---|---|
# | 1 | $\sum_i b_i = 1$ |
# | 2 | $\sum_i b_i c_i = \tfrac12$ |
# | 3 | $\sum_i b_i c_i^2 = \tfrac13$, $\sum_{ij} b_i a_{ij} c_j = \tfrac16$ |
# | 4 | $\sum_i b_i c_i^3 = \tfrac14$, $\sum_{ij} b_i c_i a_{ij} c_j = \tfrac18$, $\sum_{ij} b_i a_{ij} c_j^2 = \tfrac1{12}$, $\sum_{ijk} b_i a_{ij} a_{jk} c_k = \tfrac1{24}$ |
#
# The tableaux hold fractions, so we can check these conditions in exact arithmetic, for the propagated
# weights `b` and for the embedded ones, `b_embedded`. (`dopri8`'s published coefficients meet them to about
# $10^{-17}$, not exactly, hence a tolerance.)

# %%
def satisfied_order(tab, b, tol=Fraction(1, 10**15)):
    """The highest p <= 4 such that the weights b satisfy every order condition up to p (exact, to tol)."""
    s, c = tab.n_stages, list(tab.c)
    a = [[tab.a[i][j] if j < i else Fraction(0) for j in range(s)] for i in range(s)]
    if not all(abs(sum(a[i]) - c[i]) < tol for i in range(s)):
        raise ValueError("the row sums of A must equal c")

    def dot(u, v):
        return sum(x * y for x, y in zip(u, v))

    def times_a(v):
        return [dot(a[i], v) for i in range(s)]

    ac = times_a(c)
    conditions = {
        1: [(sum(b), Fraction(1))],
        2: [(dot(b, c), Fraction(1, 2))],
        3: [(dot(b, [x**2 for x in c]), Fraction(1, 3)), (dot(b, ac), Fraction(1, 6))],
        4: [(dot(b, [x**3 for x in c]), Fraction(1, 4)), (dot(b, [x * y for x, y in zip(c, ac)]), Fraction(1, 8)),
            (dot(b, times_a([x**2 for x in c])), Fraction(1, 12)), (dot(b, times_a(ac)), Fraction(1, 24))],
    }
    p = 0
    while p < 4 and all(abs(value - target) < tol for value, target in conditions[p + 1]):
        p += 1
    return p


for name, tab in TABLEAUX.items():
    p = satisfied_order(tab, tab.b)
    line, holds = f"{name}, order {tab.order}: b meets the conditions up to order {p}", p == min(tab.order, 4)
    if tab.adaptive:  # the controller's exponent error_order (section 5) = min(p, p_embedded) + 1, up to order 4
        p_low = satisfied_order(tab, tab.b_embedded)
        line += f", b_embedded up to order {p_low}"
        holds = holds and min(tab.error_order - 1, 4) == min(p, p_low)
    check(line, holds)


# %% [markdown]
# Every tableau has the order it claims. (Checking order 5 takes nine more conditions; we measure it
# numerically instead.) Note the embedded weights: for `bosh3` and `fehlberg2` they are one order lower
# than `b`, for `dopri5` too, but for `rkf45` `b_embedded` are Fehlberg's *fifth*-order weights while the
# propagated `b` is fourth order. Either way `error_order` $= \min(p, \hat p) + 1$, which the cell checks as
# far as order 4 can tell.
#
# **One step from any tableau.** The code is the formula: loop over the stages, then combine.
# We also return the difference of the two solutions for adaptive tableaux (section 5 needs it).

# %%
def rk_step(f, t, y, h, tab):
    """One explicit RK step of the tableau; returns (y1, err) with err = h sum (b - b_embedded) k, or None."""
    k = []
    for i in range(tab.n_stages):
        y_i = y + h * sum(float(a_ij) * k_j for a_ij, k_j in zip(tab.a[i], k))
        k.append(f(t + float(tab.c[i]) * h, y_i))
    y1 = y + h * sum(float(b_i) * k_i for b_i, k_i in zip(tab.b, k))
    if tab.b_embedded is None:
        return y1, None
    return y1, h * sum(float(b_i - bl_i) * k_i for b_i, bl_i, k_i in zip(tab.b, tab.b_embedded, k))


def solve_fixed(f, y_start, t_end, n_steps, tab):
    """n_steps equal steps from t = 0 to t_end."""
    h, y = t_end / n_steps, y_start
    for i in range(n_steps):
        y, _ = rk_step(f, i * h, y, h, tab)
    return y


# %% [markdown]
# Checked against `nodecourse.odeint` with each fixed-step method, on a forced (time-dependent)
# version of the rotation so that the stage times $t + c_i h$ matter too:

# %%
def forced(t, y):
    t = torch.as_tensor(t, **F64)
    return linear(t, y) + torch.stack([torch.sin(3 * t), torch.cos(t)])


for name in ("euler", "midpoint", "heun2", "rk4"):
    ours = solve_fixed(forced, y0, 3.0, 30, TABLEAUX[name])
    theirs = odeint(forced, y0, torch.tensor([0.0, 3.0], **F64), method=name, options={"step_size": 0.1})[-1]
    claim(f"{name}: largest difference, our rk_step vs odeint", measured=(ours - theirs).abs().max(), at_most=1e-12)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 4. Measured convergence orders
# Now the global error at $T = 2$ for $N = 8, 16, \dots, 128$ steps of size $h = T/N$, against the
# exact $e^{AT} y_0$. On a log-log plot error $\approx C h^p$ is a line of slope $p$.

# %% [markdown] slideshow={"slide_type": "notes"}
# Speaker notes (8 min). Global error on $\dot y = Ay$ against the matrix exponential: slopes 1, 2, 2, 4, 4,
# and methods of the same order coincide on linear problems (both compute the truncated exponential). Common
# mistakes: fitting an order from the two end points instead of a least-squares line, and fitting outside
# the asymptotic regime (steps too large) or in the round-off regime (RK4 with tiny steps in float32), where
# the slope bends. Ask the room: why do midpoint and Heun give identical errors here but not on Van der Pol?

# %%
T = 2.0
Ns = [8, 16, 32, 64, 128]
step_sizes = [T / n for n in Ns]
t_span = torch.tensor([0.0, T], **F64)
y_T = exact(T)
errors = {}
for name in ("euler", "midpoint", "rk4", "heun2"):
    errors[name] = [float((odeint(linear, y0, t_span, method=name, options={"step_size": h})[-1] - y_T).norm())
                    for h in step_sizes]


def classic_rk4_solve(f, y_start, t_end, n_steps):
    h, y = t_end / n_steps, y_start
    for i in range(n_steps):
        y = rk4_classic_step(f, i * h, y, h)
    return y


errors["rk4 classic (ours)"] = [float((classic_rk4_solve(linear, y0, T, n) - y_T).norm()) for n in Ns]
theory = {"euler": 1, "midpoint": 2, "rk4": 4, "heun2": 2, "rk4 classic (ours)": 4}
for name, errs in errors.items():
    claim(f"{name}: measured global order", measured=fit_order(step_sizes, errs), expected=theory[name], tol=0.1,
          fmt=".3f")

# %%
fig, ax = plt.subplots(figsize=(6, 4))
convergence_plot(ax, step_sizes, [errors[n] for n in errors], orders=[1, 2, 4], labels=list(errors))
ax.set_title("global error at T = 2 on dy/dt = Ay")
ax.xaxis.set_minor_formatter(plt.NullFormatter())
ax.legend(loc="lower right", fontsize=8)
plt.show()


# %% [markdown]
# Two lines coincide in pairs. On a *linear* problem every two-stage second-order method computes
# $y_1 = (I + hA + \tfrac{h^2}{2}A^2)\,y$, and every four-stage fourth-order one
# $(I + hA + \dots + \tfrac{h^4}{24}A^4)\,y$: the truncated exponential. Midpoint and Heun, and the
# classical RK4 and the 3/8 rule, differ only on nonlinear problems (that is why the order conditions
# of section 3 have several terms per order).

# %%
def largest_relative_gap(a, b):
    return float(np.max(np.abs(np.array(a) - np.array(b)) / np.abs(np.array(b))))


claim("linear problem: midpoint vs heun2 errors, largest relative gap",
      measured=largest_relative_gap(errors["midpoint"], errors["heun2"]), at_most=1e-9)
claim("linear problem: 3/8 rule vs classical RK4 errors, largest relative gap",
      measured=largest_relative_gap(errors["rk4"], errors["rk4 classic (ours)"]), at_most=1e-6)


def vdp1(t, y):  # Van der Pol with mu = 1: nonlinear
    return torch.stack([y[1], (1 - y[0] ** 2) * y[1] - y[0]])


w0 = torch.tensor([1.0, 1.0], **F64)
gap_mid = (midpoint_step(vdp1, 0.0, w0, 0.1) - solve_fixed(vdp1, w0, 0.1, 1, TABLEAUX["heun2"])).norm().item()
gap_rk4 = (rk4_classic_step(vdp1, 0.0, w0, 0.1) - solve_fixed(vdp1, w0, 0.1, 1, TABLEAUX["rk4"])).norm().item()
claim("one step on Van der Pol: |midpoint - heun2|", measured=gap_mid, at_least=1e-6)
claim("one step on Van der Pol: |classical RK4 - 3/8 rule|", measured=gap_rk4, at_least=1e-9)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 5. Embedded pairs: an error estimate for free
# A fixed step size is a guess: too large and the answer is wrong, too small and we waste work.
# To choose $h$ we need to know the error of each step. An **embedded pair** gets an estimate at
# almost no cost: a second set of weights $\hat b$ combines the *same* stages into a second solution
# $\hat y_1$ of a different order. Their difference
# $$\mathrm{err} = y_1 - \hat y_1 = h \sum_i (b_i - \hat b_i)\, k_i$$
# is dominated by the error of the lower-order one. Fehlberg's RKF45 propagates a fourth-order
# solution and embeds a fifth-order one, so `err` estimates the error of the solution it keeps.
# Dormand-Prince (`dopri5`) does the opposite: it propagates the fifth-order solution ("local
# extrapolation"), so its estimate is that of the fourth-order one, a safe overestimate.
#
# Let us check both claims on single steps from the exact $y_0$:

# %% [markdown] slideshow={"slide_type": "notes"}
# Speaker notes (12 min, with the error-control sub-slide). The error estimate is the difference of two
# solutions built from the same stages: RKF45's estimate equals its error, dopri5's overestimates it about
# 10x (local extrapolation). Then the scale, the RMS norm, the controller, accept or reject. Common mistakes
# in the controller: shrinking the next step after an accepted one, or the exponent $-1/p$ instead of
# $-1/$`error_order`. Ask the room: why is an overestimated error the safe side?

# %%
hs5 = [0.8, 0.4, 0.2, 0.1, 0.05]
true_err, est_err = [], []
for h in hs5:
    y1, err = rk_step(linear, 0.0, y0, h, TABLEAUX["rkf45"])
    true_err.append(float((y1 - exact(h)).norm()))
    est_err.append(float(err.norm()))
ratio_rkf = np.array(est_err) / np.array(true_err)
y1_dp, err_dp = rk_step(linear, 0.0, y0, 0.2, TABLEAUX["dopri5"])
ratio_dp = float(err_dp.norm() / (y1_dp - exact(0.2)).norm())
print("RKF45 estimate / true error:", np.round(ratio_rkf, 3))
claim("RKF45: slope of the true local error", measured=fit_order(hs5, true_err), expected=5, tol=0.15, fmt=".2f")
claim("RKF45: slope of the estimated local error", measured=fit_order(hs5, est_err), expected=5, tol=0.15, fmt=".2f")
claim("RKF45, h <= 0.2: the estimate is the error, |estimate / true - 1| at most",
      measured=np.abs(ratio_rkf[2:] - 1).max(), at_most=0.1)
claim("dopri5 at h = 0.2: estimate / true error of the solution it keeps", measured=ratio_dp, at_least=3, fmt=".1f")

# %%
fig, ax = plt.subplots(figsize=(5, 3.5))
ax.loglog(hs5, true_err, "o-", label="true local error of y1")
ax.loglog(hs5, est_err, "x--", label="estimate |y1 - y1_low|")
ax.set(xlabel="step size h", ylabel="local error", title="RKF45: the embedded estimate tracks the error")
ax.xaxis.set_minor_formatter(plt.NullFormatter())
ax.legend()
plt.show()


# %% [markdown] slideshow={"slide_type": "subslide"}
# ### Error control
# The estimate becomes an accept/reject decision and a new step size:
#
# 1. **Scale.** Each component gets its own allowance,
#    $\mathrm{scale}_i = \mathrm{atol} + \mathrm{rtol} \cdot \max(|y_{0,i}|, |y_{1,i}|)$: relative
#    accuracy for large components, absolute accuracy near zero.
# 2. **Norm.** The scaled error is reduced to one number with the RMS norm,
#    $r = \sqrt{\tfrac1N \sum_i (\mathrm{err}_i / \mathrm{scale}_i)^2}$. The step is **accepted** when
#    $r \le 1$ and **rejected** (retried with a smaller $h$) otherwise.
# 3. **Controller.** The local error behaves like $C h^q$ with $q$ = `error_order`
#    $= \min(p, \hat p) + 1$, so the step that would give exactly $r = 1$ is $h\, r^{-1/q}$. We aim a bit
#    lower and limit the change:
#    $$h_\text{new} = h \cdot \mathrm{clamp}\big(\text{safety} \cdot r^{-1/q},\ \text{dfactor},\ \text{ifactor}\big),$$
#    with `nodecourse`'s (and torchdiffeq's) defaults safety $= 0.9$, dfactor $= 0.2$, ifactor $= 10$.
#    After an accepted step the factor is at least 1: a step that just succeeded is not shrunk.

# %%
def rms_norm(x):
    return x.pow(2).mean().sqrt()


def controller(h, r, q, safety=0.9, ifactor=10.0, dfactor=0.2):
    """The next step size from the error ratio r of a step of size h."""
    factor = ifactor if r == 0 else safety * r ** (-1.0 / q)
    low = 1.0 if r <= 1 else dfactor
    return h * min(max(factor, low), ifactor)


r_grid = np.logspace(-7, 4, 200)
factors = np.array([controller(1.0, r, 5) for r in r_grid])
check("rejected with r = 32: the step shrinks by 0.9 * 32^(-1/5) = 0.45", math.isclose(controller(0.1, 32.0, 5), 0.045))
check("growth is capped at ifactor = 10", math.isclose(controller(0.1, 1e-9, 5), 1.0))
check("shrinking is capped at dfactor = 0.2", math.isclose(controller(0.1, 1e9, 5), 0.02))
check("accepted with r = 0.9: the step is not shrunk", controller(0.1, 0.9, 5) == 0.1)

fig, ax = plt.subplots(figsize=(5, 3.2))
ax.loglog(r_grid, factors, label="h_new / h (q = 5)")
ax.loglog(r_grid, 0.9 * r_grid ** (-0.2), ":", color="0.5", label="safety * r^(-1/q)")
ax.axvline(1.0, color="0.7", lw=0.8)
ax.set(xlabel="error ratio r", ylabel="step-size factor", title="accept (r <= 1) | reject (r > 1)")
ax.legend()
plt.show()


# %% [markdown] slideshow={"slide_type": "slide"}
# ## 6. An adaptive RKF45 from scratch
# Put together: try a step, estimate its error, accept or reject, pick the next step; shorten the
# last step so that it lands exactly on $t_1$.

# %% [markdown] slideshow={"slide_type": "notes"}
# Speaker notes (12 min). The 20-line solver takes the same steps, with the same accuracy, as
# `nodecourse.solve`: for `rkf45` both shorten the last step to land on $t_1$ (`lands_on_last_time`). Open
# `nodecourse/solvers/textbook.py`, the package's whole adaptive solve in one file, which takes the same
# trial steps. Stress that the tolerance bounds the error *per step*, not the final error: on the rotation
# over [0, 10] the final error is about 30x the tolerance, yet within the sum of the per-step budgets, and
# this is the most common misunderstanding of `rtol`/`atol`. End with the step-size trace on Van der Pol
# ($\mu = 5$) and ask the room: to get a final error of 1e-6, what tolerance do you ask for?

# %%
def rkf45(f, y_start, t0, t1, rtol, atol, first_step):
    """Adaptive RKF45 on [t0, t1]; returns y(t1), the accepted times and states, the step sizes
    and the number of rejected steps."""
    tab = TABLEAUX["rkf45"]
    t, y, h = t0, y_start, first_step
    times, path, steps, n_rejected = [t0], [y_start], [], 0
    while t < t1:
        last = h >= t1 - t
        h_try = t1 - t if last else h
        y1, err = rk_step(f, t, y, h_try, tab)
        r = rms_norm(err / (atol + rtol * torch.maximum(y.abs(), y1.abs()))).item()
        if r <= 1:  # accept
            t, y = (t1 if last else t + h_try), y1
            times.append(t)
            path.append(y)
            steps.append(h_try)
        else:
            n_rejected += 1
        h = controller(h_try, r, tab.error_order)
    return y, np.array(times), torch.stack(path), np.array(steps), n_rejected


# %% [markdown]
# **Check against the package.** `nodecourse.solve(..., method="rkf45")` runs the same algorithm
# (and returns statistics, section 7). We give both the same first step and the same tolerance on the
# rotation over $[0, 10]$, where the exact answer is known. For `rkf45` the package, like ours, shortens
# its last step to land exactly on $t_1$ (`TABLEAUX["rkf45"].lands_on_last_time`), so both take the same
# steps; we allow a step or two, where rounding on another device could tip one accept/reject decision.
# (Methods whose interpolant is as accurate as the method, such as `dopri5`, instead step past $t_1$
# and evaluate an interpolating polynomial there, the "dense output".)
#
# What does "meeting the tolerance" mean? The controller bounds the error made in *each step* (the
# local error), not the error at the end. So we check two things. (1) Every accepted step's true local
# error, $y_{n+1} - e^{A h_n} y_n$, scaled and normed as the controller does, is about 1 or less.
# (2) The final error is at most the sum of what the steps were allowed: this flow never expands
# distances ($\|e^{At}\| \le 1$), so local errors add up but do not grow, and a scaled RMS norm
# $\le 1$ allows an error of Euclidean length up to $\sqrt{N}\,(\mathrm{atol} + \mathrm{rtol} \max|y|)$
# per step (here $N = 2$, $\max|y| \le 1$).

# %%
tol = 1e-6
T_lin = 10.0
y_ours, times_lin, path_lin, steps_ours, rej_ours = rkf45(linear, y0, 0.0, T_lin, tol, tol, first_step=0.01)
acc_ours = len(steps_ours)
package = solve(linear, y0, torch.tensor([0.0, T_lin], **F64), rtol=tol, atol=tol, method="rkf45",
                options={"first_step": 0.01})
local_ratios = [
    rms_norm((path_lin[n + 1] - torch.linalg.matrix_exp(A * h) @ path_lin[n])
             / (tol + tol * torch.maximum(path_lin[n].abs(), path_lin[n + 1].abs()))).item()
    for n, h in enumerate(steps_ours)
]
y_exact = exact(T_lin)
err_ours = (y_ours - y_exact).norm().item()
err_pkg = (package.ys[-1] - y_exact).norm().item()
budget_ours = acc_ours * math.sqrt(2) * (tol + tol * 1.0)
budget_pkg = package.stats.n_accepted * math.sqrt(2) * (tol + tol * 1.0)
print(f"ours:    {acc_ours} accepted, {rej_ours} rejected; final error {err_ours:.1e}")
print(f"package: {package.stats.n_accepted} accepted, {package.stats.n_rejected} rejected; final error {err_pkg:.1e}")
claim("(1) largest scaled true local error of our steps", measured=max(local_ratios), at_most=1.2, fmt=".2f")
claim("(2) our final error, at most the sum of the steps' allowances", measured=err_ours, at_most=budget_ours)
claim("(2) the package's final error, at most the sum of its allowances", measured=err_pkg, at_most=budget_pkg)
claim("the same accuracy: our final error / the package's", measured=err_ours / err_pkg, at_least=0.5, at_most=2)
claim("the same cost: |our attempted steps - the package's|", measured=abs(acc_ours + rej_ours - package.stats.n_steps),
      at_most=2)

# %% [markdown]
# **The whole of one solve, as the package runs it, is in one file:** `nodecourse/solvers/textbook.py`.
# The package's fast solver spreads it over several modules; this one reads top to bottom in the order
# of this section: the tableau, the first step size, the stage loop, the error ratio, accept/reject and
# the controller, then the dense output at the output times. Its `textbook_solve` returns the outputs and
# a log of every trial step, and the package is tested to take exactly the same steps.

# %%
from nodecourse.solvers.textbook import textbook_solve

t_book = torch.linspace(0.0, T_lin, 5, **F64)
ys_book, log = textbook_solve(linear, y0, t_book, rtol=tol, atol=tol, method="rkf45")
print(f"{'t':>7s} {'dt':>9s} {'ratio r':>9s}  accepted")
for step in log[:5]:
    print(f"{step.t:7.4f} {step.dt:9.2e} {step.error_ratio:9.3g}  {step.accepted}")
n_package = solve(linear, y0, t_book, rtol=tol, atol=tol, method="rkf45").stats.n_steps
check("textbook_solve and nodecourse.solve take the same number of trial steps", len(log) == n_package,
      detail=f"{len(log)} and {n_package}")


# %% [markdown]
# The final error is many times the tolerance: a tolerance is a budget *per step*. To halve the
# final error, tighten the tolerance, which also shortens the steps and adds more of them.
#
# **Where the steps go.** The Van der Pol oscillator $\ddot x = \mu(1 - x^2)\dot x - x$ with $\mu = 5$
# alternates slow drifts with fast jumps. An adaptive solver should take small steps in the jumps
# and long ones in the drifts.

# %%
def van_der_pol(mu):
    def field(t, y):
        x, v = y[..., 0], y[..., 1]
        return torch.stack([v, mu * (1 - x**2) * v - x], dim=-1)
    return field


z0 = torch.tensor([2.0, 0.0], **F64)
vdp5 = van_der_pol(5.0)
_, times, states, steps, n_rej = rkf45(vdp5, z0, 0.0, 20.0, 1e-6, 1e-6, first_step=1e-3)
n_acc = len(steps)
speed = vdp5(0.0, states[:-1]).norm(dim=-1).cpu().numpy()  # |dy/dt| at the start of each step
fast_phase = speed > np.quantile(speed, 0.9)
slow_phase = speed < np.quantile(speed, 0.5)
h_fast, h_slow = np.median(steps[fast_phase]), np.median(steps[slow_phase])
settled = steps[10:]  # after the first steps have grown from the cautious first_step
print(f"{n_acc} accepted, {n_rej} rejected steps; after the start, step sizes from {settled.min():.3f} "
      f"to {settled.max():.3f}")
print(f"median step in the fastest 10% of the path {h_fast:.3f}, in the slowest half {h_slow:.3f}")
claim("median step: slowest half / fastest 10% of the path", measured=h_slow / h_fast, at_least=3, fmt=".1f")
claim("largest / smallest step after the start", measured=settled.max() / settled.min(), at_least=5, fmt=".1f")

# %%
fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(8, 5), sharex=True)
ax1.plot(times, states[:, 0].cpu(), ".-", ms=3)
ax1.set(ylabel="x(t)", title="Van der Pol (mu = 5): one dot per accepted RKF45 step, rtol = atol = 1e-6")
ax2.semilogy(times[1:], steps, ".-", ms=3, color="C1")
ax2.set(xlabel="t", ylabel="step size h")
plt.show()


# %% [markdown]
# The steps shrink almost tenfold in the fast jumps of $x(t)$ and grow again on the slow
# branches: the computation adapts to the dynamics, which a fixed-step method (a ResNet) cannot do.
#
# ## 7. NFE: the unit of cost
# In a Neural ODE, $f$ is a neural network, and one evaluation of it is one forward pass. The number of
# function evaluations (NFE) is therefore the cost of a solve, on any hardware. `nodecourse.solve`
# returns it with the solution: `stats.nfe`, `stats.n_steps` (attempted), `stats.n_accepted` and
# `stats.n_rejected`. We count the calls ourselves to see that the statistic is what it says.

# %% [markdown] slideshow={"slide_type": "notes"}
# Speaker notes (10 min). `stats` (nfe, n_steps, n_accepted, n_rejected) is checked by counting the calls.
# NFE is the cost that transfers to Neural ODEs, since each evaluation is a forward pass. The work-precision
# diagram is the tool for choosing a solver, and the winner changes with the accuracy asked for: bosh3 at
# 1e-2, dopri5 at 1e-5. Ask the room: which accuracy does training usually need, and so which solver?

# %%
class Counted:
    """Wrap a vector field and count its calls."""

    def __init__(self, f):
        self.f, self.calls = f, 0

    def __call__(self, t, y):
        self.calls += 1
        return self.f(t, y)


vdp2 = van_der_pol(2.0)
T_wp = 10.0
t_wp = torch.tensor([0.0, T_wp], **F64)
for name in ("bosh3", "rkf45", "dopri5"):
    counted = Counted(vdp2)
    stats = solve(counted, z0, t_wp, rtol=1e-6, atol=1e-6, method=name).stats
    tab = TABLEAUX[name]
    per_step = tab.n_stages - int(tab.fsal)
    check(f"{name}: stats.nfe is the number of calls, steps = accepted + rejected",
          stats.nfe == counted.calls and stats.n_steps == stats.n_accepted + stats.n_rejected,
          detail=f"nfe {stats.nfe}, counted {counted.calls}; {stats.n_steps} = {stats.n_accepted} + {stats.n_rejected}")
    # besides the steps, the start: f(t0, y0) and the first-step guess
    claim(f"{name}: nfe - {per_step} x steps", measured=stats.nfe - per_step * stats.n_steps, at_least=0, at_most=2)

# %% [markdown]
# RKF45 has six stages, all new each step. Dormand-Prince has seven, but its last stage is
# $f(t_1, y_1)$, the first stage of the next step (FSAL), so it also pays six per step, and Bogacki-Shampine
# pays three for four stages.
#
# **Work-precision diagram.** The right comparison between solvers is accuracy against cost. For each
# adaptive method we sweep the tolerance, for the fixed-step methods the number of steps, and plot
# the error at $T = 10$ (against a very tight reference solve) over the NFE.

# %%
reference = odeint(vdp2, z0, t_wp, rtol=1e-12, atol=1e-12)[-1]
tolerances = [10.0 ** -k for k in range(3, tightest + 1)]
runs = {}  # method -> list of (nfe, error)
for name in ("fehlberg2", "bosh3", "rkf45", "dopri5"):
    tols = [tol for tol in tolerances if name != "fehlberg2" or tol >= 1e-6]  # low order: too costly beyond
    runs[name] = []
    for tol in tols:
        sol = solve(vdp2, z0, t_wp, rtol=tol, atol=tol, method=name)
        runs[name].append((sol.stats.nfe, (sol.ys[-1] - reference).norm().item()))
for name in ("midpoint", "rk4"):
    runs[name] = []
    for n in [100 * 2**i for i in range(n_fixed)]:
        sol = solve(vdp2, z0, t_wp, method=name, options={"step_size": T_wp / n})
        runs[name].append((sol.stats.nfe, (sol.ys[-1] - reference).norm().item()))

fig, ax = plt.subplots(figsize=(6.5, 4.5))
for name, points in runs.items():
    nfe, err = zip(*points)
    ax.loglog(nfe, err, "o-" if TABLEAUX[name].adaptive else "s--", label=name)
ax.set(xlabel="NFE (cost)", ylabel="error at T = 10", title="work-precision: Van der Pol, mu = 2")
ax.legend()
plt.show()


# %% [markdown]
# **The solver is a hyperparameter.** Read the diagram at a fixed height: which method reaches that
# error with the fewest evaluations?

# %%
def cheapest(target):
    """The smallest NFE with which each method reached error <= target (methods that never did are left out)."""
    best = {}
    for name, points in runs.items():
        good = [nfe for nfe, err in points if err <= target]
        if good:
            best[name] = min(good)
    return dict(sorted(best.items(), key=lambda item: item[1]))


loose, tight = cheapest(1e-2), cheapest(1e-5)
print("NFE for error <= 1e-2:", loose)
print("NFE for error <= 1e-5:", tight)
check("error 1e-2: the third-order pair bosh3 is cheapest", next(iter(loose)) == "bosh3")
check("error 1e-5: a fifth-order pair is cheapest", next(iter(tight)) in ("dopri5", "rkf45"))
claim("error 1e-5: NFE of bosh3 / the cheapest", measured=tight["bosh3"] / min(tight.values()), at_least=1.5, fmt=".1f")
claim("error 1e-5: NFE of rk4 / dopri5", measured=tight["rk4"] / tight["dopri5"], at_least=1.5, fmt=".1f")

# %% [markdown]
# At the loose accuracy typical of training (1e-2), the cheap third-order `bosh3` wins; asking for
# 1e-5 the higher-order pairs win and the gap grows with the accuracy. Fixed-step methods pay for
# their fixed grid on the slow parts of the path. So the method and its tolerance are chosen like a
# learning rate: by what the task needs, measured in NFE.
#
# ## 8. A batch: one shared step or one step per sample
# A Neural ODE solves a whole batch $[B, D]$ at once. The usual way (torchdiffeq's, and `nodecourse`'s
# default) treats the batch as **one** big ODE: one time, one step size, and the RMS error norm taken
# over all $B \cdot D$ entries. Two consequences:
#
# - every sample takes the step the hardest sample needs (and is rejected when any sample fails);
# - one sample's error counts only $1/\sqrt{B}$ in the norm, so in a large batch a single hard sample
#   can drift further from its tolerance.
#
# The alternative is **one step size per sample**: every sample keeps its own $t_b$, $h_b$ and
# accept/reject decision, the vector field is still evaluated on the whole batch at once, samples
# that reach $t_1$ are masked out, and the solve returns when the mask of finished samples is full:
#
# ```
# t, h, active = 0, h0, all True
# while any(active):
#     h_try = where(active, min(h, t1 - t), 0)      # clip to land on t1; finished samples stand still
#     y_new, err = rk_step(f, t, y, h_try)           # f gets t of shape [B]
#     r = rms_norm(err / scale) per sample           # [B]
#     accept = r <= 1
#     h = controller(h_try, r)
#     move = accept & active:  t, y = t + h_try, y_new where move
#     active = active & not(move and the step reached t1)
# ```
#
# In `nodecourse` this is `options={"per_sample": True}`. Then `func` receives `t` of shape `[batch]`
# (one time per sample) and `stats.n_steps`, `stats.nfe`, ... are `[batch]` tensors. (The exercises
# build this loop from scratch.)
#
# A batch whose samples need very different steps: decay rates $k_b$ spread over two orders of
# magnitude, $\dot y_b = -k_b y_b$, with the exact solution $e^{-k_b t}$.

# %% [markdown] slideshow={"slide_type": "notes"}
# Speaker notes (7 min). Shared step (torchdiffeq's default and `nodecourse`'s): the whole batch is one ODE,
# the hardest sample sets the step, and the RMS norm over the batch dilutes one sample's error by
# $1/\sqrt{B}$. Per-sample steps give every sample exactly the solve it would get alone (checked), but the
# batched function is still called until the slowest sample finishes: the saving is in work per sample and
# in accuracy control, not in wall-clock time on a GPU unless finished samples are dropped. Common mistakes
# in the masked loop: letting finished samples move again (ignoring `active`), or leaving a sample's time a
# rounding error short of `t_end`, so that it takes a useless tiny step. Ask the room: when would you pay
# for per-sample steps?

# %%
rates = torch.logspace(0, 2, n_batch, **F64)  # 1 ... 100
seen_t_shapes = set()


def decay(t, y):
    seen_t_shapes.add(tuple(t.shape))
    return -rates[:, None] * y


yb0 = torch.ones(n_batch, 1, **F64)
T_b, tol_b = 5.0, 1e-6
t_b = torch.tensor([0.0, T_b], **F64)
exact_b = torch.exp(-rates * T_b)[:, None]
shared = solve(decay, yb0, t_b, rtol=tol_b, atol=tol_b, method="rkf45")
shapes_shared = set(seen_t_shapes)
seen_t_shapes.clear()
per_sample = solve(decay, yb0, t_b, rtol=tol_b, atol=tol_b, method="rkf45", options={"per_sample": True})
check("func gets one time for the batch when shared, one per sample otherwise",
      shapes_shared == {()} and seen_t_shapes == {(n_batch,)}, detail=f"{shapes_shared} and {seen_t_shapes}")

ratio_ps = ((per_sample.ys[-1] - exact_b).abs() / (tol_b + tol_b * exact_b.abs())).squeeze(1)
ratio_sh = ((shared.ys[-1] - exact_b).abs() / (tol_b + tol_b * exact_b.abs())).squeeze(1)
steps_ps = per_sample.stats.n_steps
print(f"shared step:  {shared.stats.n_steps} steps for every sample, worst error {ratio_sh.max():.1f} x tolerance "
      f"(at k = {rates[ratio_sh.argmax()].item():.0f})")
print(f"per sample:   {steps_ps.min().item()} ... {steps_ps.max().item()} steps, mean "
      f"{steps_ps.double().mean():.1f}, worst error {ratio_ps.max():.1f} x tolerance")
claim("per sample: every sample meets its tolerance, worst error / tolerance", measured=ratio_ps.max(), at_most=10)
claim("per sample: mean steps per sample / the shared step's steps", at_most=0.5,
      measured=steps_ps.double().mean() / shared.stats.n_steps)

# %% [markdown]
# Note where the shared step's worst error sits: at the hardest sample ($k = 100$), whose error weighs
# only $1/\sqrt{B}$ in the RMS norm over the batch. Per-sample mode takes exactly the steps each sample
# would take if it were solved on its own:

# %%
for b in (0, n_batch // 2, n_batch - 1):
    k_b = rates[b]
    alone = solve(lambda t, y: -k_b * y, yb0[b], t_b, rtol=tol_b, atol=tol_b, method="rkf45")
    gap = (alone.ys[-1] - per_sample.ys[-1][b]).abs().max().item()
    check(f"k = {k_b.item():.2f}: alone and in the batch, the same steps and the same answer",
          alone.stats.n_steps == steps_ps[b].item() and gap <= 1e-12,
          detail=f"{alone.stats.n_steps} and {steps_ps[b].item()} steps, answers {gap:.0e} apart")

# %%
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
ax1.semilogx(rates.cpu(), steps_ps.cpu(), "o", label="per-sample steps")
ax1.axhline(shared.stats.n_steps, color="C3", label="shared step (every sample)")
ax1.set(xlabel="decay rate k", ylabel="attempted steps", title="steps per sample")
ax1.legend()
ax2.loglog(rates.cpu(), ratio_ps.cpu(), "o", label="per sample")
ax2.loglog(rates.cpu(), ratio_sh.cpu(), "x", color="C3", label="shared step")
ax2.set(xlabel="decay rate k", ylabel="|error| / tolerance", title="error at T = 5")
ax2.legend()
plt.tight_layout()
plt.show()

# %% [markdown]
# What the work is: summed over the batch, the per-sample solve needs far fewer evaluations per
# sample. But the batched function is still called until the *slowest* sample is done (`stats.n_calls`),
# and in this implementation finished samples ride along in those calls (their step is zero). So
# per-sample steps pay off in accuracy control per sample and in work when finished samples are
# dropped from the batch; on a GPU the wall-clock time of the batch is set by its hardest sample.

# %%
work_ps = per_sample.stats.nfe.sum().item()
work_sh = shared.stats.nfe * n_batch
print(f"evaluations summed over samples: per sample {work_ps}, shared {work_sh}")
print(f"batched calls of func: per sample {per_sample.stats.n_calls}, shared {shared.stats.n_calls}")
claim("evaluations summed over samples, per sample / shared", measured=work_ps / work_sh, at_most=0.5, fmt=".2f")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 9. Where the time goes: the overhead factor
# On the small problems of a course, a solver spends much of its time not in the network but in its
# own bookkeeping: forming stage combinations, norms, step-size updates, each a small tensor operation
# launched from Python. The **overhead factor** makes this visible:
#
# $$\text{overhead} = \frac{\text{wall time of the solve}}{\text{NFE} \times \text{time of one bare call of } f}.$$
#
# It is 1.0 when the solve costs nothing beyond its function evaluations. We time the same solves
# with `nodecourse` and torchdiffeq in this process, on a 4-32-32-4 tanh MLP with a batch of 64. Times
# are your machine's (and depend on what else it is doing), so they are shown, not checked; the
# evaluation counts are checked. The optional appendix (notebook 12) goes further: per-sample batches
# against torchode, and a compiled step that removes most of the overhead.

# %% [markdown] slideshow={"slide_type": "notes"}
# Speaker notes (5 min). This section is about *where* time goes, not about winning: on course-sized
# problems every small tensor operation costs microseconds of Python dispatch, so the solver's bookkeeping
# can cost as much as the network. Fewer operations or one compiled graph per step are the two remedies (the
# appendix, notebook 12, shows the second); once the overhead factor is near 1, only fewer evaluations help.
# The times are your machine's, so the notebook shows them and checks only the evaluation counts. Ask the
# room: would a bigger network raise or lower the overhead factor?

# %%
import torchdiffeq

from nodecourse.benchmarking import Counted, Row, call_time, fill_ratios, median_time, table

torch.manual_seed(0)
mlp = torch.nn.Sequential(torch.nn.Linear(4, 32), torch.nn.Tanh(), torch.nn.Linear(32, 32), torch.nn.Tanh(),
                          torch.nn.Linear(32, 4)).to(DEV).requires_grad_(False)
field = lambda t, y: mlp(y)  # noqa: E731
y_mlp = torch.randn(64, 4, device=DEV)
t_mlp = torch.tensor([0.0, 5.0], device=DEV)
bare = call_time(field, t_mlp[0], y_mlp)
rows = []
with torch.no_grad():
    for method, kwargs in (("dopri5", {"rtol": 1e-6, "atol": 1e-6}), ("rk4", {"options": {"step_size": 0.05}})):
        for name, integrate in (("nodecourse", odeint), ("torchdiffeq", torchdiffeq.odeint)):
            counted = Counted(field)
            integrate(counted, y_mlp, t_mlp, method=method, **kwargs)
            seconds = median_time(lambda: integrate(field, y_mlp, t_mlp, method=method, **kwargs), repeats=n_timing)
            rows.append(Row(f"MLP {method}", name, seconds, counted.calls, overhead=seconds / (counted.calls * bare)))
fill_ratios(rows)
print(table(rows))
nfe = {(r.case, r.solver): r.nfe for r in rows}
check("dopri5: nodecourse and torchdiffeq take the very same steps",
      nfe["MLP dopri5", "nodecourse"] == nfe["MLP dopri5", "torchdiffeq"],
      detail=f"NFE {nfe['MLP dopri5', 'nodecourse']} and {nfe['MLP dopri5', 'torchdiffeq']}")
for r in rows:
    report(f"overhead factor, {r.case}, {r.solver}", r.overhead, why="a ratio of wall-clock times on this machine",
           fmt=".2f")

# %% [markdown]
# Both libraries take exactly the same dopri5 steps (same tableau, controller and error norm), so any
# difference in time is overhead. The time ratio `/tdq` compares with torchdiffeq on the same problem.
# Where the overhead factor is large, a faster solver pays off more than a faster network; where it is
# near 1, only fewer evaluations (a looser tolerance, a better method) can make the solve cheaper.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Recap
# - An explicit Runge-Kutta method is its Butcher tableau; one generic step function runs them all.
#   Order conditions (checked exactly) and measured slopes agree: Euler 1, midpoint/Heun 2, RK4 4.
# - An embedded pair gives an error estimate from the same stages. With the scale
#   $\mathrm{atol} + \mathrm{rtol}\max(|y_0|, |y_1|)$, the RMS norm and the controller
#   $h \cdot \mathrm{clamp}(0.9\, r^{-1/q}, 0.2, 10)$ the solver accepts, rejects and adapts its steps:
#   small in fast dynamics, large in slow ones.
# - Cost is counted in NFE. The cheapest solver depends on the accuracy you ask for: the solver and
#   its tolerance are hyperparameters.
# - A batch can share one step (set by its hardest sample, error norm over the whole batch) or keep one
#   step per sample with masking, which gives each sample exactly its own solve.
# - On small problems the solver's own overhead can cost as much as the network: measure it as the
#   overhead factor, time / (NFE x one call of f).
#
# ## Further reading
# - E. Hairer, S. P. Nørsett, G. Wanner. *Solving Ordinary Differential Equations I: Nonstiff Problems*,
#   2nd ed. Springer Series in Computational Mathematics 8, Springer, 1993. (Order conditions, Sec. II.2;
#   automatic step-size control, Sec. II.4.)
# - J. C. Butcher. *Numerical Methods for Ordinary Differential Equations*, 3rd ed. Wiley, 2016.
# - E. Fehlberg. *Low-order classical Runge-Kutta formulas with stepsize control and their application to
#   some heat transfer problems*. NASA Technical Report R-315, 1969.
# - J. R. Dormand, P. J. Prince. *A family of embedded Runge-Kutta formulae*. Journal of Computational and
#   Applied Mathematics 6(1):19-26, 1980.
# - P. Bogacki, L. F. Shampine. *A 3(2) pair of Runge-Kutta formulas*. Applied Mathematics Letters
#   2(4):321-325, 1989.
# - L. F. Shampine. *Some practical Runge-Kutta formulas*. Mathematics of Computation 46(173):135-150, 1986.
# - R. T. Q. Chen, Y. Rubanova, J. Bettencourt, D. Duvenaud. *Neural Ordinary Differential Equations*.
#   NeurIPS 2018. arXiv:1806.07366.
# - M. Lienen, S. Günnemann. *torchode: A Parallel ODE Solver for PyTorch*. The Symbiosis of Deep Learning
#   and Differential Equations workshop, NeurIPS 2022. arXiv:2210.12375. (Per-sample step sizes in a batch.)
# - P. Kidger. *On Neural Differential Equations*. PhD thesis, University of Oxford, 2022. arXiv:2202.02435.

# %% [markdown] slideshow={"slide_type": "notes"}
# Speaker notes (2 min). The solver and its tolerance are hyperparameters, chosen by the accuracy the task
# needs and measured in NFE. Ask the room: which solver and tolerance would you try first for a Neural ODE
# classifier?
