# %% [markdown] slideshow={"slide_type": "skip"}
# Colab links appear here once the course's home repository is set (`make home`, see CONTRIBUTING.md).

# %% [markdown] slideshow={"slide_type": "slide"}
# # 11 · Regularisation and cost: cheap Neural ODEs, and stiff problems
#
# A Neural ODE's depth is chosen by its solver, and so is its price: the number of function
# evaluations (NFE) grows as training bends the learned dynamics. This last notebook of the course is
# about that price. First we make it smaller, with the kinetic-energy and Jacobian regularisers of
# Finlay et al. (2020), which pick, among the many vector fields that fit the data, one that is cheap
# to integrate. Then we meet the case where no regulariser helps an explicit solver: stiff problems,
# where the step size is capped by stability, not accuracy, and the solver eventually gives up with
# an error message that says why.
#
# **Learning objectives**
# - explain why many vector fields realise the same map, and why a solver prefers the straight, slow ones;
# - write the kinetic-energy and Jacobian-norm regularisers as integrals computed along the solve, by
#   augmenting the state with running integrals, and estimate the Frobenius norm with one Gaussian probe;
# - train a Neural ODE classifier with and without regularisation and measure the NFE it saves at
#   equal accuracy;
# - define stiffness through the eigenvalues of the Jacobian, compute the stability limit of an explicit
#   Runge-Kutta method from its tableau, and predict how many steps dopri5 needs on a stiff problem;
# - read the solver's errors (too many steps, step-size underflow, non-finite values) and know what to do.
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

# %%
import math
import time

import numpy as np
import torch.nn.functional as F
from torch import nn

from nodecourse import SolverError, solve
from nodecourse.claims import check, claim
from nodecourse.data import nested_circles
from nodecourse.models import ODEFunc
from nodecourse.models.regularised import (RegularisedClassifier, RegularisedODEFunc, jacobian_probe_integrand,
                                           kinetic_integrand)
from nodecourse.solvers import TABLEAUX

# The models here are tiny (4 hidden dimensions): one CPU thread runs them faster than two.
torch.set_num_threads(1)
DEV = torch.device("cpu") if DEVICE.type == "mps" else DEVICE  # float64 is not available on MPS
F64 = {"dtype": torch.float64, "device": DEV}

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Hyperparameters
# The only cell the test suite changes: fast mode trains for fewer iterations, on two seeds and two of
# the four variants, and sweeps the stiff problems over a smaller range.

# %% [markdown] slideshow={"slide_type": "notes"}
# Speaker notes (3 min with the setup). Fast mode changes the iterations, the seeds, the variants trained
# (plain and kinetic + Jacobian, not the two single terms), the range of $\lambda$ and the accuracy bars:
# after 120 iterations about one run in four still sits on a plateau near 85-90% (every run tried reached
# 100% by 500), so fast mode checks a mean of 80% and a gap of 5 points instead of 95% and 2, and its
# lines say so. The full run takes about 90 s on a 2-core CPU (the twelve classifiers about 60 s, the
# stiff sweep most of the rest); everything uses one CPU thread, because the models have 4 hidden
# dimensions, and the stiffness sections are float64 and train nothing.

# %%
n_iters = 120 if FAST else 500              # optimizer steps per training run
seeds = [0, 1] if FAST else [0, 1, 2]       # every variant is trained once per seed, from the same init
accuracy_bar = 0.8 if FAST else 0.95        # mean test accuracy every variant must reach (chance: 0.5)
accuracy_gap = 0.05 if FAST else 0.02       # how far the regularised model's accuracy may trail the plain one's
weight = 0.01                               # lambda_K = lambda_J: the regularisation weight (Finlay et al.)
variants = ({"plain": (0.0, 0.0), "kinetic + Jacobian": (weight, weight)} if FAST else
            {"plain": (0.0, 0.0), "kinetic": (weight, 0.0), "Jacobian": (0.0, weight),
             "kinetic + Jacobian": (weight, weight)})
hidden, width = 4, 32                       # the ODE runs in 4 dims; its field is an MLP 4-32-32-4
batch_size, lr = 128, 1e-2
train_tol = 1e-3                            # dopri5 rtol = atol while training and testing
test_tols = [1e-2, 1e-3, 1e-4, 1e-5, 1e-6]  # the test-time tolerance sweep
stiff_rates = [1, 10, 100, 1000] if FAST else [1, 10, 100, 1000, 10000]  # lambda of the stiff system
vdp_span = 1.0 if FAST else 3.0             # Van der Pol with mu = 1000 on [0, vdp_span]

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 1. Many vector fields, one map, different prices
# A Neural ODE classifier only uses the *end* of each trajectory: the map $z(0) \mapsto z(1)$. Many
# vector fields realise the same map. The simplest example is a rotation of the plane by the angle
# $\theta$: the linear field $f(z) = \omega J z$ with $J = \begin{pmatrix} 0 & -1 \\ 1 & 0\end{pmatrix}$
# turns every point by $\omega$ radians per unit time, so on $[0, 1]$ the speeds
# $\omega_k = \theta + 2\pi k$, $k = 0, 1, 2, \dots$ all give the *same* map: the extra turns are
# invisible at $t = 1$.
#
# They are not invisible to the solver. The point travels along a circle of length $\omega_k |z_0|$,
# and its **kinetic energy** $\int_0^1 \|f(z(t))\|^2\,dt = \omega_k^2 |z_0|^2$ grows with every
# extra turn. We solve each with dopri5 at one tolerance and count.

# %% [markdown] slideshow={"slide_type": "notes"}
# Speaker notes (10 min). The rotations $\omega_k = \pi/2 + 2\pi k$ all give the same quarter turn at
# $t = 1$; at tolerance 1e-6 the NFE is 80, 272, 512 and 728 for $k = 0, \dots, 3$, and the kinetic energy
# matches $\omega_k^2|z_0|^2$. Stress that the training loss sees only the end map: which of the many
# fields gets learned is free, and it decides the cost. Derive $\ddot z = Jf$ on the board: the bound
# $\|\ddot z\| \le \|J\|_F\|f\|$ is the whole motivation for both regularisers. Ask the room, before the
# count: how much dearer is the field with three extra turns?

# %%
theta = math.pi / 2
z0_rot = torch.tensor([[1.0, 0.0], [0.0, 2.0]], **F64)
t01 = torch.tensor([0.0, 1.0], **F64)
rotation_nfe, energy_error, ends = [], 0.0, []
for k in range(4):
    omega = theta + 2 * math.pi * k
    net = nn.Linear(2, 2, bias=False).to(**F64)
    with torch.no_grad():
        net.weight.copy_(omega * torch.tensor([[0.0, -1.0], [1.0, 0.0]], **F64))
    func = RegularisedODEFunc(net, kinetic=True, jacobian=False)  # carries int ||f||^2 dt along
    sol = solve(func, func.initial_state(z0_rot), t01, rtol=1e-6, atol=1e-8)
    ends.append(sol.ys[0][-1])
    rotation_nfe.append(sol.stats.nfe)
    energy, closed_form = sol.ys[1][-1], omega**2 * z0_rot.pow(2).sum(1)
    print(f"k = {k}: omega = {omega:5.2f}, NFE = {rotation_nfe[-1]:4d}, "
          f"kinetic energy = {energy.tolist()} (closed form {closed_form.tolist()})")
    energy_error = max(energy_error, ((energy - closed_form).abs() / closed_form).max().item())
quarter_turn = torch.tensor([[0.0, 1.0], [-2.0, 0.0]], **F64)  # (x, y) -> (-y, x)
claim("largest relative error of the kinetic energy against omega^2 |z0|^2", energy_error, at_most=1e-5, fmt=".1e")
claim("one map for every k: max |z(1) - quarter turn of z0|", max((e - quarter_turn).abs().max() for e in ends),
      at_most=1e-4, fmt=".1e")
