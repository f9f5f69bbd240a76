# %% [markdown] slideshow={"slide_type": "skip"}
# Colab links appear here once the course's home repository is set (`make home`, see CONTRIBUTING.md).

# %% [markdown] slideshow={"slide_type": "slide"}
# # 06 · MNIST: MLP, ResNet and ODE-Net classifiers
#
# The last notebook of the core course puts everything together on real data: an ODE-Net that
# classifies handwritten digits, trained with the adjoint method, next to the two networks it grew
# out of, an MLP and a ResNet. We compare what they cost (parameters, function evaluations, time)
# and what they reach (accuracy), use the solver's tolerance as a knob at test time, and look inside:
# an MLP's hidden states jump from layer to layer, an ODE-Net's hidden state flows along a smooth path.
#
# **Learning objectives**
# - build an ODE-Net image classifier (a downsampling stem, an ODE block, a linear head) and an MLP
#   and a ResNet baseline, and count their parameters;
# - train the three with the same budget and compare held-out accuracy and training time;
# - read the forward and backward NFE of the ODE-Net during training with the adjoint method;
# - trade accuracy for compute after training by changing the solver tolerance;
# - project hidden states onto their first two principal components and measure how smooth the
#   ODE-Net's continuous path is compared with an MLP's layers.
#
# **Estimated time:** 75 minutes (the full-mode training takes a few minutes on a laptop CPU)

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

import time

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from torch import nn

from nodecourse.claims import check, claim, report
from nodecourse.config import FAST, device, seed_everything
from nodecourse.data import load_mnist, split_holdout
from nodecourse.models import MLP, ODEBlock, ODEFunc, ResNet
from nodecourse.plotting import pca_project, pca_trajectories
from nodecourse.train import accuracy, count_parameters, train

seed_everything(0)
DEVICE = device()
print(f"device: {DEVICE}, fast mode: {FAST}")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Hyperparameters
# The only cell the test suite changes: fast mode trains on 2,048 digits for one pass (64 iterations),
# which still lifts every model well above chance (10%); the full run trains for a few epochs.

# %% [markdown] slideshow={"slide_type": "notes"}
# Speaker notes (3 min with the setup). Only this cell depends on fast mode: the accuracy bars are 95% for
# the ODE-Net in full mode and 60% in fast mode (chance is 10%), and in fast mode each accuracy line adds
# that one pass over 2,048 digits leaves the models far from trained (the MLP at about 65%). The full run
# trains for about a minute on a 2-core CPU (the ODE-Net's share is 16-35 s): start the training cell of
# section 3 early and talk over it. Keep the one-thread cell below: with two threads on a busy 2-core
# machine the training runs several times slower; with full MNIST on disk the notebook trains on all
# 60,000 digits for 2 epochs, a few minutes more. Ask the room why one thread can beat two.

# %%
n_train = 2048 if FAST else None      # training digits used (None: all of them)
n_test = 300 if FAST else None         # held-out digits evaluated (None: all of them)
epochs_subset = 1 if FAST else 5       # passes over the 4,000 training digits of the shipped subset
epochs_full = 1 if FAST else 2         # passes over the 60,000 digits when full MNIST is available
batch_size = 32 if FAST else 64
lr = 3e-3                              # Adam, the same for all three models
channels = 16                          # feature maps in the conv stem, the ResNet blocks and the ODE
train_tol = 1e-3                       # dopri5 rtol = atol while training the ODE-Net
test_tols = [1e-1, 1e-2, 1e-3, 1e-4, 1e-5]
accuracy_bars = ({"MLP": 0.4, "ResNet": 0.6, "ODE-Net": 0.6} if FAST
                 else {"MLP": 0.85, "ResNet": 0.9, "ODE-Net": 0.95})

# %% [markdown]
# The models are small (16 feature maps of 7 x 7): one CPU thread computes them faster than two, which
# would spend much of their time waiting for each other, and much faster when other programs compete
# for the cores. On a GPU this line changes nothing.

# %%
torch.set_num_threads(1)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 1. The data
# `load_mnist` takes MNIST from IDX files on disk or torchvision's downloader when it can, and
# otherwise uses the 5,000 real digits (500 per class) that ship with `nodecourse`. The subset has no
# test set of its own, so we hold out a stratified 1,000 (100 per class) and train on the other
# 4,000. With full MNIST we train on all 60,000 training digits and test on the 10,000 test digits,
# for fewer epochs.

# %% [markdown] slideshow={"slide_type": "notes"}
# Speaker notes (8 min). `load_mnist` says which source it used: read that line aloud. The shipped subset
# is sorted by class, so always sample at random: the first digits would be a few classes only. Random
# shifts of up to 2 pixels do much of the work on 4,000 digits, and the ink check shows that a shift is a
# pure translation for the 88% of digits with a blank 2-pixel border. Ask: which augmentations would be
# unsafe for digits?

