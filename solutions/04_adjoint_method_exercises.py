# %% [markdown] slideshow={"slide_type": "skip"}
# Colab links appear here once the course's home repository is set (`make home`, see CONTRIBUTING.md).

# %% [markdown] slideshow={"slide_type": "slide"}
# # 04 · The adjoint method: exercises (solutions)
#
# Five exercises that rebuild the adjoint method of lecture 04 piece by piece: the adjoint of a
# linear ODE in closed form, the augmented dynamics by vector-Jacobian products, the exact memory price
# of the checkpoints that repair the reverse solve (and a prediction of what backpropagation keeps), and
# a complete adjoint gradient by one reverse solve, which you then train with.
# Exercises 1, 3 and 5 ask you to implement a function, exercise 2 to find and repair a bug, exercise 4
# to predict a measurement before you see it. The checker after each runs your answer on labelled cases
# and prints what passed and what failed. Hints come in stages (the first failure names the property,
# later ones nudge more specifically); the answer appears only when you ask, with `ex04.show_answer(n)`.
# The notebook goes on with your function once it passes and with the reference until then, and the
# cells after it say whose function they ran.
#
# **Learning objectives**
# - compute $\partial L / \partial h(t_0)$ for a linear ODE from the adjoint equation in closed form;
# - write the augmented vector field $(f, -a\,\partial f/\partial h, -a\,\partial f/\partial\theta)$ with one
#   `torch.autograd.grad` call;
# - predict in closed form the bytes the adjoint keeps for backward with $n$ checkpoints, and check the
#   prediction with the lecture's meter built on `saved_tensors_hooks`;
# - compute the gradient of an ODE solve by the adjoint method and train a vector field with it.
#
# **Estimated time:** 60 minutes

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
from torch import nn

from nodecourse import odeint, odeint_adjoint
from nodecourse.benchmarking import saved_tensor_bytes as saved_bytes  # the lecture's meter (section 1)
from nodecourse.config import FAST, device, seed_everything
from nodecourse.exercises import ex04
from nodecourse.exercises.checking import who
from nodecourse.models import MLP, ODEFunc

seed_everything(0)
DEVICE = device()
print(f"device: {DEVICE}, fast mode: {FAST}")

# %% [markdown]
# Gradient checks need float64, which Apple's MPS backend lacks: there the float64 cells use the CPU.

# %%
DEV64 = DEVICE if DEVICE.type != "mps" else torch.device("cpu")
F64 = dict(dtype=torch.float64, device=DEV64)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Hyperparameters
# The only cell the test suite changes: fast mode shrinks the loops, nothing else.

# %%
memory_steps = [10, 100] if FAST else [10, 100, 1000]  # rk4 steps for the memory comparisons
checkpoint_counts = [0, 10, 100]                       # checkpoints for the adjoint's memory (Exercise 3)
n_iters = 15 if FAST else 150                          # training iterations after Exercise 5


# %% [markdown] slideshow={"slide_type": "slide"}
# ## Exercise 1: the adjoint of a linear ODE
#
# For $\dot h = A h$ the adjoint equation $\dot a = -a A$ (for the row vector $a = \partial L/\partial h$),
# equivalently $\dot a^\top = -A^\top a^\top$, is linear with constant coefficients, so it has a closed
# form. Solved from $t_1$ back to $t_0$:
# $$ a(t_0)^\top = e^{A^\top (t_1 - t_0)}\, a(t_1)^\top . $$
#
# Write `adjoint_linear(A, a1, t0, t1)` that returns $a(t_0) = \partial L / \partial h(t_0)$ given
# `A` (`[D, D]`), `a1` $= \partial L/\partial h(t_1)$ and the two times (floats, $t_1 < t_0$ allowed).
# `a1` is either one vector `[D]` or a batch of row vectors `[B, D]` (one per sample, each with its own
# $h$ following $\dot h = A h$); return the same shape. Use `torch.linalg.matrix_exp`.
#
# *Hint:* for rows, $a(t_0) = a(t_1)\, e^{A (t_1 - t_0)}$, which `@` handles for both shapes.

