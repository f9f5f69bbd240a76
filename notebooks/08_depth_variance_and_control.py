# %% [markdown] slideshow={"slide_type": "skip"}
# Colab links appear here once the course's home repository is set (`make home`, see CONTRIBUTING.md).

# %% [markdown] slideshow={"slide_type": "slide"}
# # 08 · Depth variance and data control
#
# Notebook 07 changed the *space* a Neural ODE moves in (augmentation). This one changes the *vector
# field*: we let it depend on depth (time concatenation, Galerkin Neural ODEs, stacked Neural ODEs),
# on the input itself (data control), and we let each input choose how long it is integrated
# (adaptive depth). Every variant is measured against a limit we prove first. The last section trains
# with a loss spread over the whole depth, through the generalised adjoint, and makes a Galerkin Neural
# ODE converge to a periodic orbit. The guide is Massaroli et al., *Dissecting Neural ODEs* (2020).
#
# **Learning objectives**
# - prove that a depth-invariant 1-D Neural ODE moves every state monotonically in depth, and compute
#   the loss floor this puts on it by isotonic regression;
# - build depth-variant vector fields three ways (time concatenation, Galerkin layers whose weights
#   are Fourier or Legendre series in depth, stacked blocks), check what defines each, and train them
#   past that floor;
# - feed the input to the field at every depth (data control) and learn the 1-D reflection
#   $x \mapsto -x$ that no plain Neural ODE can represent;
# - give each input its own integration time by rescaling depth; prove what adaptive depth can and
#   cannot do in 1-D and show both;
# - train with an integral loss through the generalised adjoint by augmenting the state with the
#   running cost, and make trajectories converge to a reference periodic orbit.
#
# **Estimated time:** 100 minutes

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
from nodecourse.claims import check, claim
from nodecourse.config import FAST, device, seed_everything
from nodecourse.data import reflection_1d
from nodecourse.models import MLP, ODEBlock, ODEFunc
from nodecourse.models.controlled import AdaptiveDepthODE, DataControlledField, DataControlledODE
from nodecourse.models.depth_variant import (ConcatMLP, GalerkinLinear, GalerkinMLP, StackedODE, fourier_basis,
                                             legendre_basis)
from nodecourse.train import count_parameters, train

seed_everything(0)
DEVICE = device()
print(f"device: {DEVICE}, fast mode: {FAST}")

# %%
# Every model here is tiny (a few hundred parameters, batches of 64): one CPU thread runs it faster
# than several that wait for each other.
torch.set_num_threads(1)

# Exact checks use float64; Apple's MPS has none, so there (and only there) they run on the CPU.
DEV64 = DEVICE if DEVICE.type != "mps" else torch.device("cpu")
F64 = dict(dtype=torch.float64, device=DEV64)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Hyperparameters
# The only cell the test suite changes: fast mode shrinks the training loops, nothing else.

# %%
n_iters_depth = 100 if FAST else 600     # Adam steps for each model of section 2
n_iters_control = 100 if FAST else 400   # ... of sections 3 and 4 (the 1-D reflection)
n_iters_orbit = 60 if FAST else 400      # ... of the integral-loss training of section 5
n_samples = 64                           # training inputs of every 1-D task
rk4_step = 1 / 16                        # fixed RK4 step (in depth) of sections 1 to 3
coefficient_tol = 3.0 if FAST else 0.3   # how close the Galerkin model's learned coefficient must come to 2 pi

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 1. What a depth-invariant field cannot do
# A Neural ODE with shared weights, $\dot h = f(h, \theta)$, has the same vector field at every depth
# $s$: it is **autonomous**. In one dimension that has a sharp consequence.
#
# **Lemma.** Let $f:\mathbb{R}\to\mathbb{R}$ be Lipschitz. Every solution of $\dot h = f(h)$ is
# monotone in $s$.
#
# *Proof.* If $f(h(s_0)) = 0$ at some depth $s_0$, the constant $h \equiv h(s_0)$ solves the ODE
# through the same point, so by uniqueness (Picard-Lindelöf, notebook 01) $h$ is that constant.
# Otherwise $s \mapsto f(h(s))$ is continuous and never zero, so it keeps one sign and $h$ is strictly
# monotone. $\square$
#
# A trajectory of a 1-D autonomous field can therefore never go up and come back. Here is a task that
# asks exactly that: from $h(0) = x$, follow
# $$h^\star(s) = x\, e^{\sin 2\pi s}, \qquad\text{the solution of}\qquad \dot h = 2\pi\cos(2\pi s)\, h ,$$
# observed at the depths $s_k = k/16$, $k = 1, \dots, 16$. The field that generates it is *linear* in
# $h$ with a weight $w(s) = 2\pi \cos 2\pi s$ that changes with depth.

# %% [markdown] slideshow={"slide_type": "notes"}
# Speaker notes (15 min with the setup). The lemma (a 1-D autonomous solution is monotone in depth), then
# the go-up-and-come-back task $x e^{\sin 2\pi s}$ at 16 depths. The floor by isotonic regression (pool
# adjacent violators, checked against the min-max formula) is 87% of the identity's loss, and a trained
# MLP field sits on it. Stress that every "cannot" in this notebook comes with a number (here the isotonic
# floor, in section 3 the variance floor, in section 4 the sign-of-$f(0)$ floor): a trained model on the
# floor is the experiment, and the proof says no amount of training will move it. Ask the room: which
# paths can a 1-D autonomous field draw?

# %%
t_obs = torch.linspace(0.0, 1.0, 17, device=DEVICE)                  # s_0 = 0, ..., s_16 = 1
X_path = torch.linspace(-1.0, 1.0, n_samples, device=DEVICE)[:, None]  # inputs [64, 1]
gain = torch.exp(torch.sin(2 * math.pi * t_obs))                     # e^{sin 2 pi s_k}
Y_path = X_path * gain[1:]                                           # targets [64, 16]: x e^{sin 2 pi s_k}

# the targets are the flow of the depth-variant linear field (checked with an accurate solver)
true_field = lambda s, h: 2 * math.pi * torch.cos(2 * math.pi * s) * h  # noqa: E731
flowed = odeint(true_field, X_path, t_obs, rtol=1e-7, atol=1e-9)[1:, :, 0].T
claim("max |flow of w(s) h - targets|", (flowed - Y_path).abs().max(), at_most=1e-5, fmt=".1e")


# %% [markdown] slideshow={"slide_type": "subslide"}
# ### The floor: isotonic regression
# For one input $x$ the model produces the sequence $x = h(s_0), h(s_1), \dots, h(s_{16})$, which by
# the lemma is either non-decreasing or non-increasing. So its squared error can be no smaller than that
# of the **best monotone sequence starting at $x$**, the isotonic regression of the targets with the
# first value pinned to $x$. The pool-adjacent-violators algorithm computes it: scan left to right, and
# whenever a value falls below the previous block's mean, merge the two blocks into their weighted
# mean. Pinning is a huge weight on the first point. We check it against the min-max formula
# $\hat y_i = \max_{j \le i} \min_{k \ge i} \operatorname{mean}_w(y_j, \dots, y_k)$.

# %%
def isotonic_fit(y, w):
    """Least-squares non-decreasing fit of the values y with weights w (pool adjacent violators)."""
    blocks = []                                      # [mean, weight, length]
    for yi, wi in zip(y, w):
        blocks.append([yi, wi, 1])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            m2, w2, n2 = blocks.pop()
            m1, w1, n1 = blocks.pop()
            blocks.append([(m1 * w1 + m2 * w2) / (w1 + w2), w1 + w2, n1 + n2])
    return [m for m, _, n in blocks for _ in range(n)]


