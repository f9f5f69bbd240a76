# %% [markdown] slideshow={"slide_type": "skip"}
# Colab links appear here once the course's home repository is set (`make home`, see CONTRIBUTING.md).

# %% [markdown] slideshow={"slide_type": "slide"}
# # 02 · Euler's method and ResNets: exercises (solutions)
#
# You build Euler's method from one step to a whole trajectory, write a ResNet's forward pass,
# show with `nodecourse.odeint` that it is Euler's method with h = 1, and measure how a ResNet
# approaches its continuous limit, the ODE, as its depth grows.
# Exercises 1-5 ask for a function: replace `raise NotImplementedError` with your code and run the cell.
# Exercise 6 hands you a solver with a bug to find and repair; exercise 7 asks you to predict a number
# before a cell measures it. The checker below each runs your answer on labelled cases and prints what
# passed and what failed.
# Hints come in stages: the first failure says which property failed, later failures nudge more
# specifically, and the answer appears only when you ask for it with `ex02.show_answer(n)`. Until an
# exercise passes, the notebook goes on with the reference, and the cells after it say so.
#
# **Learning objectives**
# - write an Euler step and an Euler solver on any time grid, forwards or backwards in time;
# - write a ResNet's forward pass with shared or depth-variant weights and show that it is an Euler solve;
# - measure the continuous limit: the gap between a shared-weight ResNet of step T/L and its ODE, and the order with which it closes.
#
# **Estimated time:** 60 minutes.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Setup
# On Colab the first cell installs `nodecourse`; everywhere it picks the device, seeds the random
# generators and reads fast mode (`NODECOURSE_FAST=1` shrinks the loops for the test suite).

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
import math

import numpy as np

from nodecourse import odeint
from nodecourse.exercises import ex02
from nodecourse.exercises.checking import who
from nodecourse.models import MLP, ODEFunc, ResNet
from nodecourse.plotting import convergence_plot

F64 = dict(dtype=torch.float64)   # error measurements in float64 on the CPU (MPS has no float64)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Hyperparameters
# Exercise 5's follow-up uses ResNets of up to `max_depth` blocks and Euler grids of up to `max_steps` steps.

# %%
max_depth = 64 if FAST else 512
max_steps = 320 if FAST else 2560   # the finest Euler grid of exercise 5


# %% [markdown] slideshow={"slide_type": "slide"}
# ## Exercise 1: one Euler step
# Write `euler_step(f, t, y, h)` that returns the state after one explicit Euler step,
# $$y_{\text{new}} = y + h\, f(t, y).$$
# `f(t, y)` is the vector field, `t` the current time (a float or a 0-d tensor), `y` the state (a
# tensor of any shape, e.g. a batch `[B, D]`) and `h` the step (a float or a 0-d tensor; it may be
# negative, for a step backwards in time). Return a tensor of `y`'s shape and dtype.

# %%
def euler_step(f, t, y, h):
    """One Euler step: the state y [*S] at time t -> the state at time t + h [*S]."""
    ### BEGIN SOLUTION
    return y + h * f(t, y)
    ### END SOLUTION


euler_step = ex02.check_euler_step(euler_step)


# %% [markdown] slideshow={"slide_type": "slide"}
# ## Exercise 2: Euler's method on a time grid
# Write `euler_trajectory(f, y0, t)` that runs Euler's method on the grid `t` (a 1-D tensor
# $t_0, t_1, \dots, t_n$; the spacing may change from step to step, and the grid may run backwards
# in time) and returns **every** state, `y0` included: a tensor of shape `[n + 1, *y0.shape]`.
# Step $k$ goes from $t_k$ to $t_{k+1}$ with $h_k = t_{k+1} - t_k$, evaluating $f(t_k, y_k)$. You may
# use your `euler_step`. A grid of one time returns `y0[None]`.