# %%
def adjoint_linear(A: torch.Tensor, a1: torch.Tensor, t0: float, t1: float) -> torch.Tensor:
    """dL/dh(t0) for dh/dt = A h, from a1 = dL/dh(t1): [D] or [B, D] -> same shape."""
    ### BEGIN SOLUTION
    return a1 @ torch.linalg.matrix_exp(A * (t1 - t0))
    ### END SOLUTION


adjoint_linear = ex04.check_adjoint_linear(adjoint_linear)

# %% [markdown]
# Your function against autograd through the solver: for $L = \sum c \cdot h(t_1)$ the adjoint at $t_1$ is
# $c$, and autograd's $\partial L / \partial h_0$ must match your $a(t_0)$.

# %%
A = torch.tensor([[-0.2, -1.0], [1.5, -0.1]], **F64)
h_start = torch.randn(5, 2, **F64, requires_grad=True)
c = torch.randn(5, 2, **F64)
h_end = odeint(lambda t, h: h @ A.T, h_start, torch.tensor([0.0, 2.0], **F64), rtol=1e-10, atol=1e-12)[-1]
(autograd_grad,) = torch.autograd.grad((c * h_end).sum(), h_start)
print(f"largest difference ({who(adjoint_linear)} adjoint_linear):", (adjoint_linear(A, c, 0.0, 2.0) - autograd_grad).abs().max().item())
assert torch.allclose(adjoint_linear(A, c, 0.0, 2.0), autograd_grad, rtol=1e-7, atol=1e-9)


# %% [markdown] slideshow={"slide_type": "slide"}
# ## Exercise 2: find the bug in the augmented dynamics
#
# The reverse solve of the adjoint method integrates the augmented state $(h, a, g)$ with the vector
# field $\big(f(t, h),\ -a\, \partial f / \partial h,\ -a\, \partial f / \partial \theta\big)$.
# A colleague's `augmented_dynamics(func, t, h, a)` below returns `(f, a_dot, g_dot)` with one
# vector-Jacobian product, and its numbers are right when you call it from a cell. It must also satisfy
# the rest of its contract:
# - `f` comes back detached, `a_dot` shaped like `h`, `g_dot` a tuple with one tensor per entry of
#   `tuple(func.parameters())`, **zeros** for a parameter `f` does not use;
# - it must not touch the parameters' `.grad`;
# - it is called by `odeint_adjoint`'s backward pass, inside a `torch.autograd.Function`, where autograd
#   is switched off.
#
# Run the checker, find what breaks, and repair the function (the smallest change will do).

# %%
### BEGIN SOLUTION
@torch.enable_grad()
### EXERCISE
### END SOLUTION
def augmented_dynamics(func: nn.Module, t: torch.Tensor, h: torch.Tensor, a: torch.Tensor):
    """(f, -a df/dh, tuple of -a df/dtheta_i) at one time; zeros for unused parameters."""
    params = tuple(func.parameters())
    h = h.detach().requires_grad_(True)
    f = func(t, h)
    vjps = torch.autograd.grad(f, (h, *params), grad_outputs=-a, allow_unused=True)
    vjps = tuple(torch.zeros_like(x) if v is None else v for x, v in zip((h, *params), vjps))
    return f.detach(), vjps[0], vjps[1:]


augmented_dynamics = ex04.check_augmented_dynamics(augmented_dynamics)

# %% [markdown]
# One more check by hand: for $f(h) = W h$ (no bias) the state part is $-a W$ and the parameter part
# is $-\sum_b a_b^\top h_b^\top$, an outer product summed over the batch.

# %%
linear_field = ODEFunc(nn.Linear(2, 2, bias=False)).to(**F64)  # f(t, h) = h W^T
W = linear_field.net.weight
h_b, a_b = torch.randn(4, 2, **F64), torch.randn(4, 2, **F64)
_, a_dot_b, (w_dot,) = augmented_dynamics(linear_field, torch.tensor(0.0), h_b, a_b)
assert torch.allclose(w_dot, -a_b.T @ h_b)
assert torch.allclose(a_dot_b, -a_b @ W)
print("outer-product form confirmed")


