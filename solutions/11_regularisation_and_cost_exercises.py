# %% [markdown] slideshow={"slide_type": "skip"}
# Colab links appear here once the course's home repository is set (`make home`, see CONTRIBUTING.md).

# %% [markdown] slideshow={"slide_type": "slide"}
# # 11 · Regularisation and cost: exercises (solutions)
#
# Seven exercises in two halves. The first three build the regularised dynamics of Finlay et al.
# (2020) piece by piece (the kinetic-energy integrand, the Frobenius norm from one Gaussian probe,
# the augmented state) and then train with them. The last two are about stiffness: the largest
# stable step of explicit Euler on a linear system, and the stability limit of any explicit
# Runge-Kutta method computed from its Butcher tableau, which predicts how many steps dopri5 needs.
# Exercises 1-5 ask you to implement a function; the checker below each runs it on labelled cases, one
# per requirement of the statement, and tells you what passed. Until an exercise passes, the notebook
# goes on with the reference, so you can do them in any order; the cells after it say whose function
# they ran.
#
# Exercises 6 and 7 are of two other kinds: exercise 6 hands you a function with a bug to find and
# repair, exercise 7 asks you to predict a number before a cell measures it. Hints come in stages: the
# first failure says which property failed, later failures nudge more specifically, and the answer
# appears only when you ask for it with `ex11.show_answer(k)`. Until an exercise passes, the notebook
# goes on with the reference.
#
# **Learning objectives**
# - compute the kinetic-energy integrand $\|f\|^2$ for a batch;
# - estimate $\|\partial f/\partial z\|_F^2$ with one vector-Jacobian product and check that the estimate is unbiased;
# - write the augmented dynamics $(z, E_K, E_J)$ and train a Neural ODE with the two regularisers;
# - compute the explicit Euler step limit of a linear system from its eigenvalues;
# - compute an explicit Runge-Kutta method's real stability limit from its tableau and predict a
#   solver's step count on a stiff problem.
#
# **Estimated time:** 75 minutes.

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
import math

import torch.nn.functional as F
from torch import nn

from nodecourse import SolverError, solve
from nodecourse.data import nested_circles
from nodecourse.exercises import ex11
from nodecourse.exercises.checking import who
from nodecourse.models import MLP, ODEFunc
from nodecourse.solvers import TABLEAUX

torch.set_num_threads(1)  # tiny models: one thread is fastest
DEV = torch.device("cpu") if DEVICE.type == "mps" else DEVICE  # float64 is not available on MPS
F64 = {"dtype": torch.float64, "device": DEV}

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Hyperparameters
# The only cell the test suite changes.

# %%
n_iters = 120 if FAST else 500   # training iterations per model in the experiment after exercise 3
n_probes = 2000                  # Gaussian probes averaged to check the estimator of exercise 2
weight = 0.01                    # lambda_K = lambda_J


# %% [markdown] slideshow={"slide_type": "slide"}
# ## Exercise 1: the kinetic-energy integrand
# The kinetic-energy regulariser integrates $\|f(z(t))\|^2$ along each trajectory. Write
# `kinetic_integrand(f)` that takes a batch of velocities `f` of shape `[B, ...]` (dim 0 is the batch,
# the other dims are one sample's state, possibly several of them, e.g. an image) and returns the
# squared Euclidean norm of each sample: a tensor of shape `[B]`, in `f`'s dtype.

# %%
def kinetic_integrand(f):
    """||f||^2 per sample: [B, ...] -> [B]."""
    ### BEGIN SOLUTION
    return f.reshape(f.shape[0], -1).pow(2).sum(dim=1)
    ### END SOLUTION


kinetic_integrand = ex11.check_kinetic_integrand(kinetic_integrand)

# %% [markdown]
# On the rotation field $f(z) = \omega J z$ of the lecture, the speed is $\omega |z|$ everywhere:

# %%
omega = 3.0
z = torch.randn(5, 2, **F64)
rotation = z @ (omega * torch.tensor([[0.0, -1.0], [1.0, 0.0]], **F64)).T
gap = (kinetic_integrand(rotation) - omega**2 * z.pow(2).sum(1)).abs().max().item()
print(f"{who(kinetic_integrand)} kinetic_integrand against omega^2 |z|^2: largest difference {gap:.1e}")
assert gap < 1e-12