# %%
mnist = load_mnist()
if mnist.source == "subset":
    train_set, test_set = split_holdout(mnist, n_test=1000, seed=0)
    n_epochs = epochs_subset
    check("4,000 training and 1,000 held-out digits, 100 per class",
          (len(train_set), len(test_set)) == (4000, 1000) and torch.equal(torch.bincount(test_set.labels),
                                                                          torch.full((10,), 100)))
else:
    train_set, test_set = mnist, load_mnist(train=False)
    n_epochs = epochs_full

g = torch.Generator().manual_seed(0)  # the subset is sorted by class: take random digits, not the first ones
train_idx = torch.randperm(len(train_set), generator=g)[:n_train]
test_idx = torch.randperm(len(test_set), generator=g)[:n_test]
X_train, y_train = train_set.images[train_idx], train_set.labels[train_idx]
X_test, y_test = test_set.images[test_idx], test_set.labels[test_idx]
print(f"train on {len(y_train):,} digits for {n_epochs} epoch(s), test on {len(y_test):,} held-out digits")
check("images of 1 x 28 x 28 with values in [0, 1]",
      X_train.shape[1:] == (1, 28, 28) and 0.0 <= X_train.min() and X_train.max() <= 1.0)
check("every digit is in the test set", set(y_test.tolist()) == set(range(10)))

# %%
fig, axes = plt.subplots(2, 10, figsize=(10, 2.3))
for ax, img, label in zip(axes.flat, X_train[:20], y_train[:20]):
    ax.imshow(img[0], cmap="gray_r")
    ax.set_title(int(label), fontsize=9)
    ax.axis("off")
plt.tight_layout()
plt.show()


# %% [markdown] slideshow={"slide_type": "subslide"}
# ### Augmentation: random shifts
# Four thousand digits are few for a network that should generalise to strangers' handwriting. A
# cheap remedy is to show each digit at a random offset of up to $\pm 2$ pixels in each direction
# every time it is drawn: a shifted 3 is still a 3. We pad by 2 and crop a random $28 \times 28$
# window, separately for every image.

# %%
def random_shift(images: torch.Tensor, max_shift: int = 2) -> torch.Tensor:
    """Shift each image of ``images [N, 1, 28, 28]`` by its own random offset in [-max_shift, max_shift]^2."""
    n, _, height, width = images.shape
    padded = F.pad(images, (max_shift,) * 4)
    dy = torch.randint(0, 2 * max_shift + 1, (n, 1, 1), device=images.device)
    dx = torch.randint(0, 2 * max_shift + 1, (n, 1, 1), device=images.device)
    rows = dy + torch.arange(height, device=images.device).view(1, -1, 1)
    cols = dx + torch.arange(width, device=images.device).view(1, 1, -1)
    return padded[torch.arange(n, device=images.device).view(-1, 1, 1), 0, rows, cols].unsqueeze(1)


class ShiftedBatches:
    """Minibatches of randomly shifted digits: one pass over a fresh permutation per iteration of the loop."""

    def __init__(self, X: torch.Tensor, y: torch.Tensor, batch_size: int) -> None:
        self.X, self.y, self.batch_size = X, y, batch_size

    def __iter__(self):
        perm = torch.randperm(len(self.y))
        for start in range(0, len(perm) - self.batch_size + 1, self.batch_size):
            idx = perm[start:start + self.batch_size]
            yield random_shift(self.X[idx]), self.y[idx]


# %% [markdown]
# A shift moves the ink without changing it. MNIST digits are centred in the $28 \times 28$ frame,
# so for most of them the outer 2-pixel border is blank and nothing falls off the edge: their total
# ink is exactly the same after the shift.

# %%
sample = X_train[:2000]
frame_ink = sample.clone()
frame_ink[:, :, 2:-2, 2:-2] = 0
blank_border = frame_ink.flatten(1).sum(1) == 0
shifted = random_shift(sample)
ink_before, ink_after = sample.flatten(1).sum(1), shifted.flatten(1).sum(1)
print(f"{blank_border.float().mean():.1%} of the digits have a blank 2-pixel border")
claim("digits with a blank border: largest change of total ink", (ink_before - ink_after)[blank_border].abs().max(),
      at_most=1e-4, fmt=".1e")
claim("digits that really moved (a zero shift has chance 1/25)", (shifted != sample).flatten(1).any(1).float().mean(),
      at_least=0.8)

