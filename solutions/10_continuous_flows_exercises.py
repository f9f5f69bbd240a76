# %% [markdown] slideshow={"slide_type": "skip"}
# Colab links appear here once the course's home repository is set (`make home`, see CONTRIBUTING.md).

# %% [markdown] slideshow={"slide_type": "slide"}
# # 10 · Continuous normalizing flows: exercises (solutions)
#
# Seven exercises that build a continuous normalizing flow from its parts: the base log-density, the
# exact trace of the Jacobian, Hutchinson's estimator, the augmented dynamics of the state and its
# log-density, and the log-likelihood by one solve. With these functions you then train a CNF on a
# mixture of four Gaussians and sample from it. Exercises 1-5 ask you to implement a function; the
# checker after each runs it on labelled cases, one per requirement of the statement, prints what
# passed and what failed with a hint, and hands back the function the notebook goes on with: yours
# once it passes, the reference until then. The cells after it say whose function they ran.
#
# Exercises 6 and 7 are of two other kinds: exercise 6 hands you a function with a bug to find and
# repair, exercise 7 asks you to predict a number before a cell measures it. Hints come in stages: the
# first failure says which property failed, later failures nudge more specifically, and the answer
# appears only when you ask for it with `ex10.show_answer(k)`. Until an exercise passes, the notebook
# goes on with the reference.
#
# **Learning objectives**
# - write the log-density of a standard Gaussian and convert a negative log-likelihood to bits per dimension;
# - compute $\operatorname{tr}(\partial f/\partial z)$ for a batch with one autograd pass per dimension;
# - estimate it with one vector-Jacobian product and Rademacher probes, and check that the estimate is unbiased;
# - write the augmented CNF dynamics $\frac{d}{dt}(z, \delta) = (f, -\operatorname{tr}\,\partial f/\partial z)$;
# - compute a CNF's log-likelihood by one ODE solve, train a flow with it and sample by solving backwards.
#
# **Estimated time:** 80 minutes

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

import math

import matplotlib.pyplot as plt
import torch

from nodecourse import odeint
from nodecourse.config import FAST, device, seed_everything
from nodecourse.exercises import ex10
from nodecourse.exercises.checking import who
from nodecourse.models.flows import CNF, CNFField, sample_probe

seed_everything(0)
DEVICE = device()
print(f"device: {DEVICE}, fast mode: {FAST}")

torch.set_num_threads(1)  # tiny 2-D flows: one CPU thread is fastest

# Exact checks run in double precision; Apple's MPS has none, so there they use the CPU.
DEV64 = DEVICE if DEVICE.type != "mps" else torch.device("cpu")
F64 = dict(dtype=torch.float64, device=DEV64)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Hyperparameters
# The only cell the test suite changes: fast mode shrinks the training loop, nothing else.

# %%
n_iters = 200 if FAST else 1000     # training iterations of the flow in the last part
hidden = 32 if FAST else 64         # hidden units per layer of its vector field
n_steps = 4 if FAST else 8          # RK4 steps on [0, 1]
lr = 1e-2 if FAST else 5e-3         # Adam's learning rate, cosine-annealed
nll_gap_bar = 0.3 if FAST else 0.1  # the trained flow's test NLL must end this close to the true density's


# %% [markdown] slideshow={"slide_type": "slide"}
# ## Exercise 1: the base log-density
#
# A CNF maps data to a standard Gaussian $\mathcal N(0, I)$ in $D$ dimensions, whose log-density is
# $$ \log \mathcal N(z; 0, I) = -\tfrac12 \|z\|^2 - \tfrac D2 \log(2\pi). $$
# Write `standard_normal_log_prob(z)` for a batch `z` of shape `[B, D]`, returning `[B]` (one value
# per sample), on `z`'s device and dtype.

# %%
def standard_normal_log_prob(z: torch.Tensor) -> torch.Tensor:
    """log N(z; 0, I) per sample: [B, D] -> [B]."""
    ### BEGIN SOLUTION
    return -0.5 * (z**2).sum(dim=1) - 0.5 * z.shape[1] * math.log(2 * math.pi)
    ### END SOLUTION


standard_normal_log_prob = ex10.check_standard_normal_log_prob(standard_normal_log_prob)

# %% [markdown]
# Against `torch.distributions`, and one number you will meet in every flow paper: the negative
# log-likelihood in **bits per dimension**, $\text{NLL} / (D \ln 2)$. For data that *are* standard
# Gaussian its expectation is the Gaussian's entropy per dimension, $\tfrac12\log_2(2\pi e) \approx 2.05$ bits.