def monotone_floor(x0, targets):
    """Smallest sum of squared errors of a monotone sequence that starts at x0 (either direction)."""
    best = math.inf
    for sign in (1.0, -1.0):                         # non-decreasing, then non-increasing
        y = [sign * x0] + [sign * v for v in targets]
        fit = isotonic_fit(y, [1e12] + [1.0] * len(targets))
        best = min(best, sum((f - v) ** 2 for f, v in zip(fit[1:], y[1:])))
    return best


# check the algorithm against the min-max formula on one weighted sequence
y_check, w_check = [1.0] + gain[1:].tolist(), [1e12] + [1.0] * 16
minmax = [max(min(sum(a * b for a, b in zip(y_check[j:k + 1], w_check[j:k + 1])) / sum(w_check[j:k + 1])
                  for k in range(i, 17)) for j in range(i + 1)) for i in range(17)]
claim("pool adjacent violators against the min-max formula: max difference",
      max(abs(a - b) for a, b in zip(isotonic_fit(y_check, w_check), minmax)), at_most=1e-9, fmt=".1e")

floor_path = sum(monotone_floor(x, t) for x, t in zip(X_path[:, 0].tolist(), Y_path.tolist())) / Y_path.numel()
identity_loss = (Y_path - X_path).pow(2).mean().item()               # the field f = 0: h stays at x
print(f"MSE of h(s) = x: {identity_loss:.4f};  floor of every depth-invariant 1-D model: {floor_path:.4f}")
claim("floor / MSE of doing nothing", floor_path / identity_loss, at_least=0.8)


# %% [markdown]
# The floor is above 80% of the loss of doing nothing at all: whatever its width, a depth-invariant
# 1-D Neural ODE can barely improve on the identity. We train one to see it. A small wrapper returns
# the states at the 16 depths, so that `nodecourse.train` can fit them.

# %%
class PathAt(nn.Module):
    """x [N, 1] -> the states h(s_1), ..., h(s_16) [N, 16] of a field (or a StackedODE), fixed RK4 steps."""

    def __init__(self, field):
        super().__init__()
        self.field = field

    def forward(self, x):
        if isinstance(self.field, StackedODE):          # section 2c: blocks solved one after another
            return self.field.trajectory(x, t_obs)[1:, :, 0].T
        return odeint(self.field, x, t_obs, method="rk4", options={"step_size": rk4_step})[1:, :, 0].T


seed_everything(0)
invariant = PathAt(ODEFunc(MLP([1, 32, 1]))).to(DEVICE)
hist_invariant = train(invariant, nn.functional.mse_loss, (X_path, Y_path), n_iters_depth, lr=3e-2,
                       desc="depth-invariant")
loss_invariant = hist_invariant.loss[-1]
print(f"depth-invariant MLP: loss {hist_invariant.loss[0]:.4f} -> {loss_invariant:.4f} (floor {floor_path:.4f})")
claim("depth-invariant MLP: final loss / floor (2% slack for RK4's own error)", loss_invariant / floor_path,
      at_least=0.98)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 2. Three ways to make the field depend on depth
# A ResNet whose blocks have their own weights is, in the limit, an ODE with **depth-variant
# parameters** $\dot h = f(h, \theta(s))$ (notebook 02). Massaroli et al. (2020, Sec. 3) make this
# precise: the parameters become a function of depth, and the question is how to parametrise that
# function with finitely many numbers. Three answers:
#
# | model | field | parameters |
# |---|---|---|
# | time concatenation | $f(h, s) = \mathrm{net}([h, s])$ | one network; depth is an input |
# | Galerkin Neural ODE | $f(h, \theta(s))$, $\theta(s) = \sum_{k} \alpha_k \varphi_k(s)$ | $K$ coefficients per weight |
# | stacked Neural ODE | $f(h, \theta_i)$ for $s \in [s_i, s_{i+1})$ | one network per interval |

# %% [markdown] slideshow={"slide_type": "notes"}
# Speaker notes (25 min). Three depth-variant fields, each checked by what defines it: time concatenation
# with zero depth weights is the plain MLP, a Galerkin layer with only the constant term is `nn.Linear`,
# identical stacked blocks are one block. The Galerkin layer costs $K$ times a plain layer, independent of
# depth; with the right basis ten numbers hold the field exactly: in full mode the learned $w(s)$
# coincides with $2\pi\cos 2\pi s$ (correlation 1.000, coefficient 6.28), while fast mode stops near a
# coefficient of 4 and a correlation of 0.87, and its lines say it is under-trained, so nobody reads it as
# a failure. Common mistakes: the Fourier order is `[1, cos 1..n, sin 1..n]`, not interleaved pairs, with
# the factor $2\pi/\tau$ in the angle; a Galerkin layer computing `x @ W` instead of `x @ W.T`, or using
# only the constant coefficient. Ask: why do the stacked model's four weights land near $\pm 4$?

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### 2a. Time concatenation
# The simplest: give the network the depth as one more input. `ODEFunc(net, time_dependent=True)`
# concatenates $s$ to the input layer; `ConcatMLP` concatenates it to *every* layer (as FFJORD's
# `ConcatLinear` layers do). With the weights on the depth column at zero, a `ConcatMLP` is the plain
# autonomous MLP:

# %%
seed_everything(1)
concat = ConcatMLP([2, 16, 2]).to(**F64)
plain = MLP([2, 16, 2]).to(**F64)
with torch.no_grad():
    for layer, target in zip(concat.layers, [plain[0], plain[2]]):
        layer.weight[:, -1] = 0.0                     # the depth column
        target.weight.copy_(layer.weight[:, :-1])
        target.bias.copy_(layer.bias)
h_test = torch.randn(5, 2, **F64)
gap = max((concat(torch.tensor(s, **F64), h_test) - plain(h_test)).abs().max().item() for s in (0.0, 0.7, 3.0))
claim("ConcatMLP with zero depth weights vs the plain MLP, at three depths: max difference", gap, at_most=1e-14,
      fmt=".1e")

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### 2b. Galerkin Neural ODEs: weights as series in depth
# Massaroli et al. expand every weight in a basis of functions of depth, truncated after $K$ terms:
# $$\theta(s) = \sum_{k=0}^{K-1} \alpha_k\, \varphi_k(s).$$
# The coefficients $\alpha_k$ are the trainable parameters; a layer costs $K$ times the parameters of a
# plain one, however long the depth. Two classical bases:
# - **Fourier**, period $\tau$, $\omega = 2\pi/\tau$: $\varphi = (1, \cos\omega s, \dots, \cos n\omega s,
#   \sin\omega s, \dots, \sin n\omega s)$, $K = 2n + 1$. The weights are $\tau$-periodic in depth.
# - **Legendre** on $[a, b]$: $\varphi_k(s) = P_k(z)$, $z = \tfrac{2(s - a)}{b - a} - 1$, from
#   Bonnet's recursion $(k+1)P_{k+1} = (2k+1)\,z\,P_k - k\,P_{k-1}$; orthogonal, with
#   $\int_{-1}^1 P_j P_k\, dz = \tfrac{2}{2k+1}\delta_{jk}$.
#
# The name comes from Galerkin's method: approximate an infinite-dimensional unknown (here, the
# function $\theta(s)$) in the span of finitely many basis functions. We check the Legendre
# orthogonality with Simpson's rule, then plot both bases.

# %%
z = torch.linspace(-1.0, 1.0, 2001, **F64)
P = legendre_basis(z, 4, interval=(-1.0, 1.0))                      # [2001, 5]
simpson = torch.ones(2001, **F64)
simpson[1:-1:2], simpson[2:-1:2] = 4.0, 2.0
gram = (P.T * simpson * (z[1] - z[0]) / 3) @ P                      # int P_j P_k dz
expected = torch.diag(2.0 / (2 * torch.arange(5, **F64) + 1))
print("Gram matrix of P_0..P_4 on [-1, 1]:\n", gram.numpy().round(6))
claim("max |Gram matrix - diag(2 / (2k + 1))|", (gram - expected).abs().max(), at_most=1e-10, fmt=".1e")

