# %% [markdown] slideshow={"slide_type": "skip"}
# Colab links appear here once the course's home repository is set (`make home`, see CONTRIBUTING.md).

# %% [markdown] slideshow={"slide_type": "slide"}
# # 01 · Dynamical systems: exercises (solutions)
#
# Six exercises on notebook 01, from a vector field to the two sides of a network's Lipschitz
# constant. Exercises 1-4 ask for one function each: in the exercise notebook its body is
# `raise NotImplementedError`; replace that with your code and run the cell. Exercise 5 hands you a
# function with a bug to find and repair, exercise 6 asks you to predict a number before a cell
# measures it. The checker call below each compares your answer with a reference on labelled cases.
# Hints come in stages: the first failure says which property failed, later failures nudge more
# specifically, and the answer appears only when you ask for it with `ex01.show_answer(n)`. Until an
# exercise passes, the notebook goes on with the reference, and the cells after it say so.
#
# **Learning objectives**
# - write a vector field as a batched function `f(t, y)` of states `[B, 2]`;
# - implement Picard's iteration and watch it converge to the solution of an IVP;
# - bound a Lipschitz constant from below by sampling and from above by spectral norms, and see the two meet for a linear map.
#
# **Estimated time:** 60 minutes

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Setup
# On Colab the first cell installs `nodecourse`; everywhere it picks the device, seeds the random
# generators and reads fast mode (`NODECOURSE_FAST=1` draws fewer samples for the test suite).

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
from torch import nn

from nodecourse import odeint
from nodecourse.config import FAST, device, seed_everything
from nodecourse.exercises import ex01
from nodecourse.models import MLP
from nodecourse.plotting import phase_portrait

seed_everything(0)
DEVICE = device()
print(f"device: {DEVICE}, fast mode: {FAST}")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Hyperparameters
# The only cell the test suite changes: fast mode draws fewer random pairs.

# %%
n_pairs = 2_000 if FAST else 100_000  # random pairs for the sampled Lipschitz lower bound

# %% [markdown]
# We work in double precision (on the CPU where the device has none, as Apple's MPS), so that the
# solver's tolerance, not rounding, sets the errors we compare.

# %%
if DEVICE.type == "mps":
    DEVICE = torch.device("cpu")
DTYPE = torch.float64


# %% [markdown] slideshow={"slide_type": "slide"}
# ## Exercise 1: the damped pendulum's vector field
#
# The damped pendulum $\ddot\theta = -\frac gl\sin\theta - c\,\dot\theta$ is the planar system
#
# $$\dot\theta = \omega, \qquad \dot\omega = -\tfrac gl \sin\theta - c\,\omega .$$
#
# Write `damped_pendulum(t, y, g_over_l=1.0, damping=0.0)`: `t` is the time (a number or a 0-d
# tensor; the system is autonomous, so it is not used), `y` a batch of states `[B, 2]` with
# `y[:, 0]` $=\theta$ and `y[:, 1]` $=\omega$. Return the velocities $(\dot\theta, \dot\omega)$ as a
# `[B, 2]` tensor with `y`'s dtype and device. No small-angle approximation: use $\sin\theta$.
# The checker compares with `nodecourse.data.pendulum_field`.

# %%
def damped_pendulum(t, y: torch.Tensor, g_over_l: float = 1.0, damping: float = 0.0) -> torch.Tensor:
    """Velocities [B, 2] of the damped pendulum at the states y [B, 2] = (theta, omega)."""
    ### BEGIN SOLUTION
    theta, omega = y[..., 0], y[..., 1]
    return torch.stack([omega, -g_over_l * torch.sin(theta) - damping * omega], dim=-1)
    ### END SOLUTION


damped_pendulum = ex01.check_damped_pendulum(damped_pendulum)

# %% [markdown]
# With your field, the energy $E = \frac12\omega^2 - \frac gl\cos\theta$ should fall along every
# solution, since $\dot E = -c\,\omega^2$. We draw the phase portrait and check it.

# %%
c = 0.25
field = lambda t, y: damped_pendulum(t, y, damping=c)  # noqa: E731
starts = torch.tensor([[2.5, 0.0], [-2.0, 1.5], [0.5, 2.4], [-3.0, -0.5]], dtype=DTYPE, device=DEVICE)
t = torch.linspace(0, 15, 301, dtype=DTYPE, device=DEVICE)
ys = odeint(field, starts, t, rtol=1e-9, atol=1e-11)
energy = 0.5 * ys[..., 1] ** 2 - torch.cos(ys[..., 0])
print("energy at t = 0 and t = 15:", energy[0].cpu().numpy().round(3), energy[-1].cpu().numpy().round(3))
assert (energy[1:] - energy[:-1]).max() < 1e-10  # never increases

