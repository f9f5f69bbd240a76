# %% [markdown] slideshow={"slide_type": "skip"}
# Colab links appear here once the course's home repository is set (`make home`, see CONTRIBUTING.md).

# %% [markdown] slideshow={"slide_type": "slide"}
# # 01 · Dynamical systems, flows and the existence of solutions
#
# A Neural ODE is a dynamical system whose vector field is a neural network. Before we train one,
# this notebook builds the vocabulary and the two theorems the rest of the course leans on: what a
# flow is, when an initial value problem has exactly one solution (Picard-Lindelöf, which needs
# Lipschitz continuity), and why, as a consequence, trajectories can never cross.
#
# **Learning objectives**
# - describe a system by its state space, vector field and flow, and read phase portraits (linear systems, pendulum, Lotka-Volterra);
# - define a dynamical system as a triple $(\mathcal S, \mathcal T, \Phi)$ and check the flow property numerically;
# - state an ODE and an initial value problem, in differential and in integral form;
# - state the Picard-Lindelöf theorem, run Picard's iteration, and show with $\dot y = \sqrt{\lvert y \rvert}$ what fails without Lipschitz continuity;
# - bound the Lipschitz constant of an MLP from above (spectral norms) and from below (sampling);
# - explain why trajectories of an autonomous ODE cannot cross, and why a 1-D Neural ODE cannot learn $x \mapsto -x$.
#
# **Estimated time:** 90 minutes

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Setup
# On Colab the first cell installs `nodecourse`; everywhere it picks the device, seeds the random
# generators and reads fast mode (`NODECOURSE_FAST=1` shrinks the sampling loops for the test suite).

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

import math
from functools import partial

import matplotlib.pyplot as plt
import numpy as np
import torch
from torch import nn

from nodecourse import SolverError, odeint, solve
from nodecourse.claims import check, claim
from nodecourse.config import FAST, device, seed_everything
from nodecourse.data import lotka_volterra, lotka_volterra_field, pendulum, pendulum_field, reflection_1d
from nodecourse.models import MLP
from nodecourse.plotting import trajectories, vector_field

seed_everything(0)
DEVICE = device()
print(f"device: {DEVICE}, fast mode: {FAST}")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Hyperparameters
# The only cell the test suite changes: fast mode draws fewer random samples, nothing else.

# %% [markdown] slideshow={"slide_type": "notes"}
# Speaker notes (3 min with the setup). Fast mode only draws fewer random samples here: there is no training
# in this notebook. Everything is float64, and the setup sets one CPU thread because the problems are tiny.
# Ask the room: why would double precision matter in a notebook that measures errors of 1e-9?

# %%
n_pairs = 2_000 if FAST else 200_000          # random pairs for the sampled Lipschitz lower bound
n_jacobian_points = 500 if FAST else 20_000   # points where the Jacobian's spectral norm is measured
n_initial_states = 40 if FAST else 200        # initial states in the no-crossing experiment
n_boundary = 400 if FAST else 2_000           # vertices of the polygon transported by the flow

# %% [markdown]
# We compute in double precision, so that the solver's tolerance, not rounding, decides the errors we
# measure. Apple's MPS backend has no float64, so on a Mac these small problems run on the CPU. The
# problems are tiny, so on the CPU we use one thread: several threads would mostly wait for each
# other, and become very slow when other programs compete for the cores.

# %%
if DEVICE.type == "mps":
    DEVICE = torch.device("cpu")
DTYPE = torch.float64
torch.set_num_threads(1)
TOL = dict(rtol=1e-9, atol=1e-11)  # solver tolerances used throughout


def as_tensor(values) -> torch.Tensor:
    """A float64 tensor on the notebook's device."""
    return torch.as_tensor(values, dtype=DTYPE, device=DEVICE)


def flow(field, x: torch.Tensor, t: float) -> torch.Tensor:
    """Phi(t, x): solve dy/dt = field(t, y) from y(0) = x up to time t (t may be negative)."""
    return odeint(field, x, as_tensor([0.0, t]), **TOL)[-1]


# %% [markdown] slideshow={"slide_type": "slide"}
# ## 1. State space, vector fields and phase portraits
#
# The **state** $y \in \mathcal S = \mathbb R^n$ collects everything we need to know about a system
# at one instant: the angle and angular velocity of a pendulum, the sizes of two populations, the
# hidden activation of a network. A **vector field** $f: \mathbb R^n \to \mathbb R^n$ assigns to every
# state a velocity, and a solution is a curve that follows it:
#
# $$\dot y(t) = f(y(t)).$$
#
# A **phase portrait** draws the field as arrows and a few solution curves on top. The simplest
# fields are linear, $f(y) = A y$, whose solutions are known in closed form through the matrix
# exponential:
#
# $$y(t) = e^{tA} y_0, \qquad e^{tA} = \sum_{k \ge 0} \frac{(tA)^k}{k!}.$$
#
# The eigenvalues of $A$ decide the picture: purely imaginary eigenvalues give closed orbits (a
# *centre*), a negative real part spirals into the origin (a *spiral sink*), real eigenvalues of
# both signs give a *saddle*.

# %% [markdown] slideshow={"slide_type": "notes"}
# Speaker notes (10 min). A solution is a curve that follows the arrows. For $\dot y = Ay$ the eigenvalues
# decide the picture: centre, spiral sink, saddle; the solver matches $e^{tA}y_0$ to about 1e-9. Ask the
# room: which eigenvalues give a spiral source, and what does its portrait look like?

# %%
def linear_field(A: torch.Tensor):
    """The field f(t, y) = A y for a batch of states y [B, n], in y's dtype and on y's device."""
    return lambda t, y: y @ A.to(y).T


systems = {  # name: (A, integration time)
    "centre": (as_tensor([[0.0, 1.0], [-1.0, 0.0]]), 2 * math.pi),
    "spiral sink": (as_tensor([[-0.3, 1.0], [-1.0, -0.3]]), 10.0),
    "saddle": (as_tensor([[1.0, 0.0], [0.0, -1.0]]), 3.0),
}
angles = torch.linspace(0, 2 * math.pi, 9, dtype=DTYPE, device=DEVICE)[:-1] + 0.2
y0_linear = 2.5 * torch.stack([torch.cos(angles), torch.sin(angles)], dim=1)  # [8, 2]

solutions = {}
for name, (A, T) in systems.items():
    t = torch.linspace(0, T, 200, dtype=DTYPE, device=DEVICE)
    ys = odeint(linear_field(A), y0_linear, t, **TOL)                      # [200, 8, 2]
    exact = torch.einsum("tij,bj->tbi", torch.linalg.matrix_exp(t[:, None, None] * A), y0_linear)
    rel_err = ((ys - exact).abs().max() / exact.abs().max()).item()
    eig = torch.linalg.eigvals(A)
    print(f"{name:12s} eigenvalues {eig.cpu().numpy().round(2)}")
    claim(f"{name}: largest relative gap, solver vs matrix exponential e^(tA) y0", measured=rel_err, at_most=1e-7)
    solutions[name] = ys