# %% [markdown] slideshow={"slide_type": "slide"}
# ## Exercise 3: the price of checkpoints
#
# Section 8 of the lecture repaired the adjoint's reverse solve with checkpoints: output times that the
# loss does not use, from whose stored states the reverse solve restarts, "at the price of $O(n)$
# memory". Put an exact number on that price. Write `checkpointed_bytes(y0, n_checkpoints)` that returns,
# without running anything, the number of bytes that `saved_bytes` (the lecture's meter of section 1,
# imported above) measures for `odeint_adjoint(func, y0, t)`, where `t` holds $t_0$, `n_checkpoints`
# times in between and $t_1$ (a 1-D tensor of `y0`'s dtype), `y0` is data that needs no gradient (as in
# training) and the parameters of `func` do. Requirements, each checked against the meter:
# - the count is exact, in bytes, an `int`, for a batch `[B, D]` of float32 states;
# - it holds for any number of checkpoints, zero included;
# - it holds for float64 states;
# - it holds for a state of any shape: one state `[D]` without a batch, a batch of images `[B, C, H, W]`.

# %%
def checkpointed_bytes(y0: torch.Tensor, n_checkpoints: int) -> int:
    """Bytes the adjoint keeps for backward with n_checkpoints output times between t0 and t1."""
    ### BEGIN SOLUTION
    n_outputs = n_checkpoints + 2  # t0, the checkpoints, t1
    numbers_per_output = y0.numel() + 1  # the state at that time, and the time itself
    return n_outputs * numbers_per_output * y0.element_size()
    ### END SOLUTION


checkpointed_bytes = ex04.check_checkpointed_bytes(checkpointed_bytes)

# %% [markdown]
# Your formula against the meter on a small MLP field, with the step counts of the hyperparameter cell:
# the bytes do not depend on the steps. Then the price of a checkpoint against what backpropagation
# through the same solve keeps.

# %%
torch.manual_seed(0)
mlp_field = ODEFunc(MLP([2, 32, 2])).to(DEVICE)
x_batch = torch.randn(16, 2, device=DEVICE)  # data: no gradient needed
rk4_steps = {n: dict(method="rk4", options={"step_size": 1 / n}) for n in memory_steps}


def output_times(n_checkpoints):
    return torch.linspace(0.0, 1.0, n_checkpoints + 2, device=DEVICE)


whose = who(checkpointed_bytes)
for n in checkpoint_counts:
    measured = [saved_bytes(lambda: odeint_adjoint(mlp_field, x_batch, output_times(n), **rk4_steps[steps]))
                for steps in memory_steps]
    print(f"{n:3d} checkpoints: measured {measured} bytes at {memory_steps} steps; {whose} formula: "
          f"{checkpointed_bytes(x_batch, n)}")
    assert measured == [checkpointed_bytes(x_batch, n)] * len(memory_steps)
per_checkpoint = checkpointed_bytes(x_batch, 1) - checkpointed_bytes(x_batch, 0)
backprop = saved_bytes(lambda: odeint(mlp_field, x_batch, output_times(0), **rk4_steps[memory_steps[-1]]))
per_step = backprop / memory_steps[-1]
print(f"one checkpoint keeps {per_checkpoint} bytes; one rk4 step of backprop keeps {per_step:.0f} bytes, "
      f"as much as {per_step / per_checkpoint:.0f} checkpoints")
assert per_step > 10 * per_checkpoint

# %% [markdown]
# A checkpoint stores one state of the batch and one time. A step of backpropagation stores, for each of
# its four stages, what every layer of the network needs for its backward pass. So even a checkpoint at
# every step keeps far less than backpropagating through those steps.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Exercise 4: predict, then measure
# The next cell measures, with the lecture's meter `saved_bytes`, the bytes autograd keeps while
# backpropagation runs through a fixed-step RK4 solve of a small MLP field, once with 10 steps and once
# with 100.
# **Before you run it**, write into `predicted_ratio` the ratio you expect: bytes kept with 100 steps
# divided by bytes kept with 10. The checker compares it with the measured ratio (15% either way passes).