s_plot = torch.linspace(0.0, 1.0, 200)
fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
axes[0].plot(s_plot, fourier_basis(s_plot, 2, period=1.0), label=["1", "cos 2πs", "cos 4πs", "sin 2πs", "sin 4πs"])
axes[0].set(title="Fourier basis, n = 2, period 1", xlabel="depth s")
axes[1].plot(s_plot, legendre_basis(s_plot, 4), label=[f"$P_{k}$" for k in range(5)])
axes[1].set(title="Legendre basis, degree 4 on [0, 1]", xlabel="depth s")
for ax in axes:
    ax.legend(fontsize=7, loc="lower left", ncol=5)
plt.show()

# %% [markdown]
# `GalerkinLinear(in, out, basis, order)` is the layer $y = W(s)x + b(s)$ with
# $W(s) = \sum_k A_k\varphi_k(s)$ and $b(s) = \sum_k c_k \varphi_k(s)$; `GalerkinMLP` stacks such
# layers into a vector field. Its defining property: since $\varphi_0 = 1$, a layer whose only nonzero
# coefficients are the constant ones is an ordinary `nn.Linear`, the same at every depth.

# %%
seed_everything(2)
linear = nn.Linear(3, 2).to(**F64)
galerkin = GalerkinLinear(3, 2, basis="fourier", order=3).to(**F64)
with torch.no_grad():
    galerkin.weight_coeffs.zero_()
    galerkin.bias_coeffs.zero_()
    galerkin.weight_coeffs[0] = linear.weight
    galerkin.bias_coeffs[0] = linear.bias
x_test = torch.randn(4, 3, **F64)
gap = max((galerkin(torch.tensor(s, **F64), x_test) - linear(x_test)).abs().max().item() for s in (0.0, 0.3, 0.9))
claim("Galerkin layer with only the constant term vs nn.Linear: max difference", gap, at_most=1e-14, fmt=".1e")
check("a Galerkin layer has K times the parameters of nn.Linear",
      count_parameters(galerkin) == galerkin.n_terms * count_parameters(linear),
      detail=f"nn.Linear {count_parameters(linear)}, Galerkin (K = {galerkin.n_terms}) {count_parameters(galerkin)}")

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### 2c. Stacked Neural ODEs
# Split the depth into intervals $[s_0, s_1), [s_1, s_2), \dots$ and give each its own field: block
# $i$ solves $\dot h = f_i(s, h)$ on its interval, starting where block $i - 1$ stopped. The parameters
# are piecewise constant in depth, like a ResNet with a few groups of shared layers. A stack of
# identical blocks is one block solved over the total depth, which we check with the same fixed
# RK4 grid (so the two computations are the same arithmetic):

# %%
seed_everything(3)
block = ODEFunc(MLP([2, 16, 2])).to(**F64)
stacked_same = StackedODE([block, block, block], t1=1.5, method="rk4", options={"step_size": 1 / 16})
one_block = odeint(block, h_test, torch.tensor([0.0, 1.5], **F64), method="rk4", options={"step_size": 1 / 16})[-1]
gap = (stacked_same(h_test) - one_block).abs().max().item()
claim("three identical blocks on [0, 0.5], [0.5, 1], [1, 1.5] vs one block on [0, 1.5]", gap, at_most=1e-12,
      fmt=".1e")

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### 2d. The three against the floor
# We fit the go-up-and-come-back task with a depth-variant model of each kind:
# - time concatenation: `ODEFunc(MLP([2, 32, 1]), time_dependent=True)`, 129 parameters;
# - Galerkin: a single `GalerkinLinear(1, 1)` in the Fourier basis with two harmonics, 10 parameters;
#   the true field $2\pi\cos(2\pi s)\,h$ lies in its span;
# - stacked: four linear blocks $\dot h = w_i h + b_i$ on the quarters of $[0, 1]$, 8 parameters.
#
# All are solved with the same RK4 grid.

# %%
models = {"depth-invariant MLP": invariant}
seed_everything(0)
models["time concatenation"] = PathAt(ODEFunc(MLP([2, 32, 1]), time_dependent=True)).to(DEVICE)
seed_everything(0)
models["Galerkin (Fourier)"] = PathAt(GalerkinLinear(1, 1, basis="fourier", order=2)).to(DEVICE)
seed_everything(0)
stacked = StackedODE([ODEFunc(nn.Linear(1, 1)) for _ in range(4)], method="rk4",
                     options={"step_size": rk4_step}).to(DEVICE)
models["stacked (4 blocks)"] = PathAt(stacked)

learning_rates = {"time concatenation": 3e-2, "Galerkin (Fourier)": 1e-1, "stacked (4 blocks)": 1e-1}
histories = {"depth-invariant MLP": hist_invariant}
for name, lr in learning_rates.items():
    seed_everything(0)
    histories[name] = train(models[name], nn.functional.mse_loss, (X_path, Y_path), n_iters_depth, lr=lr, desc=name)

print(f"{'model':>22} {'parameters':>11} {'final loss':>11} {'/ floor':>8}")
for name, hist in histories.items():
    print(f"{name:>22} {count_parameters(models[name]):11d} {hist.loss[-1]:11.2e} {hist.loss[-1] / floor_path:8.3f}")
# every depth-variant model beats the floor, the two linear ones by a factor of ten
for name, bar in {"time concatenation": 0.75, "Galerkin (Fourier)": 0.1, "stacked (4 blocks)": 0.1}.items():
    claim(f"{name}: final loss / floor", histories[name].loss[-1] / floor_path, at_most=bar,
          fast_note=f"{n_iters_depth} Adam steps only; full mode: about 0.004" if name == "time concatenation" else None)

# %% [markdown]
# Left: the training losses against the floor. Right: the states of the input $x = 1$ against the
# target path $e^{\sin 2\pi s}$; the depth-invariant model can only rise and stay.

# %%
s_fine = torch.linspace(0.0, 1.0, 65, device=DEVICE)
x_one = torch.ones(1, 1, device=DEVICE)
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4))
for name, hist in histories.items():
    ax1.plot(hist.loss, label=name)
ax1.axhline(floor_path, color="k", ls="--", label="floor of every depth-invariant field")
ax1.set(yscale="log", xlabel="Adam step", ylabel="MSE", title="training loss")
ax1.legend(fontsize=8)
with torch.no_grad():
    ax2.plot(s_fine.cpu(), torch.exp(torch.sin(2 * math.pi * s_fine)).cpu(), color="0.6", lw=5, label="target")
    for name, model in models.items():
        if name.startswith("stacked"):
            path = stacked.trajectory(x_one, s_fine)[:, 0, 0]
        else:
            path = odeint(model.field, x_one, s_fine, method="rk4", options={"step_size": rk4_step})[:, 0, 0]
        ax2.plot(s_fine.cpu(), path.cpu(), label=name)
ax2.scatter(t_obs[1:].cpu(), gain[1:].cpu(), color="k", zorder=4, s=12, label="observed depths")
ax2.set(xlabel="depth s", ylabel="h(s) for x = 1", title="trajectories")
ax2.legend(fontsize=8)
plt.show()

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### What the weights learned
# The Galerkin and the stacked model are linear fields $\dot h = w(s) h + b(s)$, so we can plot their
# weight as a function of depth, as in Fig. 2 of Massaroli et al. The truth is
# $w(s) = 2\pi\cos 2\pi s$, $b = 0$. The Galerkin model's Fourier series can hold the true weight
# exactly: its coefficient of $\cos 2\pi s$ should approach $2\pi \approx 6.28$ and the others 0. The
# stacked model can only be piecewise constant: the averages of $w$ over the quarters, $\pm 4$, would
# take the path exactly through $e^{\pm 1}$ at the ends of the quarters, and its weights land near
# them, with the same signs.

