# %% [markdown] slideshow={"slide_type": "skip"}
# Colab links appear here once the course's home repository is set (`make home`, see CONTRIBUTING.md).

# %% [markdown] slideshow={"slide_type": "slide"}
# # 03 · ODE solvers: exercises (solutions)
#
# Seven exercises on the solvers of the lecture: a measured convergence order, a third-order method
# derived from the order conditions, then the pieces of a batched adaptive RKF45 that keeps one step
# size per sample and masks out the samples that are done; then a bug hunt in an adaptive solve and an
# open task on accuracy against cost.
# Exercises 1-5 ask you to implement a function, exercise 6 to find and repair a bug, exercise 7 is an
# open task with a measurable target. The checker below each one runs your answer on several labelled
# cases and tells you what passed. Hints come in stages: the first failure says which property failed,
# later failures nudge more specifically; the answer appears only if you ask for it with
# `ex03.show_answer(n)`. Until an exercise passes, the notebook goes on with the reference (and says so),
# so you can do them in any order.
#
# **Learning objectives**
# - measure a convergence order from errors at several step sizes;
# - derive a third-order Runge-Kutta method from the order conditions and measure its order;
# - implement the step-size controller and the masking of finished samples;
# - assemble them into a batched adaptive solver and check it against `nodecourse.solve`.
#
# **Estimated time:** 85 minutes.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Setup
# On Colab the first cell installs `nodecourse`; everywhere it picks the device, seeds the random
# generators and reads fast mode (`NODECOURSE_FAST=1` shrinks the experiments for the test suite).

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

# %%
import numpy as np

from fractions import Fraction

from nodecourse import odeint, solve
from nodecourse.exercises import ex03
from nodecourse.solvers import TABLEAUX, ButcherTableau

DEV = torch.device("cpu") if DEVICE.type == "mps" else DEVICE  # float64 is not available on MPS
F64 = {"dtype": torch.float64, "device": DEV}

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Hyperparameters
# The only cell the test suite changes.

# %%
n_batch = 8 if FAST else 32  # samples in the batched solve of exercise 5


# %% [markdown] slideshow={"slide_type": "slide"}
# ## Exercise 1: measure a convergence order
# If a method's global error behaves like $e(h) \approx C h^p$, then $\log e = \log C + p \log h$:
# a straight line of slope $p$ on a log-log plot. Write `convergence_order(step_sizes, errors)` that
# returns $p$ as a Python `float`: the slope of the **least-squares** line through all the points
# $(\log h_i, \log e_i)$, not just the slope between the first and the last point (measured errors
# are never exactly on a line). Inputs are 1-D (lists or tensors) of the same length, in any order.

# %%
def convergence_order(step_sizes, errors):
    """Least-squares slope of log(errors) against log(step_sizes), as a float."""
    ### BEGIN SOLUTION
    x = torch.as_tensor(step_sizes, dtype=torch.float64).log()
    y = torch.as_tensor(errors, dtype=torch.float64).log()
    x_centred = x - x.mean()
    return float((x_centred * (y - y.mean())).sum() / x_centred.pow(2).sum())
    ### END SOLUTION


convergence_order = ex03.check_convergence_order(convergence_order)

# %% [markdown]
# Use it on `nodecourse.odeint` with the fixed-step methods, on $\dot y = Ay$ (a slowly decaying
# rotation) whose exact solution is $e^{At} y_0$:

# %%
A = torch.tensor([[-0.1, -1.0], [1.0, -0.1]], **F64)
y0 = torch.tensor([1.0, 0.0], **F64)
T = 2.0
hs = [T / n for n in (8, 16, 32, 64, 128)]
y_T = torch.linalg.matrix_exp(A * T) @ y0
for method, theory in (("euler", 1), ("midpoint", 2), ("rk4", 4)):
    errs = [(odeint(lambda t, y: y @ A.T, y0, torch.tensor([0.0, T], **F64), method=method,
                    options={"step_size": h})[-1] - y_T).norm().item() for h in hs]
    p = convergence_order(hs, errs)
    print(f"{method:8s} order {p:.3f} (theory {theory})")
    assert abs(p - theory) < 0.1


