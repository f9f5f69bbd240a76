# %% [markdown] slideshow={"slide_type": "skip"}
# Colab links appear here once the course's home repository is set (`make home`, see CONTRIBUTING.md).

# %% [markdown] slideshow={"slide_type": "slide"}
# # 07 · Augmentation: exercises (solutions)
#
# Six exercises on notebook 07: write the zero augmentation of a batch and build an ANODE with it,
# turn a second-order equation into a first-order field, decide from samples whether a map of the line
# can be the flow of a 1-D ODE, and construct a linear flow that reflects the line through extra
# dimensions. Each exercise is a function; the checker below it runs your function against a
# reference on several cases, prints what passed and what failed with a hint, and hands back the
# function the rest of the notebook goes on with.
#
# Exercises 5 and 6 are of two other kinds: exercise 5 hands you a function with a bug to find and
# repair, exercise 6 asks you to predict a number before a cell measures it. Hints come in stages: the
# first failure says which property failed, later failures nudge more specifically, and the answer
# appears only when you ask for it with `ex07.show_answer(k)`. Until an exercise passes, the notebook
# goes on with the reference.
#
# **Learning objectives**
# - augment a batch with zeros on its own device and dtype, and assemble an ANODE classifier from
#   `nodecourse` parts;
# - write the first-order form $[v, f(x, v)]$ of a second-order ODE and solve it;
# - test the necessary condition for a 1-D flow map (strictly increasing), and apply it to models;
# - find the matrix of a linear flow whose time-$T$ map sends $[x, 0]$ to $[-x, 0]$.
#
# **Estimated time:** 50 minutes.

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
import math

from torch import nn

from nodecourse import odeint
from nodecourse.data import nested_circles, reflection_1d
from nodecourse.exercises import ex07
from nodecourse.exercises.checking import who
from nodecourse.models import MLP, ODEBlock, ODEFunc
from nodecourse.models.augmented import AugmentedNODE, PlainNODE

torch.set_num_threads(1)   # tiny models: one CPU thread is fastest (see notebook 07)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Hyperparameters
# Fast mode shortens the one training run of this notebook; the checkers always run the same cases.

# %%
n_iters = 100 if FAST else 300   # Adam steps of the ANODE built in exercise 1


# %% [markdown] slideshow={"slide_type": "slide"}
# ## Exercise 1: zero augmentation
# Write `augment(x, p)` that appends `p` zeros to the **last** dimension of `x`: a tensor
# `[..., d]` becomes `[..., d + p]`, with `x` unchanged in the first `d` entries. The zeros must be
# made on `x`'s device and with its dtype, the function must work for any leading shape (none for one
# point `[d]`, a batch `[N, d]`, or `[B, N, d]`), `p = 0` must return `x`'s values unchanged, and
# gradients must flow back to `x`.

# %%
def augment(x: torch.Tensor, p: int) -> torch.Tensor:
    """[..., d] -> [..., d + p]: x followed by p zeros along the last dimension."""
    ### BEGIN SOLUTION
    zeros = x.new_zeros((*x.shape[:-1], p))
    return torch.cat([x, zeros], dim=-1)
    ### END SOLUTION


augment = ex07.check_augment(augment)


# %% [markdown]
# With `augment`, an ANODE classifier for the nested circles is three parts: the lift to
# $\mathbb R^3$, an `ODEBlock` whose dynamics are an MLP on $\mathbb R^3$, and a linear readout of the
# whole final state. We train it on the targets $-1$ (disk) and $+1$ (ring) and check that it
# separates nearly every training point. From here on the notebook uses each of your functions once it
# passes, and the reference's until then; each printout says whose.

