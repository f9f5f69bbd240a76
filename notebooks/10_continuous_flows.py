# %% [markdown] slideshow={"slide_type": "skip"}
# Colab links appear here once the course's home repository is set (`make home`, see CONTRIBUTING.md).

# %% [markdown] slideshow={"slide_type": "slide"}
# # 10 · Continuous normalizing flows
#
# A Neural ODE moves points; this notebook makes it move probability. When points follow
# $\dot z = f(t, z)$, their density changes at the rate $-\operatorname{tr}(\partial f / \partial z)$,
# a result that turns any Neural ODE into a density model you can train by maximum likelihood and
# sample from by solving backwards (Chen et al. 2018, Sec. 4; Grathwohl et al. 2019, FFJORD).
#
# **Learning objectives**
# - derive the instantaneous change of variables $\frac{d}{dt}\log p(z(t)) = -\operatorname{tr}(\partial f/\partial z)$
#   from the finite change of variables, and check it against closed forms and brute-force log-determinants;
# - compute the trace exactly with one autograd pass per dimension, and estimate it with Hutchinson's
#   estimator in one pass; show the estimator is unbiased and compare the costs as the dimension grows;
# - train a continuous normalizing flow (CNF) on two moons by maximum likelihood with both traces and
#   compare them in NLL and time per iteration;
# - plot a CNF's log-density on a grid and draw samples by integrating the base Gaussian backwards;
# - condition the vector field on a label (a data-controlled CNF) and sample each class on demand.
#
# **Estimated time:** 90 minutes

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
import time

import numpy as np
import torch.nn.functional as F

from nodecourse import odeint
from nodecourse.claims import check, claim, report
from nodecourse.models.flows import (CNF, CNFField, exact_trace, hutchinson_trace, sample_probe,
                                     standard_normal_log_prob)

# The flows here are small (2-D states, a few dozen hidden units): on a CPU one thread is fastest.
torch.set_num_threads(1)

# Exact checks run in double precision; Apple's MPS has none, so there they use the CPU.
DEV64 = DEVICE if DEVICE.type != "mps" else torch.device("cpu")
F64 = dict(dtype=torch.float64, device=DEV64)


def sync() -> None:
    """Wait for queued GPU work, so that wall-clock timings measure the computation."""
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()


# %% [markdown] slideshow={"slide_type": "slide"}
# ## Hyperparameters
# The only cells the test suite changes: fast mode trains smaller flows for fewer iterations, and the
# bars the results must clear follow from that.

# %%
n_iters = 200 if FAST else 1000        # optimizer steps per training run
hidden = 32 if FAST else 64            # hidden units per layer of the vector field (two layers)
n_steps = 4 if FAST else 8             # RK4 steps on [0, 1]: 4 field evaluations each
lr = 1e-2 if FAST else 5e-3            # Adam's learning rate, cosine-annealed to 0
batch_size = 256                       # training points per iteration
nll_drop_bar = 0.5 if FAST else 1.2    # training must lower the test NLL by this many nats
nll_gap_bar = 0.2 if FAST else 0.1     # exact and Hutchinson training end this close (nats)
n_probes = 20000                       # probes for the unbiasedness checks

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 1. The instantaneous change of variables
#
# **The finite change of variables.** If $z_1 = F(z_0)$ for an invertible, differentiable map $F$
# and $z_0 \sim p_0$, the density of $z_1$ is
# $$ \log p_1(z_1) = \log p_0(z_0) - \log\left|\det \frac{\partial F}{\partial z_0}\right| . $$
# A map that stretches a neighbourhood by a factor spreads its probability over more volume, so the
# density drops by that factor. A normalizing flow chains such maps; each needs a log-determinant,
# which costs $O(D^3)$ for a general $D \times D$ Jacobian. That is why discrete flows restrict their
# layers (triangular Jacobians, coupling layers).
#
# **One small Euler step.** Take $F_\varepsilon(z) = z + \varepsilon f(t, z)$: one step of the ODE
# $\dot z = f(t, z)$. With $A = \partial f / \partial z$ its Jacobian is $I + \varepsilon A$, and with
# the eigenvalues $\lambda_i$ of $A$
# $$ \det(I + \varepsilon A) = \prod_i (1 + \varepsilon\lambda_i)
#    = 1 + \varepsilon \operatorname{tr} A + O(\varepsilon^2) . $$
# So $\log p(z(t + \varepsilon)) - \log p(z(t)) = -\log\big(1 + \varepsilon \operatorname{tr} A + O(\varepsilon^2)\big)
# = -\varepsilon \operatorname{tr} A + O(\varepsilon^2)$. Divide by $\varepsilon$ and let it go to 0:
# $$ \boxed{\ \frac{d}{dt} \log p\big(z(t)\big) = -\operatorname{tr}\!\left(\frac{\partial f}{\partial z}\big(t, z(t)\big)\right)\ } $$
# (Chen et al. 2018, Theorem 1). The derivative follows the moving point, and the determinant, a
# product over the eigenvalues, has become the trace, their *sum*. The same law follows from the
# continuity equation $\partial_t p = -\nabla\cdot(p f)$ along a trajectory:
# $\frac{d}{dt}\log p = \partial_t \log p + f\cdot\nabla\log p = -\nabla\cdot f$.
#
# First the expansion itself. The next term is $\varepsilon^2 e_2(A)$ with
# $e_2 = \big((\operatorname{tr} A)^2 - \operatorname{tr}(A^2)\big)/2$, the sum of the products of pairs of
# eigenvalues, so the error of $1 + \varepsilon\operatorname{tr}A$ divided by $\varepsilon^2$ must tend to $e_2$.

# %% [markdown] slideshow={"slide_type": "notes"}
# Speaker notes (28 min with the setup, the four sub-slides included). The derivation is one line once
# $\det(I + \varepsilon A) = 1 + \varepsilon \operatorname{tr} A + O(\varepsilon^2)$ is seen: a
# determinant, the product of the eigenvalues, becomes a trace, their sum; the derivative follows the
# moving point, not a fixed $x$. Sign and direction cause most confusion, so write the conventions on the
# board once: data at $t = 0$, the Gaussian at $t = 1$, $\delta$ the change of $\log p$ along the path,
# and "log p at the start = log p at the end minus $\delta$ at the end", in either direction of
# integration. Common mistakes: $+\operatorname{tr}$ in the dynamics or $+\delta$ in $\log p(x)$ (the
# linear-field check $\delta(t) = -t\operatorname{tr}A$ catches both), and forgetting
# `torch.enable_grad()` in the dynamics, which works while training and fails under `torch.no_grad()` with
# "element 0 of tensors does not require grad". Ask: for $\dot z = \tanh 3z$, where does the density fall
# most, and why?