# %% [markdown]
# The numbers confirm what the eigenvalues promise: the centre's orbits close after one period
# $2\pi$, and in the spiral sink $A = -0.3 I + J$ (with $J$ a rotation generator) every state shrinks
# exactly as $e^{-0.3 t}$.

# %%
centre, spiral = solutions["centre"], solutions["spiral sink"]
closing_gap = (centre[-1] - centre[0]).abs().max().item()
decay = spiral[-1].norm(dim=1) / spiral[0].norm(dim=1)
claim("centre: the orbits close, |y(2 pi) - y(0)|", measured=closing_gap, at_most=1e-8)
claim("spiral sink: largest relative gap of |y(10)| / |y(0)| to e^-3", at_most=1e-8,
      measured=(decay / math.exp(-3.0) - 1).abs().max())

# %%
fig, axes = plt.subplots(1, 3, figsize=(13, 4.2))
for ax, (name, (A, _)) in zip(axes, systems.items()):
    vector_field(ax, linear_field(A), (-3, 3), (-3, 3), n=17)
    trajectories(ax, solutions[name])
    ax.set(xlim=(-3, 3), ylim=(-3, 3), title=name, xlabel="$y_1$", ylabel="$y_2$", aspect="equal")
plt.tight_layout()
plt.show()

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 2. ODEs and initial value problems
#
# **Definition (first-order ODE).** For $f: \mathbb R \times \mathbb R^n \to \mathbb R^n$,
#
# $$\dot{\mathbf y}(t) = f(t, \mathbf y(t)).$$
#
# It is *autonomous* when $f$ does not depend on $t$ (as in section 1). The course writes the time
# argument first, $f(t, y)$, as `odeint` and `torchdiffeq` do; some texts write $f(y, t)$.
#
# **Definition (initial value problem).** Add an initial state, $\mathbf y(t_0) = y_0$, and ask for
# the state at a later time $t_1$. Integrating both sides gives the *integral form*, which is what an
# ODE solver approximates:
#
# $$\mathbf y(t_1) = \mathbf y(t_0) + \int_{t_0}^{t_1} f(t, \mathbf y(t))\,\mathrm dt
#   = \mathrm{ODESolve}(\mathbf y(t_0), f, t_0, t_1).$$
#
# Higher-order equations become first-order systems by naming derivatives as new state variables.
# The damped pendulum $\ddot\theta = -\frac gl \sin\theta - c\,\dot\theta$ becomes, with
# $\omega = \dot\theta$, the planar system
#
# $$\dot\theta = \omega, \qquad \dot\omega = -\tfrac gl \sin\theta - c\,\omega,$$
#
# which is `nodecourse.data.pendulum_field`. Let us check the integral form on one of its solutions.

# %% [markdown] slideshow={"slide_type": "notes"}
# Speaker notes (8 min). The integral form $y(t_1) = y_0 + \int f$ is what every solver approximates, and
# section 5 builds the Picard operator from it. Point out the argument order `f(t, y)`, as in `odeint` (some
# texts write $f(y, t)$). A second-order equation becomes a first-order system, as the pendulum shows. Ask
# the room: how many state variables does a third-order scalar ODE need?

# %%
c = 0.2
damped = partial(pendulum_field, damping=c)  # f(t, y) of the damped pendulum

t_dense = torch.linspace(0.0, 5.0, 2001, dtype=DTYPE, device=DEVICE)
y0_pend = as_tensor([[1.0, 0.5], [2.5, -1.0], [-0.3, 2.0]])        # three (theta, omega) states
ys = odeint(damped, y0_pend, t_dense, **TOL)                          # [2001, 3, 2]

# Simpson's rule for the integral of f(t, y(t)) over the 2001 samples
h = (t_dense[1] - t_dense[0]).item()
weights = torch.ones(len(t_dense), dtype=DTYPE, device=DEVICE)
weights[1:-1:2], weights[2:-1:2] = 4.0, 2.0
integral = (h / 3) * torch.einsum("t,tbi->bi", weights, damped(t_dense, ys))
claim("largest gap, y(5) - y(0) vs the integral of f along the solution", at_most=1e-9,
      measured=(ys[-1] - ys[0] - integral).abs().max())

# %% [markdown]
# $\mathrm{ODESolve}(y_0, f, t_0, t_1)$ is one call: `odeint(f, y0, [t0, t1])[-1]`. It agrees with the
# last state of the dense solve, and with `nodecourse.data.pendulum`, which integrates the same
# equations with its own small RK4 (independent of the solvers we test).

# %%
y_t1 = odeint(damped, y0_pend, as_tensor([0.0, 5.0]), **TOL)[-1]
reference = pendulum(y0_pend, t_dense, damping=c)
claim("largest gap, two-point solve vs dense solve", measured=(y_t1 - ys[-1]).abs().max(), at_most=1e-8)
claim("largest gap, odeint vs data.pendulum (RK4, h = 0.0025)", measured=(reference - ys).abs().max(), at_most=1e-8)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 3. Dynamical systems and flows
#
# **Definition (dynamical system).** A triple $(\mathcal S, \mathcal T, \Phi)$ where $\mathcal S$ is the
# state space, $\mathcal T$ the parameter space (time) and $\Phi: \mathcal T \times \mathcal S \to \mathcal S$
# the evolution.
#
# For an autonomous ODE, $\mathcal S = \mathbb R^n$, $\mathcal T = \mathbb R_+$ (or $\mathbb R$ when we
# may also run backwards) and $\Phi(t, x)$ is the solution at time $t$ of the IVP that starts at $x$:
# the *general solution*. For each fixed $t$, $\Phi_t = \Phi(t, \cdot)$ maps the whole state space to
# itself; the one-parameter family $\{\Phi_t\}$ is called a **flow**. It satisfies
#
# $$\Phi(0, x) = x, \qquad \Phi(t + s, x) = \Phi(t, \Phi(s, x)).$$
#
# *Why:* both $t \mapsto \Phi(t+s, x)$ and $t \mapsto \Phi(t, \Phi(s, x))$ solve $\dot y = f(y)$ and
# equal $\Phi(s, x)$ at $t = 0$; when the IVP has a unique solution (section 5) they coincide.
# With $t = -s$ the flow property also says $\Phi_{-s}$ inverts $\Phi_s$: a flow map is invertible.

# %% [markdown] slideshow={"slide_type": "notes"}
# Speaker notes (13 min). The triple $(\mathcal S, \mathcal T, \Phi)$. The flow property holds because the
# IVP has a unique solution, and it gives $\Phi_{-s} = \Phi_s^{-1}$, used again in the adjoint's reverse
# solve (notebook 04) and in CNFs (notebook 10). A non-autonomous ODE has no flow in $t$ alone until time
# becomes part of the state. Liouville: the divergence sets the area rate, and for the damped pendulum the
# area shrinks as $e^{-ct}$ (notebook 10 comes back to this). Ask the room: if the flow can be run backwards
# exactly, what could still go wrong when a solver does it?

