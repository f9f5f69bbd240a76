# %% [markdown] slideshow={"slide_type": "skip"}
# Colab links appear here once the course's home repository is set (`make home`, see CONTRIBUTING.md).

# %% [markdown] slideshow={"slide_type": "skip"} tags=["generated-note", "fingerprint-ede83572c8321cd7"]
# > **This notebook is generated** from `solutions/05_regression_exercises.ipynb` by `tools/make_exercises.py` (`make sync`):
# > course maintainers edit the solution notebook, never this one.
# >
# > **Learners:** do the exercises in your own copy, `work/05_regression_exercises.ipynb` (`make work` makes it),
# > where no course tool and no `git pull` touches your answers.

# %% [markdown] slideshow={"slide_type": "slide"}
# # 05 · Regression: a ResNet against an ODE-Net: exercises
#
# Six exercises on the regression example of notebook 05: build the ODE-Net from `nodecourse`
# parts, write the training step, measure interpolation against extrapolation, and train the
# ODE-Net with other solvers. Each exercise is a function; the checker below it runs your function
# against a reference on several cases, prints what passed and what failed with a hint, and hands
# back the function the rest of the notebook goes on with.
#
# Exercises 5 and 6 are of two other kinds: exercise 5 hands you a function with a bug to find and
# repair, exercise 6 asks you to predict a number before a cell measures it. Hints come in stages: the
# first failure says which property failed, later failures nudge more specifically, and the answer
# appears only when you ask for it with `ex05.show_answer(k)`. Until an exercise passes, the notebook
# goes on with the reference.
#
# **Learning objectives**
# - assemble an ODE-Net (`MLP`, `ODEFunc`, `ODEBlock`) with the right sizes, solver and tolerances;
# - write a correct full-batch training step (and know what happens without `zero_grad`);
# - quantify how much worse a model is outside its training range than inside;
# - train with fixed-step and adaptive solvers and predict the NFE of a fixed-step solve.
#
# **Estimated time:** 60 minutes.

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
from torch import nn

from nodecourse.data import cubic_regression
from nodecourse.exercises import ex05
from nodecourse.exercises.checking import who
from nodecourse.models import MLP, ODEBlock, ODEFunc, ResNet
from nodecourse.solvers import TABLEAUX
from nodecourse.train import count_parameters, train

torch.set_num_threads(1)   # tiny models: one CPU thread is fastest (see notebook 05)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Hyperparameters
# Fast mode shortens the training runs that use your functions; the checkers always run the same
# cases.

# %%
n_iters = 300 if FAST else 1000   # optimizer steps of the runs after the checkers


# %% [markdown] slideshow={"slide_type": "slide"}
# ## Exercise 1: build the ODE-Net
# Write `build_odenet(hidden=25, method="dopri5", step_size=None)` returning the ODE-Net of the
# regression example as an `ODEBlock` from `nodecourse.models`:
# - dynamics $\dot y = \mathrm{MLP}([y, t])$ with `MLP([2, hidden, 1])` (tanh) wrapped in
#   `ODEFunc(..., time_dependent=True)`, which puts the time after the state;
# - integrated from $t = 0$ to $t_1 = 1$ with `method` at `rtol = atol = 1e-3`;
# - a fixed-step method gets `options={"step_size": step_size}`; an adaptive one `options=None`.
#
# The checker compares the settings and the parameter shapes, then gives your model the reference's
# weights and compares the outputs.

# %%
def build_odenet(hidden: int = 25, method: str = "dopri5", step_size: float | None = None) -> ODEBlock:
    """The ODE-Net [N, 1] -> [N, 1]: dy/dt = MLP([2, hidden, 1])([y, t]) on [0, 1]."""
    raise NotImplementedError("Exercise 1")


build_odenet = ex05.check_build_odenet(build_odenet)

# %% [markdown]
# With the default sizes the ODE-Net has $(2\cdot 25 + 25) + (25 + 1) = 101$ parameters, and maps
# a batch `[N, 1]` to `[N, 1]`. From here on the notebook uses your `build_odenet` once it passes, and
# the reference's until then; each printout says whose it is.

# %%
x, y = cubic_regression(device=DEVICE)
odenet = build_odenet().to(DEVICE)
with torch.no_grad():
    out = odenet(x)
print(f"build_odenet ({who(build_odenet)}): {count_parameters(odenet)} parameters, output {tuple(out.shape)}, "
      f"NFE of that pass: {odenet.nfe_forward}")
