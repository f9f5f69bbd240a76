# %% [markdown] slideshow={"slide_type": "skip"}
# Colab links appear here once the course's home repository is set (`make home`, see CONTRIBUTING.md).

# %% [markdown] slideshow={"slide_type": "slide"}
# # 02 · Euler's method and ResNets
#
# Notebook 01 described a system by its vector field and asked for the flow. Here we compute that
# flow with the simplest solver there is, Euler's method, and measure how its error shrinks with
# the step. Then we see that a residual network computes exactly the same thing: a ResNet block is
# one Euler step. Letting the number of blocks grow while the step shrinks turns a ResNet into an
# ODE, which is what a Neural ODE is.
#
# **Learning objectives**
# - derive Euler's method from a Taylor expansion and bound its local error, O(h^2), and its global error, O(h);
# - implement it from scratch, check it against `nodecourse.odeint(..., method="euler")` and measure its order of convergence on a log-log plot;
# - show numerically that a ResNet block `y + f(y)` is an Euler step with h = 1, and that depth-variant weights make a time-dependent vector field;
# - measure the continuous limit: a shared-weight ResNet with L blocks of step T/L approaches the ODE solution like 1/L;
# - read the `NeuralODE` model (input projection, Euler solve with shared dynamics, output projection) and train ResNets of growing depth on a 2-D map.
#
# **Estimated time:** 75 minutes.

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

# %%
import copy
import math

import numpy as np
from torch import nn

from nodecourse import odeint
from nodecourse.claims import check, claim
from nodecourse.models import MLP, NeuralODE, ODEFunc, ResNet
from nodecourse.plotting import convergence_plot, resnet_block_vs_euler_step, trajectories, vector_field
from nodecourse.train import count_parameters, train

# Every tensor in this notebook is small (tens of thousands of numbers at most): one CPU thread
# computes it faster than several, which would spend their time waiting for each other.
torch.set_num_threads(1)

# Error measurements use float64 on the CPU: round-off (1e-16) then stays far below the errors we
# measure, and it works everywhere (Apple's MPS has no float64). Training runs on DEVICE.
F64 = dict(dtype=torch.float64)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Hyperparameters
# The only cell the test suite changes: fast mode shrinks the training loop of section 6, nothing else.

# %% [markdown] slideshow={"slide_type": "notes"}
# Speaker notes (3 min with the setup). Fast mode changes only the training demo of section 6: 100 instead
# of 1500 Adam steps and 256 instead of 1024 points; sections 1-5 are exact checks in float64 on the CPU.
# Keep the one-thread line of the setup: with two threads on a busy 2-core machine the same cells run 5-10x
# slower. Ask the room: which numbers of this notebook should fast mode leave unchanged?

# %%
n_iters = 100 if FAST else 1500   # Adam steps for each ResNet of the training demo
n_train = 256 if FAST else 1024   # training points of the 2-D map
lr = 2e-2                         # Adam's learning rate
train_depths = [1, 4, 16]         # residual blocks of the trained shared-weight ResNets
hidden = 32                       # width of the residual MLP


# %% [markdown] slideshow={"slide_type": "slide"}
# ## 1. Euler's method
# An initial value problem asks for the state $y(t)$ with
# $$\dot y(t) = f(t, y(t)), \qquad y(t_0) = y_0 .$$
# Taylor's theorem expands the solution around $t$, with $\ddot y$ evaluated at some $\xi \in (t, t+h)$:
# $$y(t + h) = y(t) + h\,\dot y(t) + \tfrac{h^2}{2}\,\ddot y(\xi) = y(t) + h\,f(t, y(t)) + \tfrac{h^2}{2}\,\ddot y(\xi).$$
# Dropping the last term gives **Euler's method**: on a grid $t_n = t_0 + n h$,
# $$y_{n+1} = y_n + h\, f(t_n, y_n).$$
# The vector field is evaluated once per step, at the start of the step, and the state moves along
# it in a straight line.

# %% [markdown] slideshow={"slide_type": "notes"}
# Speaker notes (18 min). Derive Euler from Taylor's theorem on the board: local error
# $\tfrac{h^2}{2}\ddot y(\xi)$, then the global bound $\frac{Mh}{2K}(e^{KT}-1)$ through
# $|e_{n+1}| \le (1+hK)|e_n| + Mh^2/2$; the Lipschitz constant is $K$ in this notebook only, because $L$ is
# the depth from section 2 on. Stress local $O(h^2)$ against global $O(h)$: $1/h$ steps cost one power of
# $h$, the pattern of every solver in notebook 03. Show the from-scratch `euler` matching `odeint` to 4e-16,
# the circle (the radius grows by exactly $\sqrt{1+h^2}$ per step), the measured orders 2.000 (local), 1.019
# and 0.997 (global), and the error at about 1/3 of the bound. Common mistakes: evaluating $f$ at the end of
# the step (implicit Euler, or simply wrong), assuming a uniform grid, forgetting $y_0$ in the trajectory,
# fitting orders in float32 or in the round-off regime; ask the room how many more steps Euler needs for one
# more digit.