# %%
x = as_tensor(torch.randn(64, 2) * 1.5)   # 64 random states
s, t_ = 1.3, 2.1
direct = flow(damped, x, s + t_)
composed = flow(damped, flow(damped, x, s), t_)
back = flow(damped, flow(damped, x, s), -s)
claim("flow property: largest |Phi(t+s, x) - Phi(t, Phi(s, x))|", measured=(direct - composed).abs().max(),
      at_most=1e-7)
claim("inverse: largest |Phi(-s, Phi(s, x)) - x|", measured=(back - x).abs().max(), at_most=1e-7)

# %% [markdown]
# For a **non-autonomous** ODE the clock matters: solving $\dot y = t\,y$ for $s$ units and then
# *restarting the clock at zero* for $t$ more units is not the same as solving for $t+s$ units. The
# exact solution from time 0 is $x e^{t^2/2}$, so the composition gives $x e^{(s^2+t^2)/2}$ instead of
# $x e^{(s+t)^2/2}$. The remedy is to make time part of the state, $(y, \tau)$ with $\dot\tau = 1$:
# the augmented system is autonomous and has a flow again.

# %%
time_dependent = lambda t, y: t * y                                   # noqa: E731
augmented = lambda t, z: torch.stack([z[..., 1] * z[..., 0], torch.ones_like(z[..., 1])], dim=-1)  # noqa: E731

x1 = as_tensor([[1.0]])
naive_gap = (flow(time_dependent, x1, s + t_) - flow(time_dependent, flow(time_dependent, x1, s), t_)).abs().item()
z = as_tensor([[1.0, 0.0]])                                           # (y, tau) with tau(0) = 0
aug_gap = (flow(augmented, z, s + t_) - flow(augmented, flow(augmented, z, s), t_)).abs().max().item()
exact_gap = abs(math.exp((s + t_) ** 2 / 2) - math.exp((s**2 + t_**2) / 2))
claim("dy/dt = t y, restarting the clock: the gap e^((s+t)^2/2) - e^((s^2+t^2)/2)", measured=naive_gap,
      expected=exact_gap, rel=1e-6, fmt=".6g")
claim("with time in the state: the gap", measured=aug_gap, at_most=1e-6)


# %% [markdown] slideshow={"slide_type": "subslide"}
# ### The flow moves whole regions
# $\Phi_t$ acts on every state at once, so we can watch it carry a region of the state space. How
# its area changes is decided by the divergence of the field (Liouville's formula):
#
# $$\frac{\mathrm d}{\mathrm dt}\,\mathrm{area}(\Phi_t(D)) = \int_{\Phi_t(D)} \nabla\!\cdot f \,\mathrm dy.$$
#
# For the pendulum, $\nabla\!\cdot f = \partial_\theta \omega + \partial_\omega(-\frac gl\sin\theta - c\omega) = -c$,
# so $\mathrm{area}(\Phi_t(D)) = e^{-ct}\,\mathrm{area}(D)$: the frictionless pendulum preserves area,
# friction shrinks it at a known rate. (The same formula, for densities, is the heart of the
# continuous normalizing flows of notebook 10.) We transport the boundary of a disk and measure the
# area of the moving polygon with the shoelace formula.

# %%
def shoelace_area(polygon: torch.Tensor) -> torch.Tensor:
    """Area enclosed by polygons [..., V, 2] (vertices in order)."""
    x, y = polygon[..., 0], polygon[..., 1]
    return 0.5 * (x * y.roll(-1, dims=-1) - y * x.roll(-1, dims=-1)).sum(-1).abs()


phi = torch.linspace(0, 2 * math.pi, n_boundary + 1, dtype=DTYPE, device=DEVICE)[:-1]
disk = as_tensor([1.5, 0.0]) + 0.6 * torch.stack([torch.cos(phi), torch.sin(phi)], dim=1)  # [V, 2]
t_snap = as_tensor([0.0, 2.0, 4.0, 6.0, 8.0])

fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
for ax, damping in zip(axes, (0.0, 0.3)):
    field = lambda t, y, damping=damping: pendulum_field(t, y, damping=damping)  # noqa: E731
    blobs = odeint(field, disk, t_snap, **TOL)                               # [5, V, 2]
    ratio = shoelace_area(blobs) / shoelace_area(blobs[0])
    deviation = (ratio / torch.exp(-damping * t_snap) - 1).abs().max().item()
    print(f"damping {damping}: area ratios {ratio.cpu().numpy().round(4)}, "
          f"e^(-ct) = {torch.exp(-damping * t_snap).cpu().numpy().round(4)}")
    claim(f"damping {damping}: largest relative gap of the area ratio to e^(-ct)", measured=deviation, at_most=1e-3)
    vector_field(ax, field, (-2.5, 2.5), (-2, 2), n=17)
    for k, blob in enumerate(blobs):
        ax.fill(blob[:, 0].cpu(), blob[:, 1].cpu(), alpha=0.5, label=f"t = {t_snap[k].item():g}")
    ax.set(title=f"$\\Phi_t$(disk), damping c = {damping}", xlabel=r"$\theta$", ylabel=r"$\omega$", aspect="equal")
    ax.legend(loc="lower left", fontsize=8)
plt.tight_layout()
plt.show()


# %% [markdown] slideshow={"slide_type": "slide"}
# ## 4. Two nonlinear systems: the pendulum and Lotka-Volterra
#
# Nonlinear fields rarely have closed-form solutions, but they often have **conserved quantities**
# that organise the phase portrait. For the pendulum the energy
# $E(\theta, \omega) = \tfrac12\omega^2 - \tfrac gl \cos\theta$ changes along solutions at the rate
#
# $$\dot E = \omega\dot\omega + \tfrac gl \sin\theta\,\dot\theta
#   = \omega\big(-\tfrac gl\sin\theta - c\omega\big) + \tfrac gl\sin\theta\,\omega = -c\,\omega^2 \le 0,$$
#
# so without friction every orbit lies on a level set of $E$ (swings for $E < g/l$, full rotations
# above), and with friction the energy can only fall.

# %% [markdown] slideshow={"slide_type": "notes"}
# Speaker notes (10 min). Conserved quantities organise a phase portrait. Derive $\dot E = -c\omega^2$ and
# $\dot V = 0$ on the board before showing the cells that check both numerically. Ask the room: where do the
# damped pendulum's orbits end, and why can $E$ only fall on the way?

# %%
def energy(y: torch.Tensor, g_over_l: float = 1.0) -> torch.Tensor:
    return 0.5 * y[..., 1] ** 2 - g_over_l * torch.cos(y[..., 0])