check("more energy, more evaluations: the NFE grows with k", all(a < b for a, b in zip(rotation_nfe, rotation_nfe[1:])),
      detail=f"NFE {rotation_nfe}")

# %% [markdown]
# The four fields agree on every input at $t = 1$, and the cost grows with the kinetic energy: a
# fitted Neural ODE may just as well have learned a field with extra turns, since the loss cannot
# tell. A regulariser that penalises the kinetic energy can, and makes the solver's life easier.
#
# Why the solver cares: a Runge-Kutta method of order $p$ makes a local error of about
# $C h^{p+1} \|z^{(p+1)}\|$ per step, so at a fixed tolerance its step size is set by how fast the
# trajectory *bends*. The first derivatives of a trajectory are
# $$\dot z = f(z), \qquad \ddot z = \frac{\partial f}{\partial z}\, f(z), \qquad
# \|\ddot z\| \le \Big\|\frac{\partial f}{\partial z}\Big\|_F\, \|f(z)\| ,$$
# so keeping both the speed $\|f\|$ and the Jacobian $\partial f / \partial z$ small keeps the
# trajectory straight and slow, and the steps long.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 2. Two regularisers, as integrals along the solve
# Finlay et al. (2020) ("How to train your Neural ODE") add two penalties to the task loss
# $\mathcal L$:
# $$\mathcal L_{\text{reg}} = \mathcal L + \lambda_K \int_0^T \|f(z(t))\|^2\,dt
#   + \lambda_J \int_0^T \Big\|\frac{\partial f}{\partial z}(z(t))\Big\|_F^2\,dt ,$$
# averaged over the batch. The first is the **kinetic energy**: minimising it alone, among all paths
# that reach the same end points, gives straight lines travelled at constant speed (the
# optimal-transport paths), exactly what the extra turns of section 1 violate. The second, the squared
# **Frobenius norm** of the Jacobian, keeps neighbouring trajectories from stretching or shearing
# apart, so that the field is locally almost constant.
#
# ### Running integrals: augment the state
# An integral along the trajectory is itself the solution of an ODE. Add two scalars per sample to
# the state and let them accumulate the integrands:
# $$\frac{d}{dt}\begin{pmatrix} z \\ E_K \\ E_J \end{pmatrix}
#   = \begin{pmatrix} f(z) \\ \|f(z)\|^2 \\ \|\partial f/\partial z\|_F^2 \end{pmatrix},\qquad
#   \begin{pmatrix} z \\ E_K \\ E_J \end{pmatrix}(0) = \begin{pmatrix} z_0 \\ 0 \\ 0 \end{pmatrix} .$$
# Then $E_K(T)$ and $E_J(T)$ are the two integrals, computed by the same solve as $z(T)$ and at the
# same steps, and differentiable like $z(T)$. `nodecourse` solves tuple states directly, so the state
# is the tuple `(z, E_K, E_J)` with `z` of shape `[B, D]` and the integrals of shape `[B]`.
#
# ### The Frobenius norm from one probe
# The full Jacobian costs $D$ backward passes per evaluation. One is enough for an unbiased estimate:
# for a probe $\varepsilon \sim \mathcal N(0, I)$,
# $$\mathbb E\,\big\|\varepsilon^\top \tfrac{\partial f}{\partial z}\big\|^2
#   = \mathbb E\,\varepsilon^\top J J^\top \varepsilon
#   = \operatorname{tr}(J J^\top \,\mathbb E\,\varepsilon\varepsilon^\top)
#   = \operatorname{tr}(J J^\top) = \|J\|_F^2 ,$$
# the trick of Hutchinson (1989) that FFJORD uses for the trace (notebook 10). The row vector
# $\varepsilon^\top J$ is one **vector-Jacobian product**, which is what `torch.autograd.grad(f, z, eps)`
# returns, and with `create_graph=True` the result can itself be differentiated during training. The
# probe is drawn once per solve and held fixed during it: an adaptive solver needs the dynamics to be
# a fixed function while it steps.
#
# `nodecourse.models.regularised` has the two integrands, `kinetic_integrand(f)` and
# `jacobian_probe_integrand(f, z, eps)`, and `RegularisedODEFunc(net)`, the augmented dynamics.
# We check each against an independent computation.

# %% [markdown] slideshow={"slide_type": "notes"}
# Speaker notes (15 min). The augmented state $(z, E_K, E_J)$; the Hutchinson argument
# $\mathbb E\,\varepsilon^\top JJ^\top\varepsilon = \|J\|_F^2$ takes three lines, and
# `torch.autograd.grad(f, z, eps, create_graph=True)` gives $\varepsilon^\top J$ for the whole batch in
# one pass. The probe is fixed for the whole solve and drawn afresh for each solve: if it changed inside a
# solve, an adaptive solver would see a different field at every stage. Common mistakes: the full Jacobian
# "to be exact" ($D$ backward passes per evaluation, where an unbiased estimate is all a stochastic
# gradient needs); $J\varepsilon$ (a JVP) instead of $\varepsilon^\top J$, unbiased too but a different
# number and not one reverse pass; forgetting `create_graph=True`, so that the penalty is a constant and
# training silently ignores it; calling `autograd.grad` under `torch.no_grad()` or on a `z` that does not
# require grad (the dynamics need `torch.enable_grad()` and a leaf copy of `z`). Ask: why is one noisy
# probe per solve enough?

# %%
seed_everything(0)
net = nn.Sequential(nn.Linear(hidden, width), nn.Tanh(), nn.Linear(width, hidden)).to(**F64)
z_test = torch.randn(3, hidden, **F64)

# the estimator against the exact Frobenius norm, one sample at a time
exact = torch.stack([torch.autograd.functional.jacobian(net, zi).pow(2).sum() for zi in z_test])
n_probes = 4000
z_rep = z_test.repeat_interleave(n_probes, dim=0).requires_grad_(True)   # [3 * n_probes, D]
eps = torch.randn_like(z_rep)
estimates = jacobian_probe_integrand(net(z_rep), z_rep, eps, create_graph=False).view(3, n_probes)
mean, stderr = estimates.mean(1), estimates.std(1) / math.sqrt(n_probes)
for i in range(3):
    print(f"sample {i}: exact ||J||_F^2 = {exact[i]:.4f}, mean of {n_probes} probes = {mean[i]:.4f} "
          f"+- {stderr[i]:.4f}, one probe: {estimates[i, 0]:.4f}")
claim("unbiased: largest |mean - exact| over the samples, in standard errors", ((mean - exact).abs() / stderr).max(),
      at_most=4)

# %%
fig, ax = plt.subplots(figsize=(6, 3.2))
counts = torch.arange(1, n_probes + 1, **F64)
for i in range(3):
    running = estimates[i].cumsum(0) / counts
    line, = ax.plot(counts.cpu(), running.cpu(), lw=1.2, label=f"sample {i}")
    ax.axhline(exact[i].item(), color=line.get_color(), ls="--", lw=1)
ax.set(xscale="log", xlabel="number of probes averaged", ylabel=r"estimate of $\|J\|_F^2$",
       title="one probe is noisy but unbiased; dashed: exact")
ax.legend()
plt.show()

# %% [markdown]
# One probe is a rough estimate (its standard deviation is of the order of the value itself), but
# training averages it over the batch, the steps of the solve and the iterations, and only its
# expectation matters for the gradient.
#
# Now the running integrals. We solve the augmented system on a dense output grid and compare
# $E_K(T)$ with Simpson's rule applied to $\|f(z(t))\|^2$ on that grid, and $E_J(T)$ likewise with the
# same probe. The $z$ part of the augmented solve must be the plain ODE's solution: the integrals
# are carried along, they do not feed back.