# %%
def euler_step(f, t, y, h):
    """One Euler step: the state y [*S] at time t -> the state at t + h [*S]."""
    return y + h * f(t, y)


def euler(f, y0, t0, t1, n):
    """n Euler steps of size h = (t1 - t0) / n; every state, y0 included: [n + 1, *y0.shape]."""
    h = (t1 - t0) / n
    ys = [y0]
    for k in range(n):
        ys.append(euler_step(f, t0 + k * h, ys[-1], h))
    return torch.stack(ys)


# %% [markdown]
# Our test problem is the harmonic oscillator $\dot y_1 = y_2,\ \dot y_2 = -y_1$: its exact
# solution rotates the initial state clockwise, $y(t) = R(t)\, y_0$ with
# $R(t) = \begin{pmatrix}\cos t & \sin t\\ -\sin t & \cos t\end{pmatrix}$, so we can measure errors
# exactly. First, our `euler` must agree with the package's Euler solver on the same grid.

# %%
def oscillator(t, y):
    """dy1/dt = y2, dy2/dt = -y1 on states [..., 2]."""
    return torch.stack([y[..., 1], -y[..., 0]], dim=-1)


def oscillator_exact(t, y0):
    """The exact solution at time t of the oscillator from y0 [..., 2]: y0 rotated clockwise by t."""
    c, s = math.cos(t), math.sin(t)
    return torch.stack([c * y0[..., 0] + s * y0[..., 1], -s * y0[..., 0] + c * y0[..., 1]], dim=-1)


y0 = torch.tensor([[1.0, 0.0], [0.0, 0.5], [-0.7, 0.7]], **F64)   # a batch of 3 initial states
ours = euler(oscillator, y0, 0.0, 2.0, 20)
package = odeint(oscillator, y0, torch.linspace(0.0, 2.0, 21, **F64), method="euler", options={"step_size": 0.1})
check("our euler returns y0 and the 20 steps for the 3 samples", ours.shape == (21, 3, 2),
      detail=f"shape {tuple(ours.shape)}")
claim("largest difference to nodecourse.odeint(method='euler')", measured=(ours - package).abs().max(), at_most=1e-12)

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### What Euler does to a circle
# The exact solution stays on a circle. Euler's step adds $h$ times a velocity that is tangent to
# the circle, so it always moves outward: $|y_{n+1}|^2 = |y_n|^2 + h^2 |y_n|^2$, i.e. the radius
# grows by exactly $\sqrt{1 + h^2}$ per step. A smaller step spirals out more slowly.

# %%
T_circle = 2 * math.pi
start = torch.tensor([1.0, 0.0], **F64)
fig, ax = plt.subplots(figsize=(5, 5))
exact_path = torch.stack([oscillator_exact(s, start) for s in np.linspace(0, T_circle, 200)])
ax.plot(exact_path[:, 0], exact_path[:, 1], color="0.6", lw=4, label="exact")
for h in (0.5, 0.2, 0.05):
    n = round(T_circle / h)
    path = euler(oscillator, start, 0.0, n * h, n)
    growth = path[-1].norm().item()
    check(f"h = {h}: the radius grew by sqrt(1 + h^2) in each of the {n} steps",
          abs(growth - (1 + h**2) ** (n / 2)) < 1e-12, detail=f"radius {growth:.6f} = (1 + h^2)^({n}/2)")
    ax.plot(path[:, 0], path[:, 1], ".-", ms=3, label=f"Euler, h = {h} (radius x{growth:.2f})")
ax.set(xlabel="$y_1$", ylabel="$y_2$", title="one period of the oscillator", aspect="equal")
ax.legend(fontsize=8)
plt.show()


# %% [markdown] slideshow={"slide_type": "subslide"}
# ### Local error: O(h^2) per step
# The term we dropped is the **local error**, the error of one step started on the exact solution:
# $$\tau(h) = y(t + h) - \big(y(t) + h f(t, y(t))\big) = \tfrac{h^2}{2}\,\ddot y(\xi) = O(h^2).$$
# We measure it for step sizes $h = 0.2, 0.1, \dots$ and fit a line to $\log \tau$ against
# $\log h$: its slope is the order.

# %%
def fitted_slope(x, y):
    """Least-squares slope of log(y) against log(x): the p in y ~ C x^p."""
    return float(np.polyfit(np.log(np.asarray(x, dtype=float)), np.log(np.asarray(y, dtype=float)), 1)[0])