assert count_parameters(odenet) == 101 and out.shape == (10, 1)


# %% [markdown] slideshow={"slide_type": "slide"}
# ## Exercise 2: one training step
# Write `training_step(model, optimizer, x, y)` that performs **one** full-batch step of the given
# optimizer on the mean squared error `torch.nn.functional.mse_loss(model(x), y)` and returns that
# loss (computed *before* the update) as a Python float. Remember that PyTorch adds new gradients to
# the old ones unless you clear them.

# %%
def training_step(model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor) -> float:
    """One optimizer step on the MSE of model(x) against y; returns the loss before the step."""
    raise NotImplementedError("Exercise 2")


training_step = ex05.check_training_step(training_step)

# %% [markdown]
# The training step of exercise 2, in a loop, trains both models of the notebook. With Adam at learning
# rate 0.01 (the change that made the fit work in notebook 05), the losses fall by a large factor:

# %%
seed_everything(0)
models = {"ResNet": ResNet(MLP([1, 25, 1]), depth=3).to(DEVICE), "ODE-Net": build_odenet().to(DEVICE)}
losses = {}
for name, model in models.items():
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    losses[name] = [training_step(model, optimizer, x, y) for _ in range(n_iters)]
    print(f"{name:8s} loss {losses[name][0]:.3f} -> {losses[name][-1]:.4f} (training step: {who(training_step)})")
    assert losses[name][-1] < losses[name][0] / 20

fig, ax = plt.subplots(figsize=(6, 3.5))
for name, curve in losses.items():
    ax.semilogy(curve, label=name)
ax.set(xlabel="iteration", ylabel="training MSE", title=f"training step ({who(training_step)}), Adam (lr 0.01)")
ax.legend()
plt.show()


# %% [markdown] slideshow={"slide_type": "slide"}
# ## Exercise 3: interpolation against extrapolation
# Write `extrapolation_errors(model, lo=-3.0, hi=3.0, n=100)` that returns the pair
# `(mse_inside, mse_outside)`: the mean squared error of the model's predictions against the true
# curve $x^3 + 0.1x$ on the grid `torch.linspace(lo, hi, n)` (shaped `[n, 1]`), averaged separately
# over the points with $|x| \le 2$ (inside the training range) and with $|x| > 2$. Make the grid on
# the dtype and device of the model's first parameter (float32 on the CPU when the model has none),
# predict without building a graph, and return two Python floats.

# %%
def extrapolation_errors(model: nn.Module, lo: float = -3.0, hi: float = 3.0, n: int = 100) -> tuple[float, float]:
    """(MSE on |x| <= 2, MSE on |x| > 2) of model against x^3 + 0.1x on n points of [lo, hi]."""
    raise NotImplementedError("Exercise 3")


extrapolation_errors = ex05.check_extrapolation_errors(extrapolation_errors)

# %% [markdown]
# Applied to the two models trained above: outside the data both are off by far more than inside
# (notebook 05 shows why: both are the identity plus a bounded correction).

# %%
for name, model in models.items():
    inside_err, outside_err = extrapolation_errors(model)
    print(f"{name:8s} MSE inside {inside_err:.4f}, outside {outside_err:.2f} (extrapolation_errors: "
          f"{who(extrapolation_errors)})")
    assert outside_err > 10 * inside_err


# %% [markdown] slideshow={"slide_type": "slide"}
# ## Exercise 4: train the ODE-Net with another solver
# Write `train_with_solver(method, step_size=None, n_iters=300, seed=0)` that
# 1. seeds everything with `seed_everything(seed)`,
# 2. builds the ODE-Net with your `build_odenet(method=method, step_size=step_size)`,
# 3. trains it on `cubic_regression()` with `nodecourse.train.train` (MSE loss, Adam, learning rate
#    0.01, `n_iters` iterations, `progress=False` if you like),
# 4. evaluates the trained model once on the ten points without a graph and returns
#    `(final_loss, nfe)`: that MSE as a float and the `nfe_forward` of that evaluation.
#
# The checker does not compare with the reference number for number. It asks that your loss ends
# below `ex05.LOSS_BAR`, that after a run of 150 iterations it is within a factor 1.5 of the
# reference's (the optimizer, learning rate and number of iterations are the ones asked for), that the
# same seed gives the same result and another seed another one, that the NFE fits the method, and that
# the two numbers come back as a Python float and an int. For a fixed-step method with $s$ stages and
# step $h$ on $[0, 1]$, one forward pass costs exactly $s/h$ evaluations (Euler $1/h$, RK4 $4/h$).