# %% [markdown] slideshow={"slide_type": "slide"}
# ## Exercise 2: the Frobenius norm from one probe
# The Jacobian regulariser integrates $\|\partial f/\partial z\|_F^2$. Computing the full Jacobian costs
# $D$ backward passes; one suffices for an unbiased estimate. For a probe $\varepsilon \sim \mathcal N(0, I)$,
# $\mathbb E\|\varepsilon^\top J\|^2 = \operatorname{tr}(J J^\top) = \|J\|_F^2$.
#
# Write `frobenius_probe(f, z, eps)`: `z` is `[B, D]` and requires grad, `f = func(z)` is `[B, D]`
# computed from it, `eps` is a probe `[B, D]`. Return $\|\varepsilon_b^\top \partial f_b/\partial z_b\|^2$
# for every sample $b$, shape `[B]`. The row vectors $\varepsilon_b^\top J_b$ of the whole batch are **one**
# vector-Jacobian product: `torch.autograd.grad(f, z, grad_outputs=eps)` (samples do not interact,
# so the gradient's row $b$ only involves sample $b$). Pass `create_graph=True`, so that the result
# can be differentiated again when it is part of a training loss.

# %%
def frobenius_probe(f, z, eps):
    """||eps^T df/dz||^2 per sample, [B], by one vector-Jacobian product."""
    ### BEGIN SOLUTION
    (vjp,) = torch.autograd.grad(f, z, grad_outputs=eps, create_graph=True)
    return vjp.pow(2).sum(dim=1)
    ### END SOLUTION


frobenius_probe = ex11.check_frobenius_probe(frobenius_probe)

# %% [markdown]
# Is it unbiased? Take one point $z$ and a small MLP, compute the exact $\|J\|_F^2$ with
# `torch.autograd.functional.jacobian`, and average the estimate over many probes (the batch is the
# same point repeated, each copy with its own probe).

# %%
seed_everything(1)
net = MLP([3, 16, 3]).to(**F64)
z_point = torch.randn(3, **F64)
exact = torch.autograd.functional.jacobian(net, z_point).pow(2).sum()
z_copies = z_point.expand(n_probes, 3).clone().requires_grad_(True)
samples = frobenius_probe(net(z_copies), z_copies, torch.randn(n_probes, 3, **F64)).detach()
stderr = samples.std() / math.sqrt(n_probes)
print(f"{who(frobenius_probe)} frobenius_probe: exact {exact:.4f}; mean of {n_probes} probes {samples.mean():.4f} "
      f"+- {stderr:.4f}; "
      f"one probe ranges over [{samples.min():.3f}, {samples.max():.3f}]")
assert abs(samples.mean() - exact) < 4 * stderr


# %% [markdown] slideshow={"slide_type": "slide"}
# ## Exercise 3: the augmented dynamics
# Put the two together. The state is the tuple `(z, E_K, E_J)` with `z` `[B, D]` and the two running
# integrals `[B]`, and its derivative is
# $$\frac{d}{dt}(z, E_K, E_J) = \big(f(t, z),\ \|f(t, z)\|^2,\ \|\varepsilon^\top \partial f/\partial z\|^2\big).$$
# Write `augmented_dynamics(func, t, state, eps)` that returns this triple, evaluating `func` once.
# `z` may not require grad (at the start of a solve, or when solving without gradients), and the
# probe needs a graph from `z` to `f`: the first lines, given, switch gradients on and make a copy of
# `z` that requires grad where needed. Use your `kinetic_integrand` and `frobenius_probe`.

# %%
def augmented_dynamics(func, t, state, eps):
    """(f, ||f||^2, ||eps^T df/dz||^2) for the state (z, E_K, E_J)."""
    z = state[0]
    with torch.enable_grad():
        z = z if z.requires_grad else z.detach().requires_grad_(True)
        ### BEGIN SOLUTION
        f = func(t, z)
        return f, kinetic_integrand(f), frobenius_probe(f, z, eps)
        ### END SOLUTION


augmented_dynamics = ex11.check_augmented_dynamics(augmented_dynamics)

# %% [markdown]
# Solved with `nodecourse.solve`, the integrals ride along: $E_K(1)$ must equal the quadrature of
# $\|f\|^2$ along the trajectory. We compare with the trapezoidal rule on a fine output grid.