hs = [0.2 / 2**k for k in range(7)]
local_errors = [(oscillator_exact(h, start) - euler_step(oscillator, 0.0, start, h)).norm().item() for h in hs]
claim("order of Euler's local error", measured=fitted_slope(hs, local_errors), expected=2, tol=0.1, fmt=".3f")

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### Global error: O(h)
# After $n = (t_N - t_0)/h$ steps the local errors have piled up. Write $e_n = y(t_n) - y_n$ for
# the **global error**, $K$ for the Lipschitz constant of $f$ in $y$ (notebook 01 called it $L$; here
# $L$ is kept for the depth of a ResNet) and $M = \max |\ddot y|$. Subtracting the Euler step from the
# Taylor expansion of the exact solution,
# $$e_{n+1} = e_n + h\,\big[f(t_n, y(t_n)) - f(t_n, y_n)\big] + \tau_{n+1},
# \qquad |\tau_{n+1}| \le \tfrac{M h^2}{2},$$
# and the Lipschitz bound gives $|e_{n+1}| \le (1 + hK)\,|e_n| + \tfrac{M h^2}{2}$. Unrolled from
# $e_0 = 0$, with $1 + hK \le e^{hK}$:
# $$|e_n| \le \frac{M h^2}{2} \sum_{k=0}^{n-1} (1 + hK)^k = \frac{M h^2}{2}\,\frac{(1 + hK)^n - 1}{hK}
# \le \frac{M h}{2K}\left(e^{K (t_n - t_0)} - 1\right).$$
# One power of $h$ is lost because there are $1/h$ steps: **the global error is O(h)**, Euler's
# method has order 1. For the oscillator $K = 1$ (a rotation) and $M = \max|\ddot y| = |y_0| = 1$.
#
# We check the order on two problems with exact solutions: the oscillator and the logistic
# equation $\dot y = y(1 - y)$, whose solution is $y(t) = 1 / \big(1 + (1/y_0 - 1)e^{-t}\big)$.

# %%
T_end = 2.0
step_sizes = hs                                   # 0.2, 0.1, ..., 0.003125
steps = [round(T_end / h) for h in step_sizes]    # 10, 20, ..., 640 steps

osc_errors = [(euler(oscillator, start, 0.0, T_end, n)[-1] - oscillator_exact(T_end, start)).norm().item()
              for n in steps]
logistic_exact = 1 / (1 + (1 / 0.1 - 1) * math.exp(-T_end))
log_errors = [abs(euler(lambda t, y: y * (1 - y), torch.tensor([0.1], **F64), 0.0, T_end, n)[-1].item()
                  - logistic_exact) for n in steps]

for name, errs in (("oscillator", osc_errors), ("logistic", log_errors)):
    print(f"{name:10s}: global error {errs[0]:.2e} (h = {step_sizes[0]}) ... {errs[-1]:.2e} (h = {step_sizes[-1]:.4f})")
    claim(f"{name}: order of Euler's global error", measured=fitted_slope(step_sizes, errs), expected=1, tol=0.1,
          fmt=".3f")

bound = [h / 2 * (math.exp(T_end) - 1) for h in step_sizes]   # M h / (2K) (e^{KT} - 1) with K = M = 1
claim("oscillator: largest ratio of the measured error to the bound", at_most=1.0,
      measured=max(e / b for e, b in zip(osc_errors, bound)), fmt=".2f")

# %%
fig, ax = plt.subplots(figsize=(6, 4))
convergence_plot(ax, step_sizes, [osc_errors, log_errors, local_errors],
                 orders=[1, 1, 2], labels=["global, oscillator", "global, logistic", "local, oscillator"])
ax.set_title("Euler: global error O(h), local error O(h^2)")
plt.show()

# %% [markdown]
# Halving the step halves the error, and doubles the cost: to gain one digit Euler needs ten
# times the steps. Notebook 03 builds solvers whose error falls like $h^4$ or $h^5$.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 2. A ResNet block is an Euler step
# A residual network (He et al., 2016) updates its hidden state by adding a learned correction:
# $$y_{l+1} = y_l + f(y_l, \theta_l), \qquad l = 0, \dots, L-1 .$$
# Put Euler's update next to it:
# $$\begin{aligned}
# \dot y &= f(y, t, \theta)\\
# &\Big\downarrow\ \text{Euler discretization}\\
# y_{n+1} &= y_n + h\, f(y_n, t_n, \theta)
# \end{aligned}$$
# With $h = 1$ and the same parameters in every layer the two are **the same computation**: a ResNet
# block is an Euler step, the layer index $l$ is the time $t_l = l$, and a ResNet of depth $L$
# integrates $\dot y = f(y, \theta)$ from $t = 0$ to $t = L$. This observation is one of the main
# motivations of Neural ODEs (Chen et al., 2018): can we model the transformation continuously,
# defining depth by an integration interval instead of a number of layers?
#
# The figure draws the two side by side. Left, the residual block as a network diagram: the input
# $y_l$ goes through the layer $f$ while the skip connection carries it unchanged to the sum. Right, the
# same formula as Euler steps on the oscillator of section 1: from each $y_n$ the state moves in a
# straight line along $h f(t_n, y_n)$, the tangent of the solution through $y_n$, while the exact
# solution (grey) curves away; the dotted gap after one step is the local error.