# %% [markdown] slideshow={"slide_type": "slide"}
# ## Exercise 2: a third-order method from the order conditions
# Section 3 of the lecture checks the order conditions on tableaux that are given. Run them the other
# way: an explicit method with three stages has the nodes $c = (0, c_2, c_3)$, the stage weights
# $a_{21}, a_{31}, a_{32}$ and the weights $b_1, b_2, b_3$. Choose the nodes, and the conditions decide
# the rest. Write `third_order_tableau(c2, c3)` that returns the method of order 3 with these nodes.
# What it must do (the checker tests each point):
#
# - it returns a `ButcherTableau(name, c=..., a=..., b=..., order=3)` (from `nodecourse.solvers`; row
#   $i$ of `a` holds its $i$ weights) whose nodes are $(0, c_2, c_3)$ and whose rows of $a$ each sum to
#   their node, as the lecture's table of conditions assumes;
# - its weights meet all four order conditions of orders 1, 2 and 3 in the lecture's table;
# - it works for any nodes that determine such a method, also with $c_3 < c_2$, given as `Fraction`s
#   (then `Fraction` arithmetic keeps every coefficient exact) or as floats;
# - when no third-order method has these nodes, or they do not determine a unique one, it raises a
#   `ValueError`.

# %%
def third_order_tableau(c2, c3):
    """The explicit three-stage Runge-Kutta method of order 3 with the nodes (0, c2, c3)."""
    ### BEGIN SOLUTION
    if c2 == 0 or c3 == 0 or c2 == c3:  # the conditions with c_i and c_i^2 do not fix b2, b3
        raise ValueError(f"the nodes 0, {c2}, {c3} do not determine a unique third-order method")
    b2 = (3 * c3 - 2) / (6 * c2 * (c3 - c2))  # sum b_i c_i = 1/2 and sum b_i c_i^2 = 1/3
    b3 = (2 - 3 * c2) / (6 * c3 * (c3 - c2))
    if b3 == 0:  # c2 = 2/3: then b3 a32 c2 = 1/6 cannot hold
        raise ValueError(f"no method of order 3 has the nodes 0, {c2}, {c3}")
    a32 = 1 / (6 * b3 * c2)  # sum b_i a_ij c_j = 1/6
    return ButcherTableau("third order", c=[0 * c2, c2, c3], a=[[], [c2], [c3 - a32, a32]],
                          b=[1 - b2 - b3, b2, b3], order=3)
    ### END SOLUTION


third_order_tableau = ex03.check_third_order_tableau(third_order_tableau)

# %% [markdown]
# Almost every choice of nodes gives a method of its own. Three of them have names: Heun's (1/3, 2/3), Ralston's
# (1/2, 3/4) and Kutta's (1/2, 1). Run each with `rk_step`, the lecture's step from any tableau (here
# `ex03.rk_step`, which also takes one time and one step size per sample, as exercise 5 needs), on the
# nonlinear Van der Pol oscillator, and measure its order with your `convergence_order` of exercise 1.
# Heun's nodes give the package's `heun3`, and Ralston's the first three stages of `bosh3`, whose
# propagated solution is exactly this third-order method.

# %%
from nodecourse.exercises.checking import who

rk_step = ex03.rk_step


def van_der_pol(t, y):
    return torch.stack([y[..., 1], (1 - y[..., 0] ** 2) * y[..., 1] - y[..., 0]], dim=-1)


z0, T_vdp = torch.tensor([1.0, 1.0], **F64), 1.0
z_T = solve(van_der_pol, z0, torch.tensor([0.0, T_vdp], **F64), rtol=1e-13, atol=1e-13, method="dopri8").ys[-1]
n_steps_list = [20, 40, 80, 160]
named_nodes = {"Heun": (Fraction(1, 3), Fraction(2, 3)), "Ralston": (Fraction(1, 2), Fraction(3, 4)),
               "Kutta": (Fraction(1, 2), Fraction(1))}