fig, axes = plt.subplots(1, 6, figsize=(7, 1.5))
axes[0].imshow(X_train[0, 0], cmap="gray_r")
axes[0].set_title("original", fontsize=9)
for ax in axes[1:]:
    ax.imshow(random_shift(X_train[:1])[0, 0], cmap="gray_r")
    ax.set_title("shifted", fontsize=9)
for ax in axes:
    ax.set_xticks([])
    ax.set_yticks([])
plt.show()

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 2. Three classifiers
# ### The MLP
# The plain baseline flattens the image to 784 numbers and sends it through five hidden layers of
# 128 tanh units. A `Linear(m, n)` layer has $mn + n$ parameters (weights and biases).

# %% [markdown] slideshow={"slide_type": "notes"}
# Speaker notes (12 min). Stem, body, head: the ResNet and the ODE-Net differ only in the body, and ResNet
# minus ODE-Net is exactly 5 × 4,736 parameters (six fields against one). Point out the GroupNorm in the
# field: BatchNorm would make $f$ depend on the batch and on train/eval mode, so it would not be one
# vector field (a common mistake, like calling `train()` at evaluation time). Explain the adjoint choice:
# constant memory, and a backward cost we can count. `ResNet(field, depth=6, shared=False)` deep-copies
# one field, so the six blocks start from the same weights and diverge as they train. Ask: which of the
# three models does the least compute per digit?

# %%
mlp_sizes = [28 * 28, 128, 128, 128, 128, 128, 10]
mlp = nn.Sequential(nn.Flatten(), MLP(mlp_sizes, nn.Tanh))
mlp_formula = sum(m * n + n for m, n in zip(mlp_sizes[:-1], mlp_sizes[1:]))
check("MLP parameters: the sum of mn + n over the layers", count_parameters(mlp) == mlp_formula,
      detail=f"{count_parameters(mlp):,}")


# %% [markdown] slideshow={"slide_type": "subslide"}
# ### A stem, a body and a head
# The ResNet and the ODE-Net share everything but their middle, as in Chen et al. (2018). A small
# convolutional **stem** turns the image into `channels` feature maps of $7 \times 7$ (two stride-2
# convolutions halve the resolution twice); the **body** transforms this $16 \times 7 \times 7 = 784$
# dimensional state; a linear **head** reads the class scores off it. The body's building block is
# a small conv net $f$ (group norm, ReLU, $3 \times 3$ convolution, twice) that maps a state to a state
# of the same shape, the kind of function that can serve both as a residual branch and as a vector
# field.

# %%
def norm(c: int) -> nn.Module:
    return nn.GroupNorm(min(8, c), c)


def make_stem(c: int) -> nn.Module:
    """[B, 1, 28, 28] -> [B, c, 7, 7]"""
    return nn.Sequential(nn.Conv2d(1, c, 3, padding=1), norm(c), nn.ReLU(),
                         nn.Conv2d(c, c, 4, stride=2, padding=1), norm(c), nn.ReLU(),
                         nn.Conv2d(c, c, 4, stride=2, padding=1))


def make_head(c: int) -> nn.Module:
    """[B, c, 7, 7] -> [B, 10] class scores"""
    return nn.Sequential(norm(c), nn.ReLU(), nn.Flatten(), nn.Linear(c * 7 * 7, 10))


def make_field(c: int) -> nn.Module:
    """f: [B, c, 7, 7] -> [B, c, 7, 7], a residual branch or the dynamics dh/dt = f(h)"""
    return nn.Sequential(norm(c), nn.ReLU(), nn.Conv2d(c, c, 3, padding=1),
                         norm(c), nn.ReLU(), nn.Conv2d(c, c, 3, padding=1), norm(c))


x = X_train[:5]
h = make_stem(channels)(x)
print(f"image {tuple(x.shape)} -> stem {tuple(h.shape)} -> field {tuple(make_field(channels)(h).shape)} "
      f"-> head {tuple(make_head(channels)(h).shape)}")
check("the field maps a state to a state of the same shape",
      h.shape == (5, channels, 7, 7) and make_field(channels)(h).shape == h.shape)

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### The ResNet
# Six residual blocks, each with its own weights: $h_{k+1} = h_k + f_k(h_k)$, $k = 0, \dots, 5$.
# Notebook 02 showed that this is Euler's method with step 1 for a vector field that changes from
# layer to layer. `nodecourse.models.ResNet` with `shared=False` gives each block its own copy of $f$.
#
# ### The ODE-Net
# One vector field for the whole body: $\dot h(t) = f(h(t))$ on $t \in [0, 1]$, $h(0)$ = the stem's
# output, the head reads $h(1)$. Dopri5 solves it to `rtol = atol = 1e-3`, and the gradients come from
# the **adjoint method** of notebook 04. We use the adjoint here for two reasons: the memory of
# training no longer grows with the number of solver steps, and the backward pass becomes a solve of
# its own whose cost we can count (`nfe_backward`), next to the forward one. With backpropagation
# through the solver the backward pass replays the recorded operations instead and the block reports
# no backward evaluations at all.