# %% [markdown] slideshow={"slide_type": "notes"}
# Speaker notes (12 min). Put the two update rules side by side, then the figure: the skip connection is the
# identity term of Euler's step, and each Euler step moves along the tangent, with the local error of one
# step marked. `ResNet(mlp, 6).trajectory(x)` and Euler `odeint` with `step_size=1` on `arange(7)` agree
# exactly; common mistakes are a residual block without the skip connection, and asking `odeint` only for
# `t = [0, L]` when every hidden state is wanted. The step size is only a scale on the last layer, so the
# step by itself means nothing: the content is the limit $L \to \infty$ with $T$ fixed (section 4). Ask the
# room: which step size does a ResNet use?

# %%
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
resnet_block_vs_euler_step(ax1, ax2, oscillator, [0.0, 1.0], h=0.5, n_steps=3)
plt.tight_layout()
plt.show()

# %% [markdown]
# `nodecourse.models.ResNet(mlp, depth)` applies `y <- y + mlp(y)` `depth` times; `ODEFunc(mlp)` is
# the vector field $f(t, y) = \mathrm{mlp}(y)$. We compare every hidden state.

# %%
seed_everything(1)
mlp = MLP([2, 32, 2]).to(torch.float64)
depth = 6
resnet = ResNet(mlp, depth)                                # step_size=1, shared weights
x = torch.randn(5, 2, **F64)

hidden_states = resnet.trajectory(x)                       # [depth + 1, 5, 2]: input and every block's output
euler_states = odeint(ODEFunc(mlp), x, torch.arange(depth + 1, **F64), method="euler", options={"step_size": 1.0})
scratch_states = euler(lambda t, y: mlp(y), x, 0.0, float(depth), depth)

check("the ResNet and Euler give the input and one state per block", hidden_states.shape == euler_states.shape
      == (depth + 1, 5, 2), detail=f"shape {tuple(hidden_states.shape)}")
claim("largest gap, ResNet vs odeint's Euler with h = 1", measured=(hidden_states - euler_states).abs().max(),
      at_most=1e-12)
claim("largest gap, ResNet vs our euler", measured=(hidden_states - scratch_states).abs().max(), at_most=1e-12)

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### The step size is a scale of the last layer
# `ResNet(mlp, L, step_size=h)` computes `y <- y + h * mlp(y)`: Euler with step $h$ over
# $[0, Lh]$. Since `h * mlp(y)` is the MLP with its last layer's weight and bias multiplied by $h$,
# every ResNet is an Euler discretisation with *any* step we like; the step only matters once we
# ask what happens as $L$ grows (section 4).

# %%
h = 0.25
scaled = copy.deepcopy(mlp)
with torch.no_grad():
    scaled[-1].weight.mul_(h)
    scaled[-1].bias.mul_(h)
claim(f"largest gap, step h = {h} vs the last layer scaled by h", at_most=1e-12,
      measured=(ResNet(mlp, depth, step_size=h)(x) - ResNet(scaled, depth)(x)).abs().max())

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 3. Shared vs depth-variant weights
# A standard ResNet has its own parameters $\theta_l$ in every block. In ODE terms its vector field
# depends on time through the parameters,
# $$\dot y = f\big(y, \theta(t)\big), \qquad \theta(t) = \theta_l \ \text{ for } t \in [l, l + 1),$$
# a **depth-variant** field, piecewise constant in $t$. With **shared** weights, $\theta_l = \theta$,
# the field is autonomous and the parameter count does not depend on depth. The Neural ODE of Chen
# et al. shares its weights (time may enter as an extra input); depth-variant continuous models,
# with $\theta(t)$ a smooth function, are the subject of notebook 08.
#
# `ResNet(mlp, depth, shared=False)` gives each block its own copy of `mlp`. We perturb the copies
# so they differ, then solve the piecewise-constant field with Euler and compare.

# %% [markdown] slideshow={"slide_type": "notes"}
# Speaker notes (8 min). Depth-variant weights give a field that depends on time through $\theta(t)$,
# piecewise constant in time, with $L$ times the parameters; shared weights give an autonomous field. Point
# forward to notebook 08 (smooth $\theta(t)$: Galerkin, stacked) and to `ODEFunc(time_dependent=True)`. Ask
# the room: what must the weights of a depth-variant ResNet do as $L$ grows, for a limit to exist?

# %%
L = 4
variant = ResNet(mlp, L, shared=False)
claim("the copies start equal to the shared MLP: largest gap", measured=(variant(x) - ResNet(mlp, L)(x)).abs().max(),
      at_most=1e-12)
with torch.no_grad():
    for p in variant.parameters():
        p.add_(0.3 * torch.randn_like(p))