# %%
galerkin_field = models["Galerkin (Fourier)"].field
with torch.no_grad():
    w_galerkin = galerkin_field.weight(s_fine)[:, 0, 0].cpu()
    w_true = 2 * math.pi * torch.cos(2 * math.pi * s_fine).cpu()
    w_stacked = torch.tensor([f.net.weight.item() for f in stacked.funcs])
    cos_coefficient = galerkin_field.weight_coeffs[1, 0, 0].item()    # basis order: 1, cos 2 pi s, cos 4 pi s, sin ...
quarter_means = torch.tensor([4.0, -4.0, -4.0, 4.0])                 # 4 * int over each quarter of w(s)
corr = torch.corrcoef(torch.stack([w_galerkin, w_true]))[0, 1].item()
under_trained = f"{n_iters_depth} Adam steps only: the weight is still on its way to 2 pi cos 2 pi s"
claim("Galerkin: coefficient of cos 2 pi s (truth 2 pi)", cos_coefficient, expected=2 * math.pi,
      tol=coefficient_tol, fast_note=under_trained)
claim("correlation of the Galerkin weight w(s) with 2 pi cos(2 pi s)", corr, at_least=0.8, fast_note=under_trained)
check("the stacked weights have the signs of the quarter averages of w",
      (w_stacked.sign() == quarter_means.sign()).all(),
      detail=f"weights {w_stacked.numpy().round(2)}, averages {quarter_means.numpy()}")

fig, ax = plt.subplots(figsize=(6.5, 3.5))
ax.plot(s_fine.cpu(), w_true, color="0.6", lw=5, label="true $w(s) = 2\\pi\\cos 2\\pi s$")
ax.plot(s_fine.cpu(), w_galerkin, label="Galerkin (Fourier, 2 harmonics)")
ax.step([0.0, 0.25, 0.5, 0.75, 1.0], torch.cat([w_stacked, w_stacked[-1:]]), where="post", label="stacked, 4 blocks")
ax.set(xlabel="depth s", ylabel="weight w(s)", title="depth-variant parameters after training")
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# Time concatenation has to *learn* how depth enters through its input layer; the Galerkin layer has
# it built into its basis, and with the right basis (periodic, here) ten numbers do the job. The
# stacked model cannot follow the path exactly: with a constant weight per quarter, each quarter of its
# path is an exponential, where the target bends.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 3. Data-controlled Neural ODEs
# Depth variance does not help with the reflection $x \mapsto -x$: a 1-D flow, depth-variant or not,
# maps $x_1 < x_2$ to $h_1(S) < h_2(S)$ because two trajectories at the same depth cannot cross
# (notebooks 01 and 07). So the best any such model can do is the best *increasing* fit of a
# decreasing target, and the isotonic regression of a decreasing sequence is its mean: the plain model's
# loss floor is the variance of the targets.
#
# Massaroli et al. (Sec. 5) let the input steer the field at every depth:
# $$\dot h = f(s, h, x), \qquad h(0) = x .$$
# Each input now has *its own* vector field, and trajectories of different inputs may cross.

# %% [markdown] slideshow={"slide_type": "notes"}
# Speaker notes (20 min). Depth variance and data control fix different limitations: depth variance lets a
# trajectory go up and come back, but two trajectories still cannot cross at the same depth, so no 1-D
# depth-variant flow reflects; data control gives each input its own field, so they can. A linear
# controlled field $\dot h = ah + bx$ reflects exactly for a whole family of $(a, b)$, and zero control
# weights give the uncontrolled field. Common mistakes: believing time concatenation lets a 1-D model
# reflect; concatenating `[x, h]` instead of `[h, x]`; returning `x` instead of zeros as its derivative,
# or $f$ alone instead of the tuple. With `odeint_adjoint`, an output part that does not depend on the
# state (`torch.zeros_like(x)`) currently makes the reverse solve fail with "element i of tensors does not
# require grad": write `0 * x` (the package's models do). Ask the room, before the plot: will the
# controlled model's trajectories cross?

# %%
X_ref, Y_ref = reflection_1d(n_samples, seed=0, dtype=torch.float32, device=DEVICE)
floor_reflection = (Y_ref - Y_ref.mean()).pow(2).mean().item()
print(f"reflection data: {tuple(X_ref.shape)} -> {tuple(Y_ref.shape)}; floor of every plain 1-D model: "
      f"{floor_reflection:.4f}")

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### A linear data-controlled field that reflects exactly
# Take the simplest controlled field, linear in both: $\dot h = a\,h + b\,x$, $h(0) = x$. Its solution
# at $S = 1$ is
# $$h(1) = e^{a}x + \frac{b}{a}\,(e^{a} - 1)\,x ,$$
# so $h(1) = -x$ for *every* $x$ once $b = -a\,\frac{1 + e^a}{e^a - 1}$ (and $b = -2$ at $a = 0$). A
# whole family of controlled fields represents the reflection; we check three with the solver.

# %%
x_line = torch.linspace(-1.0, 1.0, 9, **F64)[:, None]
for a in (-1.0, 0.5, 2.0):
    b = -a * (1 + math.exp(a)) / (math.exp(a) - 1)
    end = odeint(lambda s, h: a * h + b * x_line, x_line, torch.tensor([0.0, 1.0], **F64), rtol=1e-10, atol=1e-12)[-1]
    claim(f"a = {a:4.1f}, b = {b:7.4f}: max |h(1) + x|", (end + x_line).abs().max(), at_most=1e-8, fmt=".1e")

# %% [markdown]
# `DataControlledField(state_size, input_size, hidden_size)` is $f(s, h, x) = \mathrm{MLP}([h, x])$, solved on
# the tuple state $(h, x)$ with $\dot x = 0$, so the solver and the adjoint carry the input along.
# Its defining property: with the first layer's weights on $x$ (`control_weight`) at zero, it is the
# uncontrolled field with the remaining weights.

# %%
seed_everything(4)
field_ctrl = DataControlledField(2, 3, hidden_size=16).to(**F64)
with torch.no_grad():
    field_ctrl.control_weight.zero_()
uncontrolled = MLP([2, 16, 2]).to(**F64)
with torch.no_grad():
    uncontrolled[0].weight.copy_(field_ctrl.net[0].weight[:, :2])
    uncontrolled[0].bias.copy_(field_ctrl.net[0].bias)
    uncontrolled[2].load_state_dict(field_ctrl.net[2].state_dict())
h_test, x_test = torch.randn(6, 2, **F64), torch.randn(6, 3, **F64)
f_h, f_x = field_ctrl(torch.tensor(0.0, **F64), (h_test, x_test))
claim("zero control weights vs the uncontrolled MLP: max difference", (f_h - uncontrolled(h_test)).abs().max(),
      at_most=1e-14, fmt=".1e")
check("the input is carried along unchanged: dx/ds = 0", (f_x == 0).all())

# %% [markdown]
# Now we train a plain 1-D Neural ODE and a data-controlled one on the reflection, both with
# $h(0) = x$, output $h(1)$, no layers around the ODE, and a hidden layer of 16 units.

# %%
seed_everything(0)
plain_node = ODEBlock(ODEFunc(MLP([1, 16, 1])), t1=1.0, method="rk4", options={"step_size": rk4_step}).to(DEVICE)
hist_plain = train(plain_node, nn.functional.mse_loss, (X_ref, Y_ref), n_iters_control, lr=3e-2, desc="plain")
seed_everything(0)
controlled = DataControlledODE(DataControlledField(1, 1, hidden_size=16), t1=1.0, method="rk4",
                               step_size=rk4_step).to(DEVICE)
