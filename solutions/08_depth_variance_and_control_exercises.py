# %% [markdown] slideshow={"slide_type": "skip"}
# Colab links appear here once the course's home repository is set (`make home`, see CONTRIBUTING.md).

# %% [markdown] slideshow={"slide_type": "slide"}
# # 08 · Depth variance and data control: exercises (solutions)
#
# Seven exercises that rebuild the pieces of lecture 08: the Fourier basis and a Galerkin layer whose
# weights are series in depth, the field of a data-controlled Neural ODE, the augmented dynamics of an
# integral loss, and the depth rescaling behind adaptive depth. After each, the notebook uses the
# function: to fit a depth-variant task, to learn the reflection $x \mapsto -x$, to check the
# generalised adjoint against backpropagation, and to train an adaptive-depth model. Exercises 1-5 ask
# you to implement a function. Each checker runs your function on labelled cases, one per requirement
# of the statement, prints what passed and what failed with a hint, and hands back the function the
# notebook goes on with: yours once it passes, the reference until then. The cells after it say whose
# function they ran.
#
# Exercises 6 and 7 are of two other kinds: exercise 6 hands you a function with a bug to find and
# repair, exercise 7 asks you to predict a number before a cell measures it. Hints come in stages: the
# first failure says which property failed, later failures nudge more specifically, and the answer
# appears only when you ask for it with `ex08.show_answer(k)`. Until an exercise passes, the notebook
# goes on with the reference.
#
# **Learning objectives**
# - evaluate a truncated Fourier basis in depth and assemble a Galerkin layer $W(s)x + b(s)$ from it;
# - write the field of a data-controlled Neural ODE on the state $(h, x)$ and train it on the reflection;
# - write the augmented dynamics $(f, \ell)$ of an integral loss and check its adjoint gradient;
# - rescale depth so that every sample runs to its own $T(x)$ on $[0, 1]$, and train adaptive depth.
#
# **Estimated time:** 65 minutes

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
from torch import nn

from nodecourse import odeint, odeint_adjoint
from nodecourse.config import FAST, device, seed_everything
from nodecourse.data import reflection_1d
from nodecourse.exercises import ex08
from nodecourse.exercises.checking import who
from nodecourse.models import MLP, ODEFunc
from nodecourse.models.depth_variant import GalerkinLinear
from nodecourse.models.depth_variant import fourier_basis as package_fourier_basis

seed_everything(0)
DEVICE = device()
print(f"device: {DEVICE}, fast mode: {FAST}")

# %%
torch.set_num_threads(1)   # tiny models: one thread is fastest
DEV64 = DEVICE if DEVICE.type != "mps" else torch.device("cpu")   # MPS has no float64
F64 = dict(dtype=torch.float64, device=DEV64)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Hyperparameters
# The only cell the test suite changes: fast mode shrinks the loops, nothing else.

# %%
n_iters = 80 if FAST else 400   # Adam steps of each small training run
n_samples = 64                  # training inputs of the 1-D tasks


# %% [markdown] slideshow={"slide_type": "slide"}
# ## Exercise 1: the Fourier basis in depth
#
# A Galerkin Neural ODE writes every weight as a truncated series $\theta(s) = \sum_k \alpha_k
# \varphi_k(s)$. Write `fourier_basis(s, n_harmonics, period)` that returns the basis functions at the
# depths `s` (a floating tensor of any shape `[*S]`), in this order, with $\omega = 2\pi/\text{period}$:
# $$\big(1,\ \cos\omega s,\ \cos 2\omega s,\ \dots,\ \cos n\omega s,\ \sin\omega s,\ \dots,\ \sin n\omega s\big),$$
# stacked along a new last dimension: shape `[*S, 2n + 1]`, on `s`'s device and dtype. With $n = 0$
# only the constant remains.