y0_phase = as_tensor([[0.5, 0.0], [1.5, 0.0], [2.8, 0.0], [-math.pi, 2.2], [math.pi, -2.2], [0.0, 2.6]])
t_long = torch.linspace(0, 20, 1001, dtype=DTYPE, device=DEVICE)
free = odeint(pendulum_field, y0_phase, t_long, **TOL)
rubbing = odeint(damped, y0_phase, t_long, **TOL)
drift = (energy(free) - energy(free[0])).abs().max().item()
largest_rise = (energy(rubbing)[1:] - energy(rubbing)[:-1]).max().item()
print(f"frictionless: energies {energy(free[0]).cpu().numpy().round(3)}")
claim("frictionless: E is conserved, largest drift over t in [0, 20]", measured=drift, at_most=1e-6)
claim("damped: E never increases, largest rise between samples (negative: it only falls)", measured=largest_rise,
      at_most=1e-10)

# %% [markdown]
# For the Lotka-Volterra predator-prey model (prey $x$, predators $y$)
#
# $$\dot x = \alpha x - \beta x y, \qquad \dot y = \delta x y - \gamma y,$$
#
# the quantity $V(x, y) = \delta x - \gamma \ln x + \beta y - \alpha \ln y$ is conserved:
# $\dot V = (\delta - \tfrac\gamma x)\,x(\alpha - \beta y) + (\beta - \tfrac\alpha y)\,y(\delta x - \gamma)
# = (\delta x - \gamma)(\alpha - \beta y) + (\beta y - \alpha)(\delta x - \gamma) = 0$.
# So the populations cycle forever around the equilibrium $(\gamma/\delta, \alpha/\beta)$.

# %%
alpha, beta, delta, gamma = 1.5, 1.0, 1.0, 3.0  # nodecourse.data's defaults


def lv_invariant(y: torch.Tensor) -> torch.Tensor:
    x, p = y[..., 0], y[..., 1]
    return delta * x - gamma * torch.log(x) + beta * p - alpha * torch.log(p)


y0_lv = as_tensor([[1.0, 1.0], [2.0, 1.0], [2.5, 1.2], [4.0, 2.0]])
t_lv = torch.linspace(0, 10, 501, dtype=DTYPE, device=DEVICE)
lv = odeint(lotka_volterra_field, y0_lv, t_lv, **TOL)
lv_drift = (lv_invariant(lv) - lv_invariant(lv[0])).abs().max().item()
lv_vs_data = (lv - lotka_volterra(y0_lv, t_lv, max_step=0.005)).abs().max().item()
claim("Lotka-Volterra: V is conserved, largest drift", measured=lv_drift, at_most=1e-6)
claim("Lotka-Volterra: largest gap, odeint vs data.lotka_volterra (RK4)", measured=lv_vs_data, at_most=1e-6)

# %%
fig, axes = plt.subplots(1, 3, figsize=(15, 4.3))
grid = torch.meshgrid(torch.linspace(-3.5, 3.5, 200), torch.linspace(-3, 3, 200), indexing="xy")
E_grid = energy(torch.stack(grid, dim=-1))
for ax, ys, title in ((axes[0], free, "pendulum, no friction"), (axes[1], rubbing, f"pendulum, damping {c}")):
    ax.contour(grid[0], grid[1], E_grid, levels=15, colors="0.85", linewidths=0.8)
    vector_field(ax, pendulum_field if ys is free else damped, (-3.5, 3.5), (-3, 3), n=17)
    trajectories(ax, ys)
    ax.set(xlim=(-3.5, 3.5), ylim=(-3, 3), title=title, xlabel=r"angle $\theta$", ylabel=r"velocity $\omega$")
vector_field(axes[2], lotka_volterra_field, (0.05, 9), (0.05, 5.5), n=17)
trajectories(axes[2], lv)
axes[2].plot([gamma / delta], [alpha / beta], "k*", markersize=10, label="equilibrium")
axes[2].set(xlim=(0, 9), ylim=(0, 5.5), title="Lotka-Volterra", xlabel="prey x", ylabel="predators y")
axes[2].legend()
plt.tight_layout()
plt.show()

# %% [markdown]
# Grey curves on the left are the level sets of $E$: the frictionless orbits run exactly along
# them; with friction (middle) they cut across the level sets downhill into the rest states
# $(2\pi k, 0)$.
#
# ## 5. Existence and uniqueness: the Picard-Lindelöf theorem
#
# Does every IVP have a solution, and only one? Not always (section 6). The standard guarantee:
#
# **Definition (Lipschitz continuity).** $f: X \subset \mathbb R^n \to \mathbb R^m$ is Lipschitz
# continuous with constant $\lambda$ if
# $$\|f(x_1) - f(x_2)\| \le \lambda\,\|x_1 - x_2\| \quad \forall x_1, x_2 \in X.$$
# It is stronger than continuity: it bounds *how fast* $f$ can change.
#
# **Theorem (Picard-Lindelöf).** Let $f(t, y)$ be continuous on
# $R = [t_0 - a, t_0 + a] \times \{\|y - y_0\| \le b\}$ and Lipschitz in $y$ with one constant $L$ for
# all $t$; let $M = \max_R \|f\|$. Then the IVP $\dot y = f(t, y)$, $y(t_0) = y_0$ has exactly one
# solution on $[t_0 - h, t_0 + h]$ with $h = \min(a, b/M)$. If $f$ is Lipschitz in $y$ on all of
# $\mathbb R^n$ (globally), the solution exists and is unique for all times.
#
# *Proof idea.* Solutions are exactly the fixed points of the **Picard operator**
# $(Py)(t) = y_0 + \int_{t_0}^t f(s, y(s))\,\mathrm ds$ (the integral form of section 2). By the
# Lipschitz condition, $\|(Py)(t) - (Pz)(t)\| \le L\int_{t_0}^t \|y - z\|\,\mathrm ds$, and by induction
# $$\|P^k y - P^k z\|_\infty \le \frac{(L h)^k}{k!}\,\|y - z\|_\infty,$$
# so some power of $P$ is a contraction and Banach's fixed-point theorem gives one fixed point,
# reached by iterating $P$ from any start. (The choice $h \le b/M$ keeps the iterates inside $R$.)
#
# Picard's iteration is computable. For $\dot y = y$, $y(0) = 1$, starting from $y^{(0)} = 1$, each
# step integrates a polynomial, and the iterates are exactly the Taylor polynomials of $e^t$.

# %% [markdown] slideshow={"slide_type": "notes"}
# Speaker notes (13 min). State the theorem carefully: continuous in $t$, Lipschitz in $y$ *uniformly in t*,
# local interval $h = \min(a, b/M)$, global when the constant is global. Proof idea: the $(Lh)^k/k!$
# estimate makes a power of $P$ a contraction, and the Picard iterates of $\dot y = y$ are exactly the
# Taylor polynomials. Common mistake: reading the theorem as global; $\dot y = y^2$ is the counterexample,
# whose NFE climbs toward $t = 1$ until the solver stops with a step-size-underflow error. Ask the room:
# $y^2$ is smooth, so which hypothesis fails?