hist_ctrl = train(controlled, nn.functional.mse_loss, (X_ref, Y_ref), n_iters_control, lr=3e-2, desc="controlled")

print(f"plain Neural ODE:         loss {hist_plain.loss[0]:.4f} -> {hist_plain.loss[-1]:.5f} (floor {floor_reflection:.4f})")
print(f"data-controlled Neural ODE: loss {hist_ctrl.loss[0]:.4f} -> {hist_ctrl.loss[-1]:.5f}")
claim("plain: final loss / floor", hist_plain.loss[-1] / floor_reflection, at_least=0.98)
claim("data-controlled: final loss / floor", hist_ctrl.loss[-1] / floor_reflection, at_most=0.01, fmt=".1e")

# %% [markdown]
# The depth trajectories of the inputs $x = \pm 1, \pm 0.5$ over their vector fields, as in Fig. 3 of
# Massaroli et al. The plain model has one field for everyone and squeezes all inputs towards 0. The
# controlled model draws a different field for each input (arrows: the fields for $x = 1$ and $x = -1$)
# and the trajectories cross.

# %%
x_show = torch.tensor([[1.0], [0.5], [-0.5], [-1.0]], device=DEVICE)
s_grid = torch.linspace(0.0, 1.0, 41, device=DEVICE)
S_q, H_q = torch.meshgrid(torch.linspace(0, 1, 15, device=DEVICE), torch.linspace(-1.3, 1.3, 15, device=DEVICE),
                          indexing="ij")
offset = {1.0: -1 / 56, -1.0: 1 / 56}   # the two fields of the controlled model side by side, not on top
fig, axes = plt.subplots(1, 2, figsize=(12, 4), sharey=True)
with torch.no_grad():
    paths_plain = plain_node.trajectory(x_show, s_grid)[:, :, 0]
    paths_ctrl = controlled.trajectory(x_show, s_grid)[:, :, 0]
    v = plain_node.func(0.0, H_q.reshape(-1, 1)).reshape(H_q.shape)
    axes[0].quiver(S_q.cpu(), H_q.cpu(), torch.ones_like(v).cpu(), v.cpu(), color="0.6", angles="xy")
    for x_val, color in ((1.0, "C0"), (-1.0, "C3")):
        v = controlled.field.vector(0.0, H_q.reshape(-1, 1), torch.full_like(H_q.reshape(-1, 1), x_val))
        axes[1].quiver((S_q + offset[x_val]).cpu(), H_q.cpu(), torch.ones_like(H_q).cpu(), v.reshape(H_q.shape).cpu(),
                       color=color, alpha=0.45, angles="xy")
for ax, paths, title in ((axes[0], paths_plain, "plain: one field, no crossing"),
                         (axes[1], paths_ctrl, "data-controlled: a field per input")):
    for i, color in enumerate(("C0", "C1", "C2", "C3")):
        ax.plot(s_grid.cpu(), paths[:, i].cpu(), color=color, lw=2.5, label=f"x = {x_show[i, 0].item():+.1f}")
        ax.scatter([1.0], [-x_show[i, 0].item()], marker="x", color=color, s=60, zorder=4)
    ax.set(xlabel="depth s", title=title)
axes[0].set_ylabel("h(s)")
axes[1].legend(fontsize=8, loc="lower left")
plt.show()

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 4. Adaptive depth: a learned integration time per input
# Instead of changing the field, give every input its own depth: $h(0) = x$,
# $\dot h = f(s, h)$ until $s = T(x)$, with $T(x) = \mathrm{softplus}(g(x)) > 0$ and $g$ a small
# network (Massaroli et al., Sec. 5). To solve a whole batch at once we **rescale depth**: with
# $s = T\sigma$ and $\tilde h(\sigma) = h(T\sigma)$, the chain rule gives
# $$\frac{d\tilde h}{d\sigma} = T\, f(T\sigma, \tilde h), \qquad \sigma \in [0, 1],$$
# and $\tilde h(1) = h(T)$: every sample runs on the same unit interval with its own speed $T$.
# `AdaptiveDepthODE(func, depth_net)` does this with the tuple state $(h, T)$, $\dot T = 0$. We check
# it against solving each sample separately to its own depth, and check the derivative with respect
# to the depth, $\partial h(T)/\partial T = f(T, h(T))$, that training uses.

# %% [markdown] slideshow={"slide_type": "notes"}
# Speaker notes (20 min). Time rescaling is the whole implementation: one batched solve on $[0, 1]$ of
# $T f(T\sigma, \tilde h)$, and the gradient with respect to $T$ comes for free from autograd (checked:
# $\partial h(T)/\partial T = f(T, h(T))$). Be honest about the paper: its Fig. 5 shows adaptive depth
# learning the reflection, which with an autonomous 1-D field is impossible (proved floor); what adaptive
# depth adds is where along its orbit each input stops (overtaking: $x \mapsto 3 - x$), and with a
# depth-variant field the reflection becomes possible, the explicit $f = 4(s - 1)$, $T = 1 + \sqrt{1 - x}$
# showing the mechanism (all paths merge, then leave at different depths). Common mistakes: forgetting the
# factor $T$, or calling the field at $\sigma$ instead of $T\sigma$ (visible only for depth-variant
# fields, which the checker includes). Ask: can an autonomous adaptive-depth model learn
# $x \mapsto x + 1$? And $x \mapsto 1 - x$?

# %%
seed_everything(5)
func_td = ODEFunc(MLP([2, 16, 1]), time_dependent=True).to(**F64)
adaptive = AdaptiveDepthODE(func_td, MLP([1, 8, 1]), method="dopri5", rtol=1e-10, atol=1e-12).to(**F64)
x_few = torch.tensor([[-0.8], [0.1], [0.9]], **F64)
T_few = adaptive.depth(x_few)
one_by_one = torch.stack([odeint(func_td, x_few[i], torch.stack([torch.zeros((), **F64), T_few[i, 0]]),
                                 rtol=1e-10, atol=1e-12)[-1] for i in range(3)])
print(f"depths T(x) = {T_few[:, 0].detach().numpy().round(3)}")
claim("rescaled batch vs one solve per sample: max difference", (adaptive(x_few) - one_by_one).abs().max(),
      at_most=1e-8, fmt=".1e")

T_var = torch.tensor(0.7, **F64, requires_grad=True)
h_T = odeint(func_td, x_few, torch.stack([torch.zeros((), **F64), T_var]), rtol=1e-10, atol=1e-12)[-1]
(dh_dT,) = torch.autograd.grad(h_T.sum(), T_var)
print(f"d h(T)/dT by autograd: {dh_dT.item():.8f};  sum of f(T, h(T)): {func_td(T_var, h_T).sum().item():.8f}")
claim("|d h(T)/dT - f(T, h(T))|", abs(dh_dT.item() - func_td(T_var, h_T).sum().item()), at_most=1e-6, fmt=".1e")


# %% [markdown] slideshow={"slide_type": "subslide"}
# ### What adaptive depth can do in one dimension
# With an **autonomous** field, a learned depth lets $x$ stop anywhere on its forward orbit
# $\{\varphi_s(x) : s \ge 0\}$, and nowhere else. That is more than a fixed depth gives: two inputs
# moving the same way can overtake each other, because they pass the same point at different depths.
# But for the reflection on $[-1, 1]$, every $x > 0$ must travel down through $0$ and every $x < 0$ up
# through $0$: $f(0) < 0$ and $f(0) > 0$ at once. Precisely: if $f(0) \ge 0$, no trajectory from
# $x > 0$ can reach $h < 0$ (at its first visit to $0$ it would have to move down), so each positive
# input keeps an error of at least $x^2$; if $f(0) \le 0$ the same holds for the negative inputs.
# Hence, for every autonomous field and every depth function,
# $$\text{loss} \;\ge\; \min\Big(\tfrac1N\textstyle\sum_{x_i > 0} x_i^2,\ \tfrac1N\sum_{x_i < 0} x_i^2\Big).$$
#
# With a **depth-variant** field this obstruction disappears, because trajectories may now pass the
# same point in opposite directions at different depths. An explicit solution: $f(s, h) = 4(s - 1)$
# gives $h(s) = x + 2(s - 1)^2 - 2$, and $T(x) = 1 + \sqrt{1 - x}$ makes $h(T) = -x$ for all
# $x \in [-1, 1]$. Fig. 5 of Massaroli et al. shows an adaptive-depth model learning the reflection;
# the argument above says that its field must depend on depth (or on the data) for that to work.