# %%
z = torch.randn(20000, 3, **F64)
reference = torch.distributions.MultivariateNormal(torch.zeros(3, **F64), torch.eye(3, **F64)).log_prob(z)
assert torch.allclose(standard_normal_log_prob(z), reference)
bits_per_dim = -standard_normal_log_prob(z).mean().item() / (3 * math.log(2))
print(f"NLL of Gaussian data ({who(standard_normal_log_prob)} standard_normal_log_prob): {bits_per_dim:.4f} bits/dim "
      f"(entropy {0.5 * math.log2(2 * math.pi * math.e):.4f})")
assert abs(bits_per_dim - 0.5 * math.log2(2 * math.pi * math.e)) < 0.02


# %% [markdown] slideshow={"slide_type": "slide"}
# ## Exercise 2: the exact trace
#
# Write `exact_trace(f, z)` that returns $\operatorname{tr}(\partial f/\partial z)$ for every sample:
# `z` is `[B, D]` and requires grad, `f = field(t, z)` is `[B, D]` and was computed from it, row by
# row (sample $b$'s output depends only on sample $b$'s input). Return `[B]`.
#
# Use one `torch.autograd.grad` call per dimension $i$: the gradient of `f[:, i].sum()` with respect to
# `z` holds, in row $b$, row $i$ of sample $b$'s Jacobian; keep its entry $i$. Pass
# `create_graph=True`: it keeps the graph for the next pass, and it makes the trace differentiable, so
# that a training loss containing it can be backpropagated to the field's parameters (the checker
# tests that too).