fig, ax = plt.subplots(figsize=(6, 4))
phase_portrait(ax, field, starts, t, n=17)  # limits: the trajectories' extent
ax.set(xlabel=r"$\theta$", ylabel=r"$\omega$", title=f"damped pendulum, c = {c}")
plt.show()


# %% [markdown] slideshow={"slide_type": "slide"}
# ## Exercise 2: Picard's iteration on a grid
#
# The IVP $\dot y = f(t, y)$, $y(t_0) = y_0$ is the fixed-point equation $y = Py$ with
# $(Py)(t) = y_0 + \int_{t_0}^t f(s, y(s))\,\mathrm ds$. Write
# `picard_iteration(f, y0, t, n_iter)` that runs `n_iter` Picard iterations on the time grid `t`
# (1-D, `T` increasing times, `t[0]` the initial time) and returns the last iterate, a tensor
# `[T, *y0.shape]`:
#
# - iterate 0 is $y_0$ at every grid time;
# - iterate $k+1$: evaluate $F_i = f(t_i, y^{(k)}_i)$ at each grid time (one call `f(t[i], y_k[i])`
#   per time), integrate from $t_0$ with the **cumulative trapezoid rule**,
#   $I_0 = 0$, $I_{i+1} = I_i + \frac{t_{i+1} - t_i}{2}(F_i + F_{i+1})$, and set $y^{(k+1)}_i = y_0 + I_i$.
#
# `torch.cumulative_trapezoid(F, x=t, dim=0)` computes $I_1, \dots, I_{T-1}$.

# %%
def picard_iteration(f, y0: torch.Tensor, t: torch.Tensor, n_iter: int) -> torch.Tensor:
    """The n_iter-th Picard iterate [T, *y0.shape] on the grid t [T], starting from y0 everywhere."""
    ### BEGIN SOLUTION
    y = y0.expand(len(t), *y0.shape).clone()
    for _ in range(n_iter):
        velocities = torch.stack([f(t[i], y[i]) for i in range(len(t))])
        running_integral = torch.cumulative_trapezoid(velocities, x=t, dim=0)
        y = y0 + torch.cat([torch.zeros_like(running_integral[:1]), running_integral])
    return y
    ### END SOLUTION


picard_iteration = ex01.check_picard_iteration(picard_iteration)

# %% [markdown]
# The Picard-Lindelöf proof says the error after $k$ iterations is at most $\frac{(Lh)^k}{k!}$ times
# the first one. On a grid there is a floor too: the iteration converges to the solution of the
# trapezoid rule, which is $O(\Delta t^2)$ away from the exact one. We iterate the pendulum on $[0, 1]$ and
# compare with `odeint`.

# %%
t_grid = torch.linspace(0, 1, 101, dtype=DTYPE, device=DEVICE)
exact = odeint(field, starts, t_grid, rtol=1e-10, atol=1e-12)
errors = [(picard_iteration(field, starts, t_grid, k) - exact).abs().max().item() for k in range(13)]
print("max error per iteration:", [f"{e:.1e}" for e in errors])
assert all(b < a for a, b in zip(errors[:8], errors[1:8]))  # it shrinks, iteration after iteration
assert errors[-1] < 1e-4                                     # down to a floor

# the floor is the trapezoid rule's error: halve the grid spacing and it drops about 4 times
t_coarse = torch.linspace(0, 1, 51, dtype=DTYPE, device=DEVICE)
exact_coarse = odeint(field, starts, t_coarse, rtol=1e-10, atol=1e-12)
floor_coarse = (picard_iteration(field, starts, t_coarse, 12) - exact_coarse).abs().max().item()
print(f"floor with dt = 0.02: {floor_coarse:.2e}, with dt = 0.01: {errors[-1]:.2e}, ratio {floor_coarse / errors[-1]:.2f}")
assert 3.5 < floor_coarse / errors[-1] < 4.5

fig, ax = plt.subplots(figsize=(5.5, 3.5))
ax.semilogy(range(len(errors)), errors, "o-")
ax.set(xlabel="Picard iteration k", ylabel="max error on [0, 1]", title="Picard iteration for the pendulum")
plt.show()


# %% [markdown] slideshow={"slide_type": "slide"}
# ## Exercise 3: a lower bound on the Lipschitz constant by sampling
#
# Every pair of distinct points gives a lower bound on the Lipschitz constant:
# $\mathrm{Lip}(f) \ge \|f(x) - f(x')\| / \|x - x'\|$. Write `lipschitz_lower_bound(f, x1, x2)` that
# takes a function `f` mapping `[N, d]` to `[N, m]` and two tensors `x1, x2` of shape `[N, d]` (pair
# $i$ is row $i$ of each), and returns, as a Python float, the **largest** ratio
# $\|f(x_{1,i}) - f(x_{2,i})\|_2 / \|x_{1,i} - x_{2,i}\|_2$ over the pairs. Skip the pairs with
# $x_{1,i} = x_{2,i}$ (no ratio is defined for them).