# %%
class ExactDepth(nn.Module):
    """g(x) with softplus(g(x)) = 1 + sqrt(1 - x): the inverse softplus of the exact depth."""

    def forward(self, x):
        T = 1 + torch.sqrt(1 - x)
        return T + torch.log(-torch.expm1(-T))


translation = lambda s, h: 4 * (s.reshape(-1, 1) - 1) * torch.ones_like(h)  # noqa: E731  (s is [batch])


class Translation(nn.Module):
    def forward(self, s, h):
        return translation(s, h)


exact = AdaptiveDepthODE(Translation(), ExactDepth(), method="dopri5", rtol=1e-10, atol=1e-12)
claim("f(s, h) = 4 (s - 1), T(x) = 1 + sqrt(1 - x): max |h(T(x)) + x|", (exact(x_line) + x_line).abs().max(),
      at_most=1e-8, fmt=".1e")

floor_adaptive = min((X_ref.pow(2) * (X_ref > 0)).mean().item(), (X_ref.pow(2) * (X_ref < 0)).mean().item())
print(f"floor of every autonomous adaptive-depth model on the reflection data: {floor_adaptive:.4f}")


# %% [markdown]
# First the positive half of the statement. The map $x \mapsto 3 - x$ on $[-1, 1]$ reverses the order,
# so no fixed-depth 1-D flow represents it (its loss floor is the variance of the targets, as in
# section 3). But every input moves *up*, since $3 - x > x$: with $f = 1$ and $T(x) = 3 - 2x$ each
# input travels for its own time and overtakes the others. We train an autonomous adaptive-depth model,
# field $\mathrm{MLP}([1, 16, 1])$ and depth network $g = \mathrm{MLP}([1, 16, 1])$, with RK4 taking 20
# steps of $\sigma$.

# %%
def adaptive_model(func):
    return AdaptiveDepthODE(func, MLP([1, 16, 1]), method="rk4", step_size=0.05).to(DEVICE)


Y_shift = 3 - X_ref
floor_shift = (Y_shift - Y_shift.mean()).pow(2).mean().item()
seed_everything(0)
adaptive_shift = adaptive_model(ODEFunc(MLP([1, 16, 1])))
hist_shift = train(adaptive_shift, nn.functional.mse_loss, (X_ref, Y_shift), n_iters_control, lr=3e-2,
                   desc="adaptive, x -> 3 - x")
print(f"x -> 3 - x: autonomous adaptive depth, loss -> {hist_shift.loss[-1]:.5f} "
      f"(floor of every fixed-depth 1-D flow: {floor_shift:.4f})")
claim("x -> 3 - x: final loss / that floor", hist_shift.loss[-1] / floor_shift, at_most=0.05, fmt=".2g")

# %% [markdown]
# Now the reflection, with the same depth network and two fields: the autonomous
# $\mathrm{MLP}([1, 16, 1])$, and the time-concatenated $\mathrm{MLP}([2, 16, 1])$.

# %%
seed_everything(0)
adaptive_auto = adaptive_model(ODEFunc(MLP([1, 16, 1])))
hist_auto = train(adaptive_auto, nn.functional.mse_loss, (X_ref, Y_ref), n_iters_control, lr=3e-2,
                  desc="adaptive, autonomous")
seed_everything(0)
adaptive_time = adaptive_model(ODEFunc(MLP([2, 16, 1]), time_dependent=True))
hist_time = train(adaptive_time, nn.functional.mse_loss, (X_ref, Y_ref), n_iters_control, lr=3e-2,
                  desc="adaptive, depth-variant")
print(f"adaptive depth, autonomous field:     loss -> {hist_auto.loss[-1]:.5f} (floor {floor_adaptive:.4f})")
print(f"adaptive depth, depth-variant field:  loss -> {hist_time.loss[-1]:.5f}")
claim("autonomous field: final loss / its proved floor", hist_auto.loss[-1] / floor_adaptive, at_least=0.95)
claim("depth-variant field: final loss / that floor", hist_time.loss[-1] / floor_adaptive, at_most=0.02, fmt=".2g")

# %% [markdown]
# The depths run up to several units while RK4 takes 20 steps of $\sigma$, so an effective step can
# exceed $0.2$. Is the learned map a property of the ODE or of the solver? We solve the trained model
# again with `dopri5` at a tight tolerance.

# %%
with torch.no_grad():
    T_learned = adaptive_time.depth(X_ref)
    accurate = AdaptiveDepthODE(adaptive_time.func, adaptive_time.depth_net, method="dopri5", rtol=1e-7, atol=1e-9)
    loss_accurate = nn.functional.mse_loss(accurate(X_ref), Y_ref).item()
print(f"learned depths in [{T_learned.min().item():.2f}, {T_learned.max().item():.2f}]; "
      f"loss with dopri5 (rtol 1e-7): {loss_accurate:.5f}")
claim("loss with dopri5 / the autonomous floor: the map belongs to the ODE", loss_accurate / floor_adaptive,
      at_most=0.05, fmt=".2g")

# %% [markdown]
# The trajectories in depth, each stopped at its own $T(x)$ (crosses: the targets).

# %%
fig, axes = plt.subplots(1, 3, figsize=(15, 4))
with torch.no_grad():
    for ax, model, target, title in (
            (axes[0], adaptive_shift, lambda x: 3 - x, "autonomous, x -> 3 - x: overtaking"),
            (axes[1], adaptive_auto, lambda x: -x, "autonomous, x -> -x: stuck"),
            (axes[2], adaptive_time, lambda x: -x, "depth-variant, x -> -x")):
        hs, depths = model.trajectory(x_show, steps=60)
        for i, color in enumerate(("C0", "C1", "C2", "C3")):
            ax.plot(depths[:, i].cpu(), hs[:, i, 0].cpu(), color=color, lw=2.5, label=f"x = {x_show[i, 0].item():+.1f}")
            ax.scatter(depths[-1, i].cpu(), [target(x_show[i, 0].item())], marker="x", color=color, s=60, zorder=4)
        ax.set(xlabel="depth s", title=title)