# %%
### BEGIN SOLUTION
predicted_ratio = 10.0  # every step keeps its stages' activations
### EXERCISE
# predicted_ratio = None  # your prediction: a number
### END SOLUTION
measured_ratio = ex04.check_memory_ratio_prediction(predicted_ratio)

# %% [markdown]
# Measured: backpropagation through RK4 keeps memory in proportion to the step count, the adjoint
# keeps the same few hundred bytes at every step count.

# %%
y_start = torch.randn(16, 2, device=DEVICE, requires_grad=True)
span = torch.tensor([0.0, 1.0], device=DEVICE)
kept = {name: [saved_bytes(lambda: solver(mlp_field, y_start, span, method="rk4", options={"step_size": 1 / n}))
               for n in memory_steps]
        for name, solver in (("backprop", odeint), ("adjoint", odeint_adjoint))}
for name, row in kept.items():
    print(f"{name:>8}: " + ", ".join(f"{n} steps {b / 1e3:.1f} kB" for n, b in zip(memory_steps, row)))
growth = kept["backprop"][-1] / kept["backprop"][0]
assert abs(growth / (memory_steps[-1] / memory_steps[0]) - 1) < 0.05  # linear in the steps
assert len(set(kept["adjoint"])) == 1  # constant


# %% [markdown] slideshow={"slide_type": "slide"}
# ## Exercise 5: a complete adjoint gradient
#
# Put the pieces together for one interval: `adjoint_gradients(func, h0, t0, t1, grad_h1, rtol=1e-9,
# atol=1e-10)` returns `(grad_h0, grad_params)`, the gradient $\partial L / \partial h_0$ (shaped like `h0`)
# and a tuple of $\mathrm dL / \mathrm d\theta_i$ (one per entry of `tuple(func.parameters())`), for a loss
# whose gradient at the end is `grad_h1` $= \partial L / \partial h(t_1)$. Requirements:
# - it uses the adjoint method: no graph through the forward solve is kept (run it without autograd), and
#   one reverse solve with `nodecourse.odeint` (dopri5, the given tolerances) of the augmented state gives
#   every gradient;
# - time-dependent fields, a single state without a batch dimension, and `t1 < t0` all work;
# - the times it builds live on `h0`'s device and dtype.

# %%
def adjoint_gradients(func: nn.Module, h0: torch.Tensor, t0: float, t1: float, grad_h1: torch.Tensor,
                      rtol: float = 1e-9, atol: float = 1e-10):
    """(dL/dh0, tuple of dL/dtheta_i) by one reverse solve of (h, a, g) from t1 to t0."""
    ### BEGIN SOLUTION
    times = torch.tensor([float(t0), float(t1)], dtype=h0.dtype, device=h0.device)
    with torch.no_grad():
        h1 = odeint(func, h0, times, rtol=rtol, atol=atol)[-1]

    def dynamics(s, state):
        f, a_dot, g_dot = augmented_dynamics(func, s, state[0], state[1])
        return (f, a_dot, *g_dot)

    start = (h1, grad_h1, *[torch.zeros_like(p) for p in func.parameters()])
    parts = odeint(dynamics, start, times.flip(0), rtol=rtol, atol=atol)
    return parts[1][-1], tuple(part[-1] for part in parts[2:])
    ### END SOLUTION


adjoint_gradients = ex04.check_adjoint_gradients(adjoint_gradients)

# %% [markdown]
# Your gradients against backpropagation through `odeint` on a fresh problem:

# %%
torch.manual_seed(1)
check_field = ODEFunc(MLP([3, 16, 2]), time_dependent=True).to(**F64)
x_start = torch.randn(6, 2, **F64, requires_grad=True)
x_end = odeint(check_field, x_start, torch.tensor([0.0, 1.5], **F64), rtol=1e-10, atol=1e-12)[-1]
backprop = torch.autograd.grad(x_end.pow(2).sum(), (x_start, *check_field.parameters()))
ours_h0, ours_params = adjoint_gradients(check_field, x_start.detach(), 0.0, 1.5, 2 * x_end.detach(),
                                         rtol=1e-10, atol=1e-12)