# %%
def euler_trajectory(f, y0, t):
    """Euler's method on the grid t [n + 1]; every state, y0 included: [n + 1, *y0.shape]."""
    ### BEGIN SOLUTION
    ys = [y0]
    for k in range(len(t) - 1):
        ys.append(euler_step(f, t[k], ys[-1], t[k + 1] - t[k]))
    return torch.stack(ys)
    ### END SOLUTION


euler_trajectory = ex02.check_euler_trajectory(euler_trajectory)


# %% [markdown]
# Your solver and the package's Euler solver agree on a uniform grid, to round-off:

# %%
def oscillator(t, y):
    """dy1/dt = y2, dy2/dt = -y1 on states [..., 2]."""
    return torch.stack([y[..., 1], -y[..., 0]], dim=-1)


y0 = torch.tensor([[1.0, 0.0], [0.3, -0.8]], **F64)
grid = torch.linspace(0.0, 3.0, 31, **F64)
gap = (euler_trajectory(oscillator, y0, grid)
       - odeint(oscillator, y0, grid, method="euler", options={"step_size": 0.1})).abs().max().item()
print(f"{who(euler_trajectory)} Euler vs nodecourse.odeint(method='euler'): {gap:.1e}")
assert gap < 1e-12


# %% [markdown] slideshow={"slide_type": "slide"}
# ## Exercise 3: a ResNet's forward pass
# Write `resnet_forward(blocks, y0, step_size=1.0)`: `blocks` is a list of $L$ modules, one
# residual function per layer (for **shared** weights, the same MLP $L$ times: `[mlp] * L`; for
# **depth-variant** weights, $L$ different MLPs), and `y0` is a batch `[B, D]`. Apply
# $$y_{l+1} = y_l + \text{step\_size} \cdot \text{blocks}[l](y_l), \qquad l = 0, \dots, L - 1,$$
# and return the input and every hidden state, `[L + 1, B, D]` (like `ResNet.trajectory`).

# %%
def resnet_forward(blocks, y0, step_size=1.0):
    """Residual blocks y <- y + step_size * block(y), one per layer; every state: [len(blocks) + 1, B, D]."""
    ### BEGIN SOLUTION
    ys = [y0]
    for block in blocks:
        ys.append(ys[-1] + step_size * block(ys[-1]))
    return torch.stack(ys)
    ### END SOLUTION


resnet_forward = ex02.check_resnet_forward(resnet_forward)

# %% [markdown]
# It reproduces `nodecourse.models.ResNet` with shared and with depth-variant weights:

# %%
seed_everything(1)
mlp = MLP([2, 16, 2]).to(torch.float64)
x = torch.randn(8, 2, **F64)
variant = ResNet(mlp, depth=5, shared=False)
with torch.no_grad():
    for p in variant.parameters():
        p.add_(0.2 * torch.randn_like(p))   # make the five copies differ
blocks = [variant.block(layer) for layer in range(5)]
gap_shared = (resnet_forward([mlp] * 5, x) - ResNet(mlp, 5).trajectory(x)).abs().max().item()
gap_variant = (resnet_forward(blocks, x) - variant.trajectory(x)).abs().max().item()
print(f"vs ResNet: shared {gap_shared:.1e}, depth-variant {gap_variant:.1e}")
assert gap_shared < 1e-12 and gap_variant < 1e-12


# %% [markdown] slideshow={"slide_type": "slide"}
# ## Exercise 4: a ResNet is Euler's method with h = 1
# Write `resnet_as_euler(mlp, y0, depth)` that computes the hidden states of `ResNet(mlp, depth)`
# **without a loop over layers**: solve $\dot y = \mathrm{mlp}(y)$ from `y0` (`[B, D]`) with
# `nodecourse.odeint`, method `"euler"` and step size 1, and return the states at the times
# $0, 1, \dots, \text{depth}$: shape `[depth + 1, B, D]`. The vector field must be a function of
# `(t, y)`: `ODEFunc(mlp)` wraps the MLP for you. Make the time grid in `y0`'s dtype and device.