# %%
field = ODEFunc(MLP([3, 16, 3])).to(**F64)
z0 = torch.randn(4, 3, **F64)
eps = torch.randn(4, 3, **F64)
t_grid = torch.linspace(0, 1, 2001, **F64)
zeros = torch.zeros(4, **F64)
sol = solve(lambda t, s: augmented_dynamics(field, t, s, eps), (z0, zeros, zeros), t_grid, rtol=1e-9, atol=1e-11)
z_path, E_K, E_J = sol.ys
with torch.no_grad():
    speed2 = torch.stack([kinetic_integrand(field(s, zt)) for s, zt in zip(t_grid, z_path)])
trapezoid = torch.trapezoid(speed2, t_grid, dim=0)
print(f"E_K(1) ({who(augmented_dynamics)} augmented_dynamics):", E_K[-1].tolist(), "\ntrapezoid:", trapezoid.tolist())
assert torch.allclose(E_K[-1], trapezoid, rtol=1e-6)
assert bool((E_J[-1] > 0).all())

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### Train with it
# Now the experiment of the lecture with these dynamics (yours once they passed): two classifiers for
# the nested circles, $x \mapsto z(0) = W_{\text{in}} x + b$ in 4 dimensions, $\dot z = f_\theta(z)$ on
# $[0, 1]$, logits $= W_{\text{out}} z(1) + b$, trained from the same initial weights with and without
# $\lambda_K \bar E_K + \lambda_J \bar E_J$ in the loss ($\lambda = 0.01$), one fresh probe per solve.
# At test time both solve the plain ODE, and we count its evaluations.

# %%
X_train, y_train = nested_circles(1024, seed=0, device=DEVICE)
X_test, y_test = nested_circles(1000, seed=1, device=DEVICE)
t01 = torch.tensor([0.0, 1.0], device=DEVICE)