for name, (c2, c3) in named_nodes.items():
    tableau = third_order_tableau(c2, c3)
    errs = []
    for n in n_steps_list:
        y = z0
        for i in range(n):
            y, _ = rk_step(van_der_pol, i * T_vdp / n, y, T_vdp / n, tableau)
        errs.append((y - z_T).norm().item())
    p = convergence_order([T_vdp / n for n in n_steps_list], errs)
    print(f"{name:8s} nodes ({c2}, {c3}): error {errs[-1]:.2e} with {n_steps_list[-1]} steps, order {p:.3f}")
    assert abs(p - 3) < 0.1


def coefficients(tab, stages=3):
    return [float(x) for x in [*tab.c[:stages], *tab.b[:stages], *(x for row in tab.a[:stages] for x in row)]]


heun, ralston = third_order_tableau(*named_nodes["Heun"]), third_order_tableau(*named_nodes["Ralston"])
print(f"({who(third_order_tableau)} third_order_tableau) Heun's nodes give heun3, Ralston's the stages of bosh3")
assert max(abs(x - y) for x, y in zip(coefficients(heun), coefficients(TABLEAUX["heun3"]))) < 1e-12
assert max(abs(x - y) for x, y in zip(coefficients(ralston), coefficients(TABLEAUX["bosh3"]))) < 1e-12


# %% [markdown] slideshow={"slide_type": "slide"}
# ## Exercise 3: the step-size controller
# After a step of size $h$ with error ratio $r = \|\mathrm{err}/\mathrm{scale}\|_{\mathrm{RMS}}$
# (accepted when $r \le 1$), the next step size is
# $$h_\text{new} = h \cdot \mathrm{clamp}\big(\text{safety}\cdot r^{-1/q},\ \text{low},\ \text{ifactor}\big)$$
# where $q$ is `order` (the tableau's `error_order`), and
# - low $= 1$ when $r \le 1$ (an accepted step never shrinks the next one), low $=$ `dfactor` when $r > 1$;
# - $r = 0$ gives the largest growth, `ifactor` (in torch `0 ** -0.2` is `inf`, which the clamp handles);
# - a NaN ratio (the trial step produced NaN or inf) gives $h \cdot$ `dfactor`.
#
# Write `next_step_size(h, ratio, order, safety=0.9, ifactor=10.0, dfactor=0.2)` for tensors `h` and
# `ratio` of shape `[B]` (one entry per sample), elementwise, returning a `[B]` tensor of `h`'s dtype.

# %%
def next_step_size(h, ratio, order, safety=0.9, ifactor=10.0, dfactor=0.2):
    """The next step size [B] from the step h [B] and its error ratio [B]."""
    ### BEGIN SOLUTION
    factor = safety * ratio ** (-1.0 / order)
    lowest = torch.where(ratio <= 1, torch.ones_like(factor), torch.full_like(factor, dfactor))
    factor = torch.minimum(torch.maximum(factor, lowest), torch.full_like(factor, ifactor))
    factor = torch.where(torch.isnan(ratio), torch.full_like(factor, dfactor), factor)
    return h * factor
    ### END SOLUTION


next_step_size = ex03.check_next_step_size(next_step_size)

# %% [markdown]
# A quick look at the controller: a step that was far too large (ratio 1000) is rejected and shrunk,
# but never below `dfactor` = 0.2 of itself; a step with a tiny error grows, but at most tenfold.

# %%
h_demo = torch.tensor([1.0], **F64)
shrunk = next_step_size(h_demo, torch.tensor([1000.0], **F64), 5)
grown = next_step_size(h_demo, torch.tensor([1e-8], **F64), 5)
print(f"after ratio 1000: h = {shrunk.item():.3f}; after ratio 1e-8: h = {grown.item():.1f}")
assert abs(shrunk.item() - 0.9 * 1000 ** -0.2) < 1e-12 and abs(grown.item() - 10.0) < 1e-12