# %%
def resnet_as_euler(mlp, y0, depth):
    """Euler with h = 1 for dy/dt = mlp(y), states at t = 0, 1, ..., depth: [depth + 1, B, D]."""
    ### BEGIN SOLUTION
    t = torch.arange(depth + 1, dtype=y0.dtype, device=y0.device)
    return odeint(ODEFunc(mlp), y0, t, method="euler", options={"step_size": 1.0})
    ### END SOLUTION


resnet_as_euler = ex02.check_resnet_as_euler(resnet_as_euler)

# %% [markdown]
# The two views agree layer by layer:

# %%
for depth in (1, 4, 12):
    gap = (resnet_as_euler(mlp, x, depth) - resnet_forward([mlp] * depth, x)).abs().max().item()
    print(f"depth {depth:2d}: |ODE solve (Euler, h = 1) - ResNet| = {gap:.1e}")
    assert gap < 1e-12


# %% [markdown] slideshow={"slide_type": "slide"}
# ## Exercise 5: the continuous limit, measured
# Give a shared-weight ResNet $L$ blocks of step $h = T/L$: $y_{l+1} = y_l + \tfrac{T}{L}\,\mathrm{mlp}(y_l)$.
# Write `continuous_limit_gaps(mlp, y0, T, depths)` that returns, for each $L$ in the list `depths`,
# the gap between this ResNet's output and the solution at time $T$ of $\dot y = \mathrm{mlp}(y)$,
# $y(0) =$ `y0` (a float64 batch `[B, D]`):
# - the reference solution: `nodecourse.odeint` with `method="dopri5"`, `rtol=1e-10`, `atol=1e-12`,
#   solved once for all depths;
# - the gap for one $L$: the largest absolute difference over all entries, `(y_L - y_ref).abs().max()`;
# - return a 1-D tensor of `len(depths)` gaps (e.g. `torch.stack` of the gaps).
#
# You may use your `resnet_forward` or `ResNet(mlp, L, step_size=T / L)`. Gradients are not needed:
# wrap the work in `with torch.no_grad():`.

# %%
def continuous_limit_gaps(mlp, y0, T, depths):
    """max |ResNet with L blocks of step T/L - ODE solution at T| for each L in depths: [len(depths)]."""
    ### BEGIN SOLUTION
    with torch.no_grad():
        t = torch.tensor([0.0, T], dtype=y0.dtype, device=y0.device)
        reference = odeint(ODEFunc(mlp), y0, t, method="dopri5", rtol=1e-10, atol=1e-12)[-1]
        gaps = [(resnet_forward([mlp] * L, y0, T / L)[-1] - reference).abs().max() for L in depths]
    return torch.stack(gaps)
    ### END SOLUTION


continuous_limit_gaps = ex02.check_continuous_limit_gaps(continuous_limit_gaps)


# %% [markdown]
# Now measure two first-order convergences with your functions, fitting the slope of a log-log line
# by least squares. First Euler's method, with your `euler_trajectory`, on the logistic equation
# $\dot y = y(1 - y)$, $y(0) = 0.1$, whose exact solution is $y(t) = 1/(1 + 9 e^{-t})$, on $[0, 2]$:

# %%
def fitted_slope(x, y):
    """Least-squares slope of log(y) against log(x): the p in y ~ C x^p."""
    return float(np.polyfit(np.log(np.asarray(x, dtype=float)), np.log(np.asarray(y, dtype=float)), 1)[0])