axes[0].set_ylabel("h(s)")
axes[2].legend(fontsize=8)
plt.show()

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 5. Integral losses and the generalised adjoint
# So far the loss looked at the end state, or at a few depths. Massaroli et al. (Sec. 3) train with
# a loss spread over the whole depth,
# $$J = \int_0^S \ell\big(s, h(s), \theta\big)\, ds ,$$
# and derive its **generalised adjoint**: with $a(s) = \partial J/\partial h(s)$,
# $$\dot a = -a\,\frac{\partial f}{\partial h} - \frac{\partial \ell}{\partial h}, \qquad a(S) = 0,
# \qquad \frac{dJ}{d\theta} = \int_0^S \Big(a\,\frac{\partial f}{\partial \theta} + \frac{\partial \ell}{\partial \theta}\Big) ds .$$
# There is nothing new to implement. Augment the state with the running integral,
# $$\frac{d}{ds}\begin{pmatrix} h \\ L \end{pmatrix} = \begin{pmatrix} f(s, h, \theta) \\ \ell(s, h, \theta) \end{pmatrix},
# \qquad L(0) = 0, \qquad J = L(S),$$
# and apply the ordinary adjoint of notebook 04 to $(h, L)$. The adjoint of $L$ obeys
# $\dot a_L = -a_L \,\partial \ell/\partial L = 0$, so it stays at $a_L = \partial J / \partial L(S) = 1$;
# the adjoint of $h$ obeys $\dot a_h = -a_h\,\partial f/\partial h - a_L\,\partial\ell/\partial h$, and
# the parameter integral is $\int (a_h\,\partial f/\partial\theta + a_L\,\partial \ell/\partial\theta)\,ds$:
# exactly the generalised adjoint. `nodecourse.odeint_adjoint` accepts the tuple state $(h, L)$.
#
# The task, after the first figure of the paper: a reference periodic orbit $\beta(s)$, here the
# figure-eight $\beta(s) = (\sin s,\ \sin s\cos s)$ of period $2\pi$, which every trajectory should
# join. A field that steers every initial state onto $\beta(s)$ at depth $s$ must depend on depth, and
# periodically so: a **Galerkin** field in the Fourier basis with period $2\pi$.

# %% [markdown] slideshow={"slide_type": "notes"}
# Speaker notes (20 min). The generalised adjoint is the ordinary adjoint of $(h, L)$ with
# $\dot L = \ell$: no new adjoint code, and the gradient matches backprop to 4.5e-9. This section joins
# notebook 04 (a contracting field makes the reverse reconstruction ill-conditioned, hence 13 checkpoints)
# and notebook 11 (without the kinetic-energy term the tracking loss has no minimiser); the periodic basis
# keeps tracking for three periods after training on one. Common mistakes: returning the running integral
# $L$ instead of the cost $\ell$ as $dL/ds$, and summing the cost over the batch (the state needs one
# value per sample). Ask the room what training does as $\lambda \to 0$.

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### The running cost needs a price on speed
# Take $\ell = \|h - \beta(s)\|^2$ alone and picture a field that pulls the state towards the orbit at
# rate $k$: the distance decays like $d_0 e^{-ks}$ and the transient costs
# $\int_0^\infty d_0^2 e^{-2ks} ds = d_0^2 / 2k$. That keeps falling as $k$ grows, so the loss has no
# minimiser: training makes the field ever faster and stiffer until the solver fails. The remedy is the
# kinetic energy of Finlay et al. (2020), $\ell = \|h - \beta(s)\|^2 + \lambda \|f(s, h)\|^2$. For the
# same picture the cost becomes $d_0^2 (1 + \lambda k^2)/2k$, minimal at $k = 1/\sqrt\lambda$. This
# running cost depends on $\theta$ through $f$: the $\partial\ell/\partial\theta$ term of the
# generalised adjoint is not zero, and the augmented state handles it without further work.

# %%
PERIOD = 2 * math.pi
kinetic_weight = 0.03                                                 # lambda
rates = torch.linspace(0.5, 30.0, 2000, **F64)
transient = (1 + kinetic_weight * rates**2) / (2 * rates)            # cost per d_0^2
best_rate = rates[transient.argmin()].item()
check("without the penalty, d^2/2k falls on the whole grid of rates", ((1 / (2 * rates)).diff() < 0).all())
claim(f"with lambda = {kinetic_weight}: best rate", best_rate, expected=kinetic_weight ** -0.5, tol=0.05)


def orbit(s):
    """The reference figure-eight beta(s) = (sin s, sin s cos s): [*s.shape, 2]."""
    return torch.stack([torch.sin(s), torch.sin(s) * torch.cos(s)], dim=-1)


class WithRunningCost(nn.Module):
    """The field of the augmented state (h, L): (f, |h - beta(s)|^2 + lambda |f|^2), h [B, 2], L [B]."""

    def __init__(self, field):
        super().__init__()
        self.field = field

    def forward(self, s, state):
        h, _ = state
        velocity = self.field(s, h)
        return velocity, (h - orbit(s)).pow(2).sum(-1) + kinetic_weight * velocity.pow(2).sum(-1)


# %% [markdown]
# First, the gradient: `odeint_adjoint` on $(h, L)$ against backpropagation through the solver, in
# float64 with `dopri5` at a tight tolerance, for a Galerkin field with random depth dependence.

# %%
seed_everything(6)
field64 = GalerkinMLP([2, 16, 2], basis="fourier", order=2, period=PERIOD).to(**F64)
with torch.no_grad():                                  # some depth variation to make the check non-trivial
    for layer in field64.layers:
        layer.weight_coeffs[1:].normal_(0, 0.3)
h0_check = torch.randn(8, 2, **F64)
span = torch.tensor([0.0, PERIOD], **F64)
tight = dict(rtol=1e-10, atol=1e-12)
augmented64 = WithRunningCost(field64)

J_adj = odeint_adjoint(augmented64, (h0_check, torch.zeros(8, **F64)), span, **tight)[1][-1].sum()
grads_adj = torch.autograd.grad(J_adj, tuple(field64.parameters()))
J_bp = odeint(augmented64, (h0_check, torch.zeros(8, **F64)), span, **tight)[1][-1].sum()
grads_bp = torch.autograd.grad(J_bp, tuple(field64.parameters()))
rel = max(((ga - gb).norm() / gb.norm()).item() for ga, gb in zip(grads_adj, grads_bp))
print(f"J = {J_adj.item():.6f}")
claim("largest relative gradient difference, adjoint vs backprop", rel, at_most=1e-6, fmt=".1e")

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### Training, with checkpoints
# A field that pulls every state onto an orbit is **contracting**, and the adjoint recomputes $h(s)$
# by solving backwards in depth, where contraction turns into expansion: notebook 04 (section 8)
# showed that errors then grow like $e^{k\,\Delta s}$ over a reverse interval of length $\Delta s$.
# With a rate near $1/\sqrt\lambda \approx 6$ and $\Delta s = 2\pi$ the factor could reach $e^{36}$. So we give
# `odeint_adjoint` 13 output times: it stores the state at each and restarts every reverse solve from
# the stored value, so no reverse interval is longer than $2\pi/12$.
#
# We train a `GalerkinMLP([2, 16, 2])` (Fourier, two harmonics, period $2\pi$) on one period from 64
# initial states in $[-2, 2]^2$, minimising $J/S$ with the adjoint. RK4 takes steps of $2\pi/48$, fine
# enough for the fast pull at the start, where the trained field contracts at rates up to about 8. The
# baseline is the field $f = 0$ (every state stays where it starts).

# %%
seed_everything(0)
orbit_field = GalerkinMLP([2, 16, 2], basis="fourier", order=2, period=PERIOD).to(DEVICE)
augmented = WithRunningCost(orbit_field)
H0 = 4 * torch.rand(n_samples, 2, device=DEVICE) - 2
checkpoints = torch.linspace(0.0, PERIOD, 13, device=DEVICE)
rk4_orbit = dict(method="rk4", options={"step_size": PERIOD / 48})

s_dense = torch.linspace(0.0, PERIOD, 1001, device=DEVICE)
baseline = (H0[None] - orbit(s_dense)[:, None]).pow(2).sum(-1).mean().item()   # J/S of f = 0 (depth average)
optimizer = torch.optim.Adam(orbit_field.parameters(), lr=1e-2)
orbit_losses = []
for it in range(n_iters_orbit):
    optimizer.zero_grad()
    _, L = odeint_adjoint(augmented, (H0, torch.zeros(n_samples, device=DEVICE)), checkpoints, **rk4_orbit)
    loss = L[-1].mean() / PERIOD
    loss.backward()
    optimizer.step()
    orbit_losses.append(loss.item())
