# %% [markdown] slideshow={"slide_type": "skip"}
# Colab links appear here once the course's home repository is set (`make home`, see CONTRIBUTING.md).

# %% [markdown] slideshow={"slide_type": "slide"}
# # 06 · MNIST: exercises (solutions)
#
# Seven exercises on notebook 06. Along the way you rebuild a classic picture: an MLP and a Neural
# ODE whose dynamics are a small MLP, both trained on MNIST, and the first two principal components
# of their hidden states for one digit: a few points that jump for the MLP, a smooth path for the
# ODE. Each exercise asks for one function. In the exercise notebook its body is
# `raise NotImplementedError`: replace that with your code and run the cell. The checker call below
# it compares your function with a reference on several cases and prints what passed, what failed
# and a hint; until your version passes, the notebook goes on with the reference, so every later
# cell still runs.
#
# Exercises 6 and 7 are of two other kinds: exercise 6 hands you a function with a bug to find and
# repair, exercise 7 asks you to predict a number before a cell measures it. Hints come in stages: the
# first failure says which property failed, later failures nudge more specifically, and the answer
# appears only when you ask for it with `ex06.show_answer(k)`. Until an exercise passes, the notebook
# goes on with the reference.
#
# **Learning objectives**
# - compute a classifier's accuracy in batches, correctly;
# - build an ODE-Net classifier from `nodecourse` parts and count its parameters;
# - measure accuracy and NFE as the test-time tolerance varies;
# - project a hidden-state sequence onto its first two principal components;
# - quantify how smooth a path is by its turning angles, and compare an MLP with a Neural ODE.
#
# **Estimated time:** 65 minutes

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Setup
# On Colab the first cell installs `nodecourse`; everywhere it picks the device, seeds the random
# generators and reads fast mode (`NODECOURSE_FAST=1` trains for fewer iterations for the test suite).

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
import torch.nn.functional as F
from torch import nn

from nodecourse.config import FAST, device, seed_everything
from nodecourse.data import load_mnist, split_holdout
from nodecourse.exercises import ex06
from nodecourse.exercises.checking import who
from nodecourse.models import MLP, ODEBlock, ODEFunc
from nodecourse.plotting import pca_trajectories
from nodecourse.train import count_parameters, train

seed_everything(0)
DEVICE = device()
print(f"device: {DEVICE}, fast mode: {FAST}")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Hyperparameters
# The only cell the test suite changes: fast mode trains on fewer digits for fewer iterations.

# %%
n_train = 1000 if FAST else None     # training digits (None: all of them)
n_test = 300 if FAST else None       # held-out digits (None: all of them)
n_iters = 60 if FAST else 1500       # optimizer steps for each model, batches of 50
hidden = 64                          # width of the MLP's hidden layers and of the ODE's state
lr = 3e-3
accuracy_bar = 0.5 if FAST else 0.88  # both models must reach this held-out accuracy

torch.set_num_threads(1)  # small models: one CPU thread is fastest (see notebook 06)

# %% [markdown]
# The data: the shipped 5,000-digit subset split 4,000 / 1,000 (or full MNIST when it is on disk),
# flattened to vectors of 784 pixels, since both models here are built from linear layers.

# %%
mnist = load_mnist()
if mnist.source == "subset":
    train_set, test_set = split_holdout(mnist, n_test=1000, seed=0)
else:
    train_set, test_set = mnist, load_mnist(train=False)
g = torch.Generator().manual_seed(0)
train_idx = torch.randperm(len(train_set), generator=g)[:n_train]
test_idx = torch.randperm(len(test_set), generator=g)[:n_test]
X_train, y_train = train_set.images[train_idx].to(DEVICE), train_set.labels[train_idx].to(DEVICE)
X_test, y_test = test_set.images[test_idx].to(DEVICE), test_set.labels[test_idx].to(DEVICE)
print(f"{len(y_train):,} training and {len(y_test):,} held-out digits, images {tuple(X_train.shape[1:])}")


# %% [markdown] slideshow={"slide_type": "slide"}
# ## Exercise 1: accuracy in batches
#
# Write `accuracy(model, X, y, batch_size=256)`: the fraction of the `N` samples `X [N, ...]` whose
# predicted class, the arg-max of `model`'s output `[N, classes]`, equals the integer label in
# `y [N]`, as a Python float. Feed the model `batch_size` samples at a time (the last batch may be
# smaller, and it counts), evaluate in eval mode without gradients (dropout must be off), and put
# the model back in the mode you found it in.

# %%
def accuracy(model: nn.Module, X: torch.Tensor, y: torch.Tensor, batch_size: int = 256) -> float:
    """Fraction of samples whose arg-max output equals the label, computed batch by batch."""
    ### BEGIN SOLUTION
    was_training = model.training
    model.eval()
    correct = 0
    with torch.no_grad():
        for start in range(0, X.shape[0], batch_size):
            predicted = model(X[start:start + batch_size]).argmax(dim=-1)
            correct += int((predicted == y[start:start + batch_size]).sum())
    model.train(was_training)
    return correct / X.shape[0]
    ### END SOLUTION