# %%
def fourier_basis(s: torch.Tensor, n_harmonics: int, period: float = 1.0) -> torch.Tensor:
    """The Fourier basis at depths s [*S]: [*S, 2 n + 1] = (1, cos k w s for k = 1..n, sin k w s for k = 1..n)."""
    ### BEGIN SOLUTION
    k = torch.arange(1, n_harmonics + 1, dtype=s.dtype, device=s.device)
    angle = (2 * math.pi / period) * s.unsqueeze(-1) * k
    return torch.cat([torch.ones_like(s).unsqueeze(-1), torch.cos(angle), torch.sin(angle)], dim=-1)
    ### END SOLUTION


fourier_basis = ex08.check_fourier_basis(fourier_basis)

# %% [markdown]
# The basis the notebook goes on with against the package's, and a look at it: every function has
# period 1 here, so a weight built from them repeats itself every unit of depth.

# %%
s_grid = torch.linspace(0.0, 2.0, 201, **F64)
gap = (fourier_basis(s_grid, 3, 1.0) - package_fourier_basis(s_grid, 3, 1.0)).abs().max().item()
print(f"largest difference of {who(fourier_basis)} fourier_basis to the package's: {gap:.1e}")
assert gap < 1e-12

fig, ax = plt.subplots(figsize=(7, 2.8))
ax.plot(s_grid.cpu(), fourier_basis(s_grid, 2, 1.0).cpu())
ax.set(xlabel="depth s", title=f"Fourier basis ({who(fourier_basis)}), n = 2, period 1 (two periods shown)")
plt.show()


# %% [markdown] slideshow={"slide_type": "slide"}
# ## Exercise 2: a Galerkin linear layer
#
# Write `galerkin_linear(x, s, weight_coeffs, bias_coeffs, period)`: the layer $y = W(s)\,x + b(s)$ at
# one depth `s` (a 0-d tensor), with
# $$W(s) = \sum_{k=0}^{K-1} \varphi_k(s)\, A_k, \qquad b(s) = \sum_{k=0}^{K-1} \varphi_k(s)\, c_k ,$$
# where $\varphi$ is your Fourier basis with $n = (K - 1)/2$ harmonics and the given period,
# `weight_coeffs` $= (A_k)$ has shape `[K, out, in]`, `bias_coeffs` $= (c_k)$ has shape `[K, out]`, and
# `x` is a batch `[B, in]`. Return `[B, out]`, in `x`'s dtype.