# %%
torch.manual_seed(0)
A = torch.randn(4, 4, **F64)
e2 = (torch.trace(A) ** 2 - torch.trace(A @ A)) / 2
epsilons = [10.0 ** -k for k in range(1, 6)]
errors = [(torch.linalg.det(torch.eye(4, **F64) + eps * A) - (1 + eps * torch.trace(A))).abs().item()
          for eps in epsilons]
for eps, err in zip(epsilons, errors):
    print(f"eps = {eps:.0e}: |det(I + eps A) - (1 + eps tr A)| = {err:.3e},  / eps^2 = {err / eps**2:.5f}")
print(f"e2(A) = {e2.abs().item():.5f}")
slope = np.polyfit(np.log(epsilons), np.log(errors), 1)[0]
claim("log-log slope of the error against eps", slope, expected=2, tol=0.05)
claim("error / eps^2 at eps = 1e-5, against |e2(A)|", errors[-1] / epsilons[-1] ** 2, expected=e2.abs(), rel=1e-3,
      fmt=".5f")


# %% [markdown] slideshow={"slide_type": "subslide"}
# ### The augmented state
# To know the density at the end of a trajectory we carry the log-density change along with the
# point: the joint state $(z, \delta)$ with
# $$ \frac{d}{dt}\begin{pmatrix} z \\ \delta \end{pmatrix} = \begin{pmatrix} f(t, z) \\ -\operatorname{tr}\,\partial f / \partial z \end{pmatrix},
#    \qquad \delta(t_0) = 0, $$
# gives $\log p_{t_1}(z(t_1)) = \log p_{t_0}(z(t_0)) + \delta(t_1)$. This is a *tuple* state, which
# `nodecourse.odeint` solves like any other. The trace needs $\partial f/\partial z$, which autograd
# gives us one row at a time: row $i$ is the gradient of $f_i$. For a batch, the gradient of
# $\sum_b f_i(z_b)$ with respect to all $z_b$ at once gives every sample's row $i$, because sample $b$'s
# output depends on sample $b$'s input only. In 2-D that is two autograd passes.