# %%
class HandMadeANODE(nn.Module):
    """[N, 2] -> [N, 1]: z(0) = [x, 0], dz/dt = MLP(z) on [0, 1], output Linear(z(1))."""

    def __init__(self, hidden: int = 32) -> None:
        super().__init__()
        self.block = ODEBlock(ODEFunc(MLP([3, hidden, 3])), t1=1.0, method="dopri5", rtol=1e-3, atol=1e-3)
        self.readout = nn.Linear(3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.readout(self.block(augment(x, 1)))


X, labels = nested_circles(256, seed=0, device=DEVICE)
targets = (2.0 * labels - 1).unsqueeze(1)
seed_everything(0)
anode = HandMadeANODE().to(DEVICE)
opt = torch.optim.Adam(anode.parameters(), lr=0.01)
for it in range(n_iters):
    opt.zero_grad()
    loss = nn.functional.mse_loss(anode(X), targets)
    loss.backward()
    opt.step()
with torch.no_grad():
    acc = ((anode(X).squeeze(1) > 0).long() == labels).float().mean().item()
print(f"hand-made ANODE (augment: {who(augment)}) after {n_iters} steps: MSE {loss.item():.4f}, "
      f"training accuracy {acc:.3f}, NFE per pass {anode.block.nfe_forward}")
assert acc >= 0.95


# %% [markdown] slideshow={"slide_type": "slide"}
# ## Exercise 2: a second-order ODE as a first-order field
# A second-order ODE $\ddot x = a(x, \dot x)$ becomes first order on the state $z = [x, v]$:
# $\dot z = [v, a(x, v)]$. Write `second_order_field(accel, z)` that takes the acceleration as a
# function `accel(x, v)` (both `[..., d]`, returning `[..., d]`) and a state `z` of shape `[..., 2d]`
# (position in the first half of the last dimension, velocity in the second), and returns
# $\dot z$ with the same shape as `z`.

# %%
def second_order_field(accel, z: torch.Tensor) -> torch.Tensor:
    """[v, accel(x, v)] at z = [x, v] along the last dimension: [..., 2d] -> [..., 2d]."""
    ### BEGIN SOLUTION
    d = z.shape[-1] // 2
    x, v = z[..., :d], z[..., d:]
    return torch.cat([v, accel(x, v)], dim=-1)
    ### END SOLUTION


second_order_field = ex07.check_second_order_field(second_order_field)

# %% [markdown]
# The field of exercise 2 turns `odeint` into a solver for second-order equations. The spring $\ddot x = -x$ from
# $x = 1$ at rest is $x(t) = \cos t$; the damped pendulum $\ddot\theta = -\sin\theta - 0.3\,\dot\theta$
# loses energy $E = \tfrac12\dot\theta^2 + 1 - \cos\theta$ all the time.

# %%
t = torch.linspace(0, 10, 201, dtype=torch.float64)
spring = odeint(lambda t, z: second_order_field(lambda x, v: -x, z), torch.tensor([[1.0, 0.0]], dtype=torch.float64),
                t, rtol=1e-10, atol=1e-10)[:, 0]                                     # [201, 2]
error = (spring[:, 0] - torch.cos(t)).abs().max().item()
print(f"spring (second_order_field: {who(second_order_field)}): max |x(t) - cos t| = {error:.1e}")
assert error < 1e-7

pendulum = odeint(lambda t, z: second_order_field(lambda x, v: -torch.sin(x) - 0.3 * v, z),
                  torch.tensor([[2.5, 0.0]], dtype=torch.float64), t, rtol=1e-8, atol=1e-8)[:, 0]
energy = 0.5 * pendulum[:, 1] ** 2 + 1 - torch.cos(pendulum[:, 0])
assert (energy.diff() <= 1e-9).all() and energy[-1] < 0.2 * energy[0]

fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
axes[0].plot(spring[:, 0], spring[:, 1], label="spring")
axes[0].plot(pendulum[:, 0], pendulum[:, 1], label="damped pendulum")
axes[0].set(xlabel="x", ylabel="v", title=f"phase plane [x, v] (second_order_field: {who(second_order_field)})")
axes[0].legend(fontsize=8)
axes[1].plot(t, energy)
axes[1].set(xlabel="t", ylabel="energy", title="the damped pendulum loses energy")
plt.tight_layout()
plt.show()


# %% [markdown] slideshow={"slide_type": "slide"}
# ## Exercise 3: can a 1-D flow do this?
# The flow map of a 1-D ODE is strictly increasing (notebook 01, section 8). Write
# `order_preserved(x, y)` that takes samples `y_i = phi(x_i)` of a map of the line (`x` and `y` of shape
# `[N]` or `[N, 1]`, the `x_i` distinct but **in any order**) and returns `True` when the samples keep
# the order of the inputs, `x_i < x_j => y_i < y_j` for every pair, and `False` otherwise. A `False`
# proves that no 1-D Neural ODE maps these inputs to these outputs. Return a Python `bool`.

# %%
def order_preserved(x: torch.Tensor, y: torch.Tensor) -> bool:
    """True when y = phi(x) is strictly increasing on the samples, in whatever order they come."""
    ### BEGIN SOLUTION
    x, y = x.reshape(-1), y.reshape(-1)
    y_sorted = y[torch.argsort(x)]
    return bool((y_sorted[1:] > y_sorted[:-1]).all())
    ### END SOLUTION


order_preserved = ex07.check_order_preserved(order_preserved)

# %% [markdown]
# Now apply it to models. A plain 1-D Neural ODE, even with large random weights (a wiggly field),
# keeps the order; the reflection data does not; an ANODE that does a half turn in $(x, a)$ does not
# either, which is exactly why it can fit the reflection. And one Euler step of $\dot x = -2x$ with
# $h = 1$ (a ResNet block, notebook 02) reflects the line: a discrete step is not a flow.

# %%
x_ref, y_ref = reflection_1d(100, seed=0, dtype=torch.float64)
seed_everything(1)
plain = PlainNODE(1, 16, rtol=1e-7, atol=1e-7).double()
with torch.no_grad():
    for p in plain.parameters():
        p.mul_(3.0)
    plain_out = plain(x_ref)
half_turn = AugmentedNODE(1, 1, 2, activation=nn.Identity, rtol=1e-8, atol=1e-8).double()
with torch.no_grad():
    for p in half_turn.parameters():
        p.zero_()
    half_turn.dynamics.net[0].weight.copy_(torch.eye(2))
    half_turn.dynamics.net[2].weight.copy_(math.pi * torch.tensor([[0.0, -1.0], [1.0, 0.0]]))
    half_turn_out = half_turn(x_ref)
verdicts = {"plain Neural ODE, random weights": order_preserved(x_ref, plain_out),
            "the data y = -x": order_preserved(x_ref, y_ref),
            "ANODE, half turn": order_preserved(x_ref, half_turn_out),
            "one Euler step of -2x, h = 1": order_preserved(x_ref, x_ref + 1.0 * (-2.0 * x_ref))}
print(f"order_preserved: {who(order_preserved)}")
for name, verdict in verdicts.items():
    print(f"{name:34s} order preserved: {verdict}")
assert list(verdicts.values()) == [True, False, False, False]


# %% [markdown] slideshow={"slide_type": "slide"}
# ## Exercise 4: a reflection by a linear flow
# Augment $x \in \mathbb R^d$ by $d$ zeros, $z = [x, a] \in \mathbb R^{2d}$, and let the state move by a
# linear ODE $\dot z = A z$, so that $z(T) = e^{TA} z(0)$. Write `reflection_matrix(T, d)` that returns a
# float64 matrix `A` of shape `[2d, 2d]` whose time-$T$ flow sends $[x, 0]$ to $[-x, \ast]$ for every
# $x$ (the first $d$ coordinates of the result are $-x$; the last $d$ are free). Hint: what does a
# rotation by $\pi$ do to a point of the plane? Several answers are right; the checker tests the
# property, not one matrix.

# %%
def reflection_matrix(T: float, d: int = 1) -> torch.Tensor:
    """A [2d, 2d] matrix A with exp(T A) [x, 0] = [-x, *]: the reflection through d extra dimensions."""
    ### BEGIN SOLUTION
    eye, zero = torch.eye(d, dtype=torch.float64), torch.zeros(d, d, dtype=torch.float64)
    rotation = torch.cat([torch.cat([zero, -eye], dim=1), torch.cat([eye, zero], dim=1)], dim=0)
    return (math.pi / T) * rotation
    ### END SOLUTION


reflection_matrix = ex07.check_reflection_matrix(reflection_matrix)

# %% [markdown]
# Solve $\dot z = Az$ from $[x, 0]$ with `odeint` for a batch of points in $\mathbb R^2$ ($d = 2$):
# the first two coordinates come back as $-x$. (In 2-D the map $x \mapsto -x$ happens to be a rotation
# by $\pi$, which a plain 2-D flow *can* do; the reflection across one axis, $(x_1, x_2) \mapsto
# (-x_1, x_2)$, reverses orientation and needs the extra dimensions, like $x \mapsto -x$ on the line.)

# %%
T, d = 2.0, 2
A = reflection_matrix(T, d)
points = torch.randn(50, d, dtype=torch.float64)
z_path = odeint(lambda t, z: z @ A.T, augment(points, d), torch.linspace(0, T, 60, dtype=torch.float64),
                rtol=1e-9, atol=1e-9)                                               # [60, 50, 2d]
error = (z_path[-1, :, :d] + points).abs().max().item()
print(f"reflection_matrix ({who(reflection_matrix)}): max |z_x(T) - (-x)| = {error:.1e}")
assert error < 1e-6

fig, ax = plt.subplots(figsize=(5.5, 5.5))
for k in range(8):
    ax.plot(z_path[:, k, 0], z_path[:, k, 1], color="0.6", lw=0.8)
ax.scatter(points[:8, 0], points[:8, 1], color="tab:blue", label="x")
ax.scatter(z_path[-1, :8, 0], z_path[-1, :8, 1], color="tab:red", label="first two coordinates at T")
ax.set(aspect="equal", title=f"the shadow of the paths on the input plane (A: {who(reflection_matrix)})")
ax.legend(fontsize=8, loc="lower right")
plt.show()


# %% [markdown]
# With the rotation answer, each point's shadow $x(t) = \cos(\pi t / T)\,x$ runs straight through the
# origin, and all shadows pass through it at $t = T/2$: on the input plane the paths meet, in
# $\mathbb R^{2d}$ they do not, because there the extra coordinates $a(t) = \sin(\pi t/T)\,x$ differ.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Exercise 5: find the bug in dropping the augmented dimensions
# After an ANODE solve, `drop_augmentation(z, d)` should keep the first `d` entries of the **last**
# dimension of an augmented state: `[B, d + p] -> [B, d]`, a solver's trajectory `[T, B, d + p] -> [T, B, d]`,
# one state `[d + p] -> [d]`. It worked on the final states its author looked at. Run the checker, find the
# bug, and repair it.

# %%
def drop_augmentation(z, d):
    """The first d entries of the last dimension of an augmented state z [..., d + p]."""
    ### BEGIN SOLUTION
    return z[..., :d]
    ### EXERCISE
    # return z[:, :d]
    ### END SOLUTION

drop_augmentation = ex07.check_drop_augmentation(drop_augmentation)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Exercise 6: predict, then check
# The linear flow $\dot z = A z$ in 2-D with $A = \pi \begin{pmatrix}0 & -1\\ 1 & 0\end{pmatrix}$: after which
# time $T > 0$ does it first map every $(x, 0)$ to $(-x, 0)$, the reflection no 1-D flow can do? Write your
# prediction into `predicted_time` before you run the cell (0.02 either way passes).

# %%
### BEGIN SOLUTION
predicted_time = 1.0  # a rotation by pi T: half a turn
### EXERCISE
# predicted_time = None  # your prediction: a number
### END SOLUTION
measured_time = ex07.check_reflection_time_prediction(predicted_time)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Recap
# - Zero augmentation is one line, `torch.cat([x, x.new_zeros(*x.shape[:-1], p)], -1)`; with it, an
#   MLP on $\mathbb R^3$ and a linear readout, an ANODE separates the nested circles in a few dozen steps.
# - Any second-order ODE is a first-order one on $[x, v]$; the position's derivative is the velocity.
# - Order preservation is a necessary condition for a 1-D flow map; it rules out the reflection,
#   allows any plain 1-D Neural ODE, and fails for augmented models and for coarse Euler steps.
# - A rotation by $\pi$ in each plane $(x_k, a_k)$, $A = \frac{\pi}{T}\begin{bmatrix}0 & -I\\ I & 0\end{bmatrix}$,
#   reflects $\mathbb R^d$ through $d$ extra dimensions in time $T$.
#
# ## Further reading
# - E. Dupont, A. Doucet, Y. W. Teh. *Augmented Neural ODEs*. NeurIPS 2019. arXiv:1904.01681.
# - S. Massaroli, M. Poli, J. Park, A. Yamashita, H. Asama. *Dissecting Neural ODEs*. NeurIPS 2020.
#   arXiv:2002.08071.
# - R. T. Q. Chen, Y. Rubanova, J. Bettencourt, D. Duvenaud. *Neural Ordinary Differential
#   Equations*. NeurIPS 2018. arXiv:1806.07366.