print(f"J/S: zero field {baseline:.3f};  trained {orbit_losses[0]:.3f} -> {orbit_losses[-1]:.4f}")
claim("trained J/S / that of the zero field", orbit_losses[-1] / baseline, at_most=0.1,
      fast_note=f"{n_iters_orbit} Adam steps only (full mode: about 0.03)")

# %% [markdown]
# Here is what the checkpoints protect against. We solve the trained field forwards over one period,
# then backwards from the end state, once over the whole period and once interval by interval from the
# stored checkpoint states (what `odeint_adjoint` does), and compare the recomputed states with the
# forward ones.

# %%
with torch.no_grad():
    forward_states = odeint(orbit_field, H0, checkpoints, **rk4_orbit)            # [13, 64, 2]
    whole = odeint(orbit_field, forward_states[-1], checkpoints.flip(0), **rk4_orbit).flip(0)
    pieces = torch.stack([forward_states[0]] + [
        odeint(orbit_field, forward_states[i], checkpoints[i - 1:i + 1].flip(0), **rk4_orbit)[-1]
        for i in range(len(checkpoints) - 1, 0, -1)][::-1])
    error_whole = (whole[0] - H0).norm(dim=-1).nan_to_num(nan=math.inf)                 # [64]
    error_pieces = (pieces[1:] - forward_states[:-1]).norm(dim=-1)                        # [12, 64]
print(f"h(0) recomputed from h(2 pi) in one reverse solve: median error {error_whole.median().item():.1e}, "
      f"largest {error_whole.max().item():.1e}")
print(f"each state recomputed over its checkpoint interval: median error {error_pieces.median().item():.1e}, "
      f"largest {error_pieces.max().item():.1e}")
claim("median error over one checkpoint interval", error_pieces.median(), at_most=1e-3, fmt=".1e")
claim("median error of one reverse solve / of the checkpointed ones", error_whole.median() / error_pieces.median(),
      at_least=100)

# %% [markdown]
# Does the field track the orbit beyond what it was trained on? New initial states, solved for
# **three** periods: the Fourier weights repeat every $2\pi$, so the field keeps steering. We measure
# the mean distance to $\beta(s)$ over the third period.

# %%
g = torch.Generator().manual_seed(1)
H_new = (4 * torch.rand(32, 2, generator=g) - 2).to(DEVICE)
s_long = torch.linspace(0.0, 3 * PERIOD, 301, device=DEVICE)
with torch.no_grad():
    paths = odeint(orbit_field, H_new, s_long, **rk4_orbit)
    distance = (paths - orbit(s_long)[:, None]).norm(dim=-1)           # [301, 32]
start_distance = distance[0].mean().item()
late_distance = distance[s_long >= 2 * PERIOD].mean().item()
print(f"mean distance to the orbit: at s = 0 {start_distance:.3f}, over the third period {late_distance:.3f}")
claim("mean distance over the third period / at s = 0", late_distance / start_distance, at_most=0.25)

# %%
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
with torch.no_grad():
    ref = orbit(s_long[:101]).cpu()
ax1.plot(paths[:, :, 0].cpu(), paths[:, :, 1].cpu(), color="C0", alpha=0.5, lw=1)
ax1.scatter(H_new[:, 0].cpu(), H_new[:, 1].cpu(), color="C0", s=10, label="initial states")
ax1.plot(ref[:, 0], ref[:, 1], color="k", lw=2.5, label="reference orbit")
ax1.set(xlabel="$h_1$", ylabel="$h_2$", title="Galerkin Neural ODE, trained with an integral loss", aspect="equal")
ax1.legend(fontsize=8, loc="upper left")
ax2.plot(s_long.cpu(), distance.cpu(), color="C0", alpha=0.3, lw=1)
ax2.plot(s_long.cpu(), distance.mean(1).cpu(), color="k", lw=2, label="mean")
ax2.axvline(PERIOD, color="0.5", ls="--", label="end of the training depth")
ax2.set(yscale="log", xlabel="depth s", ylabel=r"$\|h(s) - \beta(s)\|$", title="distance to the orbit")
ax2.legend(fontsize=8)
plt.show()

# %% [markdown]
# The trajectories settle close to the orbit, though not exactly on it: the kinetic term charges for
# speed, and following $\beta$ itself takes speed, so the optimum trades a little tracking error for a
# slower field. Lowering $\lambda$ raises the best pull rate $1/\sqrt\lambda$ computed above: closer
# tracking, a stiffer field, and smaller solver steps to match.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Recap
# - A 1-D autonomous field moves each state monotonically in depth; isotonic regression turns that
#   into a loss floor, and a trained depth-invariant model sits on it.
# - Depth variance three ways: time concatenation (depth as an input), Galerkin layers (each weight a
#   truncated Fourier or Legendre series in depth, $K$ coefficients per weight; constant term only =
#   a plain layer) and stacked blocks (piecewise-constant weights; identical blocks = one block). All
#   three beat the floor; the Galerkin layer's weight approaches the generating $2\pi\cos 2\pi s$.
# - Data control, $\dot h = f(s, h, x)$, gives each input its own field: the reflection that no plain
#   1-D flow can represent is learned (even a linear controlled field represents it exactly).
# - Adaptive depth, $T(x) = \mathrm{softplus}(g(x))$, trains by rescaling depth,
#   $\dot{\tilde h} = T f(T\sigma, \tilde h)$ on $[0, 1]$. With an autonomous 1-D field each input
#   reaches only its forward orbit: it learns the order-reversing $x \mapsto 3 - x$ (everyone moves up)
#   but not the reflection (proved floor); with a depth-variant field it learns the reflection, checked
#   with an accurate solver.
# - An integral loss $\int_0^S \ell\, ds$ is one more state component $\dot L = \ell$; the ordinary
#   adjoint of $(h, L)$ is the generalised adjoint. Tracking needs a price on speed (kinetic energy)
#   and, since the trained field contracts, checkpoints for the reverse solve. A Fourier Galerkin
#   field trained this way drives new initial states onto a periodic orbit, beyond the depth it was
#   trained on.
#
# ## Further reading
# - S. Massaroli, M. Poli, J. Park, A. Yamashita, H. Asama. *Dissecting Neural ODEs*. NeurIPS 2020.
#   arXiv:2002.08071. (Galerkin and stacked Neural ODEs, the generalised adjoint, data control,
#   adaptive depth.)
# - E. Dupont, A. Doucet, Y. W. Teh. *Augmented Neural ODEs*. NeurIPS 2019. arXiv:1904.01681. (What
#   a flow cannot represent; notebook 07.)
# - W. Grathwohl, R. T. Q. Chen, J. Bettencourt, I. Sutskever, D. Duvenaud. *FFJORD: Free-form
#   Continuous Dynamics for Scalable Reversible Generative Models*. ICLR 2019. arXiv:1810.01367.
#   (Time concatenated to every layer; data-controlled flows return in notebook 10.)
# - C. Finlay, J.-H. Jacobsen, L. Nurbekyan, A. M. Oberman. *How to train your neural ODE: the world
#   of Jacobian and kinetic regularization*. ICML 2020. arXiv:2002.02798. (The kinetic-energy penalty
#   of section 5; notebook 11.)
# - R. T. Q. Chen, Y. Rubanova, J. Bettencourt, D. Duvenaud. *Neural Ordinary Differential
#   Equations*. NeurIPS 2018. arXiv:1806.07366.
# - T. Zhang, Z. Yao, A. Gholami, K. Keutzer, J. Gonzalez, G. Biros, M. Mahoney. *ANODEV2: A Coupled
#   Neural ODE Evolution Framework*. NeurIPS 2019. arXiv:1906.04596. (Weights that evolve in depth.)
# - R. E. Barlow, D. J. Bartholomew, J. M. Bremner, H. D. Brunk. *Statistical Inference under Order
#   Restrictions*. Wiley, 1972. (Isotonic regression and the pool-adjacent-violators algorithm.)