# %%
func = RegularisedODEFunc(net)  # both integrands
z0 = torch.randn(5, hidden, **F64)
t_dense = torch.linspace(0, 1, 1001, **F64)
sol = solve(func, func.initial_state(z0), t_dense, rtol=1e-9, atol=1e-11)
z_path, E_K, E_J = sol.ys
kin_path, jac_path = [], []
for s, z in zip(t_dense, z_path):
    z = z.clone().requires_grad_(True)
    f = func.dynamics(s, z)
    kin_path.append(kinetic_integrand(f).detach())
    jac_path.append(jacobian_probe_integrand(f, z, func.probe, create_graph=False))
kin_path, jac_path = torch.stack(kin_path), torch.stack(jac_path)  # [T, B]


def simpson(values: torch.Tensor, h: float) -> torch.Tensor:
    """Composite Simpson's rule over dim 0 (an odd number of equally spaced points)."""
    return h / 3 * (values[0] + values[-1] + 4 * values[1:-1:2].sum(0) + 2 * values[2:-1:2].sum(0))


h_grid = float(t_dense[1] - t_dense[0])
print("E_K(1) by the solve:", E_K[-1].tolist())
print("       by Simpson:  ", simpson(kin_path, h_grid).tolist())
for name, integral, integrand in (("E_K(1)", E_K, kin_path), ("E_J(1)", E_J, jac_path)):
    claim(f"{name}: largest relative difference from Simpson's rule",
          ((integral[-1] - simpson(integrand, h_grid)) / integral[-1]).abs().max(), at_most=1e-7, fmt=".1e")
plain = solve(ODEFunc(net), z0, t_dense, rtol=1e-9, atol=1e-11)
claim("the z part against the plain ODE's solution: max difference", (z_path - plain.ys).abs().max(), at_most=1e-8,
      fmt=".1e")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 3. Training with and without the regularisers
# The task is the nested circles of `nodecourse.data` (a disk inside an annulus, Dupont et al. 2019).
# A plain Neural ODE in the plane cannot separate them (notebook 07), so the model lifts the input
# into 4 dimensions first:
# $$z(0) = W_{\text{in}} x + b_{\text{in}} \in \mathbb R^4, \qquad \dot z = f_\theta(z), \qquad
# \text{logits} = W_{\text{out}}\, z(1) + b_{\text{out}},$$
# with $f_\theta$ an MLP 4-32-32-4 with tanh. This is `RegularisedClassifier`: in training mode with a
# non-zero weight it solves the augmented system and keeps $\lambda_K \bar E_K + \lambda_J \bar E_J$ in
# `model.penalty` (to be added to the loss); in evaluation mode it solves the plain ODE, as a deployed
# model would, and `model.nfe` counts what that costs.
#
# Every variant starts from the same initial weights (the same seed) and sees the same minibatches;
# backpropagation through dopri5 (`rtol = atol = 1e-3`) gives the gradients.

# %% [markdown] slideshow={"slide_type": "notes"}
# Speaker notes (25 min, the two sub-slides included). Full mode (3 seeds): all four variants reach 100%,
# with test NFE plain 26, kinetic 18, Jacobian 16, both 14; $E_K$ is 51.8 against 1.0 and $E_J$ 10.7
# against 0.2; the plain model takes its scale from the flow ($|W_{out}|$ 1.45 against 4.09, logit margin
# 10.4 against 5.6). Its paths are 6.4 against 1.0 long and bend 12% against 1%: the regulariser produces
# the straight, constant-speed optimal-transport path (fast mode's bend bar is 0.75, and its line says the
# paths are still straightening); the tolerance sweep goes 20 to 76 (plain) and 14 to 30 (regularised)
# from 1e-2 to 1e-6, cheaper at every tolerance and with a widening gap. Stress: the regularisers express
# a preference among equally good fields, so accuracy does not have to suffer, and here it does not.
# Common mistake: comparing NFE across models at different tolerances, or counting the regularised model's
# training solve (it carries the integrals) as its test cost; the lecture measures test NFE with the plain
# dynamics at one tolerance. Ask: why does cross-entropy push the plain model towards a larger $f$?

# %%
X_train, y_train = nested_circles(1024, seed=0, device=DEVICE)
X_test, y_test = nested_circles(1000, seed=1, device=DEVICE)
check("1,024 training points in the plane, both classes in the test set",
      X_train.shape == (1024, 2) and set(y_test.tolist()) == {0, 1})


def fit(kinetic: float, jacobian: float, seed: int) -> tuple[RegularisedClassifier, list[int], float]:
    """Train one classifier; returns it, the NFE of every training iteration and the seconds it took."""
    seed_everything(seed)
    model = RegularisedClassifier(input_size=2, output_size=2, state_size=hidden, hidden_size=width,
                                  kinetic=kinetic, jacobian=jacobian, rtol=train_tol, atol=train_tol).to(DEVICE)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    batches = torch.Generator().manual_seed(seed)
    nfe, start = [], time.perf_counter()
    for _ in range(n_iters):
        idx = torch.randperm(len(y_train), generator=batches)[:batch_size].to(DEVICE)
        logits = model(X_train[idx])
        loss = F.cross_entropy(logits, y_train[idx]) + model.penalty
        opt.zero_grad()
        loss.backward()
        opt.step()
        nfe.append(model.nfe)
    return model.eval(), nfe, time.perf_counter() - start


@torch.no_grad()
def evaluate(model: RegularisedClassifier, tol: float = train_tol) -> dict:
    """Test accuracy and the NFE of one plain solve of the whole test set at tolerance ``tol``."""
    model.rtol = model.atol = tol
    accuracy = (model(X_test).argmax(1) == y_test).float().mean().item()
    nfe = model.nfe
    model.rtol = model.atol = train_tol
    return {"accuracy": accuracy, "nfe": nfe}


models, train_nfe, results = {}, {}, {}
for name, (lam_k, lam_j) in variants.items():
    for seed in seeds:
        model, nfe, seconds = fit(lam_k, lam_j, seed)
        e_kin, e_jac = model.integrals(X_test, torch.Generator(device=DEVICE).manual_seed(0))
        models[name, seed], train_nfe[name, seed] = model, nfe
        results[name, seed] = {**evaluate(model), "kinetic": e_kin.mean().item(), "jacobian": e_jac.mean().item(),
                               "seconds": seconds}
        print(f"{name:19s} seed {seed}: accuracy {results[name, seed]['accuracy']:.3f}, "
              f"test NFE {results[name, seed]['nfe']}, trained in {seconds:.1f} s")


# %% [markdown]
# The table averages over the seeds: test accuracy, the NFE of solving the test set with the plain
# dynamics at the training tolerance, and the two integrals measured on the test set (the Jacobian
# term with a probe, for every model alike).
#
# The accuracy bars come from trying many initialisations. With 500 iterations every model we trained
# reached 100%. After 120 (fast mode) about one run in four still sits on a plateau near 85-90%, where
# part of the ring is misclassified, and on such a run either variant can trail the other by a few
# points; so fast mode checks 80% (chance is 50%) and a gap of 5 points, and says why.

# %%
def averaged(name: str, key: str) -> float:
    return float(np.mean([results[name, s][key] for s in seeds]))


print(f"{'variant':19s} {'accuracy':>9s} {'test NFE':>9s} {'E_K':>8s} {'E_J':>8s} {'train s':>8s}")
for name in variants:
    print(f"{name:19s} {averaged(name, 'accuracy'):9.3f} {averaged(name, 'nfe'):9.1f} "
          f"{averaged(name, 'kinetic'):8.2f} {averaged(name, 'jacobian'):8.2f} {averaged(name, 'seconds'):8.1f}")