accuracy = ex06.check_accuracy(accuracy)

# %% [markdown]
# An untrained classifier is at chance, about 10% on ten balanced classes. From here on the notebook
# uses each of your functions once it passes, and the reference's until then; each printout says whose.

# %%
seed_everything(0)
untrained = nn.Sequential(nn.Flatten(), nn.Linear(784, 10)).to(DEVICE)
chance = accuracy(untrained, X_test, y_test)
print(f"untrained: {chance:.1%} (accuracy: {who(accuracy)})")
assert chance < 0.3


# %% [markdown] slideshow={"slide_type": "slide"}
# ## Exercise 2: an ODE-Net whose dynamics are an MLP
#
# Write `ode_classifier(hidden_size, n_classes=10, tol=1e-3)` returning an `nn.Sequential` of four
# modules, in this order, that maps images `[B, 1, 28, 28]` to class scores `[B, n_classes]` (later
# cells index it: `model[2]` is the ODE block):
#
# 1. `nn.Flatten()` and `nn.Linear(784, hidden_size)`: the projection is $h(0)$;
# 2. solve $\dot h = f(h)$ on $t \in [0, 1]$ with an `ODEBlock` (`t1=1.0`, `method="dopri5"`,
#    `rtol=atol=tol`), where $f$ = `ODEFunc(MLP([hidden_size, hidden_size, hidden_size], nn.Tanh))`;
# 3. read the scores off $h(1)$ with `nn.Linear(hidden_size, n_classes)`.
#
# The checker compares parameter counts, the output shape, the layers of the dynamics and the block's
# settings. How many parameters does each part have? Work it out before you run the checker.

# %%
def ode_classifier(hidden_size: int, n_classes: int = 10, tol: float = 1e-3) -> nn.Module:
    """Flatten -> Linear(784, hidden) -> ODEBlock(MLP dynamics) on [0, 1] -> Linear(hidden, n_classes)."""
    ### BEGIN SOLUTION
    dynamics = ODEFunc(MLP([hidden_size, hidden_size, hidden_size], nn.Tanh))
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(28 * 28, hidden_size),
        ODEBlock(dynamics, t1=1.0, method="dopri5", rtol=tol, atol=tol),
        nn.Linear(hidden_size, n_classes),
    )
    ### END SOLUTION


ode_classifier = ex06.check_ode_classifier(ode_classifier)

# %% [markdown]
# Next to it, an MLP with five hidden layers of the same width: its hidden states are the points we
# will compare with the ODE's path. Both get the same training budget (same batches, optimizer,
# learning rate and number of steps). The ODE-Net backpropagates through the solver here (no
# adjoint): for this small state that is the faster choice.

# %%
seed_everything(0)
ode_net = ode_classifier(hidden).to(DEVICE)
mlp = nn.Sequential(nn.Flatten(), MLP([784] + [hidden] * 5 + [10], nn.Tanh)).to(DEVICE)
dynamics_params = 2 * (hidden * hidden + hidden)
print(f"ODE-Net (ode_classifier: {who(ode_classifier)}): {count_parameters(ode_net):,} parameters, of which "
      f"{dynamics_params:,} in the dynamics")
print(f"MLP:     {count_parameters(mlp):,} parameters")
assert count_parameters(ode_net) == (784 * hidden + hidden) + dynamics_params + (hidden * 10 + 10)

results = {}
for name, model in [("MLP", mlp), ("ODE-Net", ode_net)]:
    seed_everything(1)
    history = train(model, F.cross_entropy, (X_train, y_train), n_iters, lr=lr, batch_size=50, desc=name)
    results[name] = accuracy(model, X_test, y_test)
    print(f"{name}: held-out accuracy {results[name]:.1%} (accuracy: {who(accuracy)})")
    assert results[name] >= accuracy_bar


# %% [markdown] slideshow={"slide_type": "slide"}
# ## Exercise 3: accuracy and NFE against the test-time tolerance
#
# Write `evaluate_at_tolerances(model, X, y, tols, batch_size=1000)`. The model contains exactly one
# `ODEBlock` (find it among `model.modules()`). For each `tol` in `tols`, in that order: set the
# block's `rtol` and `atol` to `tol`, evaluate the model on `X` in batches of `batch_size` (eval mode,
# no gradients), and record `(tol, accuracy over all of X, mean of block.nfe_forward over the
# batches)`. Return the list of these triples. Afterwards the block's `rtol`, `atol` and the model's
# train/eval mode must be what they were before, even if something fails halfway (`try`/`finally`).