# %%
seed_everything(0)
resnet = nn.Sequential(make_stem(channels), ResNet(make_field(channels), depth=6, shared=False),
                       make_head(channels))
ode_net = nn.Sequential(
    make_stem(channels),
    ODEBlock(ODEFunc(make_field(channels)), t1=1.0, method="dopri5", rtol=train_tol, atol=train_tol,
             adjoint=True),
    make_head(channels),
)
models = {"MLP": mlp, "ResNet": resnet, "ODE-Net": ode_net}
params = {name: count_parameters(model) for name, model in models.items()}
field_params = count_parameters(make_field(channels))
for name, n in params.items():
    print(f"{name:8s} {n:8,d} parameters")
print(f"one field f: {field_params:,} parameters")
check("six fields against one: ResNet - ODE-Net = 5 fields", params["ResNet"] - params["ODE-Net"] == 5 * field_params,
      detail=f"{params['ResNet'] - params['ODE-Net']:,} = 5 x {field_params:,}")

# %% [markdown]
# The ODE-Net has one field where the ResNet has six, so it has $5 \times$ 4,736 fewer parameters:
# less than half the ResNet's and an eighth of the MLP's. What it does not save is compute: every
# evaluation of $f$ costs as much as one ResNet block, and the solver decides how many it needs.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 3. Training with the same budget
# Same data, same shifts, same batches (the same seed before each run), same optimizer and learning
# rate, same number of iterations; `nodecourse.train.train` runs the loop and records the loss and,
# for the ODE-Net, the forward and backward NFE of every iteration. We time each run.

# %% [markdown] slideshow={"slide_type": "notes"}
# Speaker notes (10 min). Same seed, so all three models see the same batches and shifts. A typical full
# run: MLP about 90%, ResNet about 96-97%, ODE-Net about 97% (bar 95%); the ODE-Net's training time
# (16-35 s) is a `·` line, because a clock is never a check. Do not sell the ranking; sell the parameter
# count and the cost. The misconception to name: "the ODE-Net is cheaper because it has fewer parameters".
# It needs about 20 evaluations of $f$ forward and about 20 vector-Jacobian products backward, against 6 +
# 6 for the ResNet. Ask the room to guess the ranking before the table appears.