# %%
def lipschitz_lower_bound(f, x1: torch.Tensor, x2: torch.Tensor) -> float:
    """max over rows i of ||f(x1_i) - f(x2_i)|| / ||x1_i - x2_i||, skipping rows with x1_i == x2_i."""
    ### BEGIN SOLUTION
    with torch.no_grad():
        gaps_in = (x1 - x2).norm(dim=1)
        gaps_out = (f(x1) - f(x2)).norm(dim=1)
    distinct = gaps_in > 0
    return (gaps_out[distinct] / gaps_in[distinct]).max().item()
    ### END SOLUTION


lipschitz_lower_bound = ex01.check_lipschitz_lower_bound(lipschitz_lower_bound)

# %% [markdown]
# For a linear map $x \mapsto Ax$ the constant is the spectral norm $\|A\|_2$, the largest singular
# value. Sampled pairs approach it from below as their number grows, and never pass it.

# %%
A = torch.randn(3, 3, dtype=DTYPE, device=DEVICE)
sigma_max = torch.linalg.matrix_norm(A, ord=2).item()
x1 = torch.randn(n_pairs, 3, dtype=DTYPE, device=DEVICE)
x2 = torch.randn(n_pairs, 3, dtype=DTYPE, device=DEVICE)
sizes = [10, 100, 1000, n_pairs]
estimates = [lipschitz_lower_bound(lambda x: x @ A.T, x1[:n], x2[:n]) for n in sizes]
print(f"spectral norm {sigma_max:.5f}; estimates by number of pairs:",
      {n: round(e, 5) for n, e in zip(sizes, estimates)})
assert all(e <= sigma_max * (1 + 1e-12) for e in estimates)   # never above the true constant
assert estimates == sorted(estimates) and estimates[-1] > 0.99 * sigma_max  # and it closes in


# %% [markdown] slideshow={"slide_type": "slide"}
# ## Exercise 4: an upper bound from spectral norms
#
# For an MLP, Lipschitz constants multiply along the layers: a linear layer $x \mapsto Wx + b$
# contributes its spectral norm $\|W\|_2$ (the bias cancels in differences), and an activation its
# largest slope: 1 for `nn.Tanh` and `nn.ReLU`, $1/4$ for `nn.Sigmoid` (whose derivative
# $\sigma(1-\sigma)$ peaks at $1/4$). Write `lipschitz_upper_bound(model)` for an `nn.Sequential` of
# `nn.Linear`, `nn.Tanh`, `nn.ReLU` and `nn.Sigmoid` layers (e.g. `nodecourse.models.MLP`), returning
# the product of these factors as a Python float. `torch.linalg.matrix_norm(W, ord=2)` is the
# largest singular value (not `torch.linalg.norm(W)`, which is the Frobenius norm).

# %%
def lipschitz_upper_bound(model: nn.Sequential) -> float:
    """Product over the layers of ||W||_2 (Linear) and the activation's largest slope."""
    ### BEGIN SOLUTION
    slopes = {nn.Tanh: 1.0, nn.ReLU: 1.0, nn.Sigmoid: 0.25}
    bound = 1.0
    for layer in model:
        if isinstance(layer, nn.Linear):
            bound *= torch.linalg.matrix_norm(layer.weight.detach(), ord=2).item()
        else:
            bound *= slopes[type(layer)]
    return bound
    ### END SOLUTION


lipschitz_upper_bound = ex01.check_lipschitz_upper_bound(lipschitz_upper_bound)

# %% [markdown]
# Both bounds together: for a single linear layer they meet, for a tanh MLP the true constant lies
# somewhere in between, and the sampled bound sits below the spectral one.

# %%
linear = nn.Sequential(nn.Linear(2, 2)).to(device=DEVICE, dtype=DTYPE)
mlp = MLP([2, 32, 32, 2]).to(device=DEVICE, dtype=DTYPE)
x1 = 3 * torch.randn(n_pairs, 2, dtype=DTYPE, device=DEVICE)
for name, model, x2 in (("Linear(2, 2)", linear, torch.randn(n_pairs, 2, dtype=DTYPE, device=DEVICE)),
                        ("MLP([2, 32, 32, 2])", mlp, x1 + 1e-3 * torch.randn_like(x1))):
    lower, upper = lipschitz_lower_bound(model, x1, x2), lipschitz_upper_bound(model)
    print(f"{name:20s} lower {lower:.4f} <= upper {upper:.4f}")
    assert lower <= upper * (1 + 1e-12)
    if model is linear:
        assert lower > 0.999 * upper  # a linear map attains its spectral norm