class Classifier(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed, self.field, self.readout = nn.Linear(2, 4), ODEFunc(MLP([4, 32, 32, 4])), nn.Linear(4, 2)

    def forward(self, x, lam=0.0):
        """(logits, penalty, NFE): the augmented solve with augmented_dynamics when lam > 0, else the plain one."""
        z0 = self.embed(x)
        if lam > 0:
            eps, zeros = torch.randn_like(z0), z0.new_zeros(len(x))
            sol = solve(lambda t, s: augmented_dynamics(self.field, t, s, eps), (z0, zeros, zeros), t01,
                        rtol=1e-3, atol=1e-3)
            z1, e_k, e_j = (part[-1] for part in sol.ys)
            return self.readout(z1), lam * (e_k.mean() + e_j.mean()), sol.stats.nfe
        sol = solve(self.field, z0, t01, rtol=1e-3, atol=1e-3)
        return self.readout(sol.ys[-1]), 0.0, sol.stats.nfe


print(f"training with {who(augmented_dynamics)} augmented_dynamics")
results = {}
for lam in (0.0, weight):
    seed_everything(0)
    model = Classifier().to(DEVICE)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    batches = torch.Generator().manual_seed(0)
    for _ in range(n_iters):
        idx = torch.randperm(len(y_train), generator=batches)[:128].to(DEVICE)
        logits, penalty, _ = model(X_train[idx], lam)
        loss = F.cross_entropy(logits, y_train[idx]) + penalty
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        logits, _, nfe = model(X_test)
    results[lam] = ((logits.argmax(1) == y_test).float().mean().item(), nfe)
    print(f"lambda = {lam}: test accuracy {results[lam][0]:.3f}, test NFE {nfe}")
assert min(acc for acc, _ in results.values()) > 0.95
assert results[weight][0] >= results[0.0][0] - 0.02, "comparable accuracy"
assert results[weight][1] <= results[0.0][1] - 6, "at least one dopri5 step cheaper"


# %% [markdown] slideshow={"slide_type": "slide"}
# ## Exercise 4: the explicit Euler step limit
# On $\dot y = Ay$ explicit Euler computes $y_{n+1} = (I + hA)\,y_n$: along an eigenvector with
# eigenvalue $\lambda$ (complex in general), the component is multiplied by $1 + h\lambda$ per step, and
# it stays bounded when $|1 + h\lambda| \le 1$. Write `euler_step_limit(A)` that returns, as a Python
# `float`, the largest $h$ for which this holds for every eigenvalue of `A` (assume they all have a
# negative real part). Work out the bound for one complex $\lambda$ first: it is not $2/|\lambda|$ in
# general.

# %%
def euler_step_limit(A):
    """The largest stable explicit Euler step on dy/dt = A y, as a float."""
    ### BEGIN SOLUTION
    lam = torch.linalg.eigvals(A.to(torch.float64))
    # |1 + h lam|^2 = 1 + 2 h Re(lam) + h^2 |lam|^2 <= 1  <=>  h <= -2 Re(lam) / |lam|^2
    return float((-2 * lam.real / lam.abs() ** 2).min())
    ### END SOLUTION


euler_step_limit = ex11.check_euler_step_limit(euler_step_limit)

# %% [markdown]
# Check it against `nodecourse`: on a stiff system with a damped rotation in it, Euler just below the
# limit decays, just above it grows without bound. The stiffness ratio
# $\max|\operatorname{Re}\lambda| / \min|\operatorname{Re}\lambda|$ says how many of these small steps the
# slowest component needs to decay.

# %%
A = torch.tensor([[-0.5, 0.0, 0.0], [0.0, -20.0, -30.0], [0.0, 30.0, -20.0]], **F64)
h_max = euler_step_limit(A)
lam = torch.linalg.eigvals(A)
print(f"eigenvalues {lam.tolist()}, stiffness ratio {lam.real.abs().max() / lam.real.abs().min():.0f}, "
      f"Euler limit h = {h_max:.5f} from {who(euler_step_limit)} euler_step_limit "
      f"(2/|lambda|max would say {2 / lam.abs().max():.5f})")
y0 = torch.ones(3, **F64)
ends = {}
for factor in (0.95, 1.05):
    ys = solve(lambda t, y: y @ A.T, y0, torch.tensor([0.0, 20.0], **F64), method="euler",
               options={"step_size": factor * h_max}).ys
    ends[factor] = ys[-1, 1:].norm().item()
    print(f"h = {factor} x limit: |fast part of y(20)| = {ends[factor]:.3g}")
assert ends[0.95] < 1e-3 and ends[1.05] > 1e3


# %% [markdown] slideshow={"slide_type": "slide"}
# ## Exercise 5: the stability limit of a Runge-Kutta method
# One step of an explicit Runge-Kutta method with tableau $(A, b, c)$ on $\dot y = \mu y$ multiplies $y$
# by the stability polynomial
# $$R(z) = 1 + z\,b^\top (I - zA)^{-1}\mathbf 1 = 1 + \sum_{k=1}^{s} \gamma_k z^k, \qquad
#   \gamma_k = b^\top A^{k-1}\mathbf 1 ,\qquad z = h\mu$$
# (the series stops at $k = s$ because $A$ is strictly lower triangular). Write
# `stability_limit(tableau)` that returns the method's real stability limit $x^*$: the largest $x$
# such that $|R(-s)| \le 1$ for every $s \in [0, x]$, to within $10^{-6}$. The tableau's `a` (rows of
# a lower-triangular matrix, row $i$ has $i$ entries) and `b` hold `fractions.Fraction`s; `float`
# turns them into numbers. Scan $s$ on a grid, then bisect between the last stable and the first
# unstable point. Explicit Euler must give 2.

# %%
def stability_limit(tableau):
    """The real stability limit x* of an explicit Runge-Kutta tableau, as a float."""
    ### BEGIN SOLUTION
    s = tableau.n_stages
    A = torch.zeros(s, s, dtype=torch.float64)
    for i, row in enumerate(tableau.a):
        for j, a_ij in enumerate(row):
            A[i, j] = float(a_ij)
    b = torch.tensor([float(b_i) for b_i in tableau.b], dtype=torch.float64)
    gamma, v = [1.0], torch.ones(s, dtype=torch.float64)
    for _ in range(s):
        gamma.append(float(b @ v))
        v = A @ v

    def amplification(x):
        return abs(sum(g * (-x) ** k for k, g in enumerate(gamma)))

    lo = 0.0
    while amplification(lo + 0.01) <= 1:
        lo += 0.01
    hi = lo + 0.01
    for _ in range(50):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if amplification(mid) <= 1 else (lo, mid)
    return lo
    ### END SOLUTION


stability_limit = ex11.check_stability_limit(stability_limit)

# %% [markdown]
# The prediction: on $\dot y = Ay$ with eigenvalues $-1$ and $-\lambda$, once the fast component has
# decayed an explicit adaptive method takes steps at its stability limit, $h \approx x^*/\lambda$, so
# over $[0, T]$ it accepts about $T\lambda/x^*$ steps, whatever the tolerance. We check it for dopri5
# and bosh3.

# %%
lam_stiff, T = 500.0, 4.0
c, s_ = math.cos(0.3), math.sin(0.3)
Q = torch.tensor([[c, -s_], [s_, c]], **F64)
A_stiff = Q @ torch.diag(torch.tensor([-1.0, -lam_stiff], **F64)) @ Q.T
for method in ("dopri5", "bosh3"):
    x_star = stability_limit(TABLEAUX[method])
    predicted = T * lam_stiff / x_star
    for tol in (1e-3, 1e-6):
        stats = solve(lambda t, y: y @ A_stiff.T, torch.ones(2, **F64), torch.tensor([0.0, T], **F64),
                      method=method, rtol=tol, atol=tol * 1e-3).stats
        print(f"{method} (x* = {x_star:.3f} from {who(stability_limit)} stability_limit), tol {tol:.0e}: "
              f"accepted {stats.n_accepted}, predicted {predicted:.0f}")
        assert abs(stats.n_accepted / predicted - 1) < 0.15

# %% [markdown]
# And the error a learner sees when an explicit method with a fixed step ignores the limit (rk4 at
# twice its stable step on the same system):

# %%
h_rk4 = stability_limit(TABLEAUX["rk4"]) / lam_stiff
try:
    solve(lambda t, y: y @ A_stiff.T, torch.ones(2, **F64), torch.tensor([0.0, T], **F64), method="rk4",
          options={"step_size": 2 * h_rk4})
    raise AssertionError("rk4 above its stability limit should blow up")
except SolverError as err:
    print(err)
    assert "NaN/inf" in str(err) and "stability limit" in str(err)


# %% [markdown] slideshow={"slide_type": "slide"}
# ## Exercise 6: find the bug in a stiffness ratio
# `stiffness_ratio(A)` should measure how stiff $\dot y = A y$ is (all eigenvalues with negative real
# part): the fastest decay rate over the slowest. Its author tried it on diagonal matrices. Run the
# checker, find the bug, and repair it.

# %%
def stiffness_ratio(A):
    """The fastest decay rate of dy/dt = A y over the slowest, as a float."""
    ### BEGIN SOLUTION
    rates = torch.linalg.eigvals(A.to(torch.float64)).real.abs()
    ### EXERCISE
    # rates = torch.linalg.eigvals(A.to(torch.float64)).abs()
    ### END SOLUTION
    return float(rates.max() / rates.min())

stiffness_ratio = ex11.check_stiffness_ratio(stiffness_ratio)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Exercise 7: predict, then check
# Explicit Euler on $\dot y = -50 y$: what is the largest step $h$ for which the iterates do not grow?
# The cell finds it by running 200 steps for each $h$ on a grid. Write your prediction into
# `predicted_limit` before you run it (0.002 either way passes).

# %%
### BEGIN SOLUTION
predicted_limit = 0.04  # |1 - 50 h| <= 1
### EXERCISE
# predicted_limit = None  # your prediction: a number
### END SOLUTION
measured_limit = ex11.check_euler_limit_prediction(predicted_limit)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Recap
# - The kinetic integrand is a sum of squares per sample; the Jacobian's Frobenius norm costs one
#   vector-Jacobian product with a Gaussian probe, unbiased, and differentiable with `create_graph=True`.
# - The regularised dynamics augment the state with two running integrals; trained with them, the
#   classifier needs fewer evaluations at the same accuracy.
# - Explicit Euler is stable on $\dot y = Ay$ for $h \le \min_\lambda -2\operatorname{Re}\lambda/|\lambda|^2$;
#   any explicit Runge-Kutta method has a real stability limit $x^*$ read off its stability
#   polynomial, and on a stiff problem an adaptive solver accepts about $T\lambda/x^*$ steps.
#
# ## Further reading
# - C. Finlay, J.-H. Jacobsen, L. Nurbekyan, A. M. Oberman. *How to train your neural ODE: the world
#   of Jacobian and kinetic regularization*. ICML 2020. arXiv:2002.02798.
# - M. F. Hutchinson. *A stochastic estimator of the trace of the influence matrix for Laplacian
#   smoothing splines*. Communications in Statistics - Simulation and Computation 18(3), 1989.
# - E. Hairer, G. Wanner. *Solving Ordinary Differential Equations II: Stiff and Differential-Algebraic
#   Problems*, 2nd ed. Springer, 1996 (chapter IV.2: stability functions of Runge-Kutta methods).