# %%
n_iters = n_epochs * (len(y_train) // batch_size)
histories, seconds, accuracies = {}, {}, {}
for name, model in models.items():
    model.to(DEVICE)
    seed_everything(1)  # the same batches and shifts for every model
    start = time.perf_counter()
    histories[name] = train(model, F.cross_entropy, ShiftedBatches(X_train, y_train, batch_size), n_iters,
                            lr=lr, desc=name, log_every=20)
    seconds[name] = time.perf_counter() - start
    accuracies[name] = accuracy(model, X_test, y_test)

print(f"{n_iters} iterations of {batch_size} digits each")
print(f"{'model':8s} {'params':>8s} {'train time':>11s} {'test accuracy':>14s}")
for name in models:
    print(f"{name:8s} {params[name]:8,d} {seconds[name]:10.1f}s {accuracies[name]:14.1%}")
full_mode_typical = {"MLP": "about 90%", "ResNet": "96-97%", "ODE-Net": "about 97%"}
for name, bar in accuracy_bars.items():
    claim(f"{name}: held-out accuracy", accuracies[name], at_least=bar,
          fast_note=f"one pass over {len(y_train):,} digits, far from trained; "
                    f"full mode reaches {full_mode_typical[name]}")
report("ODE-Net training time (s)", seconds["ODE-Net"], why="a wall-clock time: it depends on the machine")


# %% [markdown]
# All three learn far beyond chance, and the ODE-Net reaches its bar with the fewest parameters. Do
# not read too much into the ranking: with a different budget or more tuning the order of the ResNet
# and the ODE-Net can change. The costs are robust, though: the ODE-Net is the slowest per
# iteration because its solver evaluates $f$ many times, and the next section counts how many.
#
# The loss curves (a running mean over 20 iterations) show the three models learning on the same batches.

# %%
def running_mean(values, window: int = 20) -> torch.Tensor:
    v = torch.as_tensor(values, dtype=torch.float64)
    window = max(1, min(window, len(v)))
    return torch.nn.functional.avg_pool1d(v.view(1, 1, -1), window, stride=1).flatten()


fig, ax = plt.subplots(figsize=(6, 3.5))
for name, history in histories.items():
    ax.plot(running_mean(history.loss), label=f"{name} ({accuracies[name]:.1%})")
ax.set_xlabel("iteration")
ax.set_ylabel("cross-entropy (running mean)")
ax.set_yscale("log")
ax.legend()
plt.show()
window = max(2, min(20, n_iters // 8))
for name, history in histories.items():
    first, last = running_mean(history.loss, window)[[0, -1]].tolist()
    claim(f"{name}: loss at the end / at the start (running means)", last / first, at_most=0.7)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 4. Function evaluations during training
# Dopri5 has seven stages but reuses the last one as the next step's first (FSAL), so each step costs
# six new evaluations; choosing the first step costs two. A forward solve that takes $k$ steps
# (accepted or rejected) therefore costs $\text{NFE} = 2 + 6k$. The adjoint's reverse solve is a
# dopri5 solve too, of the augmented state $[h, a, g]$, so its count has the same form; each of its
# evaluations is one evaluation of $f$ plus a vector-Jacobian product.

# %% [markdown] slideshow={"slide_type": "notes"}
# Speaker notes (10 min). For dopri5 (FSAL), NFE = 2 + 6 × steps, and a check line confirms it on every
# iteration. Forward NFE is about 21, backward about 21 (ratio 0.9-1.1), against the ResNet's 6 block
# evaluations; per iteration the ODE-Net is about 3× slower than the ResNet. The batch shares one step
# size (notebook 03), so one hard digit makes the whole batch pay. Common mistake: expecting
# `nfe_backward` without the adjoint; backpropagating through the solver reports 0, because autograd
# replays the recorded graph. Ask: how many evaluations do three dopri5 steps cost?

# %%
nfe_f = torch.tensor(histories["ODE-Net"].nfe_forward)
nfe_b = torch.tensor(histories["ODE-Net"].nfe_backward)
steps_f, steps_b = (nfe_f - 2) / 6, (nfe_b - 2) / 6
print(f"forward NFE: mean {nfe_f.float().mean():.1f}, range {int(nfe_f.min())}-{int(nfe_f.max())}")
print(f"backward NFE: mean {nfe_b.float().mean():.1f}, range {int(nfe_b.min())}-{int(nfe_b.max())}")
check("NFE = 2 + 6 x steps on every iteration, forward and backward",
      torch.all((nfe_f - 2) % 6 == 0) and torch.all((nfe_b - 2) % 6 == 0))
claim("the adjoint solves backwards: smallest backward NFE", nfe_b.min(), at_least=8)
claim("backward / forward NFE", nfe_b.float().mean() / nfe_f.float().mean(), at_least=0.5, at_most=2.0, fmt=".2f")

fig, ax = plt.subplots(figsize=(6, 3.5))
ax.plot(nfe_f, ".", markersize=3, alpha=0.4, color="C0")
ax.plot(nfe_b, ".", markersize=3, alpha=0.4, color="C3")
ax.plot(running_mean(nfe_f), color="C0", label="forward NFE")
ax.plot(running_mean(nfe_b), color="C3", label="backward NFE (adjoint)")
ax.axhline(6, color="0.5", linestyle="--", label="ResNet: 6 blocks")
ax.set_xlabel("iteration")
ax.set_ylabel("evaluations of f")
ax.set_ylim(0, 1.6 * max(nfe_f.max(), nfe_b.max()))
ax.legend(loc="upper right", ncol=2, fontsize=8)
plt.show()

# %% [markdown]
# The ResNet evaluates its six blocks once each per forward pass; the ODE-Net evaluates its one
# field several times as often, forward and again backward. That is the trade: parameters for
# compute, with the solver, not the architect, choosing the depth. As training sharpens the
# dynamics the solver may need more steps (Chen et al. saw the NFE grow over training; regularising
# the dynamics to keep it low is the subject of notebook 11).

# %%
per_iteration = {name: seconds[name] / n_iters * 1000 for name in models}
print("milliseconds per training iteration: " + ", ".join(f"{k} {v:.0f}" for k, v in per_iteration.items()))
claim("mean forward NFE of the ODE-Net, against the ResNet's 6 blocks", nfe_f.float().mean(), at_least=7)


# %% [markdown] slideshow={"slide_type": "slide"}
# ## 5. The tolerance is a test-time knob
# The trained weights define a vector field; how accurately we integrate it is a choice we can make
# again after training. A loose tolerance takes few, large steps; a tight one many small steps. We
# evaluate the trained ODE-Net at $\text{rtol} = \text{atol} \in \{10^{-1}, \dots, 10^{-5}\}$ and
# record the held-out accuracy and the mean forward NFE per batch of 1,000 digits.

# %% [markdown] slideshow={"slide_type": "notes"}
# Speaker notes (12 min). From rtol = atol = 1e-1 to 1e-5 the NFE goes 14, 20, 20, 32, 50 and the accuracy
# stays put to 0.1 point: tighter than the training tolerance buys nothing. Fixed steps on the trained
# field: Euler with 6 steps (a weight-tied 6-block ResNet, notebook 02) is within a point of dopri5, and 1
# step loses 1-2 points; stress that this describes this trained field, not a law. Common mistake: reading
# a tighter tolerance as "more accurate classification"; it only makes the ODE solution more accurate. Ask
# the room to predict the accuracy at 1e-5 before the sweep runs.

# %%
def evaluate_at_tolerances(model, X, y, tols, batch_size=1000):
    """[(tol, accuracy, mean NFE per batch)] of the model's one ODEBlock at rtol = atol = tol."""
    block = next(m for m in model.modules() if isinstance(m, ODEBlock))
    saved = (block.rtol, block.atol)
    model.eval()
    results = []
    try:
        with torch.no_grad():
            for tol in tols:
                block.rtol = block.atol = tol
                correct, nfes = 0, []
                for start in range(0, len(y), batch_size):
                    xb, yb = X[start:start + batch_size].to(DEVICE), y[start:start + batch_size].to(DEVICE)
                    correct += int((model(xb).argmax(-1) == yb).sum())
                    nfes.append(block.nfe_forward)
                results.append((tol, correct / len(y), sum(nfes) / len(nfes)))
    finally:
        block.rtol, block.atol = saved
    return results


sweep = evaluate_at_tolerances(ode_net, X_test, y_test, test_tols)
for tol, acc, nfe in sweep:
    print(f"tol {tol:.0e}: accuracy {acc:.2%}, NFE {nfe:.0f}")
tols, accs, nfes = zip(*sweep)
check("tighter tolerance, never fewer evaluations", all(later >= earlier for earlier, later in zip(nfes, nfes[1:])))
claim(f"NFE at tol {tols[-1]:.0e} / at tol {tols[0]:.0e}", nfes[-1] / nfes[0], at_least=1.2)
tight = [acc for tol, acc, _ in sweep if tol <= train_tol]
claim("spread of the accuracy at and below the training tolerance", max(tight) - min(tight), at_most=0.01)
check("the sweep restored the block's tolerance", ode_net[1].rtol == train_tol)

# %%
fig, ax1 = plt.subplots(figsize=(6, 3.5))
ax1.semilogx(tols, [100 * a for a in accs], "o-", color="C0")
ax1.set_xlabel("rtol = atol at test time")
ax1.set_ylabel("held-out accuracy (%)", color="C0")
ax1.set_ylim(max(0, 100 * min(accs) - 10), 100)
ax1.invert_xaxis()
ax2 = ax1.twinx()
ax2.semilogx(tols, nfes, "s--", color="C3")
ax2.set_ylabel("forward NFE", color="C3")
ax1.axvline(train_tol, color="0.6", linestyle=":")
ax1.set_title("tighter tolerance (to the right): more evaluations, same accuracy")
plt.show()

# %% [markdown]
# Tightening the tolerance beyond the training tolerance multiplies the cost and buys nothing: the
# classifier does not need the ODE solved more accurately than it was trained with. Loosening it can
# be almost free too, until the solution gets so coarse that the features the head reads change.
# Where that happens is a property of the trained model; a deployed ODE-Net can pick the cheapest
# tolerance whose accuracy is still acceptable, without retraining.

# %%
cheapest = min((nfe for tol, acc, nfe in sweep if acc >= max(accs) - 0.01))
claim(f"NFE of the cheapest tolerance within a point of the best accuracy / NFE at tol {tols[-1]:.0e}",
      cheapest / nfes[-1], at_most=0.9)

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### How coarse can we go? Fixed steps on the trained field
# Dopri5 at the loosest tolerance still takes two steps. We can also integrate the trained field
# with a fixed-step method and count exactly: Euler with $n$ steps costs $n$ evaluations, RK4 four
# per step. Euler with 6 steps of size $1/6$ *is* a ResNet with six weight-tied blocks
# $h \leftarrow h + \tfrac16 f(h)$ (notebook 02), built from the ODE-Net's one field.

# %%
block = ode_net[1]
saved = (block.method, block.options)
fixed = []
try:
    for method, n_steps in [("euler", 1), ("euler", 2), ("euler", 6), ("rk4", 1)]:
        block.method, block.options = method, {"step_size": 1.0 / n_steps}
        fixed.append((method, n_steps, accuracy(ode_net, X_test, y_test), block.nfe_forward))
finally:
    block.method, block.options = saved
dopri_acc = dict((tol, acc) for tol, acc, _ in sweep)[train_tol]
for method, n_steps, acc, nfe in fixed:
    print(f"{method:5s} {n_steps} step(s): accuracy {acc:.2%}, NFE {nfe}")
print(f"dopri5 at tol {train_tol:.0e}: accuracy {dopri_acc:.2%}")
check("Euler: one evaluation per step; RK4: four", [nfe for *_, nfe in fixed] == [1, 2, 6, 4])
claim("|accuracy of the weight-tied 6-step Euler ResNet - dopri5's|", abs(fixed[2][2] - dopri_acc), at_most=0.02)

# %% [markdown]
# The field learned here is smooth enough that a handful of Euler steps follows it closely enough
# for the classifier: the adaptive solver's extra evaluations buy accuracy of the ODE solution, not
# of the classification. That is a property of this trained field, not a rule (a field with sharper
# dynamics, as in notebooks 07 and 11, punishes coarse steps), and it is why checking a trained
# ODE-Net against a coarser solver is worth the minute it takes.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 6. Hidden states: layers against a continuous path
# Take one held-out digit and record the hidden state of each model as the input passes through:
# - the **MLP**: its five hidden layers, five points in $\mathbb{R}^{128}$;
# - the **ResNet**: the stem's output and the state after each of the six blocks, seven points in
#   $\mathbb{R}^{784}$;
# - the **ODE-Net**: $h(t)$ at 121 times in $[0, 1]$, sampled from one continuous solution in
#   $\mathbb{R}^{784}$ (the solver's dense output gives any time we ask for).
#
# To look at a path in $\mathbb{R}^{784}$ we project it onto its own first two **principal
# components**: centre the states on their mean, take the singular value decomposition
# $H - \bar H = U S V^\top$ and keep the coordinates along the first two columns of $V$, the two
# directions in which the path spreads most (`nodecourse.plotting.pca_project`).

# %% [markdown] slideshow={"slide_type": "notes"}
# Speaker notes (15 min). The MLP gives 5 points in $\mathbb R^{128}$, the ResNet 7 points in
# $\mathbb R^{784}$, the ODE-Net a path of 121 samples of one solution. In the projection the MLP turns by
# up to about 175°, the ResNet by about 30-45°, the ODE-Net by at most about 0.5° between consecutive
# samples: the classic MLP-versus-Neural-ODE picture, with the ResNet in between. Do not over-read the
# figure: each panel has its own principal components (signs arbitrary) and its own scales, and a 2-D
# projection can show crossings that the full state does not have (notebook 01). Ask: what would the
# ResNet's panel look like with 100 blocks?

# %%
digit = X_test[:1].to(DEVICE)
with torch.no_grad():
    flat, mlp_states = digit.flatten(1), []
    for layer in mlp[1]:
        flat = layer(flat)
        if isinstance(layer, nn.Tanh):
            mlp_states.append(flat[0])
    mlp_states = torch.stack(mlp_states)                                    # [5, 128]
    resnet_states = resnet[1].trajectory(resnet[0](digit)).flatten(1)       # [7, 784]
    ode_net.eval()
    ode_states = ode_net[1].trajectory(ode_net[0](digit), steps=121).flatten(1)  # [121, 784]
print("MLP", tuple(mlp_states.shape), "ResNet", tuple(resnet_states.shape), "ODE-Net", tuple(ode_states.shape))
with torch.no_grad():
    end_gap = (ode_states[-1] - ode_net[1](ode_net[0](digit)).flatten()).abs().max()
claim("the path ends at h(1): max difference", end_gap, at_most=1e-4, fmt=".1e")

# %%
fig, axes = plt.subplots(1, 3, figsize=(13, 4))
pca_trajectories(axes[0], [mlp_states.cpu()], labels=["MLP: 5 hidden layers"])
pca_trajectories(axes[1], [resnet_states.cpu()], labels=["ResNet: stem + 6 blocks"])
pca_trajectories(axes[2], [ode_states.cpu()], labels=["ODE-Net: h(t), 121 times in [0, 1]"], markers=False)
at_layers = pca_project(ode_states.cpu())[0][::20]  # t = 0, 1/6, ..., 1: where the ResNet has its states
axes[2].plot(at_layers[:, 0], at_layers[:, 1], "o", color="C1", markersize=4, label="h(k/6)")
axes[2].legend()
for ax, title in zip(axes, ["MLP", "ResNet", "ODE-Net"]):
    ax.set_title(title)
plt.tight_layout()
plt.show()


# %% [markdown]
# The MLP's states jump in unrelated directions from layer to layer; the ResNet's move in a few
# large strides; the ODE-Net's trace a smooth curve, on which the states at the ResNet's depths
# $t = k/6$ (orange) are just seven of infinitely many. (Mind the axes: each panel has its own scale,
# and the second component of the ODE path spreads far less than the first.) One number for "smooth"
# is the **turning angle** between consecutive segments of the projected path: 0° means going straight
# on, 180° turning right back. A curve sampled finely turns by small angles at every point; a path of a
# few jumps turns by large ones.

# %%
def turning_angles(path: torch.Tensor) -> torch.Tensor:
    """Degrees between consecutive segments of ``path [T, k]``: ``[T - 2]`` values in [0, 180]."""
    seg = path[1:] - path[:-1]
    cos = (seg[:-1] * seg[1:]).sum(-1) / (seg[:-1].norm(dim=-1) * seg[1:].norm(dim=-1))
    return torch.rad2deg(torch.arccos(cos.clamp(-1.0, 1.0)))


angles = {name: turning_angles(pca_project(states.cpu().double(), 2)[0])
          for name, states in [("MLP", mlp_states), ("ResNet", resnet_states), ("ODE-Net", ode_states)]}
for name, a in angles.items():
    print(f"{name:8s} turning angles: max {a.max():6.1f} deg, mean {a.mean():6.1f} deg over {len(a)} corners")
claim("the ODE-Net's path never turns sharply: its largest turning angle (deg)", angles["ODE-Net"].max(), at_most=20)
claim("largest turning angle, ODE-Net / MLP", angles["ODE-Net"].max() / angles["MLP"].max(), at_most=0.5, fmt=".1e")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Recap
# - An ODE-Net for images is a conv stem, an ODE block $\dot h = f(h)$ on $[0, 1]$ and a linear head;
#   on 4,000 digits it passes 95% held-out accuracy in a few epochs on a CPU, with the parameters of
#   *one* residual block in its body where the ResNet has six.
# - What it saves in parameters it spends in compute: the solver evaluates $f$ about 20 times per
#   forward pass and the adjoint about as often backward, against the ResNet's 6 blocks. For dopri5,
#   NFE $= 2 + 6 \times$ steps.
# - The tolerance is a test-time knob: tighter than the training tolerance costs more and changes
#   nothing; looser saves evaluations until the features change.
# - Projected onto two principal components, an MLP's hidden states jump from layer to layer while an
#   ODE-Net's hidden state follows a smooth, continuous path, which we can sample at any time.
#
# ## Further reading
# - R. T. Q. Chen, Y. Rubanova, J. Bettencourt, D. Duvenaud. *Neural Ordinary Differential
#   Equations*. NeurIPS 2018. arXiv:1806.07366. (Sec. 3: the MNIST ODE-Net, its parameter count, NFE
#   forward and backward, and the tolerance trade-off.)
# - K. He, X. Zhang, S. Ren, J. Sun. *Deep Residual Learning for Image Recognition*. CVPR 2016.
#   arXiv:1512.03385.
# - Y. LeCun, L. Bottou, Y. Bengio, P. Haffner. *Gradient-Based Learning Applied to Document
#   Recognition*. Proceedings of the IEEE 86(11), 1998. (The MNIST data set.)
# - E. Dupont, A. Doucet, Y. W. Teh. *Augmented Neural ODEs*. NeurIPS 2019. arXiv:1904.01681.
# - C. Finlay, J.-H. Jacobsen, L. Nurbekyan, A. M. Oberman. *How to Train Your Neural ODE: the World
#   of Jacobian and Kinetic Regularization*. ICML 2020. arXiv:2002.02798.
# - P. Kidger, R. T. Q. Chen, T. Lyons. *"Hey, that's not an ODE": Faster ODE Adjoints via
#   Seminorms*. ICML 2021. arXiv:2009.09457.
# - S. Massaroli, M. Poli, J. Park, A. Yamashita, H. Asama. *Dissecting Neural ODEs*. NeurIPS 2020.
#   arXiv:2002.08071.
# - I. T. Jolliffe, J. Cadima. *Principal component analysis: a review and recent developments*.
#   Philosophical Transactions of the Royal Society A 374, 2016.

# %% [markdown] slideshow={"slide_type": "notes"}
# Speaker notes (5 min). Close on the trade: parameters for compute, with the solver, not the architect,
# choosing the depth, and the tolerance as a knob after training. Ask: when would you deploy the ODE-Net
# rather than the ResNet?