class PiecewiseConstantField(nn.Module):
    """f(t, y) = blocks[l](y) for t in [l h, (l + 1) h): the depth-variant ResNet as a time-dependent field."""

    def __init__(self, resnet):
        super().__init__()
        self.resnet = resnet

    def forward(self, t, y):
        layer = min(int(float(t) / self.resnet.step_size + 1e-9), self.resnet.depth - 1)
        return self.resnet.block(layer)(y)


euler_variant = odeint(PiecewiseConstantField(variant), x, torch.arange(L + 1, **F64), method="euler",
                       options={"step_size": 1.0})
claim("largest gap, depth-variant ResNet vs Euler on the piecewise-constant field",
      measured=(variant.trajectory(x) - euler_variant).abs().max(), at_most=1e-12)
n_shared, n_variant = count_parameters(ResNet(mlp, L)), count_parameters(variant)
check(f"the depth-variant ResNet has L = {L} times the parameters", n_variant == L * n_shared,
      detail=f"{n_variant} = {L} x {n_shared}")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 4. The continuous limit: more layers, smaller steps
# What happens as we add layers and take smaller steps? Fix an end time $T$ and shared weights,
# and give the ResNet $L$ blocks of step $h = T/L$:
# $$y_{l+1} = y_l + \tfrac{T}{L}\, f(y_l, \theta), \qquad l = 0, \dots, L - 1 .$$
# This is Euler's method with $L$ steps for $\dot y = f(y, \theta)$ on $[0, T]$, so by section 1 its
# output is within $C/L$ of the exact flow $\varphi_T(y_0)$. As $L \to \infty$ the discrete layers
# become a continuous evolution of the hidden state,
# $$y(T) = y(0) + \int_0^T f(y(t), \theta)\, \mathrm{d}t,$$
# the forward pass of a Neural ODE. We measure it: the reference is `dopri5` (notebook 03) at a
# tolerance of $10^{-10}$, and the ResNets have $L = 2, 4, \dots, 256$ blocks.
#
# (Without the factor $T/L$, i.e. with $h = 1$, a ResNet of depth $L$ approximates the flow to
# time $L$: every depth computes a different map. Fixing $T$ is what makes depth continuous.)

# %% [markdown] slideshow={"slide_type": "notes"}
# Speaker notes (12 min). $h = T/L$ with shared weights, $L = 2 \dots 256$ against dopri5 at 1e-10: the gap
# goes from 0.45 to 0.0049 with slope $-0.93$ overall, $L\cdot$gap levels off at 1.25, and doubling $L$
# halves the gap (checked). The left plot shows the ResNet's hidden states approaching the ODE's curves.
# Common mistake: the step $1/L$ instead of $T/L$. Ask the room: with $h = 1$ instead of $T/L$, what does a
# deeper ResNet approximate?

# %%
seed_everything(2)
field_mlp = MLP([2, 64, 2]).to(torch.float64)
with torch.no_grad():                       # a stronger, more nonlinear field than at initialisation,
    field_mlp[0].weight.mul_(2.0)           # so that the flow visibly bends
    field_mlp[-1].weight.mul_(3.0)
T = 2.0
x = torch.randn(64, 2, **F64)
reference = odeint(ODEFunc(field_mlp), x, torch.tensor([0.0, T], **F64), rtol=1e-10, atol=1e-12)[-1]

depths = [2**k for k in range(1, 9)]
gaps = [(ResNet(field_mlp, n, step_size=T / n)(x) - reference).abs().max().item() for n in depths]
for n, g in zip(depths, gaps):
    print(f"L = {n:3d}  h = {T / n:.5f}  max |ResNet - ODE| = {g:.2e}  L x gap = {n * g:.3f}")
claim("slope of log(gap) against log(L): the gap shrinks like 1/L", measured=fitted_slope(depths, gaps),
      expected=-1, tol=0.1, fmt=".3f")
claim(f"gap at L = {depths[-2]} / gap at L = {depths[-1]}: doubling the depth halves it",
      measured=gaps[-2] / gaps[-1], expected=2, tol=0.05)

# %% [markdown]
# Left: the hidden states of ResNets with 2, 4 and 16 blocks (dots: one per block) against the
# ODE's continuous trajectories (grey) over the vector field. Right: the gap against the step
# $h = T/L$, with an $O(h)$ line.

# %%
starts = torch.tensor([[-1.5, -1.0], [-0.5, 1.5], [1.0, 0.0], [0.5, -1.5], [1.5, 1.5]], **F64)
dense_t = torch.linspace(0.0, T, 100, **F64)
with torch.no_grad():
    ode_paths = odeint(ODEFunc(field_mlp), starts, dense_t, rtol=1e-8, atol=1e-10)
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.5))
lim = (float(ode_paths.min()) - 0.3, float(ode_paths.max()) + 0.3)
vector_field(ax1, ODEFunc(field_mlp), lim, lim, n=18)
trajectories(ax1, ode_paths, color="0.5", alpha=0.9, lw=3, label="ODE", start_markers=False)
with torch.no_grad():
    for n, color in zip((2, 4, 16), ("C3", "C1", "C0")):
        trajectories(ax1, ResNet(field_mlp, n, step_size=T / n).trajectory(starts), color=color,
                     marker="o", ms=3, lw=1, label=f"ResNet, L = {n}")