# %%
from numpy.polynomial import Polynomial  # noqa: E402 - only this section needs it

iterates = [Polynomial([1.0])]
for k in range(8):
    iterates.append(1.0 + iterates[-1].integ(lbnd=0.0))    # (P y)(t) = 1 + int_0^t y(s) ds

check("iterate k is the Taylor polynomial of e^t of degree k", all(
    np.allclose(p.coef, [1 / math.factorial(j) for j in range(k + 1)]) for k, p in enumerate(iterates)),
    detail=f"k = 0 ... {len(iterates) - 1}")
check("error at t = 1 within the Taylor remainder bound e / (k + 1)!",
      all(abs(math.e - p(1.0)) <= math.e / math.factorial(k + 1) for k, p in enumerate(iterates)),
      detail="errors " + ", ".join(f"{abs(math.e - p(1.0)):.0e}" for p in iterates))

# %%
ts = np.linspace(0, 2, 200)
fig, ax = plt.subplots(figsize=(6, 4))
ax.plot(ts, np.exp(ts), "k", lw=3, label="$e^t$")
for k in (0, 1, 2, 3, 5):
    ax.plot(ts, iterates[k](ts), "--", label=f"Picard iterate {k}")
ax.set(xlabel="t", ylabel="y", title="Picard iteration for $\\dot y = y$, $y(0) = 1$")
ax.legend()
plt.show()

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### The theorem is local
# $f(y) = y^2$ is Lipschitz on every bounded set but not globally. The solution of $\dot y = y^2$,
# $y(0) = 1$ is $y = 1/(1-t)$, which blows up at $t = 1$; the theorem only promised
# $h = \max_b \, b/(1+b)^2 = 1/4$. A solver follows the solution up to the blow-up, paying ever more
# function evaluations (NFE), and refuses to step past it.

# %%
square = lambda t, y: y**2  # noqa: E731
t_ends = [0.5, 0.9, 0.99, 0.999, 0.9999]
nfes, worst = [], 0.0
for t_end in t_ends:
    sol = solve(square, as_tensor([1.0]), as_tensor([0.0, t_end]), **TOL)
    nfes.append(sol.stats.nfe)
    worst = max(worst, abs(sol.ys[-1].item() * (1 - t_end) - 1))
claim("largest relative gap to the exact 1 / (1 - t)", measured=worst, at_most=1e-6)
check("the NFE climbs toward t = 1", nfes == sorted(nfes) and nfes[-1] > 3 * nfes[0],
      detail=", ".join(f"{nfe} to t = {t_end}" for t_end, nfe in zip(t_ends, nfes)))

try:
    solve(square, as_tensor([1.0]), as_tensor([0.0, 1.5]), **TOL)
    stopped = ""
except SolverError as err:
    stopped = str(err).split(":")[0]
check("the solver does not get past the blow-up", bool(stopped), detail=stopped)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 6. Without Lipschitz continuity: $\dot y = \sqrt{|y|}$
#
# $f(y) = \sqrt{|y|}$ is continuous but not Lipschitz at $0$: the ratio
# $|f(y) - f(0)|/|y - 0| = |y|^{-1/2}$ is unbounded.

# %% [markdown] slideshow={"slide_type": "notes"}
# Speaker notes (8 min). Continuous but not Lipschitz at 0 means infinitely many solutions $y_c$, and a
# $10^{-10}$ perturbation changes $y(4)$ by about 4, which a Lipschitz field cannot do. Common mistake:
# treating Lipschitz as "differentiable": $|y|$ is Lipschitz but not differentiable at 0, and $\sqrt{|y|}$
# is continuous but not Lipschitz. Ask the room: which of the solutions $y_c$ does a solver started at
# exactly 0 return, and why?

# %%
y_small = as_tensor([1e-2, 1e-4, 1e-6, 1e-8])
ratios = y_small.abs().sqrt() / y_small
print("|f(y) - f(0)| / |y - 0| =", ratios.cpu().numpy())
check("the ratios grow without bound as y -> 0", bool((ratios[1:] > ratios[:-1]).all()) and ratios[-1] > 1e3,
      detail=f"{ratios[-1].item():.0e} at y = {y_small[-1].item():g}")

# %% [markdown]
# And uniqueness fails: with $y(0) = 0$, both $y \equiv 0$ and $y = t^2/4$ solve the IVP (since
# $\frac{\mathrm d}{\mathrm dt}\frac{t^2}{4} = \frac t2 = \sqrt{t^2/4}$ for $t \ge 0$). In fact every
# $y_c(t) = \max(0, t - c)^2/4$, $c \ge 0$, does: rest until time $c$, then take off. We check the
# residual $\dot y - \sqrt{|y|}$ of each with autograd.

# %%
sqrt_field = lambda t, y: y.abs().sqrt()  # noqa: E731
t_grid = torch.linspace(0, 4, 401, dtype=DTYPE, device=DEVICE, requires_grad=True)
candidates = {"y = 0": 0 * t_grid}
candidates.update({f"c = {c_:g}": torch.clamp(t_grid - c_, min=0) ** 2 / 4 for c_ in (0.0, 1.0, 2.0)})
for name, y in candidates.items():
    (dy_dt,) = torch.autograd.grad(y.sum(), t_grid, allow_unused=True, materialize_grads=True)
    residual = (dy_dt - sqrt_field(t_grid, y)).abs().max().item()
    check(f"{name} starts at y(0) = 0 and solves the ODE", y[0].item() == 0.0 and residual < 1e-12,
          detail=f"residual {residual:.0e}")

# %% [markdown]
# Which one does a solver pick? From exactly $0$ the field vanishes, so it stays at $0$. From
# $\varepsilon = 10^{-10}$ the unique solution is $(\sqrt\varepsilon + t/2)^2$, which is
# indistinguishable from $t^2/4$: a perturbation of $10^{-10}$ changes $y(4)$ by about $4$. For a
# Lipschitz field that is impossible: section 8 shows the change is at most $e^{4L}\cdot 10^{-10}$.

# %%
t_eval = torch.linspace(0, 4, 81, dtype=DTYPE, device=DEVICE)
from_zero = odeint(sqrt_field, as_tensor([0.0]), t_eval, **TOL)[:, 0]
eps = 1e-10
from_eps = odeint(sqrt_field, as_tensor([eps]), t_eval, **TOL)[:, 0]
amplification = (from_eps[-1] - from_zero[-1]).item() / eps
check("from y0 = 0 the solver stays at 0", bool(from_zero.abs().max() == 0.0))
exact_eps = (math.sqrt(eps) + t_eval / 2) ** 2
claim("from y0 = 1e-10: largest gap to (sqrt(1e-10) + t/2)^2, relative to y(4)", at_most=1e-6,
      measured=(from_eps - exact_eps).abs().max() / exact_eps[-1])