# %%
def evaluate_at_tolerances(model: nn.Module, X: torch.Tensor, y: torch.Tensor, tols, batch_size: int = 1000):
    """[(tol, accuracy, mean forward NFE per batch)] with the model's ODEBlock at rtol = atol = tol."""
    ### BEGIN SOLUTION
    block = next(m for m in model.modules() if isinstance(m, ODEBlock))
    saved, was_training = (block.rtol, block.atol), model.training
    model.eval()
    results = []
    try:
        with torch.no_grad():
            for tol in tols:
                block.rtol = block.atol = tol
                correct, nfes = 0, []
                for start in range(0, X.shape[0], batch_size):
                    logits = model(X[start:start + batch_size])
                    nfes.append(block.nfe_forward)
                    correct += int((logits.argmax(dim=-1) == y[start:start + batch_size]).sum())
                results.append((tol, correct / X.shape[0], sum(nfes) / len(nfes)))
    finally:
        block.rtol, block.atol = saved
        model.train(was_training)
    return results
    ### END SOLUTION


evaluate_at_tolerances = ex06.check_evaluate_at_tolerances(evaluate_at_tolerances)

# %% [markdown]
# On the trained ODE-Net: tighter tolerances cost more evaluations; the accuracy hardly moves.

# %%
sweep = evaluate_at_tolerances(ode_net, X_test, y_test, [1e-1, 1e-2, 1e-3, 1e-4, 1e-5])
tols, accs, nfes = zip(*sweep)
print(f"evaluate_at_tolerances: {who(evaluate_at_tolerances)}")
for tol, acc, nfe in sweep:
    print(f"tol {tol:.0e}: accuracy {acc:.1%}, NFE {nfe:.0f}")
assert all(b >= a for a, b in zip(nfes, nfes[1:])) and nfes[-1] > nfes[0]
assert max(accs[2:]) - min(accs[2:]) <= 0.01  # from the training tolerance down: within a point

fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3))
ax1.semilogx(tols, [100 * a for a in accs], "o-")
ax1.set(xlabel="rtol = atol", ylabel="accuracy (%)", ylim=(0, 100))
ax2.semilogx(tols, nfes, "s-", color="C3")
ax2.set(xlabel="rtol = atol", ylabel="forward NFE", title=f"sweep: {who(evaluate_at_tolerances)}")
for ax in (ax1, ax2):
    ax.invert_xaxis()
plt.tight_layout()
plt.show()


# %% [markdown] slideshow={"slide_type": "slide"}
# ## Exercise 4: the first two principal components
#
# Write `pca_2d(states)`: given a sequence of hidden states `states [T, D]` (one row per layer or time),
# return their coordinates on the first two principal components, a `[T, 2]` tensor. Centre the rows
# on their mean $\bar h$, take the SVD $H - \bar h = U S V^\top$ and project onto the first two columns
# of $V$ (the first two rows of `Vh` in `torch.linalg.svd`). A principal direction has no preferred
# sign, so the checker accepts either sign of each column.

# %%
def pca_2d(states: torch.Tensor) -> torch.Tensor:
    """Coordinates [T, 2] of the states [T, D] on their first two principal components."""
    ### BEGIN SOLUTION
    centred = states - states.mean(dim=0)
    _, _, vh = torch.linalg.svd(centred, full_matrices=False)
    return centred @ vh[:2].T
    ### END SOLUTION


pca_2d = ex06.check_pca_2d(pca_2d)

# %% [markdown]
# Now the picture. For one held-out digit we collect the MLP's five hidden layers (five points in
# $\mathbb{R}^{64}$) and the ODE-Net's state $h(t)$ at 100 times in $[0, 1]$ (`ODEBlock.trajectory`),
# and project each onto its own first two principal components.

# %%
digit = X_test[:1]
with torch.no_grad():
    h, mlp_states = digit.flatten(1), []
    for layer in mlp[1]:
        h = layer(h)
        if isinstance(layer, nn.Tanh):
            mlp_states.append(h[0])
    mlp_states = torch.stack(mlp_states).cpu()                                   # [5, 64]
    h0 = ode_net[1](ode_net[0](digit))
    ode_states = ode_net[2].trajectory(h0, steps=100)[:, 0].cpu()                # [100, 64]
mlp_path, ode_path = pca_2d(mlp_states), pca_2d(ode_states)
print(f"pca_2d: {who(pca_2d)}; paths {tuple(mlp_path.shape)} (MLP) and {tuple(ode_path.shape)} (ODE)")
assert mlp_path.shape == (5, 2) and ode_path.shape == (100, 2)

fig, axes = plt.subplots(1, 2, figsize=(10, 4))
pca_trajectories(axes[0], [mlp_states], labels=["MLP: 5 hidden layers"])
pca_trajectories(axes[1], [ode_states], labels=["Neural ODE: h(t), t in [0, 1]"], markers=False)
axes[0].set_title("MLP hidden states")
axes[1].set_title("Neural ODE hidden state")
plt.tight_layout()
plt.show()