# %% [markdown] slideshow={"slide_type": "slide"}
# ## Exercise 5: find the bug in "time as part of the state"
# A non-autonomous ODE $\dot y = f(t, y)$ has no flow in the state alone; appending time to the state,
# $z = (y, s)$ with $\dot s = 1$, makes it autonomous: $\dot z = g(z) = (f(s, y), 1)$. A colleague's
# `autonomous_field(f)` below returns such a `g(t, z)` (time as the last entry of `z`, `[..., N + 1]`).
# Their test solved from $t_0 = 0$ with $s_0 = 0$ and matched the original ODE. Run the checker, find
# why it fails elsewhere, and repair it: `g` must not depend on its argument `t` at all.

# %%
def autonomous_field(f):
    """The field g(t, z) = [f(s, y), 1] on z = [y, s]: time is the last entry of the state."""
    def g(t, z):
        y, s = z[..., :-1], z[..., -1:]
        ### BEGIN SOLUTION
        return torch.cat([f(s, y), torch.ones_like(s)], dim=-1)
        ### EXERCISE
        # return torch.cat([f(t, y), torch.ones_like(s)], dim=-1)
        ### END SOLUTION
    return g


autonomous_field = ex01.check_autonomous_field(autonomous_field)

# %% [markdown]
# With the repaired field, starting the clock in the state at $s_0 = 2$ while the solver runs on $[0, 1]$
# gives the original ODE's solution on $[2, 3]$:

# %%
from nodecourse.exercises.checking import who


def forced(t, y):
    return -y + torch.sin(3 * torch.as_tensor(t, dtype=y.dtype))


z_end = odeint(autonomous_field(forced), torch.tensor([1.0, 2.0], dtype=torch.float64),
               torch.tensor([0.0, 1.0], dtype=torch.float64), rtol=1e-10, atol=1e-12)[-1]
y_end = odeint(forced, torch.tensor([1.0], dtype=torch.float64), torch.tensor([2.0, 3.0], dtype=torch.float64),
               rtol=1e-10, atol=1e-12)[-1]
print(f"with {who(autonomous_field)} autonomous_field: y(3) = {z_end[0]:.6f}, s = {z_end[1]:.6f}; "
      f"original ODE: y(3) = {y_end[0]:.6f}")
assert torch.allclose(z_end[:1], y_end, atol=1e-8), "the autonomous field does not reproduce the original ODE"

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Exercise 6: predict, then check
# The damped pendulum ($g/l = 1$, damping $c = 0.5$) moves a small patch of the phase plane around
# $(\theta, \omega) = (1, 0.3)$ for $t = 2$. By what factor does the patch's **area** change? Write your
# prediction into `predicted_factor` before you run the cell; the checker measures the determinant of the
# flow map's Jacobian (5% either way passes).

# %%
### BEGIN SOLUTION
predicted_factor = 0.368  # exp(-c t): the divergence is -c everywhere
### EXERCISE
# predicted_factor = None  # your prediction: a number
### END SOLUTION
measured_factor = ex01.check_area_factor_prediction(predicted_factor)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Recap
# - A vector field is a batched function `f(t, y)` that keeps the state's shape, dtype and device.
# - Picard's iteration turns the integral form of an IVP into an algorithm; it converges as fast as
#   $(Lh)^k/k!$, down to the error of the quadrature used for the integral.
# - Sampled pairs bound a Lipschitz constant from below, the product of spectral norms from above;
#   they meet for a linear map and leave a gap for a deep network.
#
# ## Further reading
# - E. Hairer, S. P. Nørsett, G. Wanner. *Solving Ordinary Differential Equations I: Nonstiff
#   Problems*. 2nd ed., Springer, 1993. (Picard-Lindelöf, chapter I.7.)
# - A. Virmaux, K. Scaman. *Lipschitz Regularity of Deep Neural Networks: Analysis and Efficient
#   Estimation*. NeurIPS 2018. arXiv:1805.10965.
# - T. Miyato, T. Kataoka, M. Koyama, Y. Yoshida. *Spectral Normalization for Generative Adversarial
#   Networks*. ICLR 2018. arXiv:1802.05957.
# - R. T. Q. Chen, Y. Rubanova, J. Bettencourt, D. Duvenaud. *Neural Ordinary Differential
#   Equations*. NeurIPS 2018. arXiv:1806.07366.