ax1.set(title="hidden states as depth grows, h = T/L", xlabel="$y_1$", ylabel="$y_2$")
ax1.legend(fontsize=8)
convergence_plot(ax2, [T / n for n in depths], gaps, orders=[1], labels=["max |ResNet - ODE|"])
ax2.set_title("the gap to the ODE solution")
plt.show()

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 5. The Neural ODE as a model
# A Neural ODE layer is this limit used as a building block. `nodecourse.models.NeuralODE` builds it
# from three parts:
#
# ```
# input [batch, input_size] -> input projection -> ODE solve of dz/dt = f(z, t), f an MLP,
#       with num_steps Euler steps of size step_size -> output projection -> output [batch, output_size]
# ```
#
# with the settings `input_size` (required), `hidden_size` (the size of the state $z$, default 256),
# `num_steps` (10), `step_size` (0.1) and `output_size` (default: `hidden_size`). The dynamics network
# is shared by every step, which is what makes it a discretised ODE rather than a ResNet with free
# layers.

# %% [markdown] slideshow={"slide_type": "notes"}
# Speaker notes (7 min). Read the architecture diagram next to `nodecourse.models.NeuralODE`: shapes,
# `.output_size` (defaults to `hidden_size`), parameters independent of `num_steps`, and equal to a
# projection, a ResNet and a projection to 1e-15. Name what the continuous view buys and where the course
# shows it: the adjoint (04), adaptive steps (03), irregular times (09). Ask the room: if the parameter
# count does not grow with `num_steps`, what does?

# %%
model = NeuralODE(input_size=8, hidden_size=256, num_steps=10, step_size=0.1)
print(model)
batch = torch.randn(32, 8)
out = model(batch)
check("output_size defaults to hidden_size", out.shape == (32, 256) and model.output_size == model.hidden_size,
      detail=f"input {tuple(batch.shape)} -> output {tuple(out.shape)}")
classifier = NeuralODE(input_size=8, hidden_size=64, output_size=10)
check("output_size=10 gives 10 outputs", classifier(batch).shape == (32, 10),
      detail=f"shape {tuple(classifier(batch).shape)}")
states = model.trajectory(batch)
check("trajectory gives the state before and after every step", states.shape == (model.num_steps + 1, 32, 256),
      detail=f"shape {tuple(states.shape)}")

# %% [markdown]
# Because the dynamics are shared, the number of steps changes the depth but not the parameter
# count. And with the Euler method the model is, number for number, a projection, a shared-weight
# ResNet of `num_steps` blocks with step `step_size`, and a projection.

# %%
sizes = {steps: count_parameters(NeuralODE(8, 256, num_steps=steps)) for steps in (1, 10, 100)}
check("the parameter count does not depend on num_steps", len(set(sizes.values())) == 1,
      detail=", ".join(f"{n} for {steps} steps" for steps, n in sizes.items()))

model64 = model.to(torch.float64)
b64 = batch.to(torch.float64)
with torch.no_grad():
    as_resnet = model64.output_proj(ResNet(model64.dynamics.net, model64.num_steps, step_size=model64.step_size)(
        model64.input_proj(b64)))
    gap = (model64(b64) - as_resnet).abs().max()
claim("largest gap, NeuralODE vs projection + ResNet + projection", measured=gap, at_most=1e-12)


# %% [markdown]
# What the continuous view buys (Chen et al. 2018), and where the course shows it: gradients in
# memory that does not grow with the number of steps, by the adjoint method (notebook 04);
# adaptive solvers that spend steps where the dynamics are hard (`method="dopri5"`, notebook 03);
# and states at any time $t$, for irregularly sampled data (notebook 09).

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 6. Training ResNets of growing depth on a 2-D map
# We fit a "swirl" of the plane: each point is rotated by an angle that decays with its radius,
# $$\varphi(x) = R\big(\omega(|x|)\big)\, x, \qquad \omega(r) = 2 e^{-r^2}.$$
# The swirl is itself the time-1 flow of the ODE $\dot x = \omega(|x|)\, J x$ (with $J$ the rotation
# by 90 degrees; the radius stays constant along the flow), so a continuous model can represent it
# exactly. We train shared-weight ResNets with $L = 1, 4, 16$ blocks of step $h = 1/L$ (so
# $T = 1$ for all), and a depth-variant ResNet with 4 blocks, on the mean squared error.