# %% [markdown] slideshow={"slide_type": "slide"}
# ## Exercise 5: how much does a path turn?
#
# Write `turning_angles(path)`: for a path `path [T, k]` (T points in k dimensions), return the
# angle in **degrees** between each pair of consecutive segments $d_i = p_{i+1} - p_i$ and
# $d_{i+1}$: $\theta_i = \arccos\frac{d_i \cdot d_{i+1}}{\|d_i\|\,\|d_{i+1}\|}$, a tensor of
# `T - 2` values in $[0, 180]$ (0: straight on, 180: straight back). Rounding can push the cosine a
# hair outside $[-1, 1]$, where `arccos` gives NaN: clamp it first.

# %%
def turning_angles(path: torch.Tensor) -> torch.Tensor:
    """Angles in degrees [T - 2] between consecutive segments of path [T, k]."""
    ### BEGIN SOLUTION
    d = path[1:] - path[:-1]
    cos = (d[:-1] * d[1:]).sum(dim=-1) / (d[:-1].norm(dim=-1) * d[1:].norm(dim=-1))
    return torch.rad2deg(torch.arccos(cos.clamp(-1.0, 1.0)))
    ### END SOLUTION


turning_angles = ex06.check_turning_angles(turning_angles)

# %% [markdown]
# The MLP's path turns sharply at its layers; the ODE's path turns by a fraction of a degree from
# one sample to the next: it is a smooth curve.

# %%
mlp_angles, ode_angles = turning_angles(mlp_path), turning_angles(ode_path)
print(f"turning_angles: {who(turning_angles)}, on the paths of pca_2d: {who(pca_2d)}")
print(f"MLP:        max turning angle {mlp_angles.max():6.1f} deg over {len(mlp_angles)} corners")
print(f"Neural ODE: max turning angle {ode_angles.max():6.1f} deg over {len(ode_angles)} corners")
assert ode_angles.max() < 20.0 and ode_angles.max() < mlp_angles.max()


# %% [markdown] slideshow={"slide_type": "slide"}
# ## Exercise 6: find the bug in a confusion matrix
# `confusion_counts(pred, y, n_classes)` should count, for every true class `i` and predicted class `j`,
# the test digits of class `i` that the model labels `j` (a `[n_classes, n_classes]` integer tensor whose
# entries add up to the number of digits). It looked right on the three digits its author tried. Run
# the checker, find the bug, and repair it.

# %%
def confusion_counts(pred, y, n_classes=10):
    """counts[i, j]: how many samples of true class i were predicted as class j."""
    counts = torch.zeros(n_classes, n_classes, dtype=torch.long)
    ### BEGIN SOLUTION
    counts.index_put_((y, pred), torch.ones_like(y), accumulate=True)
    ### EXERCISE
    # counts[y, pred] += 1
    ### END SOLUTION
    return counts

confusion_counts = ex06.check_confusion_counts(confusion_counts)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Exercise 7: predict, then check
# The MLP classifier of the lecture, `MLP([784, 100, 10])`: how many parameters (weights and biases) does
# it have? Write your prediction into `predicted_parameters` before you run the cell; it must be exact.

# %%
### BEGIN SOLUTION
predicted_parameters = 79510  # 784 * 100 + 100 + 100 * 10 + 10
### EXERCISE
# predicted_parameters = None  # your prediction: a number
### END SOLUTION
measured_parameters = ex06.check_mlp_parameters_prediction(predicted_parameters)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Recap
# - Accuracy in batches: count correct predictions over every batch, the last partial one included,
#   and divide by N; evaluate in eval mode without gradients.
# - An ODE-Net classifier is a projection, an `ODEBlock` and a read-out; its dynamics have
#   $2h(h + 1)$ parameters for an MLP $[h, h, h]$, however many steps the solver takes.
# - The tolerance can be changed after training: tighter costs more NFE and changes little.
# - PCA to two components: centre, SVD, project onto the two leading right singular vectors.
# - Turning angles quantify what the picture shows: the MLP's layers jump, the ODE's state flows.
#
# ## Further reading
# - R. T. Q. Chen, Y. Rubanova, J. Bettencourt, D. Duvenaud. *Neural Ordinary Differential
#   Equations*. NeurIPS 2018. arXiv:1806.07366.
# - Y. LeCun, L. Bottou, Y. Bengio, P. Haffner. *Gradient-Based Learning Applied to Document
#   Recognition*. Proceedings of the IEEE 86(11), 1998.
# - I. T. Jolliffe, J. Cadima. *Principal component analysis: a review and recent developments*.
#   Philosophical Transactions of the Royal Society A 374, 2016.