# %%
def exact_trace(f: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """tr(df/dz) per sample by D autograd passes: f, z [B, D] -> [B], differentiable."""
    ### BEGIN SOLUTION
    total = torch.zeros(z.shape[0], dtype=z.dtype, device=z.device)
    for i in range(z.shape[1]):
        (row_i,) = torch.autograd.grad(f[:, i].sum(), z, create_graph=True)
        total = total + row_i[:, i]
    return total
    ### END SOLUTION


exact_trace = ex10.check_exact_trace(exact_trace)

# %% [markdown]
# Check against the brute force: the full per-sample Jacobian from
# `torch.autograd.functional.jacobian`, and its diagonal.

# %%
torch.manual_seed(0)
field = CNFField(2, hidden_size=16).to(**F64)
points = torch.randn(4, 2, **F64)
jacobians = torch.stack([torch.autograd.functional.jacobian(lambda p: field(0.5, p[None])[0], p) for p in points])
zg = points.clone().requires_grad_(True)
traces = exact_trace(field(0.5, zg), zg)
print(f"exact_trace ({who(exact_trace)}):", traces.tolist())
print("trace of Jacobians:", torch.diagonal(jacobians, dim1=1, dim2=2).sum(1).tolist())
assert torch.allclose(traces, torch.diagonal(jacobians, dim1=1, dim2=2).sum(1), atol=1e-12)


# %% [markdown] slideshow={"slide_type": "slide"}
# ## Exercise 3: Hutchinson's estimator
#
# For probes $\varepsilon$ with $\mathbb E[\varepsilon\varepsilon^\top] = I$, $\;\mathbb E[\varepsilon^\top A \varepsilon] = \operatorname{tr} A$.
# Write `hutchinson_trace(f, z, eps)` that returns $\varepsilon_b^\top (\partial f/\partial z)_b\, \varepsilon_b$ for
# every sample $b$, `[B]`, with **one** call of `torch.autograd.grad`: with `grad_outputs=eps` it returns
# the vector-Jacobian products $\varepsilon_b^\top (\partial f/\partial z)_b$ of all samples at once. Again
# `create_graph=True`.

# %%
def hutchinson_trace(f: torch.Tensor, z: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """eps^T (df/dz) eps per sample with one vector-Jacobian product: [B]."""
    ### BEGIN SOLUTION
    (eps_jac,) = torch.autograd.grad(f, z, grad_outputs=eps, create_graph=True)
    return (eps_jac * eps).sum(dim=1)
    ### END SOLUTION


hutchinson_trace = ex10.check_hutchinson_trace(hutchinson_trace)

# %% [markdown]
# **Unbiased, with Rademacher probes.** One point of a 6-D field, repeated 20,000 times, each row with
# its own Rademacher probe (`sample_probe` draws $\pm1$ entries): the mean of the estimates must be
# within a few standard errors of the exact trace.

# %%
torch.manual_seed(1)
field6 = CNFField(6, hidden_size=32).to(**F64)
with torch.no_grad():
    for p in field6.parameters():
        p.mul_(2.0)  # a Jacobian far from zero
z_many = torch.randn(1, 6, **F64).expand(20000, 6).clone().requires_grad_(True)
f_many = field6(0.0, z_many)
eps = sample_probe(z_many, "rademacher", generator=torch.Generator(device=DEV64).manual_seed(2))
assert set(eps.unique().tolist()) == {-1.0, 1.0}
estimates = hutchinson_trace(f_many, z_many, eps).detach()
exact = exact_trace(f_many, z_many)[0].item()
se = estimates.std().item() / math.sqrt(len(estimates))
print(f"exact {exact:.4f}; Hutchinson mean ({who(hutchinson_trace)}) {estimates.mean().item():.4f} +- {se:.4f} "
      f"({abs(estimates.mean().item() - exact) / se:.2f} standard errors); one estimate's std {estimates.std().item():.3f}")
assert abs(estimates.mean().item() - exact) < 4 * se


# %% [markdown] slideshow={"slide_type": "slide"}
# ## Exercise 4: the augmented dynamics
#
# A CNF solves the joint state $(z, \delta)$, where $\delta$ accumulates the change of the log-density:
# $$ \frac{d}{dt}\begin{pmatrix} z \\ \delta\end{pmatrix} = \begin{pmatrix} f(t, z) \\ -\operatorname{tr}\,\partial f/\partial z \end{pmatrix}. $$
# Write `cnf_dynamics(field, t, state)` with `state = (z, delta)` (`[B, D]` and `[B]`) that returns the
# tuple `(f, -trace)` using your `exact_trace`. A solver may call it with autograd switched off (for
# example inside `torch.no_grad()`) and with a `z` that does not require grad; the trace needs autograd
# all the same, so work inside `with torch.enable_grad():` and, if `z` does not require grad, use
# `z = z.detach().requires_grad_(True)`. A `z` that already requires grad is used as it is: during
# training it carries the graph of the solver's earlier steps, and the gradient must flow back through it.

# %%
def cnf_dynamics(field, t, state):
    """d/dt (z, delta) = (f(t, z), -tr df/dz): ([B, D], [B]) -> ([B, D], [B])."""
    ### BEGIN SOLUTION
    z = state[0]
    with torch.enable_grad():
        if not z.requires_grad:
            z = z.detach().requires_grad_(True)
        f = field(t, z)
        return f, -exact_trace(f, z)
    ### END SOLUTION


cnf_dynamics = ex10.check_cnf_dynamics(cnf_dynamics)

# %% [markdown]
# For a linear field $f(z) = Az$, Jacobi's formula gives $\delta(t) = -\log\det e^{tA} = -t\operatorname{tr}A$.
# Solve the tuple state with `nodecourse.odeint` and compare.

# %%
A = torch.tensor([[0.4, -1.0], [1.0, -0.9]], **F64)
times = torch.linspace(0, 3, 4, **F64)
_, deltas = odeint(lambda t, s: cnf_dynamics(lambda t_, z: z @ A.T, t, s),
                   (torch.randn(5, 2, **F64), torch.zeros(5, **F64)), times, rtol=1e-9, atol=1e-9)
print(f"with {who(cnf_dynamics)} cnf_dynamics:")
for t, d in zip(times, deltas):
    print(f"t = {t:.0f}: delta = {d[0].item():+.6f}, -t tr A = {-t.item() * torch.trace(A).item():+.6f}")
assert torch.allclose(deltas, -times[:, None] * torch.trace(A), atol=1e-8)


# %% [markdown] slideshow={"slide_type": "slide"}
# ## Exercise 5: the log-likelihood of a CNF
#
# Put it together. The data sit at $t = 0$, the base Gaussian at $t = t_1$. Write
# `cnf_log_prob(field, x, t1=1.0, n_steps=8)` that solves the tuple state `(x, zeros [B])` from 0 to
# `t1` with `nodecourse.odeint`, method `"rk4"` and `options={"step_size": t1 / n_steps}`, using your
# `cnf_dynamics`, and returns
# $$ \log p(x) = \log\mathcal N\big(z(t_1); 0, I\big) - \delta(t_1) \qquad [B]. $$
# Build the time tensor on `x`'s dtype and device.

# %%
def cnf_log_prob(field, x: torch.Tensor, t1: float = 1.0, n_steps: int = 8) -> torch.Tensor:
    """log p(x) of the CNF with this field: [B, D] -> [B], by one RK4 solve of (z, delta)."""
    ### BEGIN SOLUTION
    t = torch.tensor([0.0, t1], dtype=x.dtype, device=x.device)
    delta0 = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
    zs, deltas = odeint(lambda s, state: cnf_dynamics(field, s, state), (x, delta0), t,
                        method="rk4", options={"step_size": t1 / n_steps})
    return standard_normal_log_prob(zs[-1]) - deltas[-1]
    ### END SOLUTION


cnf_log_prob = ex10.check_cnf_log_prob(cnf_log_prob)

# %% [markdown]
# The function against the package's `CNF.log_prob` with the same field and the same solver.

# %%
flow = CNF(2, hidden_size=16, method="rk4", options={"step_size": 1 / 8}).to(**F64)
x_check = torch.randn(6, 2, **F64)
assert torch.allclose(cnf_log_prob(flow.field, x_check), flow.log_prob(x_check), atol=1e-10)
print(f"{who(cnf_log_prob)} cnf_log_prob agrees with nodecourse's CNF.log_prob")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Putting it to work: a flow for a mixture of four Gaussians
# Data: four Gaussians with standard deviation 0.25 at $(\pm1, \pm1)$. Because we know the true
# density, we know the best possible test NLL: the data's own negative log-density under the true
# mixture. We train a `CNFField` by maximum likelihood with `cnf_log_prob` (yours once it passed),
# check how close it gets to that bound, and sample by solving the field backwards from the base
# Gaussian.

# %%
centres = torch.tensor([[1.0, 1.0], [-1.0, 1.0], [-1.0, -1.0], [1.0, -1.0]], device=DEVICE)
sigma = 0.25


def four_gaussians(n: int, seed: int) -> torch.Tensor:
    """n points from the equal-weight mixture of N(centre, sigma^2 I): [n, 2]."""
    gen = torch.Generator().manual_seed(seed)
    which = torch.randint(0, 4, (n,), generator=gen)
    return centres[which.to(DEVICE)] + sigma * torch.randn(n, 2, generator=gen).to(DEVICE)


def true_log_prob(x: torch.Tensor) -> torch.Tensor:
    """log of the mixture density at x: [N, 2] -> [N]."""
    per_component = standard_normal_log_prob((x[:, None, :] - centres).reshape(-1, 2) / sigma).reshape(-1, 4)
    return torch.logsumexp(per_component, dim=1) - math.log(4) - 2 * math.log(sigma)


X_train, X_test = four_gaussians(4000, seed=0), four_gaussians(1000, seed=1)
best_nll = -true_log_prob(X_test).mean().item()
print(f"test NLL under the true density: {best_nll:.3f} nats")

seed_everything(0)
field = CNFField(2, hidden).to(DEVICE)
opt = torch.optim.Adam(field.parameters(), lr=lr)
schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, n_iters)
gen = torch.Generator().manual_seed(0)
with torch.no_grad():
    nll_before = -cnf_log_prob(field, X_test, 1.0, n_steps).mean().item()
losses = []
for _ in range(n_iters):
    batch = X_train[torch.randint(0, len(X_train), (256,), generator=gen).to(DEVICE)]
    loss = -cnf_log_prob(field, batch, 1.0, n_steps).mean()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    schedule.step()
    losses.append(loss.item())
with torch.no_grad():
    nll_after = -cnf_log_prob(field, X_test, 1.0, n_steps).mean().item()
print(f"trained with {who(cnf_log_prob)} cnf_log_prob: test NLL {nll_before:.3f} -> {nll_after:.3f} nats "
      f"(true density: {best_nll:.3f})")
assert nll_after < nll_before - 1.0
assert nll_after - best_nll < nll_gap_bar

# %% [markdown]
# Samples: $z \sim \mathcal N(0, I)$ solved from $t = 1$ back to 0 with the field alone (no trace is
# needed to sample). About 86% of a Gaussian's mass lies within two standard deviations of its
# centre ($1 - e^{-2}$ in 2-D); the samples should come close, against 18% for the base draws.

# %%
seed_everything(1)
with torch.no_grad():
    z = torch.randn(2000, 2, device=DEVICE)
    samples = odeint(field, z, torch.tensor([1.0, 0.0], device=DEVICE), method="rk4",
                     options={"step_size": 1 / n_steps})[-1]


def near_a_centre(points: torch.Tensor) -> float:
    return (torch.cdist(points, centres).min(dim=1).values < 2 * sigma).float().mean().item()


print(f"within 2 sigma of a centre: samples {near_a_centre(samples):.1%}, base draws {near_a_centre(z):.1%}")
assert near_a_centre(samples) > 0.7 and near_a_centre(z) < 0.3

n_grid = 100
axis = torch.linspace(-2.5, 2.5, n_grid, device=DEVICE)
gy, gx = torch.meshgrid(axis, axis, indexing="ij")
with torch.no_grad():
    logp = cnf_log_prob(field, torch.stack([gx.reshape(-1), gy.reshape(-1)], 1), 1.0, n_steps)
fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
axes[0].plot(losses)
axes[0].axhline(best_nll, color="k", ls=":", label="true density (test)")
axes[0].set(xlabel="iteration", ylabel="training NLL (nats)", title=f"maximum likelihood ({who(cnf_log_prob)})")
axes[0].legend()
axes[1].imshow(logp.reshape(n_grid, n_grid).clamp(min=-8).cpu(), origin="lower", extent=(-2.5, 2.5, -2.5, 2.5),
               cmap="magma")
axes[1].set(title="log p(x) of the trained flow")
axes[2].scatter(*samples.cpu().T, s=2, color="tab:purple")
axes[2].set(title="samples", xlim=(-2.5, 2.5), ylim=(-2.5, 2.5), aspect="equal")
plt.show()


# %% [markdown] slideshow={"slide_type": "slide"}
# ## Exercise 6: find the bug in a Gaussian log-density
# A CNF whose base is a Gaussian with a learned mean and standard deviation needs
# `diag_gaussian_log_prob(z, mean, std)`: $\log \mathcal N(z; \mu, \mathrm{diag}(\sigma^2))$, summed over
# the last dimension (`[B, D] -> [B]`). Its author checked it against exercise 1 at $\mu = 0, \sigma = 1$.
# Run the checker, find the bug, and repair it.

# %%
def diag_gaussian_log_prob(z, mean, std):
    """log N(z; mean, diag(std^2)) summed over the last dimension: [B, D] -> [B]."""
    ### BEGIN SOLUTION
    per_dim = -0.5 * ((z - mean) / std) ** 2 - torch.log(std) - 0.5 * math.log(2 * math.pi)
    ### EXERCISE
    # per_dim = -0.5 * ((z - mean) / std) ** 2 - torch.log(std ** 2) - 0.5 * math.log(2 * math.pi)
    ### END SOLUTION
    return per_dim.sum(dim=-1)

diag_gaussian_log_prob = ex10.check_diag_gaussian_log_prob(diag_gaussian_log_prob)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Exercise 7: predict, then check
# What is $\log p(z)$ of the 2-D standard normal at its peak, $z = (0, 0)$? Write your prediction into
# `predicted_log_density` before you run the cell (0.01 either way passes).

# %%
### BEGIN SOLUTION
predicted_log_density = -1.838  # -log(2 pi)
### EXERCISE
# predicted_log_density = None  # your prediction: a number
### END SOLUTION
measured_log_density = ex10.check_origin_log_density_prediction(predicted_log_density)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Recap
# - The base density is $\log\mathcal N(z; 0, I) = -\frac12\|z\|^2 - \frac D2\log 2\pi$; NLL in bits per
#   dimension is $\text{NLL}/(D\ln 2)$.
# - The exact trace takes one autograd pass per dimension, with `create_graph=True` to train through it.
# - Hutchinson's $\varepsilon^\top(\partial f/\partial z)\varepsilon$ takes one vector-Jacobian product and is unbiased.
# - The augmented state $(z, \delta)$ with $\dot\delta = -\operatorname{tr}\,\partial f/\partial z$ gives
#   $\log p(x) = \log\mathcal N(z(t_1)) - \delta(t_1)$; samples are base draws solved backwards.
#
# ## Further reading
# - R. T. Q. Chen, Y. Rubanova, J. Bettencourt, D. Duvenaud. *Neural Ordinary Differential
#   Equations*. NeurIPS 2018. arXiv:1806.07366.
# - W. Grathwohl, R. T. Q. Chen, J. Bettencourt, I. Sutskever, D. Duvenaud. *FFJORD: Free-form
#   Continuous Dynamics for Scalable Reversible Generative Models*. ICLR 2019. arXiv:1810.01367.
# - M. F. Hutchinson. *A stochastic estimator of the trace of the influence matrix for Laplacian
#   smoothing splines*. Communications in Statistics - Simulation and Computation 18(3), 1059-1076, 1989.
# - G. Papamakarios, E. Nalisnick, D. J. Rezende, S. Mohamed, B. Lakshminarayanan. *Normalizing Flows
#   for Probabilistic Modeling and Inference*. JMLR 22(57), 2021. arXiv:1912.02762.