# %% [markdown] slideshow={"slide_type": "notes"}
# Speaker notes (12 min). The target swirl is itself the time-1 flow of an ODE (checked to 1e-6); shared
# ResNets with $L = 1, 4, 16$ and $h = 1/L$, plus a depth-variant $L = 4$, lower their losses 600-1900x in
# full mode. The hidden-state plots go from straight jumps ($L=1$) to smooth arcs ($L=16$). Key result:
# solved as an ODE with dopri5, each trained MLP gives a gap of 0.45 / 0.16 / 0.04 for $L = 1 / 4 / 16$, and
# the ODE loss of the $L=1$ field is 100x its ResNet loss: a shallow ResNet is not a Neural ODE, a deep one
# with small steps nearly is (Sander et al., NeurIPS 2022, study when). Ask the room: is a trained ResNet a
# Neural ODE?

# %%
def swirl(x, t=1.0):
    """The swirl flow at time t: rotate each point [N, 2] by t * 2 exp(-|x|^2)."""
    angle = t * 2.0 * torch.exp(-(x**2).sum(-1, keepdim=True))
    c, s = torch.cos(angle), torch.sin(angle)
    return torch.cat([c * x[:, :1] - s * x[:, 1:], s * x[:, :1] + c * x[:, 1:]], dim=-1)


g = torch.Generator().manual_seed(0)
X_train = (3.0 * torch.rand(n_train, 2, generator=g) - 1.5).to(DEVICE)
Y_train = swirl(X_train)
print("training pairs:", tuple(X_train.shape), "->", tuple(Y_train.shape))


def swirl_field(t, x):
    """omega(|x|) J x: rotation at the angular speed 2 exp(-|x|^2), which keeps |x| constant."""
    omega = 2.0 * torch.exp(-(x**2).sum(-1, keepdim=True))
    return omega * torch.cat([-x[:, 1:], x[:, :1]], dim=-1)


flowed = odeint(swirl_field, X_train, torch.tensor([0.0, 1.0], device=DEVICE), rtol=1e-7, atol=1e-9)[-1]
claim("the target is an ODE flow: largest gap, flow at t = 1 vs swirl map", measured=(flowed - Y_train).abs().max(),
      at_most=1e-5)

# %%
models, histories = {}, {}
for n in train_depths:
    seed_everything(0)
    models[n] = ResNet(MLP([2, hidden, 2]), n, step_size=1.0 / n).to(DEVICE)
    histories[n] = train(models[n], nn.functional.mse_loss, (X_train, Y_train), n_iters, lr=lr,
                         desc=f"ResNet L={n}")
seed_everything(0)
models["variant"] = ResNet(MLP([2, hidden, 2]), 4, shared=False, step_size=0.25).to(DEVICE)
histories["variant"] = train(models["variant"], nn.functional.mse_loss, (X_train, Y_train), n_iters, lr=lr,
                             desc="depth-variant L=4")

for key, hist in histories.items():
    print(f"{str(key):>8}: {count_parameters(models[key]):5d} parameters, "
          f"loss {hist.loss[0]:.4f} -> {hist.loss[-1]:.5f}")
    claim(f"{key}: the model learns the map, loss first / last", measured=hist.loss[0] / hist.loss[-1], at_least=5,
          fmt=".0f", fast_note=f"{n_iters} Adam steps only; the full run lowers the loss several hundred times")
check("the depth-variant ResNet has 4 times the parameters of the shared one with L = 4",
      count_parameters(models["variant"]) == 4 * count_parameters(models[4]))

# %%
fig, ax = plt.subplots(figsize=(6, 3.5))
for key, hist in histories.items():
    ax.plot(hist.loss, label=f"shared, L = {key}" if key != "variant" else "depth-variant, L = 4")
ax.set(yscale="log", xlabel="Adam step", ylabel="MSE", title="training loss")
ax.legend()
plt.show()

# %% [markdown]
# Now look inside: the hidden states of 16 test points after every block (blue), over the field
# the shared MLP learned, with the true swirl paths in grey and the targets as black crosses. With one block a point jumps straight to
# its target; with 16 blocks the hidden states trace a smooth curve along the true rotation.

# %%
grid_1d = torch.linspace(-1.2, 1.2, 4)
test_points = torch.cartesian_prod(grid_1d, grid_1d).to(DEVICE)
true_paths = torch.stack([swirl(test_points, s) for s in torch.linspace(0, 1, 50).tolist()])
targets = true_paths[-1].cpu()
fig, axes = plt.subplots(1, len(train_depths), figsize=(4.2 * len(train_depths), 4.2))
with torch.no_grad():
    for ax, n in zip(axes, train_depths):
        vector_field(ax, ODEFunc(models[n].block(0)), (-1.8, 1.8), (-1.8, 1.8), n=15)
        trajectories(ax, true_paths, color="0.6", lw=3, alpha=0.7, start_markers=False)
        trajectories(ax, models[n].trajectory(test_points), color="C0", marker="o", ms=3, lw=1)
        ax.scatter(targets[:, 0], targets[:, 1], marker="x", color="k", zorder=4, label="target")
        ax.set(title=f"shared ResNet, L = {n}, h = 1/{n}", aspect="equal")