claim("amplification of the 1e-10 perturbation at t = 4", measured=amplification, at_least=1e10)

# %%
fig, ax = plt.subplots(figsize=(6, 4))
for name, y in candidates.items():
    ax.plot(t_grid.detach().cpu(), y.detach().cpu(), lw=2, label=name)
ax.plot(t_eval.cpu(), from_eps.cpu(), "k:", lw=2, label="solver from $y_0 = 10^{-10}$")
ax.set(xlabel="t", ylabel="y", title=r"all solve $\dot y = \sqrt{|y|}$, $y(0) = 0$")
ax.legend()
plt.show()

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 7. Lipschitz constants of neural networks
#
# A Neural ODE's vector field is a network $f_\theta$, so whether Picard-Lindelöf applies is a
# question about the network's Lipschitz constant. Four facts give it:
#
# 1. For differentiable $f$ on a convex set, $\mathrm{Lip}(f) = \sup_x \|J_f(x)\|_2$, because
#    $f(x_1) - f(x_2) = \int_0^1 J_f(x_2 + s(x_1 - x_2))\,(x_1 - x_2)\,\mathrm ds$.
# 2. A linear map $x \mapsto Wx + b$ has constant $\|W\|_2 = \sigma_{\max}(W)$, its largest singular
#    value (the bias cancels in differences).
# 3. Compositions multiply: $\mathrm{Lip}(g \circ h) \le \mathrm{Lip}(g)\,\mathrm{Lip}(h)$.
# 4. $\tanh' = 1 - \tanh^2 \le 1$, ReLU has slopes 0 and 1, $\sigma' = \sigma(1 - \sigma) \le 1/4$.
#
# Hence for an MLP $f = W_K \circ \phi \circ \cdots \circ \phi \circ W_1$ (with biases),
#
# $$\underbrace{\max_{i}\frac{\|f(x_i) - f(x_i')\|}{\|x_i - x_i'\|},\;\; \max_i \|J_f(x_i)\|_2}_{\text{lower bounds: any samples}}
#   \;\le\; \mathrm{Lip}(f) \;\le\; \underbrace{\mathrm{Lip}(\phi)^{K-1}\prod_{k=1}^K \|W_k\|_2}_{\text{upper bound}}.$$
#
# First fact 4, measured: the largest derivative of each activation on a fine grid.

# %% [markdown] slideshow={"slide_type": "notes"}
# Speaker notes (12 min). Four facts: Jacobian sup, spectral norm, composition, activation slopes. Lower
# bounds come from samples, the upper bound from the weights, and the gap grows quickly with depth (about 2x
# at 1 hidden layer, about $10^3$ at 8): do not let learners believe the two are close for deep networks.
# Common mistake: `torch.linalg.norm(W)` is the Frobenius norm, not the spectral norm
# (`torch.linalg.matrix_norm(W, ord=2)`). Mention spectral normalisation as a way to *enforce* a bound, and
# ask the room: why is the product bound exact for one linear layer but loose for two?

# %%
u = torch.linspace(-6, 6, 12001, dtype=DTYPE, device=DEVICE, requires_grad=True)
for act, constant in ((torch.tanh, 1.0), (torch.sigmoid, 0.25), (torch.relu, 1.0)):
    (slope,) = torch.autograd.grad(act(u).sum(), u)
    claim(f"{act.__name__}: largest |derivative|", measured=slope.abs().max(), expected=constant, tol=1e-6, fmt=".6f")


# %% [markdown]
# For a linear map the two sides meet: sampled pairs approach $\sigma_{\max}(W)$ from below and never
# exceed it, and the Jacobian is $W$ itself.

# %%
def pair_lower_bound(f, x1: torch.Tensor, x2: torch.Tensor) -> float:
    """max_i ||f(x1_i) - f(x2_i)|| / ||x1_i - x2_i|| over the rows: a lower bound on Lip(f)."""
    with torch.no_grad():
        return ((f(x1) - f(x2)).norm(dim=1) / (x1 - x2).norm(dim=1)).max().item()


def jacobian_lower_bound(f, points: torch.Tensor) -> float:
    """max_i ||J_f(x_i)||_2 over the points [N, d]: another lower bound on Lip(f)."""
    jac = torch.func.vmap(torch.func.jacrev(f))(points)          # [N, m, d]
    return torch.linalg.matrix_norm(jac, ord=2).max().item()


W = as_tensor(torch.randn(2, 2))
sigma_max = torch.linalg.matrix_norm(W, ord=2).item()
x_a, x_b = as_tensor(torch.randn(n_pairs, 2)), as_tensor(torch.randn(n_pairs, 2))
lower_linear = pair_lower_bound(lambda v: v @ W.T, x_a, x_b)
claim(f"largest ratio over {n_pairs} pairs / sigma_max(W) = {sigma_max:.6f}", measured=lower_linear / sigma_max,
      at_least=0.999, at_most=1 + 1e-12, fmt=".6f")
claim("largest Jacobian norm of the linear map - sigma_max(W)", at_most=1e-10,
      measured=abs(jacobian_lower_bound(lambda v: v @ W.T, x_a[:10]) - sigma_max))


# %% [markdown]
# Now an MLP of the kind we will use as a vector field, `nodecourse.models.MLP([2, 64, 64, 2])` with
# tanh. PyTorch's default initialisation makes such a network almost constant, so we scale its
# weights by 3 to get a field with some structure (a trained field would have its own scale).
# Its upper bound comes from the weights alone; its lower bounds from samples in $[-3, 3]^2$
# (pairs of nearby points, and Jacobians at single points).

# %%
def frozen_mlp(sizes: list[int], weight_scale: float = 3.0, seed: int = 0) -> nn.Sequential:
    """A tanh MLP on DEVICE in float64 with its weights scaled, parameters frozen (we only analyse it).
    The seed makes it the same network in fast and in full mode."""
    torch.manual_seed(seed)
    model = MLP(sizes).to(device=DEVICE, dtype=DTYPE).requires_grad_(False)
    for layer in model:
        if isinstance(layer, nn.Linear):
            layer.weight.mul_(weight_scale)
    return model


def spectral_upper_bound(model: nn.Sequential, act_constant: float = 1.0) -> float:
    """Product of the Linear layers' spectral norms times act_constant per activation."""
    bound = 1.0
    for layer in model:
        bound *= torch.linalg.matrix_norm(layer.weight, ord=2).item() if isinstance(layer, nn.Linear) else act_constant
    return bound