# %% [markdown] slideshow={"slide_type": "slide"}
# ## Exercise 4: masking the samples that are done
# In a batched solve with one step size per sample, every loop iteration tries one step for every
# sample and then must update the bookkeeping. Write
# `mask_update(t, y, y_prop, h, t_end, accept, active)` that returns the new `(t, y, active)`:
#
# - `t`, `h`: `[B]` times and the step sizes just tried; the caller has clipped them so that
#   `t + h <= t_end`; `y`, `y_prop`: `[B, N]` states and the proposed new states;
#   `accept`, `active`: `[B]` bool masks (step accepted; sample still running); `t_end` a float;
# - a sample **moves** (`t + h`, `y_prop`) only when it is active and its step was accepted; every
#   other sample keeps its `t` and `y`;
# - a moving sample **finishes** when its step covered the rest of the interval, `h >= t_end - t`;
#   then its new time is exactly `t_end` (no rounding error) and it is no longer active.
#
# This is the heart of the batched RKF45: the solve ends when no sample is active (the mask of
# finished samples is full).

# %%
def mask_update(t, y, y_prop, h, t_end, accept, active):
    """New (t [B], y [B, N], active [B]) after one batched trial step."""
    ### BEGIN SOLUTION
    move = accept & active
    finishes = move & (h >= t_end - t)
    t_moved = torch.where(finishes, torch.full_like(t, t_end), t + h)
    t_new = torch.where(move, t_moved, t)
    y_new = torch.where(move.unsqueeze(1), y_prop, y)
    return t_new, y_new, active & ~finishes
    ### END SOLUTION


mask_update = ex03.check_mask_update(mask_update)


# %% [markdown] slideshow={"slide_type": "slide"}
# ## Exercise 5: a batched adaptive RKF45
# Put the pieces together: `batched_rkf45(f, y0, t_end, rtol, atol, first_step)` solves
# $\dot y = f(t, y)$ from $t = 0$ to `t_end` for a batch `y0` of shape `[B, N]` with RKF45
# (`TABLEAUX["rkf45"]`) and returns `(y_end, n_steps)`. What it must do (each sentence is one check):
#
# - every sample has its own step size, `first_step` at the start, and `f` is called with `t` of shape `[B]`;
# - no trial step goes past `t_end`;
# - a sample's step is accepted when the RMS, over that sample's own `N` entries, of
#   `err / (atol + rtol * max(|y|, |y1|))` is at most 1;
# - after every trial step, accepted or rejected, the sample's next step size comes from your controller
#   (exercise 3, with the tableau's `error_order`);
# - samples move and finish by the rules of exercise 4; the solve returns once every sample has finished;
# - `y_end` is `[B, N]` like `y0`; `n_steps` is a `[B]` integer tensor counting each sample's
#   **attempted** steps, rejected ones included.
#
# How you organise the loop is up to you; `rk_step` (see exercise 2: it takes `t` and `h` of shape `[B]`)
# and your functions of exercises 3 and 4 (or the references the notebook goes on with) do most of the work.

# %%
def batched_rkf45(f, y0, t_end, rtol, atol, first_step):
    """Adaptive RKF45 with one step size per sample; returns (y(t_end) [B, N], attempted steps [B])."""
    tableau = TABLEAUX["rkf45"]
    ### BEGIN SOLUTION
    t = torch.zeros(y0.shape[0], dtype=y0.dtype, device=y0.device)
    h = torch.full_like(t, first_step)
    y = y0
    active = torch.ones_like(t, dtype=torch.bool)
    n_steps = torch.zeros_like(t, dtype=torch.long)
    while bool(active.any()):
        h_try = torch.where(active, torch.minimum(h, t_end - t), torch.zeros_like(h))
        y1, err = rk_step(f, t, y, h_try, tableau)
        ratio = (err / (atol + rtol * torch.maximum(y.abs(), y1.abs()))).pow(2).mean(dim=1).sqrt()
        n_steps = n_steps + active.long()
        h = next_step_size(h_try, ratio, tableau.error_order)
        t, y, active = mask_update(t, y, y1, h_try, t_end, ratio <= 1, active)
    return y, n_steps
    ### END SOLUTION