steps = [10 * 2**k for k in range(int(math.log2(max_steps // 10)) + 1)]
exact = 1 / (1 + 9 * math.exp(-2.0))
euler_errors = [abs(euler_trajectory(lambda t, y: y * (1 - y), torch.tensor([0.1], **F64),
                                     torch.linspace(0.0, 2.0, n + 1, **F64))[-1].item() - exact) for n in steps]
euler_order = fitted_slope([2.0 / n for n in steps], euler_errors)
print(f"Euler on the logistic equation, {steps[0]} to {steps[-1]} steps: measured order {euler_order:.3f}")
assert abs(euler_order - 1) < 0.1

# %% [markdown]
# Second, the continuous limit, with your `continuous_limit_gaps`: the gap shrinks like $h = T/L$.

# %%
T = 1.0
x = torch.randn(32, 2, **F64)
depths = [2**k for k in range(1, int(math.log2(max_depth)) + 1)]
gaps = continuous_limit_gaps(mlp, x, T, depths)
limit_order = fitted_slope([T / L for L in depths], gaps.tolist())
print(f"ResNet with L = {depths[0]} ... {depths[-1]} blocks vs the ODE: gap ~ h^{limit_order:.3f}")
assert abs(limit_order - 1) < 0.1

fig, ax = plt.subplots(figsize=(6, 4))
convergence_plot(ax, [2.0 / n for n in steps], euler_errors, orders=[1], labels=["Euler on the logistic equation"])
ax.plot([T / L for L in depths], gaps.tolist(), "s-", label="ResNet (h = T/L) vs ODE")
ax.set_title("two first-order convergences")
ax.legend()
plt.show()


# %% [markdown] slideshow={"slide_type": "slide"}
# ## Exercise 6: find the bug in an Euler solve
# `euler_solve(f, y0, t0, t1, n_steps)` below should take `n_steps` Euler steps of equal size from
# $(t_0, y_0)$ and return the state at $t_1$. Its author checked it on $\dot y = -y/2$ against
# $e^{-t/2}$ and was happy. Run the checker, find the bug, and repair the function.

# %%
def euler_solve(f, y0, t0, t1, n_steps):
    """n_steps Euler steps of size (t1 - t0) / n_steps from (t0, y0); returns the state at t1."""
    h = (t1 - t0) / n_steps
    y = y0
    for k in range(n_steps):
        ### BEGIN SOLUTION
        y = y + h * f(t0 + k * h, y)
        ### EXERCISE
        # y = y + h * f(t0, y)
        ### END SOLUTION
    return y


euler_solve = ex02.check_euler_solve(euler_solve)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Exercise 7: predict, then check
# Solve the logistic equation $\dot y = y(1 - y)$, $y(0) = 0.1$, to $t = 2$ with Euler's method, once with
# 20 steps and once with 80. **Before running the cell**, write into `predicted_ratio` the ratio of the
# two global errors, error(20 steps) / error(80 steps). The checker measures it (15% either way passes).

# %%
### BEGIN SOLUTION
predicted_ratio = 4.0  # first order: the error is about C h
### EXERCISE
# predicted_ratio = None  # your prediction: a number
### END SOLUTION
measured_ratio = ex02.check_error_ratio_prediction(predicted_ratio)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Recap
# - An Euler step is `y + h * f(t, y)`; on a grid, the step sizes are the grid's differences and the
#   field is evaluated at the start of each step.
# - A ResNet's forward pass is that loop with $h = 1$ (or `step_size`) and one residual function per
#   layer; `odeint(..., method="euler", options={"step_size": 1.0})` on the times $0, \dots, L$ gives
#   the same hidden states.
# - A shared-weight ResNet with $L$ blocks of step $T/L$ is $L$ Euler steps for one ODE: its gap to
#   the ODE solution closes like $1/L$, the same first order as Euler's global error.
#
# ## Further reading
# - R. T. Q. Chen, Y. Rubanova, J. Bettencourt, D. Duvenaud. *Neural Ordinary Differential
#   Equations*. NeurIPS 2018. arXiv:1806.07366.
# - K. He, X. Zhang, S. Ren, J. Sun. *Deep Residual Learning for Image Recognition*. CVPR 2016.
#   arXiv:1512.03385.
# - E. Hairer, S. P. Nørsett, G. Wanner. *Solving Ordinary Differential Equations I: Nonstiff
#   Problems*. 2nd ed., Springer, 1993.
# - M. E. Sander, P. Ablin, G. Peyré. *Do Residual Neural Networks discretize Neural Ordinary
#   Differential Equations?* NeurIPS 2022. arXiv:2205.14612.