mlp = frozen_mlp([2, 64, 64, 2])
upper = spectral_upper_bound(mlp)
x_pairs = 3 * (2 * as_tensor(torch.rand(n_pairs, 2)) - 1)
lower_pairs = pair_lower_bound(mlp, x_pairs, x_pairs + 1e-3 * as_tensor(torch.randn(n_pairs, 2)))
points = 3 * (2 * as_tensor(torch.rand(n_jacobian_points, 2)) - 1)
jac_norms = torch.linalg.matrix_norm(torch.func.vmap(torch.func.jacrev(mlp))(points), ord=2)
lower_jac = jac_norms.max().item()
claim("lower bound from pairs", measured=lower_pairs, at_most=upper, fmt=".4f")
claim("lower bound from Jacobians", measured=lower_jac, at_most=upper, fmt=".4f")
print(f"upper bound / best lower bound: {upper / max(lower_pairs, lower_jac):.2f}")

# %% [markdown]
# The product bound is cheap and always valid, but it is loose, and it gets looser with depth: the
# worst-case directions of consecutive layers rarely line up, yet the bound assumes they do.

# %%
depths = [1, 2, 4, 8]
gaps = []
for depth in depths:
    net = frozen_mlp([2] + [32] * depth + [2], seed=depth)
    gaps.append(spectral_upper_bound(net) / jacobian_lower_bound(net, points))
check("upper / lower is at least 1 and grows with every doubling of depth", min(gaps) >= 1.0 and gaps == sorted(gaps),
      detail=", ".join(f"{g:.1f} at {d} hidden layers" for d, g in zip(depths, gaps)))

# %%
fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
axes[0].hist(jac_norms.cpu().numpy(), bins=np.geomspace(jac_norms.min().item(), upper, 60), color="0.6")
axes[0].set_xscale("log")
for value, label, style in ((lower_jac, "max Jacobian norm", "-"), (lower_pairs, "max pair ratio", ":"),
                            (upper, "spectral upper bound", "--")):
    axes[0].axvline(value, color="k", linestyle=style, label=f"{label} = {value:.2f}")
axes[0].set(xlabel=r"$\|J_f(x)\|_2$ at sampled $x$", ylabel="count", title="MLP([2, 64, 64, 2]), tanh")
axes[0].legend(fontsize=8)
axes[1].semilogy(depths, gaps, "o-")
axes[1].set(xlabel="hidden layers", ylabel="upper bound / lower bound", title="the product bound loosens with depth")
plt.tight_layout()
plt.show()

# %% [markdown]
# What this means for Neural ODEs: an MLP with tanh (or ReLU, or softplus) activations is globally
# Lipschitz, so $\dot y = f_\theta(y)$ has a unique solution for every input and every time span,
# and the forward pass of the model is well defined. The constant also controls how far nearby
# inputs can drift apart, which is the next section.
#
# ## 8. Why trajectories cannot cross
#
# Suppose two solutions of an autonomous ODE pass through the same state $p$, at times $t_1$ and
# $t_2$. Then $t \mapsto y_1(t + t_1)$ and $t \mapsto y_2(t + t_2)$ solve the same IVP from $p$, so by
# uniqueness they are one and the same solution: **distinct orbits never meet**, and two states that
# start apart are apart at every time. Lipschitz continuity even says by how much (Grönwall): with
# $\delta = y_1 - y_2$, $\big|\frac{\mathrm d}{\mathrm dt}\|\delta\|^2\big| = 2|\delta\cdot(f(y_1) - f(y_2))| \le 2L\|\delta\|^2$, hence
#
# $$e^{-Lt}\,\|x_1 - x_2\| \;\le\; \|\Phi_t(x_1) - \Phi_t(x_2)\| \;\le\; e^{Lt}\,\|x_1 - x_2\|.$$
#
# We check it on the MLP field of section 7 with its upper bound as $L$. The bound holds, and, like
# the product bound it is built on, it is far from tight.

# %% [markdown] slideshow={"slide_type": "notes"}
# Speaker notes (10 min). Uniqueness means distinct orbits never meet, and Grönwall gives $e^{\pm Lt}$. In
# 1-D the flow is strictly increasing, so $x \mapsto -x$ is out of reach, while one Euler step with $hL > 1$
# *is* the reflection: these are the hooks into notebooks 02 and 07. Common mistake: "cannot cross" holds
# for *autonomous* systems in their full state space; curves of a non-autonomous system can cross in the
# $y$-plane at different times, and 2-D projections of larger states (the PCA plots of notebook 06) can
# appear to cross. Ask the room: how could one extra dimension let a flow map $x$ to $-x$?

# %%
mlp_field = lambda t, y: mlp(y)  # noqa: E731
t_span = torch.linspace(0, 2, 41, dtype=DTYPE, device=DEVICE)
starts = 3 * (2 * as_tensor(torch.rand(200, 2)) - 1)
partners = starts + 1e-2 * as_tensor(torch.randn(200, 2))
paths = odeint(mlp_field, torch.cat([starts, partners]), t_span, **TOL)        # [41, 400, 2]
distance = (paths[:, :200] - paths[:, 200:]).norm(dim=-1)                   # [41, 200]
log_ratio = torch.log(distance / distance[0])
envelope = upper * t_span[:, None]
print(f"log distance ratios lie in [{log_ratio.min():.3f}, {log_ratio.max():.3f}]; "
      f"Gronwall allows [-{upper * 2:.2f}, {upper * 2:.2f}] at t = 2")
check("every pair stays within Gronwall's envelope +-L t",
      bool((log_ratio <= envelope + 1e-9).all() and (log_ratio >= -envelope - 1e-9).all()))

# %%
fig, ax = plt.subplots(figsize=(6, 3.8))
ax.plot(t_span.cpu(), log_ratio.cpu(), color="0.5", lw=0.6)
ax.plot(t_span.cpu(), envelope.cpu(), "k--", label=r"$\pm L t$ with $L$ = spectral upper bound")
ax.plot(t_span.cpu(), -envelope.cpu(), "k--")
ax.set(ylim=(-6, 6), xlabel="t", ylabel=r"$\log(\|\delta(t)\| / \|\delta(0)\|)$",
       title="200 nearby pairs under the MLP flow")
ax.legend(loc="upper left")
plt.show()

# %% [markdown]
# In one dimension the consequence is sharp: the flow map is strictly increasing,
# $x_1 < x_2 \Rightarrow \Phi_t(x_1) < \Phi_t(x_2)$ for every $t$. Were the order reversed at some time,
# the continuous difference $\Phi_t(x_2) - \Phi_t(x_1)$ would have passed through zero before, and two
# solutions would have met, which uniqueness forbids. We take a random 1-D MLP as the
# field and solve from many ordered initial states.

# %%
field_1d = frozen_mlp([1, 32, 32, 1], weight_scale=2.0, seed=2)

x_start = torch.linspace(-2, 2, n_initial_states, dtype=DTYPE, device=DEVICE)[:, None]    # sorted [N, 1]
t_1d = torch.linspace(0, 3, 61, dtype=DTYPE, device=DEVICE)
paths_1d = odeint(lambda t, y: field_1d(y), x_start, t_1d, **TOL)[..., 0]                # [61, N]
still_sorted = (paths_1d[:, 1:] > paths_1d[:, :-1]).all().item()
check(f"{n_initial_states} ordered initial states keep their order at all {len(t_1d)} times", still_sorted)