plt.show()

# %% [markdown]
# Is a trained deep ResNet a Neural ODE? Take each model's trained MLP, solve its ODE on $[0, 1]$
# with `dopri5`, and compare with the ResNet's output. A one-block ResNet learns a field that
# only works with its one big step: as an ODE it gives a different map. The gap shrinks with
# depth, as in section 4: the 16-block ResNet and the ODE with its field compute nearly the same map.

# %%
ode_gaps = {}
with torch.no_grad():
    for n in train_depths:
        net = models[n]
        ode_out = odeint(ODEFunc(net.block(0)), X_train, torch.tensor([0.0, 1.0], device=DEVICE),
                         rtol=1e-6, atol=1e-8)[-1]
        ode_gaps[n] = (ode_out - net(X_train)).abs().max().item()
        ode_loss = nn.functional.mse_loss(ode_out, Y_train).item()
        print(f"L = {n:2d}: max |ResNet - ODE of its MLP| = {ode_gaps[n]:.3f};  "
              f"loss as a ResNet {nn.functional.mse_loss(net(X_train), Y_train).item():.5f}, as an ODE {ode_loss:.5f}")
claim(f"the deep ResNet is closer to its ODE: gap at L = {train_depths[0]} / gap at L = {train_depths[-1]}",
      measured=ode_gaps[train_depths[0]] / ode_gaps[train_depths[-1]], at_least=4, fmt=".1f")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Recap
# - Euler's method $y_{n+1} = y_n + h f(t_n, y_n)$ drops the $h^2$ term of a Taylor expansion:
#   local error $O(h^2)$, global error $O(h)$ (bounded by $\frac{Mh}{2K}(e^{KT} - 1)$ with $K$ the
#   Lipschitz constant); we measured orders 2 and 1.
# - A ResNet block $y_{l+1} = y_l + f(y_l, \theta_l)$ is an Euler step with $h = 1$; shared weights
#   give an autonomous field, depth-variant weights a field piecewise constant in time, with as many
#   times the parameters as there are blocks.
# - With $L$ blocks of step $h = T/L$ and shared weights, a ResNet converges to the ODE's flow like
#   $1/L$: in the limit, depth is continuous time and the network is a Neural ODE.
# - `NeuralODE` = input projection, an ODE solve with one shared MLP, output projection; with Euler
#   it is a ResNet, with parameters independent of the number of steps.
# - Trained deep shared-weight ResNets with small steps are close to the ODE of their own field;
#   shallow ones are not.
#
# ## Further reading
# - R. T. Q. Chen, Y. Rubanova, J. Bettencourt, D. Duvenaud. *Neural Ordinary Differential
#   Equations*. NeurIPS 2018. arXiv:1806.07366.
# - K. He, X. Zhang, S. Ren, J. Sun. *Deep Residual Learning for Image Recognition*. CVPR 2016.
#   arXiv:1512.03385.
# - W. E. *A Proposal on Machine Learning via Dynamical Systems*. Communications in Mathematics and
#   Statistics 5(1):1-11, 2017.
# - E. Haber, L. Ruthotto. *Stable Architectures for Deep Neural Networks*. Inverse Problems
#   34(1), 2018. arXiv:1705.03341.
# - Y. Lu, A. Zhong, Q. Li, B. Dong. *Beyond Finite Layer Neural Networks: Bridging Deep
#   Architectures and Numerical Differential Equations*. ICML 2018. arXiv:1710.10121.
# - M. E. Sander, P. Ablin, G. Peyré. *Do Residual Neural Networks discretize Neural Ordinary
#   Differential Equations?* NeurIPS 2022. arXiv:2205.14612.
# - S. Massaroli, M. Poli, J. Park, A. Yamashita, H. Asama. *Dissecting Neural ODEs*. NeurIPS 2020.
#   arXiv:2002.08071.
# - E. Hairer, S. P. Nørsett, G. Wanner. *Solving Ordinary Differential Equations I: Nonstiff
#   Problems*. 2nd ed., Springer, 1993 (Euler's method and its error bound: chapter I.7 and II.3).
# - P. Kidger. *On Neural Differential Equations*. PhD thesis, University of Oxford, 2022.
#   arXiv:2202.02435.

# %% [markdown] slideshow={"slide_type": "notes"}
# Speaker notes (3 min). "A ResNet is an Euler discretisation" is only half the story, because any ResNet is
# one for any $h$; the content is the limit with $T$ fixed and shared (or smoothly varying) weights, where
# the gap closes like $1/L$. Ask the room: what does notebook 03 have to add to Euler for a Neural ODE to be
# worth its cost?
