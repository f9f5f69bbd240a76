# %% [markdown] slideshow={"slide_type": "slide"}
# # 00 · Welcome: how this course works
#
# This course teaches Neural Ordinary Differential Equations in PyTorch, from dynamical systems and
# Euler's method seen as a ResNet, through the adjoint method, to real models. Every notebook imports
# one small package, `nodecourse`, which holds the ODE solvers, the adjoint method, the models and
# the data. This notebook checks that your setup works and shows the one call the whole course is
# built on.
#
# **Learning objectives**
# - check that `nodecourse` is installed and which device it will use;
# - solve a first ODE with `nodecourse.odeint` and compare it with the exact solution;
# - know what fast mode is and where each notebook's hyperparameters live;
# - read the lines in which a notebook checks its claims.
#
# **Estimated time:** 5 minutes.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Setup
# One cell at the top of every notebook: imports, the device, a seed, and fast mode.
# `NODECOURSE_FAST=1` (set by the test suite) shrinks every training loop so the whole course runs
# as tests in minutes; without it you get the full experiments.

# %% [markdown] slideshow={"slide_type": "notes"}
# Speaker notes (1 min). Run the welcome in the first class, on the machine you present from: this cell
# checks the package, the device and fast mode, and prints all three. Everything in the course runs on a
# CPU; a GPU only makes the MNIST notebook faster. Ask the room: who sees a GPU, who sees `cpu`?

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

import nodecourse
from nodecourse.claims import check, claim
from nodecourse.config import FAST, device, seed_everything

seed_everything(0)
DEVICE = device()
print(f"nodecourse {nodecourse.__version__}, torch {torch.__version__}, device: {DEVICE}, fast mode: {FAST}")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## A first ODE
# The exponential decay $\dot y = -k y$, $y(0) = y_0$ has the exact solution $y(t) = y_0 e^{-kt}$.
# `odeint(func, y0, t)` takes the vector field `func(t, y)`, the initial state and the times at
# which we want the solution, and returns the states stacked along a new first dimension.
#
# Every notebook checks what its text claims in the cell that computes it, and prints the claim with
# the measured value: a line starting with ✓ is a claim that held (a claim that fails stops the
# notebook with the same line, marked ✗), and a line starting with · is a number shown but not
# checked, because it depends on your machine, for example a wall-clock time.

# %% [markdown] slideshow={"slide_type": "notes"}
# Speaker notes (2 min). Introduce the claim lines here: the cell that computes a result prints the claim
# with the measured value, ✓ for a claim that held and · for a number shown but not checked (a wall-clock
# time, or anything else that depends on the machine); a failing claim stops the notebook with the same line
# marked ✗. Read the ✓ lines aloud in every lecture: they are the evidence for what is on the slide. Ask the
# room: why is a wall-clock time shown but never checked?

# %%
k = torch.tensor([0.5, 1.0, 2.0], device=DEVICE)
y0 = torch.ones(3, device=DEVICE)
t = torch.linspace(0, 4, 41, device=DEVICE)

ys = nodecourse.odeint(lambda t, y: -k * y, y0, t, rtol=1e-6, atol=1e-8)
exact = y0 * torch.exp(-k * t[:, None])
check("one state per output time", ys.shape == (len(t), 3), detail=f"shape {tuple(ys.shape)}")
claim("largest error against the exact solution", measured=(ys - exact).abs().max(), at_most=1e-5)

# %%
fig, ax = plt.subplots(figsize=(5, 3))
for i in range(3):
    ax.plot(t.cpu(), exact[:, i].cpu(), color="0.7", lw=4)
    ax.plot(t.cpu(), ys[:, i].cpu(), "--", label=f"k = {k[i].item():g}")
ax.set(xlabel="t", ylabel="y(t)", title="odeint (dashed) on the exact solutions (grey)")
ax.legend()
plt.show()

# %% [markdown] slideshow={"slide_type": "slide"}
# ## What a solve costs
# `nodecourse.solve` takes the same arguments and also reports the number of function evaluations
# (NFE), the unit of cost used throughout the course. A tighter tolerance costs more evaluations.

# %% [markdown] slideshow={"slide_type": "notes"}
# Speaker notes (1 min). NFE, the number of function evaluations, is the unit of cost for the whole course:
# here it grows as the tolerance tightens. Ask the room: if every evaluation were a forward pass of a neural
# network, what would the tightest tolerance cost?

# %%
costs = {tol: nodecourse.solve(lambda t, y: -k * y, y0, t, rtol=tol, atol=tol).stats.nfe for tol in (1e-3, 1e-6, 1e-9)}
check("a tighter tolerance costs more evaluations", costs[1e-3] < costs[1e-6] < costs[1e-9],
      detail=", ".join(f"NFE {nfe} at {tol:g}" for tol, nfe in costs.items()))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Hyperparameters
# Each notebook has one visible cell like the next: the only thing the test suite changes.

# %% [markdown] slideshow={"slide_type": "notes"}
# Speaker notes (1 min with the recap). Every notebook has one visible hyperparameter cell, the only thing
# the test suite changes. In fast mode a claim line can carry a bracketed note saying why a number looks
# weak (a shortened training loop). Ask the room: what should fast mode never change?

# %%
n_iters = 30 if FAST else 1000
print("training iterations in this mode:", n_iters)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Recap
# - `nodecourse.odeint` is a drop-in for `torchdiffeq.odeint`; `nodecourse.solve` adds statistics.
# - Fast mode only shrinks loops; every claim is still checked, and printed with its measured value
#   (✓ held, · shown but not checked).
#
# ## Further reading
# - R. T. Q. Chen, Y. Rubanova, J. Bettencourt, D. Duvenaud. *Neural Ordinary Differential
#   Equations*. NeurIPS 2018.
# - E. Hairer, S. P. Norsett, G. Wanner. *Solving Ordinary Differential Equations I*. Springer, 1993.