# %% [markdown]
# So no flow can map $x \mapsto -x$: that map reverses the order of every pair. On the data set of
# notebook 07 (`nodecourse.data.reflection_1d`), the time-3 map of our flow keeps the order of every
# pair and the target reverses it, whatever the field. A Neural ODE in 1-D cannot learn this data;
# notebook 07 shows how adding dimensions (augmentation) gets around it.

# %%
x_ref, y_ref = reflection_1d(64, seed=0, dtype=DTYPE, device=DEVICE)
phi_T = odeint(lambda t, y: field_1d(y), x_ref, as_tensor([0.0, 3.0]), **TOL)[-1]
i, j = torch.triu_indices(64, 64, offset=1, device=DEVICE)
flow_keeps = (torch.sign(phi_T[i] - phi_T[j]) == torch.sign(x_ref[i] - x_ref[j])).float().mean().item()
target_keeps = (torch.sign(y_ref[i] - y_ref[j]) == torch.sign(x_ref[i] - x_ref[j])).float().mean().item()
claim("share of pairs whose order the flow keeps", measured=flow_keeps, at_least=1.0, fmt=".0%")
claim("share of pairs whose order the target x -> -x keeps", measured=target_keeps, at_most=0.0, fmt=".0%")

# %% [markdown]
# A discrete step does not have this protection. One Euler step $x + h f(x)$ with $h = 1$ and
# $f(x) = -2x$ *is* the reflection, while the exact flow of the same field, $e^{-2t}x$, only shrinks
# the line. The step is too large for the field ($hL = 2 > 1$): notebook 02 takes up this link
# between Euler steps and ResNet blocks.

# %%
euler_step = x_start + 1.0 * (-2.0 * x_start)
exact_flow = math.exp(-2.0) * x_start
check("one Euler step with h L = 2 is the reflection x -> -x", torch.equal(euler_step, -x_start))
check("the exact flow keeps the order", bool((exact_flow[1:] > exact_flow[:-1]).all()))

# %%
fig, axes = plt.subplots(1, 2, figsize=(11, 4))
colors = plt.cm.viridis(np.linspace(0, 1, n_initial_states))
for k in range(n_initial_states):
    axes[0].plot(t_1d.cpu(), paths_1d[:, k].cpu(), color=colors[k], lw=1)
axes[0].set(xlabel="t", ylabel="x(t)", title="1-D flow of a random MLP field: no crossings")
grid_x = torch.linspace(-2, 2, 200, dtype=DTYPE, device=DEVICE)[:, None]
phi_grid = odeint(lambda t, y: field_1d(y), grid_x, as_tensor([0.0, 3.0]), **TOL)[-1]
axes[1].plot(grid_x.cpu(), phi_grid.cpu(), label=r"$\Phi_3(x)$: increasing")
axes[1].plot(grid_x.cpu(), -grid_x.cpu(), "--", label="target $-x$: decreasing")
axes[1].set(xlabel="x", ylabel="output", title="a flow map cannot reverse the line")
axes[1].legend()
plt.tight_layout()
plt.show()

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Recap
# - A dynamical system is a triple $(\mathcal S, \mathcal T, \Phi)$; for an autonomous ODE, $\Phi$ is
#   the flow, with $\Phi(t+s, x) = \Phi(t, \Phi(s, x))$ and $\Phi_{-t} = \Phi_t^{-1}$ (checked to
#   $10^{-7}$). Non-autonomous systems get a flow by putting time into the state.
# - Phase portraits show the field and its orbits; eigenvalues classify linear systems, conserved
#   quantities (pendulum energy, the Lotka-Volterra invariant) organise nonlinear ones, and the
#   divergence sets how areas change ($e^{-ct}$ for the damped pendulum).
# - An IVP $\dot y = f(t, y)$, $y(t_0) = y_0$ is the integral equation
#   $y(t_1) = y_0 + \int_{t_0}^{t_1} f\,\mathrm dt = \mathrm{ODESolve}(y_0, f, t_0, t_1)$.
# - Picard-Lindelöf: a field that is Lipschitz in $y$ gives exactly one solution, the limit of
#   Picard's iteration; only locally when the constant is local ($\dot y = y^2$ blows up). Without
#   Lipschitz continuity ($\dot y = \sqrt{|y|}$) solutions branch.
# - An MLP's Lipschitz constant lies between sampled lower bounds and the product of spectral norms;
#   the product bound loosens with depth.
# - Uniqueness means trajectories cannot cross; Grönwall bounds how fast they separate or approach;
#   in 1-D a flow preserves order, so no Neural ODE on the line represents $x \mapsto -x$.
#
# ## Further reading
# - R. T. Q. Chen, Y. Rubanova, J. Bettencourt, D. Duvenaud. *Neural Ordinary Differential
#   Equations*. NeurIPS 2018. arXiv:1806.07366.
# - M. W. Hirsch, S. Smale, R. L. Devaney. *Differential Equations, Dynamical Systems, and an
#   Introduction to Chaos*. 3rd ed., Academic Press, 2013. (Flows, linear systems, existence and
#   uniqueness.)
# - S. H. Strogatz. *Nonlinear Dynamics and Chaos*. 2nd ed., Westview Press, 2015. (Phase portraits,
#   the pendulum, Lotka-Volterra.)
# - E. Hairer, S. P. Nørsett, G. Wanner. *Solving Ordinary Differential Equations I: Nonstiff
#   Problems*. 2nd ed., Springer, 1993. (Picard-Lindelöf and Grönwall's lemma, chapter I.7-I.10.)
# - E. Dupont, A. Doucet, Y. W. Teh. *Augmented Neural ODEs*. NeurIPS 2019. arXiv:1904.01681.
# - S. Massaroli, M. Poli, J. Park, A. Yamashita, H. Asama. *Dissecting Neural ODEs*. NeurIPS 2020.
#   arXiv:2002.08071.
# - A. Virmaux, K. Scaman. *Lipschitz Regularity of Deep Neural Networks: Analysis and Efficient
#   Estimation*. NeurIPS 2018. arXiv:1805.10965.
# - T. Miyato, T. Kataoka, M. Koyama, Y. Yoshida. *Spectral Normalization for Generative Adversarial
#   Networks*. ICLR 2018. arXiv:1802.05957.
# - P. Kidger. *On Neural Differential Equations*. PhD thesis, University of Oxford, 2022.
#   arXiv:2202.02435.

# %% [markdown] slideshow={"slide_type": "notes"}
# Speaker notes (3 min). Later notebooks rely on three results: the flow property (the forward pass of a
# Neural ODE is $\Phi_T$, and $\Phi_{-T}$ undoes it), Picard-Lindelöf (an MLP field gives a well-defined
# model) and no crossing (what notebook 07 cannot represent). Ask the room: which of the three does the
# adjoint method of notebook 04 lean on?