# %%
def galerkin_linear(x: torch.Tensor, s: torch.Tensor, weight_coeffs: torch.Tensor, bias_coeffs: torch.Tensor,
                    period: float = 1.0) -> torch.Tensor:
    """W(s) x + b(s) with Fourier-series weights: x [B, in] -> [B, out]."""
    ### BEGIN SOLUTION
    phi = fourier_basis(s.to(x.dtype), (weight_coeffs.shape[0] - 1) // 2, period)   # [K]
    weight = torch.einsum("k,koi->oi", phi, weight_coeffs)                          # [out, in]
    bias = phi @ bias_coeffs                                                        # [out]
    return x @ weight.T + bias
    ### END SOLUTION


galerkin_linear = ex08.check_galerkin_linear(galerkin_linear)

# %% [markdown]
# The package's `GalerkinLinear` keeps the same coefficients as parameters; with them copied over,
# both must agree at every depth. Then the layer serves as a whole vector field,
# $\dot h = W(s) h + b(s)$ with `in = out = 1`, and fit the go-up-and-come-back task of the lecture:
# $h(s) = x\,e^{\sin 2\pi s}$ observed at 16 depths, which no depth-invariant 1-D field can follow.

# %%
seed_everything(1)
layer = GalerkinLinear(3, 2, basis="fourier", order=2, period=1.0).to(**F64)
with torch.no_grad():
    layer.weight_coeffs.normal_()
x_test = torch.randn(5, 3, **F64)
gap = max((galerkin_linear(x_test, torch.tensor(s, **F64), layer.weight_coeffs, layer.bias_coeffs)
           - layer(torch.tensor(s, **F64), x_test)).abs().max().item() for s in (0.0, 0.37, 0.81))
print(f"{who(galerkin_linear)} galerkin_linear vs GalerkinLinear with the same coefficients: {gap:.1e}")
assert gap < 1e-12

# %%
t_obs = torch.linspace(0.0, 1.0, 17, device=DEVICE)
X_path = torch.linspace(-1.0, 1.0, n_samples, device=DEVICE)[:, None]
Y_path = X_path[None] * torch.exp(torch.sin(2 * math.pi * t_obs))[1:, None, None]   # [16, 64, 1]

coeffs_w = nn.Parameter(torch.zeros(5, 1, 1, device=DEVICE))
coeffs_b = nn.Parameter(torch.zeros(5, 1, device=DEVICE))
optimizer = torch.optim.Adam([coeffs_w, coeffs_b], lr=0.1)
losses = []
for it in range(n_iters):
    optimizer.zero_grad()
    path = odeint(lambda s, h: galerkin_linear(h, s, coeffs_w, coeffs_b), X_path, t_obs, method="rk4",
                  options={"step_size": 1 / 16})
    loss = (path[1:] - Y_path).pow(2).mean()
    loss.backward()
    optimizer.step()
    losses.append(loss.item())
print(f"with {who(galerkin_linear)} galerkin_linear: loss {losses[0]:.4f} -> {losses[-1]:.5f};  cosine coefficient "
      f"of w(s): {coeffs_w[1].item():.2f} (the truth 2 pi cos 2 pi s has {2 * math.pi:.2f})")
assert losses[-1] < losses[0] / 10


# %% [markdown] slideshow={"slide_type": "slide"}
# ## Exercise 3: the field of a data-controlled Neural ODE
#
# A data-controlled Neural ODE feeds its input $x$ to the vector field at every depth:
# $\dot h = f(h, x)$, $h(0) = x$. The solver carries the input as part of the tuple state $(h, x)$, with
# $\dot x = 0$. Write `controlled_dynamics(net, s, state)` that, for `state = (h, x)` with `h [B, D]` and
# `x [B, C]`, returns the tuple `(net(cat([h, x])), zeros like x)`: the network sees the state first,
# then the input, concatenated along the last dimension.

# %%
def controlled_dynamics(net: nn.Module, s: torch.Tensor, state: tuple):
    """d/ds (h, x) = (net([h, x]), 0) for the data-controlled state (h [B, D], x [B, C])."""
    ### BEGIN SOLUTION
    h, x = state
    return net(torch.cat([h, x], dim=-1)), torch.zeros_like(x)
    ### END SOLUTION


controlled_dynamics = ex08.check_controlled_dynamics(controlled_dynamics)

# %% [markdown]
# Now the reflection $x \mapsto -x$ on $[-1, 1]$. A plain 1-D Neural ODE cannot go below the variance of
# the targets (lecture, section 3). With the controlled field, $\mathrm{net} = \mathrm{MLP}([2, 16, 1])$
# and $h(1)$ as the output:

# %%
X_ref, Y_ref = reflection_1d(n_samples, seed=0, dtype=torch.float32, device=DEVICE)
floor = (Y_ref - Y_ref.mean()).pow(2).mean().item()
seed_everything(0)
net = MLP([2, 16, 1]).to(DEVICE)
optimizer = torch.optim.Adam(net.parameters(), lr=3e-2)
span = torch.tensor([0.0, 1.0], device=DEVICE)
for it in range(n_iters):
    optimizer.zero_grad()
    h_end, _ = odeint(lambda s, st: controlled_dynamics(net, s, st), (X_ref, X_ref), span, method="rk4",
                      options={"step_size": 0.1})
    loss = nn.functional.mse_loss(h_end[-1], Y_ref)
    loss.backward()
    optimizer.step()
print(f"data-controlled Neural ODE ({who(controlled_dynamics)} controlled_dynamics) on the reflection: "
      f"loss {loss.item():.5f} (floor of a plain one: {floor:.4f})")
assert loss.item() < floor / 30


# %% [markdown] slideshow={"slide_type": "slide"}
# ## Exercise 4: the dynamics of an integral loss
#
# For a loss spread over depth, $J = \int_0^S \ell(s, h(s))\,ds$, augment the state with the running
# integral $L$: $\frac{d}{ds}(h, L) = (f(s, h), \ell(s, h))$ with $L(0) = 0$, so that $J = L(S)$ and the
# ordinary adjoint of $(h, L)$ is the generalised adjoint. Write
# `integral_loss_dynamics(func, running_cost, s, state)` for `state = (h, L)`, `h [B, D]`, `L [B]`:
# return the tuple `(func(s, h), running_cost(s, h))`, where `running_cost` returns one value per sample.

# %%
def integral_loss_dynamics(func, running_cost, s: torch.Tensor, state: tuple):
    """d/ds (h, L) = (f(s, h), l(s, h)) for the running integral L of the cost l."""
    ### BEGIN SOLUTION
    h, _ = state
    return func(s, h), running_cost(s, h)
    ### END SOLUTION


integral_loss_dynamics = ex08.check_integral_loss_dynamics(integral_loss_dynamics)


# %% [markdown]
# The gradient of $J$ through `odeint_adjoint` on the augmented state against backpropagation, in
# float64 at a tight tolerance, for a running cost that tracks the unit circle $\beta(s) = (\cos s, \sin s)$
# and also pays for speed, $\ell = \|h - \beta(s)\|^2 + 0.1\,\|f\|^2$ (so it depends on the parameters
# too). The field is a `GalerkinLinear(2, 2)` with period $2\pi$; `adjoint_params` tells the adjoint
# which tensors to differentiate, since the dynamics are a plain function.

# %%
def circle(s):
    return torch.stack([torch.cos(s), torch.sin(s)], dim=-1)


def make_cost(field):
    return lambda s, h: (h - circle(s)).pow(2).sum(-1) + 0.1 * field(s, h).pow(2).sum(-1)


seed_everything(2)
field64 = GalerkinLinear(2, 2, basis="fourier", order=1, period=2 * math.pi).to(**F64)
with torch.no_grad():
    field64.weight_coeffs.normal_(0, 0.5)
h0 = torch.randn(6, 2, **F64)
span64 = torch.tensor([0.0, 2 * math.pi], **F64)
dynamics64 = lambda s, st: integral_loss_dynamics(field64, make_cost(field64), s, st)  # noqa: E731
params = tuple(field64.parameters())
J_adj = odeint_adjoint(dynamics64, (h0, torch.zeros(6, **F64)), span64, rtol=1e-10, atol=1e-12,
                       adjoint_params=params)[1][-1].sum()
J_bp = odeint(dynamics64, (h0, torch.zeros(6, **F64)), span64, rtol=1e-10, atol=1e-12)[1][-1].sum()
rel = max(((a - b).norm() / b.norm()).item()
          for a, b in zip(torch.autograd.grad(J_adj, params), torch.autograd.grad(J_bp, params)))
print(f"with {who(integral_loss_dynamics)} integral_loss_dynamics: J = {J_adj.item():.5f}; largest relative "
      f"gradient difference, adjoint vs backprop: {rel:.1e}")
assert rel < 1e-6

# %% [markdown]
# Then train it: 64 initial states in $[-2, 2]^2$, one period, RK4 with steps of $2\pi/24$ and 13
# checkpoints for the reverse solve (the trained field contracts; lecture, section 5).

# %%
seed_everything(0)
tracker = GalerkinLinear(2, 2, basis="fourier", order=1, period=2 * math.pi).to(DEVICE)
H0 = 4 * torch.rand(n_samples, 2, device=DEVICE) - 2
checkpoints = torch.linspace(0.0, 2 * math.pi, 13, device=DEVICE)
optimizer = torch.optim.Adam(tracker.parameters(), lr=5e-2)
track_losses = []
for it in range(n_iters):
    optimizer.zero_grad()
    _, L = odeint_adjoint(lambda s, st: integral_loss_dynamics(tracker, make_cost(tracker), s, st),
                          (H0, torch.zeros(n_samples, device=DEVICE)), checkpoints, method="rk4",
                          options={"step_size": 2 * math.pi / 24}, adjoint_params=tuple(tracker.parameters()))
    loss = L[-1].mean() / (2 * math.pi)
    loss.backward()
    optimizer.step()
    track_losses.append(loss.item())
with torch.no_grad():
    end = odeint(tracker, H0, torch.tensor([0.0, 4 * math.pi], device=DEVICE), method="rk4",
                 options={"step_size": 2 * math.pi / 24})[-1]
    end_distance = (end - circle(torch.tensor(4 * math.pi, device=DEVICE))).norm(dim=-1).mean().item()
start_distance = (H0 - circle(torch.tensor(0.0, device=DEVICE))).norm(dim=-1).mean().item()
print(f"trained with {who(integral_loss_dynamics)} integral_loss_dynamics: J/S {track_losses[0]:.3f} -> "
      f"{track_losses[-1]:.4f};  mean distance to the circle: {start_distance:.3f} at s = 0, {end_distance:.3f} "
      f"at s = 4 pi")
assert track_losses[-1] < track_losses[0] / 3 and end_distance < start_distance / 4


# %% [markdown] slideshow={"slide_type": "slide"}
# ## Exercise 5: rescaling depth for adaptive depth
#
# Adaptive depth integrates each input to its own depth $T(x)$. With $s = T\sigma$ the whole batch runs
# on $\sigma \in [0, 1]$: $\frac{d h}{d\sigma} = T\,f(T\sigma, h)$. Write `rescaled_dynamics(func, sigma, state)`
# for `state = (h, T)`, `h [B, D]`, `T [B, 1]`, that returns the tuple
# `(T * func(T sigma, h), zeros like T)`. Call `func` with the per-sample depths $T\sigma$ as a tensor of
# shape `[B]` (the package's time-dependent fields accept one time per sample).

# %%
def rescaled_dynamics(func, sigma: torch.Tensor, state: tuple):
    """d/dsigma (h, T) = (T f(T sigma, h), 0) with per-sample depths T [B, 1]."""
    ### BEGIN SOLUTION
    h, T = state
    return T * func(sigma * T.reshape(-1), h), torch.zeros_like(T)
    ### END SOLUTION


rescaled_dynamics = ex08.check_rescaled_dynamics(rescaled_dynamics)

# %% [markdown]
# Solving the rescaled field on $[0, 1]$ must give each sample's state at its own depth, which we
# compute separately, one solve per sample, for a depth-variant field.

# %%
seed_everything(3)
func64 = ODEFunc(MLP([2, 16, 1]), time_dependent=True).to(**F64)
x_few = torch.tensor([[-0.7], [0.2], [0.9]], **F64)
T_few = torch.tensor([[0.5], [1.3], [2.4]], **F64)
unit = torch.tensor([0.0, 1.0], **F64)
rescaled_end = odeint(lambda sg, st: rescaled_dynamics(func64, sg, st), (x_few, T_few), unit,
                      rtol=1e-10, atol=1e-12)[0][-1]
separate = torch.stack([odeint(func64, x_few[i], torch.cat([torch.zeros(1, **F64), T_few[i]]),
                               rtol=1e-10, atol=1e-12)[-1] for i in range(3)])
gap = (rescaled_end - separate).abs().max().item()
print(f"rescaled batch ({who(rescaled_dynamics)} rescaled_dynamics) vs one solve per sample: {gap:.1e}")
assert gap < 1e-8

# %% [markdown]
# Finally, adaptive depth on the reflection: $T(x) = \mathrm{softplus}(g(x))$ with
# $g = \mathrm{MLP}([1, 16, 1])$ and the depth-variant field $f = \mathrm{MLP}([2, 16, 1])$ of $[h, s]$.
# (With an autonomous field it cannot work in 1-D: lecture, section 4.)

# %%
seed_everything(0)
field = ODEFunc(MLP([1 + 1, 16, 1]), time_dependent=True).to(DEVICE)
depth_net = MLP([1, 16, 1]).to(DEVICE)
optimizer = torch.optim.Adam([*field.parameters(), *depth_net.parameters()], lr=3e-2)
unit = torch.tensor([0.0, 1.0], device=DEVICE)
for it in range(n_iters):
    optimizer.zero_grad()
    T = nn.functional.softplus(depth_net(X_ref))
    h_end, _ = odeint(lambda sg, st: rescaled_dynamics(field, sg, st), (X_ref, T), unit, method="rk4",
                      options={"step_size": 0.05})
    loss = nn.functional.mse_loss(h_end[-1], Y_ref)
    loss.backward()
    optimizer.step()
print(f"adaptive depth ({who(rescaled_dynamics)} rescaled_dynamics) + depth-variant field on the reflection: "
      f"loss {loss.item():.5f} (plain floor {floor:.4f}); depths in [{T.min().item():.2f}, {T.max().item():.2f}]")
assert loss.item() < floor / 30


# %% [markdown] slideshow={"slide_type": "slide"}
# ## Exercise 6: find the bug in a Galerkin weight
# `depth_weight(s, weight_coeffs, period)` should return the weight $W(s) = \sum_k A_k \varphi_k(s)$ of a
# Galerkin layer at one depth `s`, for coefficients `weight_coeffs` of shape `[K, out, in]` (each $A_k$ laid
# out like `nn.Linear`'s weight) and the Fourier basis of exercise 1 with $K = 2n + 1$ terms. On its
# author's square test layer it agreed with `GalerkinLinear`. Run the checker, find the bug, and repair it.

# %%
def depth_weight(s, weight_coeffs, period=1.0):
    """W(s) = sum_k A_k phi_k(s): [out, in] from weight_coeffs [K, out, in]."""
    phi = fourier_basis(s, (weight_coeffs.shape[0] - 1) // 2, period)
    ### BEGIN SOLUTION
    return torch.einsum("k,koi->oi", phi, weight_coeffs)
    ### EXERCISE
    # return torch.einsum("k,kio->oi", phi, weight_coeffs)
    ### END SOLUTION

depth_weight = ex08.check_depth_weight(depth_weight)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Exercise 7: predict, then check
# Depth variance costs parameters. How many does `GalerkinLinear(2, 2, basis="fourier", order=2)` have
# (a 2 -> 2 layer whose weight and bias vary with depth through 2 Fourier harmonics)? Write your prediction
# into `predicted_parameters` before you run the cell; it must be exact.

# %%
### BEGIN SOLUTION
predicted_parameters = 30  # (2 * 2 + 2) * (2 * 2 + 1)
### EXERCISE
# predicted_parameters = None  # your prediction: a number
### END SOLUTION
measured_parameters = ex08.check_galerkin_parameters_prediction(predicted_parameters)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Recap
# - A Galerkin weight is $W(s) = \sum_k \varphi_k(s) A_k$: evaluate the basis once, contract it with the
#   coefficients, and the layer is an ordinary linear map at that depth.
# - Data control is a tuple state $(h, x)$ with $\dot x = 0$; the network sees $[h, x]$ at every depth.
# - An integral loss is one more state component, $\dot L = \ell$; `odeint_adjoint` on $(h, L)$ is the
#   generalised adjoint, and it matches backpropagation.
# - Adaptive depth is a rescaling, $\dot h = T f(T\sigma, h)$ on $[0, 1]$, with $T$ carried in the state.
#
# ## Further reading
# - S. Massaroli, M. Poli, J. Park, A. Yamashita, H. Asama. *Dissecting Neural ODEs*. NeurIPS 2020.
#   arXiv:2002.08071.
# - C. Finlay, J.-H. Jacobsen, L. Nurbekyan, A. M. Oberman. *How to train your neural ODE: the world
#   of Jacobian and kinetic regularization*. ICML 2020. arXiv:2002.02798.
# - E. Dupont, A. Doucet, Y. W. Teh. *Augmented Neural ODEs*. NeurIPS 2019. arXiv:1904.01681.
# - R. T. Q. Chen, Y. Rubanova, J. Bettencourt, D. Duvenaud. *Neural Ordinary Differential
#   Equations*. NeurIPS 2018. arXiv:1806.07366.