# %%
def train_with_solver(method: str, step_size: float | None = None, n_iters: int = 300,
                      seed: int = 0) -> tuple[float, int]:
    """Train the ODE-Net with the given solver; return (final training MSE, NFE of one forward pass)."""
    raise NotImplementedError("Exercise 4")


train_with_solver = ex05.check_train_with_solver(train_with_solver)

# %% [markdown]
# The solver as a hyperparameter: train with five solvers for `n_iters` iterations and compare the
# final loss and the cost of one forward pass. The fixed-step NFE follows $s/h$ exactly; the
# adaptive solvers choose their own number of steps.

# %%
solvers = [("euler", 0.5), ("midpoint", 0.25), ("rk4", 0.5), ("bosh3", None), ("dopri5", None)]
results = {}
print(f"train_with_solver: {who(train_with_solver)}")
for method, h in solvers:
    results[(method, h)] = train_with_solver(method, h, n_iters=n_iters)
    final_loss, nfe = results[(method, h)]
    print(f"{method:9s} h = {str(h):5s} final MSE {final_loss:.4f}   NFE per forward {nfe}")
    assert final_loss < ex05.LOSS_BAR
    if h is not None:
        assert nfe == TABLEAUX[method].n_stages * round(1 / h)

fig, ax = plt.subplots(figsize=(6, 3.5))
for (method, h), (final_loss, nfe) in results.items():
    ax.scatter(nfe, final_loss)
    ax.annotate(method if h is None else f"{method}, h={h}", (nfe, final_loss), fontsize=8,
                xytext=(4, 4), textcoords="offset points")
ax.set(xlabel="NFE per forward pass", ylabel="final training MSE", yscale="log",
       title=f"cost against fit, by training solver (train_with_solver: {who(train_with_solver)})")
plt.show()


# %% [markdown]
# A low training loss with a cheap solver is not the whole story: notebook 05 shows that an ODE-Net
# trained with coarse Euler steps breaks when it is solved accurately. Try it: re-solve the
# `("euler", 0.5)` model with `ODEBlock(model.func, method="dopri5", rtol=1e-6, atol=1e-6)`.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Exercise 5: find the bug in a regression loss
# `regression_loss(pred, y)` should be the mean squared error between the ODE-Net's predictions `pred`
# (`[N, 1]`) and the targets `y`, which may come as `[N, 1]` or as a plain vector `[N]`, and return it as
# a 0-d tensor that training can call `.backward()` on. Its author trained with `[N, 1]` targets and the
# loss fell as it should. Run the checker, find the bug, and repair it.

# %%
def regression_loss(pred, y):
    """Mean squared error between pred [N, 1] and targets y ([N] or [N, 1]): a 0-d tensor."""
    return ((pred - y) ** 2).mean()

regression_loss = ex05.check_regression_loss(regression_loss)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Exercise 6: predict, then check
# One forward pass of an ODE-Net whose field is a small MLP, solved on $[0, 1]$ with fixed-step RK4 and
# `step_size=0.1`: how many times is the vector field evaluated (the NFE)? Write your prediction into
# `predicted_nfe` before you run the cell; the checker counts (it must be exact).

# %%
predicted_nfe = None  # your prediction: a number
measured_nfe = ex05.check_rk4_nfe_prediction(predicted_nfe)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Recap
# - The ODE-Net of the regression example is `ODEBlock(ODEFunc(MLP([2, 25, 1]), time_dependent=True))`
#   on $[0, 1]$ with Dopri5 at `rtol = atol = 1e-3`: 101 parameters.
# - A training step is `zero_grad`, loss, `backward`, `step`; without `zero_grad` the gradients of
#   earlier steps pile up.
# - Both models fit inside $[-2, 2]$ and miss badly outside it.
# - A fixed-step solver costs $s/h$ evaluations per forward pass whatever the weights; an adaptive
#   one decides its cost as it goes.
#
# ## Further reading
# - R. T. Q. Chen, Y. Rubanova, J. Bettencourt, D. Duvenaud. *Neural Ordinary Differential
#   Equations*. NeurIPS 2018. arXiv:1806.07366.
# - K. Ott, P. Katiyar, P. Hennig, M. Tiemann. *ResNet After All: Neural ODEs and Their Numerical
#   Solution*. ICLR 2021. arXiv:2007.15386.
# - D. P. Kingma, J. Ba. *Adam: A Method for Stochastic Optimization*. ICLR 2015. arXiv:1412.6980.