batched_rkf45 = ex03.check_batched_rkf45(batched_rkf45)

# %% [markdown]
# **Your solver against the package.** A batch of decays $\dot y_b = -k_b y_b$ with rates over two orders
# of magnitude needs very different step sizes. Compare with `nodecourse.solve(...,
# options={"per_sample": True})` (same first step) and with the shared step of the default mode:
# - your step counts match the package's per-sample counts (it does not shorten its last step but
#   interpolates at the end, so allow a step or two, or 5%);
# - every sample meets its tolerance: the error at `t_end` is within a small factor of
#   `atol + rtol * |y|` (the tolerance bounds each step's error; these decays shrink earlier errors);
# - on average a sample needs far fewer steps than the shared step size makes it take.

# %%
rates = torch.logspace(0, 2, n_batch, **F64)


def decay(t, y):
    return -rates[:, None] * y


start = torch.ones(n_batch, 1, **F64)
t_end, tol = 5.0, 1e-6
exact_end = torch.exp(-rates * t_end)[:, None]
y_mine, steps_mine = batched_rkf45(decay, start, t_end, tol, tol, 0.01)
span = torch.tensor([0.0, t_end], **F64)
per_sample = solve(decay, start, span, rtol=tol, atol=tol, method="rkf45",
                   options={"per_sample": True, "first_step": 0.01})
shared = solve(decay, start, span, rtol=tol, atol=tol, method="rkf45", options={"first_step": 0.01})

error_ratio = ((y_mine - exact_end).abs() / (tol + tol * exact_end.abs())).squeeze(1)
whose = who(batched_rkf45)  # "yours" once your solver passed, else "the reference"
print(f"steps ({whose}):", steps_mine.tolist())
print("steps (package):", per_sample.stats.n_steps.tolist())
print(f"shared step: {shared.stats.n_steps} steps for every sample; {whose}: mean {steps_mine.double().mean():.1f}")
print(f"worst error of {whose}: {error_ratio.max():.2f} x tolerance")
assert bool(((steps_mine - per_sample.stats.n_steps).abs() <= (0.05 * per_sample.stats.n_steps).clamp(min=2)).all()), \
    "the step counts differ from the package's per-sample counts by more than 5% (or 2): count attempted steps"
assert bool((error_ratio < 10).all()), "some sample misses its tolerance at t_end by more than 10x"
assert steps_mine.double().mean() < 0.5 * shared.stats.n_steps, "per-sample steps should save at least half"

# %%
fig, ax = plt.subplots(figsize=(6, 3.5))
ax.semilogx(rates.cpu(), steps_mine.cpu(), "o", label=f"batched_rkf45 ({whose})")
ax.semilogx(rates.cpu(), per_sample.stats.n_steps.cpu(), "x", label="nodecourse, per_sample=True")
ax.axhline(shared.stats.n_steps, color="C3", label="shared step size")
ax.set(xlabel="decay rate k", ylabel="attempted steps", title="one step size per sample")
ax.legend()
plt.show()


# %% [markdown] slideshow={"slide_type": "slide"}
# ## Exercise 6: find the bug in an adaptive solve
# A colleague wrote the single-state adaptive RKF45 below. It passes their quick test (a smooth problem,
# a loose tolerance, a small first step), but on harder problems its answers are far off, although the
# step-size controller and `rk_step` are the course's own. Run the checker to see where it fails, find
# the bug, and repair the function in place. The statement it should meet: `adaptive_solve(f, y0, t_end,
# rtol, atol, first_step)` integrates one state `y0` (`[N]`) from $t = 0$ to `t_end` and returns
# `(y_end, accepted, rejected)`, the numbers of accepted and rejected trial steps.