reg = "kinetic + Jacobian"
plateau = f"{n_iters} iterations can leave a model on a plateau near 85-90%; full mode reaches 100%"
for name in ("plain", reg):
    claim(f"{name}: test accuracy (both learn the task)", averaged(name, "accuracy"), at_least=accuracy_bar,
          fast_note=plateau)
claim("accuracy, regularised minus plain (comparable)", averaged(reg, "accuracy") - averaged("plain", "accuracy"),
      at_least=-accuracy_gap, fast_note=plateau)
claim("test NFE, regularised / plain", averaged(reg, "nfe") / averaged("plain", "nfe"), at_most=0.75)
claim("test NFE saved: at least one dopri5 step (6 evaluations)", averaged("plain", "nfe") - averaged(reg, "nfe"),
      at_least=6)
claim("kinetic energy E_K, regularised / plain", averaged(reg, "kinetic") / averaged("plain", "kinetic"), at_most=0.2)
claim("Jacobian term E_J, regularised / plain", averaged(reg, "jacobian") / averaged("plain", "jacobian"), at_most=0.5)

# %% [markdown]
# Same accuracy, a fraction of the cost: the plain model's kinetic energy is an order of magnitude
# larger than it needs to be. Cross-entropy keeps rewarding larger logits, and nothing stops the
# unregularised model from producing them by moving the states further apart, i.e. with a bigger $f$.
# With the penalty, motion costs, and the model takes its scale from the linear layers around the
# flow instead, which cost the solver nothing. The weights show it:

# %%
output_scale = {}
for name in ("plain", reg):
    w_out, margin = [], []
    for s in seeds:
        with torch.no_grad():
            logits = models[name, s](X_test)
        w_out.append(models[name, s].readout.weight.norm().item())
        margin.append((logits[:, 1] - logits[:, 0]).abs().mean().item())
    output_scale[name] = np.mean(w_out)
    print(f"{name:19s}: |W_out| = {np.mean(w_out):.2f}, "
          f"mean |logit_1 - logit_0| on the test set = {np.mean(margin):.2f}")
claim("|W_out|, regularised / plain: the regularised model scales with its output layer",
      output_scale[reg] / output_scale["plain"], at_least=1.5)

# %% [markdown]
# How the cost evolves during training: every model starts out with 14 evaluations (the two that
# pick the first step, then two steps of six); the plain model's NFE climbs as it learns, the
# regularised one's stays lower. (The regularised model's training solve also carries the integrals,
# which its step-size control looks at too; its *test* solves are plain.)

# %%
fig, ax = plt.subplots(figsize=(7, 3.5))
for name in variants:
    curve = np.mean([train_nfe[name, s] for s in seeds], axis=0)
    window = 10
    smooth = np.convolve(curve, np.ones(window) / window, mode="valid")
    ax.plot(np.arange(window, len(curve) + 1), smooth, label=name)
ax.set(xlabel="training iteration", ylabel="NFE of the forward solve",
       title=f"NFE during training (mean over {len(seeds)} seed(s), running mean of 10)")