worst = max(((o - r).norm() / r.norm()).item() for o, r in zip((ours_h0, *ours_params), backprop))
print(f"largest relative difference of {who(adjoint_gradients)} adjoint_gradients from backprop: {worst:.1e}")
assert worst < 1e-6

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### Train with it
# Your `adjoint_gradients` is all a training loop needs. We fit a vector field so that the flow over
# $[0, 1]$ rotates half a ring of points by 90 degrees: loss $L = \mathrm{mean}\, |h(1) - R h_0|^2$, so
# $\partial L / \partial h(1) = 2 (h(1) - R h_0) / N$, and Adam uses the parameter gradients.

# %%
torch.manual_seed(2)
model = ODEFunc(MLP([2, 32, 2])).to(**F64)
angles = torch.linspace(0, torch.pi, 16, **F64)  # half a ring, so the rotation is visible
ring = torch.stack([angles.cos(), angles.sin()], dim=1)
target = ring @ torch.tensor([[0.0, 1.0], [-1.0, 0.0]], **F64)  # rotated by 90 degrees
optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
losses = []
for it in range(n_iters):
    with torch.no_grad():
        end = odeint(model, ring, torch.tensor([0.0, 1.0], **F64), rtol=1e-6, atol=1e-8)[-1]
    residual = end - target
    losses.append(residual.pow(2).sum(dim=1).mean().item())
    _, param_grads = adjoint_gradients(model, ring, 0.0, 1.0, 2 * residual / len(ring), rtol=1e-6, atol=1e-8)
    for p, g in zip(model.parameters(), param_grads):
        p.grad = g
    optimizer.step()
print(f"loss: {losses[0]:.3g} -> {losses[-1]:.3g}")
assert losses[-1] < 0.5 * losses[0]

# %%
with torch.no_grad():
    path = odeint(model, ring, torch.linspace(0, 1, 20, **F64), rtol=1e-6, atol=1e-8).cpu()
fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
axes[0].plot(losses)
axes[0].set(xlabel="iteration", ylabel="loss", yscale="log", title=f"training with {who(adjoint_gradients)} adjoint")
axes[1].plot(path[:, :, 0], path[:, :, 1], color="0.75", lw=0.8)
axes[1].scatter(ring[:, 0].cpu(), ring[:, 1].cpu(), s=10, label="$h_0$")
axes[1].scatter(target[:, 0].cpu(), target[:, 1].cpu(), s=25, marker="x", label="target")
axes[1].scatter(path[-1, :, 0], path[-1, :, 1], s=10, label="$h(1)$")
axes[1].set(aspect="equal", title="the learned flow")
axes[1].legend(fontsize=8)
plt.tight_layout()
plt.show()

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Recap
# - For a linear ODE the adjoint is a matrix exponential: $a(t_0)^\top = e^{A^\top (t_1 - t_0)} a(t_1)^\top$.
# - The augmented dynamics need one vector-Jacobian product per evaluation (`torch.autograd.grad` with
#   `grad_outputs=-a`), never a Jacobian, and zeros for unused parameters.
# - `saved_tensors_hooks` shows what autograd keeps: linear in the steps for backprop; for the adjoint
#   only the output states and times, so each checkpoint costs one state and one time, whatever the steps.
# - One forward solve without a graph and one reverse solve of $(h, a, g)$ give every gradient; that
#   is enough to train.
#
# ## Further reading
# - R. T. Q. Chen, Y. Rubanova, J. Bettencourt, D. Duvenaud. *Neural Ordinary Differential
#   Equations*. NeurIPS 2018. arXiv:1806.07366. (Appendix B: the adjoint derivation.)
# - P. Kidger, R. T. Q. Chen, T. Lyons. *"Hey, that's not an ODE": Faster ODE Adjoints via Seminorms*.
#   ICML 2021. arXiv:2009.09457.
# - PyTorch documentation. *Hooks for saved tensors* (`torch.autograd.graph.saved_tensors_hooks`),
#   in "Autograd mechanics".