# %%
def adaptive_solve(f, y0, t_end, rtol=1e-6, atol=1e-6, first_step=0.1):
    tableau = TABLEAUX["rkf45"]
    t, y, h = 0.0, y0, float(first_step)
    accepted = rejected = 0
    while t < t_end:
        h = min(h, t_end - t)
        y1, err = rk_step(f, t, y, h, tableau)
        ratio = (err / (atol + rtol * torch.maximum(y.abs(), y1.abs()))).pow(2).mean().sqrt()
        ### BEGIN SOLUTION
        t_next = t_end if h >= t_end - t else t + h
        if ratio <= 1:
            t, y = t_next, y1
        ### EXERCISE
        # t_next, y = (t_end if h >= t_end - t else t + h), y1
        # if ratio <= 1:
        #     t = t_next
        ### END SOLUTION
            accepted += 1
        else:
            rejected += 1
        h = float(next_step_size(torch.tensor([h], dtype=y0.dtype), ratio.reshape(1), tableau.error_order))
    return y, accepted, rejected


adaptive_solve = ex03.check_adaptive_solve(adaptive_solve)


# %% [markdown]
# Stuck after the hints? `ex03.show_answer(6)` prints the repaired function (try the hints first).

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Exercise 7 (open task): an accurate solve on a budget
# The damped rotation $\dot y = A y$, $A = \begin{pmatrix}-0.1 & -2\\ 2 & -0.1\end{pmatrix}$,
# $y_0 = (1, 0.5)$, solved to $T = 10$: `nodecourse.solve` with its defaults is accurate enough but
# spends over 1000 evaluations of $f$. Find settings that reach an error $\|y(T) - e^{AT}y_0\| \le 10^{-6}$
# with **at most 500** function evaluations. `solver_settings()` returns the keyword arguments you would
# pass to `nodecourse.solve` (any of `method`, `rtol`, `atol`, `options`); the checker solves the problem
# with them and reports the error and the NFE it measured. Try a few settings in the cell first:
# `solve(...).stats.nfe` is the cost.

# %%
def solver_settings():
    """Keyword arguments for nodecourse.solve that meet both targets."""
    ### BEGIN SOLUTION
    return {"method": "dopri8", "rtol": 1e-7, "atol": 1e-8}
    ### END SOLUTION


solver_settings = ex03.check_solver_settings(solver_settings)
print(f"the notebook goes on with {who(solver_settings)} settings: {solver_settings()}")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Recap
# - A convergence order is the slope of a least-squares line on a log-log plot of error against step size.
# - The order conditions are equations for the coefficients: with three stages, the two nodes fix the
#   unique method of order 3 (Heun's, Ralston's, Kutta's, ...), or there is none.
# - The controller turns the error ratio into the next step: `h * clamp(0.9 r^(-1/q), low, 10)`.
# - Per-sample stepping is bookkeeping with masks: move the accepted, retire the finished, stop when
#   none is left; each sample then takes only the steps it needs.
#
# ## Further reading
# - E. Hairer, S. P. Nørsett, G. Wanner. *Solving Ordinary Differential Equations I: Nonstiff Problems*,
#   2nd ed. Springer, 1993. (Sec. II.4: automatic step-size control.)
# - E. Fehlberg. *Low-order classical Runge-Kutta formulas with stepsize control and their application to
#   some heat transfer problems*. NASA Technical Report R-315, 1969.
# - M. Lienen, S. Günnemann. *torchode: A Parallel ODE Solver for PyTorch*. The Symbiosis of Deep Learning
#   and Differential Equations workshop, NeurIPS 2022. arXiv:2210.12375.
# - R. T. Q. Chen, Y. Rubanova, J. Bettencourt, D. Duvenaud. *Neural Ordinary Differential Equations*.
#   NeurIPS 2018. arXiv:1806.07366.