ax.legend()
plt.show()
late = slice(-max(10, n_iters // 5), None)  # the last fifth of training
late_nfe = {name: np.mean([np.mean(train_nfe[name, s][late]) for s in seeds]) for name in variants}
print("mean NFE over the last fifth of training:", {k: round(float(v), 1) for k, v in late_nfe.items()})
claim("cheaper while training, too: NFE over the last fifth, regularised / plain", late_nfe[reg] / late_nfe["plain"],
      at_most=1)

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### What the regulariser did to the trajectories
# Three measurements on 200 test points: how far each hidden state travels in $\mathbb R^4$ (the length
# of its path, against the straight distance between its two ends); its **bend**, the largest distance
# of $z(t)$ from the constant-velocity path $(1 - t)\,z(0) + t\,z(1)$ relative to $\|z(1) - z(0)\|$;
# and the decision score the output layer reads along the way, $s(t) = \text{logit}_1 - \text{logit}_0$
# applied to $z(t)$, which must end with the sign of the class. The numbers are averaged over the
# seeds; the figure shows the first seed's models.

# %%
t_plot = torch.linspace(0, 1, 30, device=DEVICE)


@torch.no_grad()
def paths_of(model: RegularisedClassifier) -> tuple[torch.Tensor, np.ndarray]:
    """z(t) of 200 test points [30, 200, 4], and their mean path length, distance between the ends and bend."""
    z_traj = solve(model.func.dynamics, model.embed(X_test[:200]), t_plot, rtol=1e-5, atol=1e-5).ys
    path = (z_traj[1:] - z_traj[:-1]).norm(dim=-1).sum(0)          # length of each path
    straight = (z_traj[-1] - z_traj[0]).norm(dim=-1)                 # distance between its ends
    linear_in_t = (1 - t_plot)[:, None, None] * z_traj[0] + t_plot[:, None, None] * z_traj[-1]
    bend = ((z_traj - linear_in_t).norm(dim=-1).amax(0) / straight).mean()  # 0: constant velocity
    return z_traj, np.array([path.mean().item(), straight.mean().item(), bend.item()])


travelled = {name: np.mean([paths_of(models[name, s])[1] for s in seeds], axis=0) for name in ("plain", reg)}
fig, axes = plt.subplots(1, 2, figsize=(9, 3.8), sharey=True)
for ax, name in zip(axes, ["plain", reg]):
    z_traj, (length, ends, bend) = paths_of(models[name, seeds[0]])
    with torch.no_grad():
        logits = models[name, seeds[0]].readout(z_traj)              # [T, 200, 2]
    score = (logits[..., 1] - logits[..., 0]).cpu()
    for label, colour in ((0, "tab:blue"), (1, "tab:orange")):
        ax.plot(t_plot.cpu(), score[:, (y_test[:200] == label).cpu()], color=colour, alpha=0.3, lw=0.8)
    ax.axhline(0, color="k", lw=0.8)
    ax.set_title(f"{name}, seed {seeds[0]}\npath {length:.2f}, ends {ends:.2f} apart, bend {bend:.1%}", fontsize=10)
    ax.set_xlabel("t")
axes[0].set_ylabel(r"decision score $s(z(t))$")
plt.tight_layout()
plt.show()
claim("path length, regularised / plain: the regularised flow moves the points far less",
      travelled[reg][0] / travelled["plain"][0], at_most=0.5)
claim("path length / distance between its ends, the larger of the two: both nearly straight",
      max(length / ends for length, ends, _ in travelled.values()), at_most=1.2)
claim("bend, regularised / plain: nearly constant velocity", travelled[reg][2] / travelled["plain"][2], at_most=0.75,
      fast_note=f"after {n_iters} iterations the regularised paths are still straightening; full mode: about 0.14")

# %% [markdown]
# On this task both flows are nearly straight in space (a path is hardly longer than the distance
# between its ends); the differences are the distance and the timing. The plain model moves each
# point several times as far and *accelerates*: its scores curve away late in the interval. The
# regularised model's scores are straight lines in $t$: its states move at nearly constant velocity,
# $z(t) \approx (1 - t)\,z(0) + t\,z(1)$, the optimal-transport path that the kinetic energy favours
# among all paths with the same ends. A constant-velocity path has $\ddot z = 0$: no error for the
# solver to control, which is why dopri5 gets through with its minimum of two steps.

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### The tolerance is still a test-time knob
# At test time we may pick any tolerance (notebook 06). The saving holds across the range: the
# regularised dynamics need fewer evaluations at every tolerance, and the gap widens as the tolerance
# tightens, because a straighter trajectory has smaller high derivatives to resolve.

# %%
sweep = {name: [np.mean([evaluate(models[name, s], tol)["nfe"] for s in seeds]) for tol in test_tols]
         for name in variants}
sweep_accuracy = {name: [np.mean([evaluate(models[name, s], tol)["accuracy"] for s in seeds]) for tol in test_tols]
                  for name in variants}
fig, ax = plt.subplots(figsize=(6, 3.5))
for name in variants:
    ax.plot(test_tols, sweep[name], "o-", label=name)
ax.set(xscale="log", xlabel="rtol = atol at test time", ylabel="NFE on the test set",
       title="test-time NFE against tolerance")
ax.invert_xaxis()
ax.legend()
plt.show()
for tol, a, b in zip(test_tols, sweep["plain"], sweep[reg]):
    print(f"tol {tol:.0e}: plain {a:5.1f}   regularised {b:5.1f}")
claim("cheaper at every tolerance: the largest NFE ratio, regularised / plain",
      max(b / a for a, b in zip(sweep["plain"], sweep[reg])), at_most=0.9)
claim("NFE ratio at tolerance 1e-6", sweep[reg][-1] / sweep["plain"][-1], at_most=0.7)
claim("the gap widens: NFE saved at 1e-6 minus NFE saved at 1e-2",
      (sweep["plain"][-1] - sweep[reg][-1]) - (sweep["plain"][0] - sweep[reg][0]), at_least=1)
claim("worst accuracy of the regularised model minus best of the plain one, over the tolerances",
      min(sweep_accuracy[reg]) - max(sweep_accuracy["plain"]), at_least=-accuracy_gap)


# %% [markdown] slideshow={"slide_type": "slide"}
# ## 4. Stiffness: when the step size is capped by stability
# A regulariser can make the dynamics cheap because the plain model chose to be expensive. Some
# dynamics are expensive by nature. Take the linear system $\dot y = M y$ with eigenvalues $-1$ and
# $-\lambda$, $\lambda \gg 1$: one component decays on a time scale of 1, the other on $1/\lambda$.
# After a short transient the fast component is gone and the solution is as smooth as $e^{-t}$. Yet an
# explicit solver keeps taking steps of size about $1/\lambda$ for as long as it runs. Such a problem is
# called **stiff**; its **stiffness ratio** is
# $\max_i |\operatorname{Re}\nu_i| / \min_i |\operatorname{Re}\nu_i|$ over the eigenvalues $\nu_i$ of $M$
# (here $\lambda$). In this section $\nu$ always stands for an eigenvalue, $\lambda$ for this rate, and
# $(A, b, c)$ for a Butcher tableau.
#
# ### The stability function of an explicit Runge-Kutta method
# Apply one step of a Runge-Kutta method with tableau $(A, b, c)$ to the test equation $\dot y = \nu y$
# (any eigen-direction of a linear system). Every stage is linear in $y$, and the step multiplies $y$
# by a polynomial in $z = h\nu$:
# $$y_{n+1} = R(z)\, y_n, \qquad R(z) = 1 + z\, b^\top (I - zA)^{-1}\mathbf 1
#   = 1 + \sum_{k \ge 1} \big(b^\top A^{k-1}\mathbf 1\big)\, z^k ,$$
# a polynomial of degree at most $s$ because $A$ is strictly lower triangular. Errors are amplified
# by $|R(h\nu)|$ per step, so a step is **stable** when $|R(h\nu)| \le 1$. For Euler $R(z) = 1 + z$, and
# on a real negative eigenvalue the condition is $h \le 2/|\nu|$. A method of order $p$ has
# $R(z) = \sum_{k \le p} z^k/k! + O(z^{p+1})$, the Taylor polynomial of $e^z$: we check that on every
# tableau and compute the real stability limit $x^*$, the largest $x$ with $|R(-s)| \le 1$ on $[0, x]$.

# %% [markdown] slideshow={"slide_type": "notes"}
# Speaker notes (25 min, the sub-slides included). Notation, once on the board: $\nu$ an eigenvalue,
# $\lambda$ the stiffness rate of $\dot y = My$, $(A, b, c)$ a Butcher tableau, $\mu$ Van der Pol's
# parameter. Real limits $x^*$: Euler 2, RK4 2.785, bosh3 2.513, dopri5 3.307; on $[0, 10]$ dopri5 takes
# 393, 3783 and 37658 steps for $\lambda = 10^2, 10^3, 10^4$ (slope 0.99), accepted steps within 10% of
# $T\lambda/x^*$, the same count at 1e-3 and 1e-6: the signature to teach is a step count that grows like
# the stiffness ratio and ignores the tolerance. Van der Pol with $\mu = 1000$: the steps sit at 1.025
# times $x^*/\rho(J)$ while $x$ only moves from 2 to 1.998; backward Euler with $h = 0.05$, 250 times the
# explicit limit, is stable and first-order accurate. Common mistake: taking $2/|\nu|$ as Euler's limit
# for a complex eigenvalue; the bound is $-2\operatorname{Re}\nu/|\nu|^2$. Ask the room, before the sweep:
# how will the step count change if the tolerance is tightened a thousandfold?

# %%
def stability_coefficients(tableau) -> torch.Tensor:
    """gamma_k = b^T A^(k-1) 1 for k = 1..s, with gamma_0 = 1: R(z) = sum_k gamma_k z^k."""
    s = tableau.n_stages
    A = torch.zeros(s, s, dtype=torch.float64)
    for i, row in enumerate(tableau.a):
        A[i, : len(row)] = torch.tensor([float(a) for a in row], dtype=torch.float64)
    b = torch.tensor([float(x) for x in tableau.b], dtype=torch.float64)
    gamma, v = [1.0], torch.ones(s, dtype=torch.float64)
    for _ in range(s):
        gamma.append(float(b @ v))
        v = A @ v
    return torch.tensor(gamma, dtype=torch.float64)


def stability_function(gamma: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    return sum(g * z**k for k, g in enumerate(gamma.tolist()))


def real_stability_limit(gamma: torch.Tensor) -> float:
    """The largest x with |R(-s)| <= 1 for all s in [0, x]: scan, then bisect."""
    s = torch.arange(1, 10001, dtype=torch.float64) * 1e-3
    unstable = (stability_function(gamma, -s).abs() > 1).nonzero()
    lo, hi = float(s[unstable[0] - 1]), float(s[unstable[0]])
    for _ in range(60):
        mid = (lo + hi) / 2
        stable = abs(stability_function(gamma, torch.tensor(-mid, dtype=torch.float64))) <= 1
        lo, hi = (mid, hi) if stable else (lo, mid)
    return lo


limits, taylor_gap = {}, 0.0
for name in ("euler", "midpoint", "rk4", "bosh3", "dopri5"):
    gamma = stability_coefficients(TABLEAUX[name])
    p = TABLEAUX[name].order
    taylor = torch.tensor([1 / math.factorial(k) for k in range(p + 1)], dtype=torch.float64)
    taylor_gap = max(taylor_gap, (gamma[: p + 1] - taylor).abs().max().item())
    limits[name] = real_stability_limit(gamma)
    print(f"{name:8s} order {p}: R(z) coefficients {[round(g, 5) for g in gamma.tolist()]}, "
          f"stable for h*|nu| <= {limits[name]:.4f}")
claim("R(z) = e^z + O(z^(p+1)) on every tableau: largest coefficient error", taylor_gap, at_most=1e-14, fmt=".1e")
claim("|Euler's real stability limit - 2|", abs(limits["euler"] - 2), at_most=1e-9, fmt=".1e")
claim("RK4's real stability limit", limits["rk4"], expected=2.7853, tol=1e-4, fmt=".6f")
x_star = limits["dopri5"]

# %% [markdown]
# The stability regions $\{z \in \mathbb C : |R(z)| \le 1\}$ are bounded: every explicit method has a
# largest stable step for a given eigenvalue, and higher order buys only a little more room
# (dopri5: $x^* \approx 3.31$).

# %%
re, im = torch.meshgrid(torch.linspace(-4.5, 1.5, 301, dtype=torch.float64),
                        torch.linspace(-3.5, 3.5, 301, dtype=torch.float64), indexing="xy")
grid = torch.complex(re, im)
fig, ax = plt.subplots(figsize=(5.5, 4.5))
for name, colour in (("euler", "tab:blue"), ("rk4", "tab:green"), ("dopri5", "tab:red")):
    R = stability_function(stability_coefficients(TABLEAUX[name]), grid).abs()
    ax.contour(re.numpy(), im.numpy(), R.numpy(), levels=[1.0], colors=colour)
    ax.plot([], [], color=colour, label=f"{name}: $x^* = {limits[name]:.2f}$")
ax.axhline(0, color="0.7", lw=0.8)
ax.axvline(0, color="0.7", lw=0.8)
ax.set(xlabel=r"Re $h\nu$", ylabel=r"Im $h\nu$", title=r"stability regions $|R(h\nu)| \leq 1$ (inside)",
       aspect="equal")
ax.legend(loc="upper left", fontsize=8)
plt.show()


# %% [markdown] slideshow={"slide_type": "subslide"}
# ### Steps grow linearly with the stiffness ratio
# We solve $\dot y = My$ with $M = Q\,\mathrm{diag}(-1, -\lambda)\,Q^\top$ ($Q$ a rotation, so that both
# components of $y$ see both time scales) on $[0, 10]$ with dopri5, for a range of $\lambda$ and two
# tolerances. The exact solution is $e^{tM}y_0$. Once the fast component has decayed, accuracy would
# allow long steps, but stability allows $h \le x^*/\lambda$, so the number of accepted steps should be
# about $10\lambda/x^*$: linear in $\lambda$ and independent of the tolerance.

# %%
def stiff_matrix(lam: float) -> torch.Tensor:
    c, s = math.cos(0.5), math.sin(0.5)
    Q = torch.tensor([[c, -s], [s, c]], **F64)
    return Q @ torch.diag(torch.tensor([-1.0, -float(lam)], **F64)) @ Q.T


y0_stiff = torch.tensor([1.0, 1.0], **F64)
span = 10.0
t_span = torch.tensor([0.0, span], **F64)
steps = {tol: [] for tol in (1e-3, 1e-6)}
accepted = {tol: [] for tol in steps}
worst_error = 0.0                  # the largest end-point error, in units of the solve's atol
for lam in stiff_rates:
    M = stiff_matrix(lam)
    exact_end = torch.linalg.matrix_exp(span * M) @ y0_stiff
    for tol in steps:
        sol = solve(lambda t, y: y @ M.T, y0_stiff, t_span, rtol=tol, atol=tol * 1e-3)
        steps[tol].append(sol.stats.n_steps)
        accepted[tol].append(sol.stats.n_accepted)
        worst_error = max(worst_error, (sol.ys[-1] - exact_end).abs().max().item() / (tol * 1e-3))
    print(f"lambda = {lam:6d}: steps {steps[1e-6][-1]:6d} at tol 1e-6, {steps[1e-3][-1]:6d} at tol 1e-3; "
          f"accepted {accepted[1e-6][-1]:6d}" + (f", predicted {span * lam / x_star:.0f}" if lam >= 100 else ""))

stiff = [i for i, lam in enumerate(stiff_rates) if lam >= 100]
slope = np.polyfit(np.log([stiff_rates[i] for i in stiff]), np.log([steps[1e-6][i] for i in stiff]), 1)[0]
claim("accurate, whatever it costs: largest end-point error, in units of atol", worst_error, at_most=100)
claim("steps grow linearly with the stiffness ratio: slope of log(steps) against log(lambda), lambda >= 100",
      slope, expected=1, tol=0.05)
claim("accepted steps against T lambda / x*: largest relative deviation, lambda >= 100",
      max(abs(accepted[1e-6][i] / (span * stiff_rates[i] / x_star) - 1) for i in stiff), at_most=0.1)
claim("the tolerance hardly matters when stiff: largest |steps at 1e-3 / steps at 1e-6 - 1|, lambda >= 100",
      max(abs(steps[1e-3][i] / steps[1e-6][i] - 1) for i in stiff), at_most=0.1)
claim("... while it does for the non-stiff lambda = 1: steps at 1e-3 / steps at 1e-6", steps[1e-3][0] / steps[1e-6][0],
      at_most=0.5)

# %%
fig, ax = plt.subplots(figsize=(5.5, 3.5))
for tol, marker in ((1e-6, "o-"), (1e-3, "s--")):
    ax.loglog(stiff_rates, steps[tol], marker, label=f"dopri5, tol {tol:.0e}")
lam_line = np.array(stiff_rates, dtype=float)
ax.loglog(lam_line, span * lam_line / x_star, ":", color="0.4", label=r"$T\lambda / x^*$")
ax.set(xlabel=r"stiffness ratio $\lambda$", ylabel="steps on [0, 10]", title="explicit steps against stiffness")
ax.legend()
plt.show()

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### Van der Pol with $\mu = 1000$
# Stiffness is not only a property of linear systems. The Van der Pol oscillator
# $$\dot x = v, \qquad \dot v = \mu (1 - x^2) v - x$$
# with $\mu = 1000$ creeps along a slow curve most of the time; there its Jacobian
# $\begin{pmatrix} 0 & 1 \\ -2\mu x v - 1 & \mu(1 - x^2)\end{pmatrix}$ has one eigenvalue near
# $\mu(1 - x^2) \approx -3000$ (at $x \approx 2$) and one near 0: a stiffness ratio in the millions.
# To see dopri5's steps, we let the vector field write down the times at which it is called. After
# the two evaluations that choose the first step, every dopri5 step (accepted or rejected) evaluates
# its stages 2 to 7, at $t + c_i h$ with $c = (\tfrac15, \tfrac3{10}, \tfrac45, \tfrac89, 1, 1)$; so
# the first and the fifth call of each group of six give the step: $h = (\tau_5 - \tau_1)/(1 - \tfrac15)$.
# We compare each accepted step with the local stability limit $x^*/\rho(J(y(t)))$, with $\rho$ the
# spectral radius of the Jacobian on the solution.

# %%
mu = 1000.0
calls: list[float] = []


def van_der_pol(t, y):
    x, v = y[..., 0], y[..., 1]
    return torch.stack([v, mu * (1 - x**2) * v - x], dim=-1)


def logged_van_der_pol(t, y):
    """The same field, writing down the time of every call."""
    calls.append(float(t))
    return van_der_pol(t, y)


def vdp_jacobian(y: torch.Tensor) -> torch.Tensor:
    x, v = y[..., 0], y[..., 1]
    return torch.stack([torch.stack([torch.zeros_like(x), torch.ones_like(x)], -1),
                        torch.stack([-2 * mu * x * v - 1, mu * (1 - x**2)], -1)], -2)


y0_vdp = torch.tensor([2.0, 0.0], **F64)
start = time.perf_counter()
sol = solve(logged_van_der_pol, y0_vdp, torch.tensor([0.0, vdp_span], **F64), rtol=1e-6, atol=1e-6)
print(f"Van der Pol on [0, {vdp_span}]: {sol.stats} in {time.perf_counter() - start:.1f} s; "
      f"x moves from 2 to {sol.ys[-1, 0]:.4f}")
c = [float(ci) for ci in TABLEAUX["dopri5"].c]
check("2 start-up calls, then 6 per step", len(calls) == 2 + 6 * sol.stats.n_steps,
      detail=f"{len(calls)} calls, {sol.stats.n_steps} steps")
tau = torch.tensor(calls[2:], dtype=torch.float64).view(-1, 6)
h_steps = (tau[:, 4] - tau[:, 0]) / (c[5] - c[1])
t_steps = tau[:, 0] - c[1] * h_steps
is_accepted = torch.cat([t_steps[1:] - t_steps[:-1] > 0.5 * h_steps[:-1], torch.tensor([True])])
check("the trace agrees with the solver's statistics", int(is_accepted.sum()) == sol.stats.n_accepted,
      detail=f"{sol.stats.n_accepted} accepted steps")

t_acc, h_acc = t_steps[is_accepted], h_steps[is_accepted]
y_at = solve(van_der_pol, y0_vdp, t_acc.to(DEV), rtol=1e-9, atol=1e-9).ys  # the solution where each step starts
rho = torch.linalg.eigvals(vdp_jacobian(y_at)).abs().amax(-1).cpu()
limit = x_star / rho
settled = t_acc > 0.1 * vdp_span
ratio = (h_acc[settled] / limit[settled]).median().item()
claim("the steps sit on the stability limit: median accepted step / x*/rho(J) after the transient", ratio,
      expected=1, tol=0.2)

fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
axes[0].semilogy(t_steps[~is_accepted], h_steps[~is_accepted], "x", color="tab:red", ms=3, label="rejected")
axes[0].semilogy(t_acc, h_acc, ".", ms=2, label="accepted")
axes[0].semilogy(t_acc, limit, color="k", lw=1, label=r"$x^* / \rho(J)$")
axes[0].set(xlabel="t", ylabel="step size h", title=f"dopri5 on Van der Pol, mu = {mu:g}")
axes[0].legend()
t_fine = torch.linspace(0, vdp_span, 200, **F64)
x_fine = solve(van_der_pol, y0_vdp, t_fine, rtol=1e-6, atol=1e-6).ys[:, 0]
axes[1].plot(t_fine.cpu(), x_fine.cpu())
axes[1].ticklabel_format(useOffset=False)
axes[1].set(xlabel="t", ylabel="x(t)", title=f"the solution: smooth, yet {sol.stats.n_steps} steps")
plt.tight_layout()
plt.show()

# %% [markdown]
# After a short transient the accepted steps sit right at the stability limit: the error estimate
# grows as soon as a step leaves the stability region, the step is rejected or shrunk, and the
# solver saw-tooths along the boundary. The solution it so laboriously follows barely moves.
# A full period of this oscillator is about $(3 - 2\ln 2)\mu \approx 1600$ time units, which at a
# step of $10^{-3}$ is more than a million steps.
#
# ### What an implicit method does
# Implicit methods evaluate $f$ at the *end* of the step. Backward Euler,
# $y_{n+1} = y_n + h f(y_{n+1})$, on $\dot y = Ay$ is $y_{n+1} = (I - hA)^{-1} y_n$, with stability
# function $R(z) = 1/(1 - z)$, and $|R| < 1$ on the whole left half-plane: any step is stable, and the
# step size is set by accuracy alone. The price is a linear solve per step (a Newton iteration for a
# nonlinear $f$). `nodecourse`'s own methods are explicit; here are ten lines of backward Euler.

# %%
lam = 1e4
M = stiff_matrix(lam)
h_big = 0.05
y = y0_stiff.clone()
step_matrix = torch.linalg.inv(torch.eye(2, **F64) - h_big * M)
for _ in range(round(1.0 / h_big)):
    y = step_matrix @ y
exact_end = torch.linalg.matrix_exp(M) @ y0_stiff
print(f"backward Euler, 20 steps of h = {h_big}: y(1) = {y.tolist()}, exact {exact_end.tolist()}")
claim("first-order accurate with a step 250x the explicit limit: max |y(1) - exact|", (y - exact_end).abs().max(),
      at_most=0.02)
print(f"explicit Euler would need h < 2/lambda = {2 / lam:g}, i.e. more than {int(lam / 2)} steps on [0, 1]")

# %% [markdown]
# For real stiff problems, `method="scipy_solver"` hands the solve to SciPy's `solve_ivp` (the same
# call as every other method; torchdiffeq has it too), whose `Radau` and `BDF` are implicit methods of
# high order with step-size control (Hairer and Wanner, *Solving ODEs II*). On the Van der Pol
# oscillator above, compare the evaluations with dopri5's:

# %%
radau = solve(van_der_pol, y0_vdp, torch.tensor([0.0, vdp_span], **F64), rtol=1e-6, atol=1e-6,
              method="scipy_solver", options={"solver": "Radau"})
x_dopri, x_radau = sol.ys[-1, 0].item(), radau.ys[-1, 0].item()
print(f"dopri5: {sol.stats.nfe} evaluations, x({vdp_span}) = {x_dopri:.6f}")
print(f"Radau:  {radau.stats.nfe} evaluations, x({vdp_span}) = {x_radau:.6f}")
claim("the two agree on the solution: |x_dopri5 - x_Radau|", abs(x_dopri - x_radau), at_most=1e-3, fmt=".1e")
claim("the implicit method needs far fewer evaluations: NFE, Radau / dopri5", radau.stats.nfe / sol.stats.nfe,
      at_most=0.1)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 5. When the solver gives up
# A solve that cannot go on raises `nodecourse.SolverError` (a `ValueError`) whose message names the
# cause and what to try. Here are the three ways a learner meets it, each caught and read:
#
# 1. **Too many steps.** The stiff Van der Pol oscillator over a full period with a step budget of
#    500 (`options={"max_num_steps": 500}`). The default budget, 50,000 steps, stops a stiff solve
#    within seconds with the same message; a smaller budget only makes it quicker.
# 2. **Non-finite values.** Explicit Euler with $h = 10^{-3}$ on the stiff linear system with
#    $\lambda = 10^4$: $|1 + h\nu| = 9 > 1$ for $\nu = -10^4$, so the fast component is multiplied by $-9$ every step and
#    overflows to infinity. A fixed-step solve checks its outputs at the end.
# 3. **Step-size underflow.** The field $f(y) = -\sqrt{y}$ has the solution $(1 - t/2)^2$, which reaches
#    0 at $t = 2$; past it every trial step produces $\sqrt{\text{negative}} = $ NaN, the controller
#    shrinks the step until it no longer advances time, and the message says that the field returned
#    NaN there. A solution that blows up in finite time ($\dot y = y^2$, notebook 01) ends the same
#    way, with a message about the state's size instead.

# %% [markdown] slideshow={"slide_type": "notes"}
# Speaker notes (10 min). Four `SolverError`s are caught and their messages checked: too many steps,
# non-finite values from explicit Euler above its limit, and step-size underflow from a NaN field and from
# a blow-up. Read the messages aloud and go through the table: each names its cause and maps to a remedy.
# Common mistake: raising `max_num_steps` on a stiff problem; the error goes away, the solve takes
# forever, and nothing about the cause changes. Close with the learned dynamics: the largest eigenvalue of
# $\partial f/\partial z$ along the test paths is 8.7 (plain) and 1.4 (regularised) in full mode, and both
# models are accuracy-limited, not stiff, because their steps are below $x^*/\rho$. Ask: which row of the
# table would a model that learned a stiff field hit first?

# %%
lam4 = stiff_matrix(1e4)
failing = {
    "too many steps": (lambda: solve(van_der_pol, y0_vdp, torch.tensor([0.0, 3000.0], **F64), rtol=1e-6, atol=1e-6,
                                     options={"max_num_steps": 500}),
                       ["max_num_steps=500", "stiffness"]),
    "non-finite values": (lambda: solve(lambda t, y: y @ lam4.T, y0_stiff, torch.tensor([0.0, 1.0], **F64),
                                        method="euler", options={"step_size": 1e-3}),
                          ["NaN/inf", "stability limit", "smaller step_size"]),
    "underflow, NaN field": (lambda: solve(lambda t, y: -y.sqrt(), torch.ones(1, **F64),
                                           torch.tensor([0.0, 3.0], **F64)),
                             ["Step size underflow at t=2", "NaN/inf"]),
    "underflow, blow-up": (lambda: solve(lambda t, y: y**2, torch.ones(1, **F64), torch.tensor([0.0, 2.0], **F64)),
                           ["Step size underflow at t=1", "blows up in finite time"]),
}
for name, (attempt, expected_words) in failing.items():
    try:
        attempt()
        error = None                   # the solve went through: the check below says so
    except SolverError as err:
        error = err
    print(f"--- {name}:\n{error}")
    check("the solve raised a SolverError, which is a ValueError", isinstance(error, SolverError) and isinstance(error, ValueError))
    missing = [word for word in expected_words if word not in str(error)]
    check(f"the message mentions {', '.join(map(repr, expected_words))}", not missing,
          detail=f"missing: {missing}" if missing else "")
    print()


# %% [markdown]
# | the message says | the likely cause | what to do |
# |---|---|---|
# | more than `max_num_steps` steps | a stiff problem, a tolerance too tight, or a learned field gone wild | look at the step sizes (stiff: they sit at $x^*/\rho(J)$); loosen the tolerance; regularise the model; for stiff physics use an implicit solver |
# | the solution became NaN/inf (fixed step) | a step above the stability limit $x^*/\rho(J)$ | a smaller `step_size`, or an adaptive method |
# | step-size underflow, NaN/inf | `func` is undefined there (a log, a square root, a division) | fix the field, or stop the solve before that time |
# | step-size underflow, large state | the solution blows up in finite time | a shorter span; in a Neural ODE, regularise or bound the field (e.g. tanh) |
#
# ### Are learned dynamics stiff?
# A trained Neural ODE is an ODE like any other, and the regularisers of section 3 act on exactly the
# quantity that controls stiffness: $\|J\|_F^2 = \sum_{ij} J_{ij}^2 \ge \rho(J)^2$. We measure the
# spectral radius of $\partial f/\partial z$ along the test trajectories of both trained models.

# %%
def largest_eigenvalue(model: RegularisedClassifier, n: int = 200) -> float:
    """max over n test trajectories and 11 times of the spectral radius of df/dz."""
    with torch.no_grad():
        z = solve(model.func.dynamics, model.embed(X_test[:n]), torch.linspace(0, 1, 11, device=DEVICE),
                  rtol=1e-5, atol=1e-5).ys.reshape(-1, hidden)
    jac = torch.vmap(torch.func.jacrev(lambda zi: model.func.dynamics(0.0, zi)))(z)
    return torch.linalg.eigvals(jac.double()).abs().amax().item()


radius = {}
for name in ("plain", reg):
    radius[name] = np.mean([largest_eigenvalue(models[name, s]) for s in seeds])
    n_steps = (averaged(name, "nfe") - 2) / 6      # dopri5: 2 start-up evaluations, then 6 per step
    print(f"{name:19s}: largest |eigenvalue| {radius[name]:5.2f}, stable step up to {x_star / radius[name]:.2f}, "
          f"steps taken at test time {n_steps:.1f} (h = {1 / n_steps:.2f})")
    claim(f"{name}: test step / stable step (below 1: accuracy, not stability, sets the steps)",
          (1 / n_steps) / (x_star / radius[name]), at_most=1)
claim("the Jacobian penalty shrinks the eigenvalues: largest |eigenvalue|, regularised / plain",
      radius[reg] / radius["plain"], at_most=1)

# %% [markdown]
# Neither model is stiff: the steps the solver takes are shorter than the stability limit, so accuracy,
# not stability, sets them, and the saving of section 3 is a saving in accuracy work. The regularised
# model's eigenvalues are smaller too, which is what a Jacobian penalty does.
# Stiff learned dynamics do occur, e.g. when a Neural ODE models chemical kinetics or other physics
# with widely separated time scales (Kim et al. 2021); then the remedies are those of the table:
# rescaling, regularisation, or implicit solvers.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Recap
# - Many vector fields give a Neural ODE the same input-output map; their cost differs, and it
#   follows the kinetic energy $\int\|f\|^2dt$ and the Jacobian $\int\|\partial f/\partial z\|_F^2dt$,
#   which bound how fast trajectories bend ($\ddot z = J f$).
# - Both integrals are computed along the solve by augmenting the state with running integrals,
#   $(z, E_K, E_J)$; the Frobenius norm costs one vector-Jacobian product with a Gaussian probe,
#   $\mathbb E\|\varepsilon^\top J\|^2 = \|J\|_F^2$.
# - On the nested circles, regularising with $\lambda_K = \lambda_J = 0.01$ gives the same accuracy at
#   about half the test-time NFE, at every tolerance; without it, NFE climbs during training.
# - Stiff problems cap an explicit method's step at $x^*/\rho(J)$, with $x^*$ from the stability
#   polynomial $R(z) = \sum_k b^\top A^{k-1}\mathbf 1\, z^k$ (Euler 2, RK4 2.79, dopri5 3.31): steps grow
#   linearly with the stiffness ratio and ignore the tolerance. Implicit methods are stable for any step.
# - `SolverError` says what went wrong: too many steps, non-finite values, or step-size underflow,
#   with the likely cause (stiffness, a step above the stability limit, an undefined field, a blow-up).
#
# ## Further reading
# - C. Finlay, J.-H. Jacobsen, L. Nurbekyan, A. M. Oberman. *How to train your neural ODE: the world
#   of Jacobian and kinetic regularization*. ICML 2020. arXiv:2002.02798.
# - J. Kelly, J. Bettencourt, M. J. Johnson, D. Duvenaud. *Learning Differential Equations that are
#   Easy to Solve*. NeurIPS 2020. arXiv:2007.04504.
# - W. Grathwohl, R. T. Q. Chen, J. Bettencourt, I. Sutskever, D. Duvenaud. *FFJORD: Free-form
#   Continuous Dynamics for Scalable Reversible Generative Models*. ICLR 2019. arXiv:1810.01367.
# - M. F. Hutchinson. *A stochastic estimator of the trace of the influence matrix for Laplacian
#   smoothing splines*. Communications in Statistics - Simulation and Computation 18(3), 1989.
# - E. Dupont, A. Doucet, Y. W. Teh. *Augmented Neural ODEs*. NeurIPS 2019. arXiv:1904.01681.
# - S. Massaroli, M. Poli, J. Park, A. Yamashita, H. Asama. *Dissecting Neural ODEs*. NeurIPS 2020.
#   arXiv:2002.08071.
# - S. Kim, W. Ji, S. Deng, Y. Ma, C. Rackauckas. *Stiff Neural Ordinary Differential Equations*.
#   Chaos 31, 093122, 2021. arXiv:2103.15341.
# - E. Hairer, G. Wanner. *Solving Ordinary Differential Equations II: Stiff and Differential-Algebraic
#   Problems*, 2nd ed. Springer, 1996.
# - R. T. Q. Chen, Y. Rubanova, J. Bettencourt, D. Duvenaud. *Neural Ordinary Differential
#   Equations*. NeurIPS 2018. arXiv:1806.07366.

# %% [markdown] slideshow={"slide_type": "notes"}
# Speaker notes (2 min). One sentence per half: regularisers choose a cheap field among equally good ones;
# stiffness caps an explicit solver's step, whatever the tolerance. Ask: which of the two could a
# regulariser fix?