# %%
def trace_by_rows(f: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """tr(df/dz) per sample by one autograd pass per dimension: f, z [B, D] -> [B]."""
    rows = [torch.autograd.grad(f[:, i].sum(), z, create_graph=True)[0][:, i] for i in range(z.shape[1])]
    return torch.stack(rows, dim=1).sum(dim=1)


def cnf_dynamics(field, t, state):
    """d/dt (z, delta) = (f(t, z), -tr df/dz) for a field(t, z): ([B, D], [B]) -> ([B, D], [B])."""
    z, _ = state
    with torch.enable_grad():  # the trace needs autograd, even inside torch.no_grad()
        if not z.requires_grad:
            z = z.detach().requires_grad_(True)
        f = field(t, z)
        return f, -trace_by_rows(f, z)


# %% [markdown] slideshow={"slide_type": "subslide"}
# ### The law in one picture
# In one dimension the trace is just $\partial f/\partial z$, and the whole law fits in one figure.
# Start with $z(0) \sim \mathcal N(0, 1)$ and the field $f(z) = \tanh 3z$, which pushes points away
# from 0 and stretches the line most near 0. Left: the paths spread apart where
# $\partial f/\partial z = 3/\cosh^2 3z$ is large. Middle: along each path $\log p$ falls by
# $\int_0^t \partial f/\partial z\, dt$, the most for the paths that start near 0 (the field is odd, so
# the paths from $\pm z(0)$ share a curve).
# Right: the density at $t = 1$ computed that way, against a histogram of 20,000 draws pushed through
# the same flow. We also check the integral against the finite change of variables,
# $\delta(1) = -\log\, dz(1)/dz(0)$, with the derivative taken by finite differences along a grid of
# starting points.

# %%
field_1d = lambda t, z: torch.tanh(3 * z)  # noqa: E731
z_start = torch.linspace(-3, 3, 6001, **F64)[:, None]                            # steps of 0.001: [6001, 1]
t_path = torch.linspace(0, 1, 41, **F64)
with torch.no_grad():  # no parameters to train: no graph needed
    z_path, delta_path = odeint(lambda t, s: cnf_dynamics(field_1d, t, s), (z_start, torch.zeros(6001, **F64)),
                                t_path, rtol=1e-8, atol=1e-8)                   # [41, 6001, 1], [41, 6001]
logp_path = standard_normal_log_prob(z_start) + delta_path                      # log p_t(z(t)) on each path
stretch = torch.gradient(z_path[-1, :, 0], spacing=(z_start[:, 0],))[0]          # dz(1)/dz(0)
claim("max |delta(1) + log dz(1)/dz(0)|, the derivative by finite differences of step 0.001",
      (delta_path[-1] + stretch.log()).abs().max(), at_most=2e-3, fmt=".1e")
pushed = odeint(field_1d, torch.randn(20000, 1, **F64), torch.tensor([0.0, 1.0], **F64))[-1, :, 0]

fig, axes = plt.subplots(1, 3, figsize=(13, 3.4))
starts = torch.tensor([0.0, 0.03, 0.08, 0.15, 0.3, 0.6, 1.2, 2.0], **F64)
for k, start in enumerate(torch.cat([-starts.flip(0), starts[1:]])):   # a few paths, denser near 0
    i, color = int(torch.searchsorted(z_start[:, 0], start)), plt.cm.coolwarm(k / 14)
    axes[0].plot(t_path.cpu(), z_path[:, i, 0].cpu(), color=color, lw=1)
    axes[1].plot(t_path.cpu(), logp_path[:, i].cpu(), color=color, lw=1)
axes[0].set(xlabel="t", ylabel="z(t)", title=r"paths of $\dot z = \tanh 3z$")
axes[1].set(xlabel="t", ylabel=r"$\log p_t(z(t))$", title=r"$\log p_0(z(0)) - \int_0^t \partial f/\partial z\,dt$")
axes[2].hist(pushed.cpu(), bins=120, range=(-4, 4), density=True, color="0.8", label="20,000 draws at t = 1")
axes[2].plot(z_start[:, 0].cpu(), logp_path[0].exp().cpu(), label="$p_0$")
axes[2].plot(z_path[-1, :, 0].cpu(), logp_path[-1].exp().cpu(), label="$p_1$ by the trace integral")
axes[2].set(xlim=(-4, 4), xlabel="z", title="the density before and after")
axes[2].legend(fontsize=8, loc="upper left")
plt.tight_layout()
plt.show()

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### Check 1: a linear field
# For $f(z) = A z$ the flow map is $z(t) = e^{tA} z_0$, and by Jacobi's formula
# $\log\det e^{tA} = t \operatorname{tr} A$, so $\delta(t) = -t\operatorname{tr}A$ exactly. Better still,
# if $z_0 \sim \mathcal N(0, I)$ then $z(t) \sim \mathcal N(0, e^{tA}e^{tA^\top})$, so the whole
# log-density along the flow has a closed form we can compare with. We take a rotation with
# contraction ($\operatorname{tr} A < 0$): the cloud shrinks, so its density must rise.

# %%
A = torch.tensor([[-0.3, -1.0], [1.2, -0.5]], **F64)
times = torch.linspace(0, 2, 5, **F64)
z0 = torch.randn(6, 2, **F64)
zs, deltas = odeint(lambda t, s: cnf_dynamics(lambda t_, z: z @ A.T, t, s),
                    (z0, torch.zeros(6, **F64)), times, rtol=1e-10, atol=1e-10)
delta_error, logp_error = 0.0, 0.0
for k, t in enumerate(times):
    M = torch.linalg.matrix_exp(t * A)
    exact = torch.distributions.MultivariateNormal(torch.zeros(2, **F64), M @ M.T).log_prob(zs[k])
    ours = standard_normal_log_prob(z0) + deltas[k]
    print(f"t = {t:.1f}: delta = {deltas[k, 0].item():+.6f} (-t tr A = {-t.item() * torch.trace(A).item():+.6f}),"
          f"  max |log p - closed form| = {(ours - exact).abs().max().item():.1e}")
    delta_error = max(delta_error, (deltas[k] + t * torch.trace(A)).abs().max().item())
    logp_error = max(logp_error, (ours - exact).abs().max().item())
claim("max |delta(t) + t tr A| over the times", delta_error, at_most=1e-9, fmt=".1e")
claim("max |log p - closed form| over the times", logp_error, at_most=1e-9, fmt=".1e")

# %% [markdown]
# The same machinery draws the density at any time $t$: for each grid point $y$, solve $(z, \delta)$
# from time $t$ back to 0 (where the density is the standard Gaussian's) and read
# $\log p_t(y) = \log p_0(z(0)) - \delta(0)$, the rule "log-density at the start = log-density at the
# end minus $\delta$ at the end" that every CNF below uses.

# %%
n_grid = 60
axis = torch.linspace(-3, 3, n_grid, **F64)
gy, gx = torch.meshgrid(axis, axis, indexing="ij")
grid = torch.stack([gx.reshape(-1), gy.reshape(-1)], dim=1)

fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
grid_error = 0.0
for ax, t in zip(axes, (0.0, 1.0, 2.0)):
    if t == 0:
        logp = standard_normal_log_prob(grid)
    else:
        back = torch.tensor([t, 0.0], **F64)
        with torch.no_grad():  # no graph for the parameters is needed to draw a picture
            zb, db = odeint(lambda s, st: cnf_dynamics(lambda s_, z: z @ A.T, s, st),
                            (grid, torch.zeros(len(grid), **F64)), back, rtol=1e-8, atol=1e-8)
        logp = standard_normal_log_prob(zb[-1]) - db[-1]
        M = torch.linalg.matrix_exp(t * A)
        closed = torch.distributions.MultivariateNormal(torch.zeros(2, **F64), M @ M.T).log_prob(grid)
        grid_error = max(grid_error, (logp - closed).abs().max().item())
    ax.contourf(gx.cpu(), gy.cpu(), logp.exp().reshape(n_grid, n_grid).cpu(), levels=20, cmap="viridis")
    ax.set(title=f"$p_t$ at t = {t:g}", aspect="equal")
fig.suptitle("a Gaussian carried by $\\dot z = Az$ (tr A = -0.8): it turns and concentrates")
plt.show()
claim("max |log p_t - closed form| on the grid, t = 1 and 2 (solver tolerance 1e-8)", grid_error, at_most=1e-5,
      fmt=".1e")

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### Check 2: a nonlinear field against the brute-force log-determinant
# For a nonlinear field there is no closed form, but there is a brute-force reference: the Jacobian
# of the whole flow map $x \mapsto z(t_1)$, computed by autograd *through the solver*
# (`torch.autograd.functional.jacobian`), and its log-determinant. The integrated trace must equal
# $-\log\det$ of it, point by point. `CNFField` is the vector field of `nodecourse.models.flows`: an
# MLP of $[z, t]$; we also check our `cnf_dynamics` against the package's `CNF.augmented_dynamics`.

# %%
torch.manual_seed(1)
flow = CNF(2, hidden_size=16, method="dopri5", rtol=1e-10, atol=1e-10).to(**F64)
field = flow.field
x = torch.randn(5, 2, **F64)
t01 = torch.tensor([0.0, 1.0], **F64)
_, deltas = odeint(lambda t, s: cnf_dynamics(field, t, s), (x, torch.zeros(5, **F64)), t01,
                   rtol=1e-10, atol=1e-10)


def flow_map(point: torch.Tensor) -> torch.Tensor:
    """x -> z(1) for one point [2]: the map whose Jacobian we want."""
    return odeint(field, point[None], t01, rtol=1e-10, atol=1e-10)[-1, 0]


logdets = torch.stack([torch.linalg.slogdet(torch.autograd.functional.jacobian(flow_map, xi))[1] for xi in x])
print("integrated trace delta(1):", deltas[-1].tolist())
print("-log det of the flow map: ", (-logdets).tolist())
claim("max |delta(1) + log det|", (deltas[-1] + logdets).abs().max(), at_most=1e-7, fmt=".1e")

state = (x.clone().requires_grad_(True), torch.zeros(5, **F64))
ours, theirs = cnf_dynamics(field, torch.tensor(0.3, **F64), state), flow.augmented_dynamics(0.3, state)
difference = max((a - b).abs().max().item() for a, b in zip(ours, theirs))
claim("cnf_dynamics against CNF.augmented_dynamics: max difference", difference, at_most=1e-12, fmt=".1e")

# %% [markdown]
# The brute force costs one backward pass through the whole solve per output dimension, plus an
# $O(D^3)$ determinant; the CNF got the same number from a trace at each step, integrated alongside
# the state. That is the point: no determinant, and no restriction on the architecture of $f$.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 2. The trace: exact, or estimated
# The exact trace takes $D$ autograd passes: fine in 2-D, expensive for images. FFJORD (Grathwohl
# et al. 2019) replaces it with Hutchinson's (1989) estimator. For a random probe $\varepsilon$ with
# $\mathbb E[\varepsilon\varepsilon^\top] = I$,
# $$ \mathbb E\big[\varepsilon^\top A \varepsilon\big] = \mathbb E\Big[\sum_{ij} \varepsilon_i A_{ij} \varepsilon_j\Big]
#    = \sum_{ij} A_{ij}\, \mathbb E[\varepsilon_i\varepsilon_j] = \sum_i A_{ii} = \operatorname{tr} A , $$
# and $\varepsilon^\top A$ is a single vector-Jacobian product: `torch.autograd.grad(f, z, grad_outputs=eps)`.
# Probes: Rademacher ($\pm 1$ with equal chances) or standard Gaussian. Their variances differ. Write
# $\varepsilon^\top A \varepsilon = \sum_i A_{ii}\varepsilon_i^2 + \sum_{i<j}(A_{ij} + A_{ji})\varepsilon_i\varepsilon_j$:
# - Rademacher: $\varepsilon_i^2 = 1$, so the diagonal part is exact, and the cross terms are
#   uncorrelated with variance 1: $\operatorname{Var} = \sum_{i<j}(A_{ij}+A_{ji})^2$.
# - Gaussian: the diagonal adds $\operatorname{Var}(\varepsilon_i^2) = 2$ per term:
#   $\operatorname{Var} = \sum_{i<j}(A_{ij}+A_{ji})^2 + 2\sum_i A_{ii}^2 = 2\,\|(A + A^\top)/2\|_F^2$.
#
# So Rademacher probes are never worse. We check all of it on the Jacobian of an MLP field at one
# point in $D = 8$: the package's `exact_trace` against the Jacobian's diagonal, then 20,000 probes of
# each kind (one batch: the same point repeated, a different probe per row).
#
# How close must a mean of random probes come? Its standard error is $\sigma/\sqrt{20000}$, estimated
# from the probes themselves, and a mean lands more than 4 standard errors from its expectation with
# probability about $6\times10^{-5}$, whatever the random seed. The sample variance of 20,000 draws of
# these estimates has a relative standard error of about 1-2%, so the variance formulas are checked to
# 10% and the two variances, about 12% apart, are told apart.

# %% [markdown] slideshow={"slide_type": "notes"}
# Speaker notes (13 min). The exact trace is $D$ reverse passes because autograd gives vector-Jacobian
# products, one row at a time; the batch trick (the gradient of `f[:, i].sum()`) works only because
# samples do not interact. Hutchinson is unbiased, and Rademacher probes have less variance because the
# diagonal is exact; the cost against $D$ is printed, not checked (a clock). Common mistakes:
# `grad(f.sum(), z)`, the sum of all Jacobian entries instead of the trace; forgetting `create_graph=True`
# (right values, but training silently loses the trace's gradient); a second `autograd.grad` without
# `retain_graph`/`create_graph` ("Trying to backward through the graph a second time"). Ask: why is a
# Rademacher probe never worse than a Gaussian one?

# %%
torch.manual_seed(2)
D = 8
field8 = CNFField(D, hidden_size=32).to(**F64)
with torch.no_grad():  # doubled weights: a Jacobian far from zero makes a clearer picture
    for p in field8.parameters():
        p.mul_(2.0)
point = torch.randn(1, D, **F64)
J = torch.autograd.functional.jacobian(lambda p: field8(0.0, p[None])[0], point[0])
z = point.clone().requires_grad_(True)
tr_exact = exact_trace(field8(0.0, z), z)
print(f"exact trace {tr_exact.item():.5f}, trace of the autograd Jacobian {torch.trace(J).item():.5f}")
claim("|exact_trace - tr J|", (tr_exact - torch.trace(J)).abs(), at_most=1e-12, fmt=".1e")

z_many = point.expand(n_probes, D).clone().requires_grad_(True)
f_many = field8(0.0, z_many)
estimates, stats = {}, {}
S = J + J.T
predicted = {"rademacher": (torch.triu(S, 1) ** 2).sum().item(), "gaussian": 0.5 * (S**2).sum().item()}
for kind in ("rademacher", "gaussian"):
    eps = sample_probe(z_many, kind, generator=torch.Generator(device=DEV64).manual_seed(0))
    est = hutchinson_trace(f_many, z_many, eps).detach()
    mean, se = est.mean().item(), est.std().item() / math.sqrt(n_probes)
    estimates[kind] = est
    print(f"{kind:>10}: mean {mean:.5f} +- {se:.5f} (exact {tr_exact.item():.5f}); variance "
          f"{est.var().item():.4f}, predicted {predicted[kind]:.4f}")
    claim(f"{kind}: |mean - exact trace| in standard errors (unbiased)", abs(mean - tr_exact.item()) / se, at_most=4)
    claim(f"{kind}: measured variance / the formula", est.var().item() / predicted[kind], expected=1, tol=0.1)
claim("variance with Rademacher probes / with Gaussian probes", estimates["rademacher"].var() / estimates["gaussian"].var(),
      at_most=1)

# %%
fig, ax = plt.subplots(figsize=(7, 3.4))
for kind, colour in (("gaussian", "tab:orange"), ("rademacher", "tab:blue")):
    ax.hist(estimates[kind].cpu().numpy(), bins=120, density=True, alpha=0.5, color=colour,
            label=f"{kind}: variance {estimates[kind].var().item():.2f}")
ax.axvline(tr_exact.item(), color="k", lw=2, label="exact trace")
ax.set(xlabel=r"$\varepsilon^\top A\, \varepsilon$", ylabel="density",
       title="single-probe Hutchinson estimates of tr A (D = 8)")
ax.legend()
plt.show()


# %% [markdown] slideshow={"slide_type": "subslide"}
# ### What it buys: cost against dimension
# One estimate costs one backward pass whatever $D$; the exact trace costs $D$. We time both (median
# of several runs) on MLP fields of growing width. In 2-D the saving is at most a factor of two; at
# $D = 128$ it is large.

# %%
def median_time(fn, repeats: int = 5) -> float:
    """Median wall-clock seconds of fn() over a few runs, after one warm-up run."""
    fn()
    runs = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        runs.append(time.perf_counter() - start)
    return float(np.median(runs))


dims, cost = [2, 8, 32, 128], {"exact": [], "hutchinson": []}
for d in dims:
    torch.manual_seed(d)
    fd = CNFField(d, hidden_size=64).to(DEVICE)
    zd = torch.randn(128, d, device=DEVICE, requires_grad=True)
    eps = sample_probe(zd)
    cost["exact"].append(median_time(lambda: exact_trace(fd(0.0, zd), zd)))
    cost["hutchinson"].append(median_time(lambda: hutchinson_trace(fd(0.0, zd), zd, eps)))
for d, te, th in zip(dims, cost["exact"], cost["hutchinson"]):
    print(f"D = {d:>3}: exact {1e3 * te:7.2f} ms, Hutchinson {1e3 * th:6.2f} ms, ratio {te / th:5.1f}")
report("time of the exact trace / Hutchinson's at D = 128 (D backward passes against one)",
       cost["exact"][-1] / cost["hutchinson"][-1], why="a wall-clock ratio: it depends on the machine and its load")

fig, ax = plt.subplots(figsize=(5.5, 3.5))
for name, marker in (("exact", "o"), ("hutchinson", "s")):
    ax.loglog(dims, [1e3 * c for c in cost[name]], marker=marker, label=name)
ax.set(xlabel="dimension D", ylabel="ms per trace (batch 128)", title="trace cost")
ax.legend()
plt.show()


# %% [markdown] slideshow={"slide_type": "slide"}
# ## 3. A CNF on two moons, trained with the exact trace
#
# **The data.** Two interleaved half circles with a little Gaussian noise, centred at the origin. We
# generate them here (the same recipe as scikit-learn's `make_moons`): 4,000 points to train on and
# 1,000 fresh ones to measure the test NLL. The labels (which moon) are used only in section 6.

# %% [markdown] slideshow={"slide_type": "notes"}
# Speaker notes (15 min). The true density by quadrature gives the best possible NLL (about 0.72 nats), so
# we know how far the flows are from perfect. We train with fixed-step RK4 to make the time comparison
# clean and check with Dopri5 afterwards that the steps resolve the flow (the same NLL at 1e-6): the
# solver is a hyperparameter (notebook 05), and a coarse training grid can turn a flow into a discrete
# model whose "density" is not its ODE's. Fast mode trains a smaller flow for 200 iterations; its test NLL
# stays about 0.6 nats above the true density's (full mode: about 0.1), and the line says so. Ask the
# room: why can no model beat the true density's NLL on fresh data?

# %%
def two_moons(n: int, noise: float = 0.08, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """n points on two interleaved half circles, centred: (X [n, 2] float32, labels [n] int64)."""
    gen = torch.Generator().manual_seed(seed)
    labels = (torch.arange(n) >= (n + 1) // 2).long()
    angle = math.pi * torch.rand(n, generator=gen)
    upper = torch.stack([torch.cos(angle), torch.sin(angle)], dim=1)              # moon 0
    lower = torch.stack([1 - torch.cos(angle), 0.5 - torch.sin(angle)], dim=1)    # moon 1
    X = torch.where(labels[:, None] == 0, upper, lower) - torch.tensor([0.5, 0.25])
    X = X + noise * torch.randn(n, 2, generator=gen)
    perm = torch.randperm(n, generator=gen)
    return X[perm], labels[perm]


X_train, y_train = two_moons(4000, seed=0)
X_test, y_test = two_moons(1000, seed=1)
X_train, y_train, X_test, y_test = (a.to(DEVICE) for a in (X_train, y_train, X_test, y_test))
check("4,000 training points, half on each moon", X_train.shape == (4000, 2) and y_train.float().mean().item() == 0.5)

fig, ax = plt.subplots(figsize=(5.5, 3.5))
ax.scatter(*X_train.cpu().T, s=2, c=y_train.cpu(), cmap="coolwarm")
ax.set(title="two moons: 4,000 training points", aspect="equal")
plt.show()


# %% [markdown]
# **The best possible NLL.** We know how the data were made, so we know their true density: each
# moon is a uniform angle $a \in [0, \pi]$ plus Gaussian noise, so
# $p(x) = \tfrac12\sum_{k=0,1} \tfrac1\pi\int_0^\pi \mathcal N\big(x;\, c_k(a),\, \sigma^2 I\big)\,da$,
# an integral the midpoint rule with 2,000 angles computes accurately. No model can have a lower
# expected NLL on fresh data than this density (its entropy, about 0.72 nats), which tells us how
# far our flows are from perfect.

# %%
def moons_log_prob(x: torch.Tensor, noise: float = 0.08, n_angles: int = 2000) -> torch.Tensor:
    """The true log-density of two_moons at x [N, 2] -> [N] (midpoint rule over the angle)."""
    angle = (torch.arange(n_angles, dtype=torch.float64) + 0.5) * math.pi / n_angles
    upper = torch.stack([torch.cos(angle), torch.sin(angle)], dim=1)
    lower = torch.stack([1 - torch.cos(angle), 0.5 - torch.sin(angle)], dim=1)
    centres = (torch.cat([upper, lower]) - torch.tensor([0.5, 0.25], dtype=torch.float64)).to(x.device)
    sq = torch.cdist(x.double(), centres) ** 2
    log_kernel = -sq / (2 * noise**2) - math.log(2 * math.pi * noise**2)
    return torch.logsumexp(log_kernel, dim=1) - math.log(2 * n_angles)


best_nll = -moons_log_prob(X_test).mean().item()
coarse = -moons_log_prob(X_test, n_angles=500).mean().item()
print(f"test NLL under the true density: {best_nll:.4f} nats (with 500 angles: {coarse:.4f})")
claim("the quadrature has converged: |NLL with 2,000 angles - with 500|", abs(best_nll - coarse), at_most=1e-3,
      fmt=".1e")


# %% [markdown]
# **The model.** `CNF(2, hidden, trace="exact")` from `nodecourse.models.flows`: the field is an MLP of
# $[z, t]$ with two tanh layers; the data sit at $t = 0$ and the base $\mathcal N(0, I)$ at $t = 1$.
# `log_prob(x)` solves $(z, \delta)$ from $(x, 0)$ to $t = 1$ and returns
# $\log\mathcal N(z(1); 0, I) - \delta(1)$. We solve with RK4 at a fixed step: both trace estimators
# then make exactly the same number of field evaluations, so their times compare cleanly, and we
# will check at the end that the steps resolve the flow.
#
# **The loss** is the negative log-likelihood, $-\frac1B\sum_b \log p_\theta(x_b)$, in nats. Its
# per-dimension version in bits, $\text{NLL}/(D \ln 2)$, is the unit of the flow literature. An
# untrained flow is close to the identity map, so its density is about the base Gaussian's.

# %%
def fit(model: CNF, X: torch.Tensor, condition: torch.Tensor | None = None, seed: int = 0) -> dict:
    """Maximum likelihood with Adam (cosine-annealed lr): n_iters steps on random batches of X.

    Returns the training losses and the seconds per iteration."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, n_iters)
    gen = torch.Generator().manual_seed(seed)  # the same batches for every model
    losses = []
    sync()
    start = time.perf_counter()
    for _ in range(n_iters):
        idx = torch.randint(0, len(X), (batch_size,), generator=gen).to(X.device)
        c = None if condition is None else condition[idx]
        loss = -model.log_prob(X[idx], c).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        schedule.step()
        losses.append(loss.item())
    sync()
    return {"loss": losses, "seconds_per_iter": (time.perf_counter() - start) / n_iters}


@torch.no_grad()
def test_nll(model: CNF, X: torch.Tensor, condition: torch.Tensor | None = None, trace: str = "exact") -> float:
    """Mean negative log-likelihood (nats) of X, by default with the exact trace."""
    return -model.log_prob(X, condition, trace=trace).mean().item()


seed_everything(0)
solver = dict(method="rk4", options={"step_size": 1.0 / n_steps})
initial = CNF(2, hidden, trace="exact", **solver).to(DEVICE)
exact_model = copy.deepcopy(initial)
nll_before = test_nll(exact_model, X_test)
print(f"untrained: test NLL {nll_before:.3f} nats = {nll_before / (2 * math.log(2)):.3f} bits/dim")
base_nll = -standard_normal_log_prob(X_test).mean().item()
print(f"the base Gaussian itself: {base_nll:.3f} nats")

# %%
runs = {"exact": fit(exact_model, X_train)}
nll_exact = test_nll(exact_model, X_test)
print(f"exact trace: test NLL {nll_before:.3f} -> {nll_exact:.3f} nats ({nll_exact / (2 * math.log(2)):.3f} "
      f"bits/dim) in {n_iters} iterations, {1e3 * runs['exact']['seconds_per_iter']:.0f} ms per iteration")
claim("training lowers the test NLL by (nats)", nll_before - nll_exact, at_least=nll_drop_bar)
claim("test NLL above the true density's (nats): no model beats the truth, up to the test set's noise",
      nll_exact - best_nll, at_least=-0.05,
      fast_note=f"a smaller flow trained {n_iters} iterations stays far from the truth (full mode: about 0.1)")

# %% [markdown]
# **Are the RK4 steps fine enough?** A CNF trained with a coarse fixed step could learn to exploit
# the discretisation, as the Euler-trained ODE-Net of notebook 05 did; then its "density" is not the
# density of its ODE. We solve the trained model again with Dopri5 at tolerance $10^{-6}$: the test
# NLL must not move.

# %%
accurate = copy.deepcopy(exact_model)
accurate.solver = dict(method="dopri5", rtol=1e-6, atol=1e-6, options=None)
accurate.nfe = 0
nll_accurate = test_nll(accurate, X_test)
print(f"test NLL with RK4 ({4 * n_steps} evaluations): {nll_exact:.5f}; "
      f"with Dopri5 at 1e-6 ({accurate.nfe} evaluations): {nll_accurate:.5f}")
claim("|NLL with Dopri5 - NLL with RK4| (nats)", abs(nll_accurate - nll_exact), at_most=0.02, fmt=".1e")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 4. The same CNF with Hutchinson's estimator
# Same initial weights, same batches, same solver; only the trace differs. FFJORD draws one probe per
# sample **per solve** and keeps it fixed during the solve, so the solver integrates an ordinary
# (deterministic) ODE. Because $z(t)$ does not depend on the probe, the estimated $\delta(1)$ is a sum of
# unbiased trace estimates along a fixed path, so the estimated log-likelihood is unbiased too. We
# check that first on the untrained model, for one point repeated with 20,000 probes.

# %% [markdown] slideshow={"slide_type": "notes"}
# Speaker notes (10 min). The probe is drawn once per solve, so the ODE stays deterministic for the
# solver, and since $z(t)$ does not depend on the probe the log-likelihood estimate is unbiased (checked):
# Hutchinson adds variance to the gradient, not bias. In 2-D it saves at most a factor of two (measured
# 1.3-2 per training step); the point of FFJORD is the scaling in $D$ (measured ratio 65-215 at
# $D = 128$). Common mistake: a new probe at every function evaluation, so that the solver integrates a
# random right-hand side (adaptive solvers misbehave). Times on a shared CPU are noisy, so the lecture
# compares the fastest of nine alternating steps and prints the ratio as a `·` line. Ask: what would an
# adaptive solver do if the probe changed inside a solve?

# %%
hutch_model = copy.deepcopy(initial)
hutch_model.trace = "hutchinson"
point = X_test[:1]
torch.manual_seed(3)
with torch.no_grad():
    noisy = hutch_model.log_prob(point.expand(n_probes, 2))
    exact_value = hutch_model.log_prob(point, trace="exact").item()
se = noisy.std().item() / math.sqrt(n_probes)
print(f"log p(x): exact {exact_value:.5f}; Hutchinson mean {noisy.mean().item():.5f} +- {se:.5f}; "
      f"one probe's spread (std) {noisy.std().item():.4f}")
claim("|Hutchinson mean - exact log p(x)| in standard errors (unbiased)", abs(noisy.mean().item() - exact_value) / se,
      at_most=4)

# %%
runs["hutchinson"] = fit(hutch_model, X_train)
nll_hutch = test_nll(hutch_model, X_test)
print(f"Hutchinson: test NLL {nll_before:.3f} -> {nll_hutch:.3f} nats (evaluated with the exact trace)")
claim("Hutchinson training lowers the test NLL by (nats)", nll_before - nll_hutch, at_least=nll_drop_bar)
claim("|NLL after Hutchinson training - after exact training| (nats)", abs(nll_hutch - nll_exact), at_most=nll_gap_bar)


# %% [markdown]
# The time per iteration during training is noisy on a shared machine, so we also time the two
# training steps side by side: a forward and backward pass on the same batch of 1,024 points,
# alternating, and keep the fastest of nine runs of each (other programs can only add time). In 2-D
# the exact trace makes two vector-Jacobian products per evaluation and Hutchinson one, and the
# backward pass through them halves too; the rest of the step (the field itself, the solver) is
# shared, so expect less than a factor of two.

# %%
def train_step(model: CNF, xb: torch.Tensor) -> None:
    model.zero_grad(set_to_none=True)
    (-model.log_prob(xb).mean()).backward()


xb = X_train[:1024]
step_time = {"exact": [], "hutchinson": []}
for _ in range(9):
    for name, model in (("exact", exact_model), ("hutchinson", hutch_model)):
        sync()
        start = time.perf_counter()
        train_step(model, xb)
        sync()
        step_time[name].append(time.perf_counter() - start)
step_time = {name: min(ts) for name, ts in step_time.items()}

print("| trace | test NLL (nats) | above the true density | bits/dim | ms/iter (training) "
      "| ms/step, batch 1024 (side by side) | VJPs per evaluation |")
print("|---|---|---|---|---|---|---|")
for name, nll, vjps in (("exact", nll_exact, 2), ("hutchinson", nll_hutch, 1)):
    print(f"| {name} | {nll:.3f} | {nll - best_nll:.3f} | {nll / (2 * math.log(2)):.3f} | "
          f"{1e3 * runs[name]['seconds_per_iter']:.1f} | {1e3 * step_time[name]:.1f} | {vjps} |")
report("training step with the exact trace / with Hutchinson's (fastest of nine each)",
       step_time["exact"] / step_time["hutchinson"], why="a wall-clock ratio: it depends on the machine and its load")

# %%
fig, ax = plt.subplots(figsize=(7, 3.5))
window = 10
for name in ("exact", "hutchinson"):
    loss = np.convolve(runs[name]["loss"], np.ones(window) / window, mode="valid")
    ax.plot(np.arange(window, n_iters + 1), loss, label=f"{name} trace")
ax.axhline(nll_before, color="0.6", ls=":", label="untrained (test)")
ax.set(xlabel="iteration", ylabel=f"training NLL (nats, mean of {window})", title="maximum likelihood on two moons")
ax.legend()
plt.show()

# %% [markdown]
# The two runs end within a small gap of each other. Hutchinson's estimate makes the gradient noisier
# (each iteration sees a different probe), which costs a little at a fixed number of iterations, and
# saves half of the trace cost per iteration here, and a factor that grows with $D$ in general.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 5. Density and samples
# **The log-density on a grid**: one call of `log_prob` on all grid points (with the exact trace). A
# density must integrate to one; a CNF's does by construction, since it is the pushforward of a
# normalised Gaussian. We check it with a Riemann sum over the plotted window.

# %% [markdown] slideshow={"slide_type": "notes"}
# Speaker notes (9 min). A CNF's density is normalised by construction (the Riemann sum over the window is
# 0.9997-0.9999): unlike an energy model, it has no partition function. Samples are base draws solved
# backwards, with no trace needed, and the round trip checks the inversion. Ask the room: what does one
# sample cost, compared with one evaluation of $\log p$?

# %%
n_grid = 120
xs = torch.linspace(-2.5, 2.5, n_grid, device=DEVICE)
ys = torch.linspace(-2.0, 2.0, n_grid, device=DEVICE)
gy, gx = torch.meshgrid(ys, xs, indexing="ij")
grid = torch.stack([gx.reshape(-1), gy.reshape(-1)], dim=1)
cell = ((xs[1] - xs[0]) * (ys[1] - ys[0])).item()

fig, axes = plt.subplots(1, 3, figsize=(14, 3.8), layout="constrained")
axes[0].scatter(*X_test.cpu().T, s=2, color="k")
axes[0].set(title="test data", xlim=(-2.5, 2.5), ylim=(-2, 2))
for ax, (name, model) in zip(axes[1:], (("exact", exact_model), ("hutchinson", hutch_model))):
    with torch.no_grad():
        logp = model.log_prob(grid, trace="exact").reshape(n_grid, n_grid)
    claim(f"{name} trace: mass of the density inside the window", logp.exp().sum() * cell, at_least=0.95,
          at_most=1.01, fmt=".4f")
    image = ax.imshow(logp.clamp(min=-8).cpu(), origin="lower", extent=(-2.5, 2.5, -2, 2), cmap="magma")
    ax.set(title=f"log p(x), {name} trace")
    fig.colorbar(image, ax=ax, shrink=0.8)
plt.show()


# %% [markdown]
# **Samples**: draw $z \sim \mathcal N(0, I)$ and solve the *same* ODE from $t = 1$ back to $t = 0$
# (`model.sample(n)`, which is `model.from_base(z)`). No trace is needed for sampling. Two checks:
# the backwards solve inverts the forwards one (round trip), and the samples land on the data: their
# median distance to the nearest training point is a fraction of that of the base Gaussian's draws.

# %%
def median_distance_to_data(points: torch.Tensor) -> float:
    """Median over points of the distance to the nearest training point."""
    return torch.cdist(points, X_train).min(dim=1).values.median().item()


seed_everything(4)
with torch.no_grad():
    z = torch.randn(2000, 2, device=DEVICE)
    samples = exact_model.from_base(z)
    round_trip = (exact_model.to_base(samples) - z).abs().max().item()
    samples_hutch = hutch_model.sample(2000)
d_base, d_exact, d_hutch = (median_distance_to_data(p) for p in (z, samples, samples_hutch))
print(f"median distance to the data: base draws {d_base:.3f}, exact-trace CNF {d_exact:.3f}, "
      f"Hutchinson CNF {d_hutch:.3f}")
claim("round trip: max |to_base(from_base(z)) - z|", round_trip, at_most=1e-2, fmt=".1e")
claim("median distance to the data, exact-trace samples / base draws", d_exact / d_base, at_most=0.5)
claim("median distance to the data, Hutchinson samples / base draws", d_hutch / d_base, at_most=0.5)

# %% [markdown]
# Watching the samples being made: the same draws at $t = 1, 0.75, 0.5, 0.25, 0$ (`model.trajectory`
# with decreasing times).

# %%
snap_times = torch.linspace(1, 0, 5, device=DEVICE)
with torch.no_grad():
    path = exact_model.trajectory(z[:1000], snap_times)
fig, axes = plt.subplots(1, 5, figsize=(15, 3.2), sharex=True, sharey=True)
for ax, t, pts in zip(axes, snap_times, path):
    ax.scatter(*pts.cpu().T, s=1.5, color="tab:purple")
    ax.set(title=f"t = {t.item():.2f}", xlim=(-3, 3), ylim=(-3, 3), aspect="equal")
fig.suptitle("base Gaussian draws carried from t = 1 back to t = 0")
plt.show()
check("the path starts at the base draws", torch.equal(path[0], z[:1000]))
claim("max |end of the path - samples|", (path[-1] - samples[:1000]).abs().max(), at_most=1e-5, fmt=".1e")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 6. A data-controlled CNF: sampling on demand
# Massaroli et al. (2020) call a Neural ODE whose vector field also takes the input as a control
# *data-controlled*. For a flow, the natural control is a condition $c$ (here the one-hot label of the
# moon): $\dot z = f(t, z, c)$. For each fixed $c$ this is an ordinary CNF, so the change of variables
# holds unchanged and `log_prob(x, c)` is the conditional density $\log p(x \mid c)$. One network,
# trained on all the data by maximising $\sum_b \log p(x_b \mid c_b)$, then samples either moon on
# demand: solve backwards with the condition of your choice. We train it with Hutchinson's estimator.

# %% [markdown] slideshow={"slide_type": "notes"}
# Speaker notes (10 min). The conditional CNF is Massaroli et al.'s data control applied to flows; for
# each fixed label it is an ordinary CNF, so everything above still holds. Its samples land on the
# requested moon (a 1-nearest-neighbour judge), and Bayes' rule with $\log p(x \mid c)$ gives a classifier
# for free. Ask: what does $p(c \mid x)$ look like between the two moons?

# %%
seed_everything(0)
cond_model = CNF(2, hidden, trace="hutchinson", condition_size=2, **solver).to(DEVICE)
onehot_train = F.one_hot(y_train, 2).float()
onehot_test = F.one_hot(y_test, 2).float()
cond_before = test_nll(cond_model, X_test, onehot_test)
runs["conditional"] = fit(cond_model, X_train, onehot_train)
cond_nll = test_nll(cond_model, X_test, onehot_test)
print(f"conditional test NLL -log p(x | moon): {cond_before:.3f} -> {cond_nll:.3f} nats")
claim("training lowers the conditional test NLL by (nats)", cond_before - cond_nll, at_least=nll_drop_bar)


# %% [markdown]
# **Do the conditional samples land on the right moon?** A simple, independent judge: a
# 1-nearest-neighbour classifier on the labelled training points. We also use the model itself as a
# classifier by Bayes' rule, $p(c \mid x) \propto p(x\mid c)\,p(c)$ with equal priors: the label with
# the higher conditional log-density wins.

# %%
def nearest_moon(points: torch.Tensor) -> torch.Tensor:
    """The label of the nearest training point: [N, 2] -> [N]."""
    return y_train[torch.cdist(points, X_train).argmin(dim=1)]


seed_everything(5)
with torch.no_grad():
    cond_samples = {k: cond_model.sample(500, F.one_hot(torch.tensor(k), 2).float()) for k in (0, 1)}
    log_lik = torch.stack([cond_model.log_prob(X_test, F.one_hot(torch.tensor(k), 2).float(), trace="exact")
                           for k in (0, 1)], dim=1)
hits = {k: (nearest_moon(s) == k).float().mean().item() for k, s in cond_samples.items()}
bayes_accuracy = (log_lik.argmax(dim=1) == y_test).float().mean().item()
for k in (0, 1):
    claim(f"conditional samples given moon {k} that land on moon {k}", hits[k], at_least=0.9)
claim("Bayes-rule classification of the test points with log p(x | c): accuracy", bayes_accuracy, at_least=0.9)

# %%
fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
for k, colour in ((0, "tab:blue"), (1, "tab:red")):
    axes[0].scatter(*cond_samples[k].cpu().T, s=2, color=colour, label=f"samples given moon {k}")
axes[0].set(title="conditional samples", xlim=(-2.5, 2.5), ylim=(-2, 2))
axes[0].legend(markerscale=5, fontsize=8)
for k, ax in zip((0, 1), axes[1:]):
    with torch.no_grad():
        logp = cond_model.log_prob(grid, F.one_hot(torch.tensor(k), 2).float(), trace="exact")
    ax.imshow(logp.reshape(n_grid, n_grid).clamp(min=-8).cpu(), origin="lower", extent=(-2.5, 2.5, -2, 2),
              cmap="magma")
    ax.set(title=f"log p(x | moon {k})")
plt.show()

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Recap
# - Points that follow $\dot z = f(t, z)$ carry a log-density that changes at the rate
#   $-\operatorname{tr}(\partial f/\partial z)$: the small-step limit of the change of variables, since
#   $\det(I + \varepsilon A) = 1 + \varepsilon\operatorname{tr}A + O(\varepsilon^2)$ (error measured with
#   slope 2).
# - Solving the tuple state $(z, \delta)$ gives exact log-densities: $-t\operatorname{tr}A$ for a linear
#   field and the closed-form Gaussian to $10^{-9}$; the brute-force log-determinant of a nonlinear
#   flow map to $10^{-7}$.
# - The exact trace costs one autograd pass per dimension; Hutchinson's $\varepsilon^\top A\varepsilon$
#   costs one, is unbiased (checked within a few standard errors), and has variance
#   $\sum_{i<j}(A_{ij}+A_{ji})^2$ with Rademacher probes, less than with Gaussian ones.
# - A CNF trained by maximum likelihood on two moons learns the density with either trace; the two
#   end close in test NLL, Hutchinson is cheaper per iteration, and the gap in cost grows with $D$.
# - Its density integrates to one; samples are base draws solved backwards; the RK4 steps were
#   checked against Dopri5.
# - Conditioning the field on a label (a data-controlled CNF) gives $p(x \mid c)$: samples on demand,
#   and a classifier by Bayes' rule for free.
#
# ## Further reading
# - R. T. Q. Chen, Y. Rubanova, J. Bettencourt, D. Duvenaud. *Neural Ordinary Differential
#   Equations*. NeurIPS 2018. arXiv:1806.07366. (Section 4: continuous normalizing flows.)
# - W. Grathwohl, R. T. Q. Chen, J. Bettencourt, I. Sutskever, D. Duvenaud. *FFJORD: Free-form
#   Continuous Dynamics for Scalable Reversible Generative Models*. ICLR 2019. arXiv:1810.01367.
# - M. F. Hutchinson. *A stochastic estimator of the trace of the influence matrix for Laplacian
#   smoothing splines*. Communications in Statistics - Simulation and Computation 18(3), 1059-1076, 1989.
# - S. Massaroli, M. Poli, J. Park, A. Yamashita, H. Asama. *Dissecting Neural ODEs*. NeurIPS 2020.
#   arXiv:2002.08071. (Data-controlled Neural ODEs.)
# - C. Finlay, J.-H. Jacobsen, L. Nurbekyan, A. Oberman. *How to train your neural ODE: the world of
#   Jacobian and kinetic regularization*. ICML 2020. arXiv:2002.02798. (Cheaper CNFs; notebook 11.)
# - D. J. Rezende, S. Mohamed. *Variational Inference with Normalizing Flows*. ICML 2015.
#   arXiv:1505.05770.
# - G. Papamakarios, E. Nalisnick, D. J. Rezende, S. Mohamed, B. Lakshminarayanan. *Normalizing Flows
#   for Probabilistic Modeling and Inference*. JMLR 22(57), 2021. arXiv:1912.02762.

# %% [markdown] slideshow={"slide_type": "notes"}
# Speaker notes (5 min). Close on the two costs: the trace (exact, $D$ passes; Hutchinson, one) and the
# solve (its steps, checked against Dopri5). Ask: which of today's results would change for images, with
# $D = 784$?
