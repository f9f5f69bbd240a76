# %% [markdown] slideshow={"slide_type": "skip"}
# Colab links appear here once the course's home repository is set (`make home`, see CONTRIBUTING.md).

# %% [markdown] slideshow={"slide_type": "skip"} tags=["generated-note", "fingerprint-0fc452a68ce22806"]
# > **This notebook is generated** from `solutions/09_time_series_exercises.ipynb` by `tools/make_exercises.py` (`make sync`):
# > course maintainers edit the solution notebook, never this one.
# >
# > **Learners:** do the exercises in your own copy, `work/09_time_series_exercises.ipynb` (`make work` makes it),
# > where no course tool and no `git pull` touches your answers.

# %% [markdown] slideshow={"slide_type": "slide"}
# # 09 · Time series: exercises
#
# Six exercises that build the plumbing of a latent ODE for irregularly sampled series (notebook
# 09): pad series of different lengths into a batch, average a loss over real observations only,
# find the union of a batch's query times, and predict every series at its own times from one ODE
# solve. At the end the four functions train a latent ODE. Exercises 1-4 ask you to implement a
# function; the checker below each runs it on labelled cases, one per requirement of the statement,
# prints what passed and what failed with a hint, and hands back the function the rest of the notebook
# goes on with: yours once it passes, the reference until then. The cells after it say whose function
# they ran.
#
# Exercises 5 and 6 are of two other kinds: exercise 5 hands you a function with a bug to find and
# repair, exercise 6 asks you to predict a number before a cell measures it. Hints come in stages: the
# first failure says which property failed, later failures nudge more specifically, and the answer
# appears only when you ask for it with `ex09.show_answer(k)`. Until an exercise passes, the notebook
# goes on with the reference.
#
# **Learning objectives**
# - turn a list of irregular series into padded tensors with a mask;
# - write a loss that padding cannot touch, not even NaN padding;
# - build the sorted union of a batch's times and the indices that map each series into it;
# - solve once for a whole batch and gather each series' states at its own times.
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

from nodecourse import odeint
from nodecourse.data import irregular_time_series
from nodecourse.exercises import ex09
from nodecourse.exercises.checking import who
from nodecourse.models.latent import LatentODE

torch.set_num_threads(1)   # small models: one CPU thread is fastest (see notebook 09)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Hyperparameters
# Fast mode shortens the training run at the end; the checkers always run the same cases.

# %%
n_iters = 80 if FAST else 600   # Adam steps of the latent ODE trained with the functions of exercises 1-4
t_split = 5.0                   # the encoder sees each series up to this time

# %% [markdown]
# The data for the whole notebook: 120 irregularly sampled spirals, each cut to a random number of
# observations between 12 and 30, so the series have different lengths and end at different times.

# %%
full = irregular_time_series(n_series=120, n_points=30, t_max=10.0, noise=0.05, seed=0, device=DEVICE)
generator = torch.Generator().manual_seed(0)
lengths = torch.randint(12, 31, (120,), generator=generator).tolist()
series_times = [full.times[i, :n] for i, n in enumerate(lengths)]
series_values = [full.values[i, :n] for i, n in enumerate(lengths)]
print(f"{len(lengths)} series with {min(lengths)} to {max(lengths)} observations")


# %% [markdown] slideshow={"slide_type": "slide"}
# ## Exercise 1: pad a batch
# Write `pad_batch(times, values)` that takes a list of series, `times[i]` of shape `[n_i]` and
# `values[i]` of shape `[n_i, D]`, and returns `(times [B, N], values [B, N, D], mask [B, N])` with
# $N = \max_i n_i$: series $i$ fills the **first** $n_i$ entries of row $i$, the rest is zero, and
# `mask` is a **bool** tensor, True exactly at the real entries. Keep the inputs' dtype and device.

# %%
def pad_batch(times: list[torch.Tensor], values: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Left-aligned, zero-padded batch of series of different lengths, with a bool mask of the real entries."""
    raise NotImplementedError("Exercise 1")


pad_batch = ex09.check_pad_batch(pad_batch)

# %% [markdown]
# The 120 series as one batch. Each row's real entries are its own series; the mask counts them.

# %%
times, values, mask = pad_batch(series_times, series_values)
print(f"{who(pad_batch)} pad_batch: times {tuple(times.shape)}, values {tuple(values.shape)}, "
      f"{int(mask.sum())} real entries")
assert mask.sum(1).tolist() == lengths
assert torch.equal(values[mask], torch.cat(series_values))


# %% [markdown] slideshow={"slide_type": "slide"}
# ## Exercise 2: a masked MSE
# Write `masked_mse(pred, target, mask)` for `pred, target [B, N, D]` and a bool `mask [B, N]`: the
# mean of the squared errors over the real entries and all $D$ channels,
# $$\frac{\sum_{b,k} m_{bk} \|\hat x_{bk} - x_{bk}\|^2}{D \sum_{b,k} m_{bk}},$$
# returned as a 0-d tensor (so that it can be backpropagated). The padding of `target` may hold
# anything, **NaN included**, and must change neither the result nor its gradient with respect to `pred`:
# note that $0 \cdot \text{NaN} = \text{NaN}$.

# %%
def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the real entries (mask True) and all channels; a 0-d tensor."""
    raise NotImplementedError("Exercise 2")


masked_mse = ex09.check_masked_mse(masked_mse)

# %% [markdown]
# On our batch: the loss of predicting 0 everywhere is the mean square of the real values, whatever
# we put in the padding.

# %%
poisoned = values.masked_fill(~mask.unsqueeze(-1), float("nan"))
loss_zero = masked_mse(torch.zeros_like(values), poisoned, mask)
print(f"MSE of the zero prediction ({who(masked_mse)} masked_mse): {loss_zero:.4f}")
assert torch.allclose(loss_zero, torch.cat(series_values).pow(2).mean())


# %% [markdown] slideshow={"slide_type": "slide"}
# ## Exercise 3: the union of the query times
# Write `union_times(times, mask, t0=0.0)` returning `(grid, index)`:
# - `grid [U]`: $t_0$ and every **real** time of the batch, sorted increasingly, each value once;
# - `index [B, N]` (integers): for every real entry, its position in `grid`, so that
#   `grid[index][mask] == times[mask]`; put 0 (the position of $t_0$) at padded entries.
#
# Padded entries may hold any time, even one larger than all real ones: leave them out. The times of
# a series need not be sorted for this. `torch.unique(..., sorted=True, return_inverse=True)` does
# most of the work.

# %%
def union_times(times: torch.Tensor, mask: torch.Tensor, t0: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(sorted distinct times with t0 [U], position of each real entry in that grid [B, N])."""
    raise NotImplementedError("Exercise 3")


union_times = ex09.check_union_times(union_times)

# %% [markdown]
# Our batch's union: one time vector for all 120 series.

# %%
grid, index = union_times(times, mask)
print(f"{who(union_times)} union_times: {int(mask.sum())} real times -> a grid of {grid.numel()} times "
      f"starting at {grid[0]:.0f}")
assert torch.equal(grid[index][mask], times[mask]) and grid[0] == 0


# %% [markdown] slideshow={"slide_type": "slide"}
# ## Exercise 4: predict every series at its own times, from one solve
# Write `predict_at_times(dynamics, decoder, z0, query_times, query_mask, rtol=1e-6, atol=1e-8)`:
# - `z0 [B, L]` are latent states at $t = 0$, `dynamics(t, z)` the latent vector field,
#   `decoder` maps `[..., L]` to `[..., D]`;
# - return the decoded latent states at each series' real query times, `[B, M, D]` (any values at
#   padded queries);
# - solve **once** for the whole batch: `odeint(dynamics, z0, grid, rtol=rtol, atol=atol,
#   method="dopri5")` on the union grid (your `union_times`), which returns `[U, B, L]`, then take series
#   $b$'s states at its indices (`torch.gather` along the time axis, after moving the batch axis first).
#
# The checker counts the evaluations of `dynamics`: one solve per series gives the right numbers at
# several times the cost, and fails.

# %%
def predict_at_times(dynamics: nn.Module, decoder: nn.Module, z0: torch.Tensor, query_times: torch.Tensor,
                     query_mask: torch.Tensor, rtol: float = 1e-6, atol: float = 1e-8) -> torch.Tensor:
    """decoder(z(t)) at every series' query times [B, M, D], from one Dopri5 solve on the union grid."""
    raise NotImplementedError("Exercise 4")


predict_at_times = ex09.check_predict_at_times(predict_at_times)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## The four functions train a latent ODE
# Take the encoder, latent field and decoder of `nodecourse.models.latent.LatentODE` and put them
# together with the four functions of exercises 1-4 (yours where they passed): the encoder sees each
# series up to $t = 5$, `predict_at_times` decodes the latent path at all of the series' times,
# `masked_mse` compares with the data. First a check that the assembly is the package's model:

# %%
functions = {"pad_batch": pad_batch, "masked_mse": masked_mse, "union_times": union_times,
             "predict_at_times": predict_at_times}
print("the functions used below: " + ", ".join(f"{name} ({who(fn)})" for name, fn in functions.items()))

seed_everything(0)
model = LatentODE(input_size=2, state_size=4, encoder_hidden_size=32, hidden_size=32, atol=1e-4).to(DEVICE)
seen = mask & (times <= t_split)
with torch.no_grad():
    z0 = model.encode(times, values, seen)
    assembled = predict_at_times(model.dynamics, model.decoder, z0, times, mask, rtol=model.rtol, atol=model.atol)
    package = model(times, values, seen, times, mask)
print(f"largest difference of the assembly ({who(predict_at_times)} predict_at_times) to LatentODE.forward at the "
      f"real entries: {(assembled - package)[mask].abs().max():.1e}")
assert torch.allclose(assembled[mask], package[mask], atol=1e-5)

# %%
optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
losses = []
for it in range(n_iters):
    rows = torch.randperm(len(lengths), generator=generator)[:32].to(DEVICE)
    z0 = model.encode(times[rows], values[rows], seen[rows])
    prediction = predict_at_times(model.dynamics, model.decoder, z0, times[rows], mask[rows], rtol=1e-3, atol=1e-4)
    loss = masked_mse(prediction, values[rows], mask[rows])
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    losses.append(loss.item())
first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
print(f"training loss ({who(masked_mse)} masked_mse) {first:.4f} -> {last:.4f} in {n_iters} steps")
assert last < first / 3, "the loss falls by a factor of 3 or more"

# %%
fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
axes[0].semilogy(losses)
axes[0].set(xlabel="step", ylabel=f"masked MSE ({who(masked_mse)})",
            title=f"a latent ODE trained with {who(predict_at_times)} predict_at_times")
b = 0
fine = torch.linspace(0, 10, 200, device=DEVICE).unsqueeze(0)
with torch.no_grad():
    curve = predict_at_times(model.dynamics, model.decoder, model.encode(times[:1], values[:1], seen[:1]),
                             fine, torch.ones_like(fine, dtype=torch.bool), rtol=1e-3, atol=1e-4)
axes[1].axvspan(0, t_split, color="0.94")
axes[1].plot(fine[0].cpu(), full.dense(fine[0])[b, :, 0].cpu(), color="0.7", lw=3, label="truth")
axes[1].plot(fine[0].cpu(), curve[0, :, 0].cpu(), color="C0",
             label=f"latent ODE ({who(predict_at_times)} predict_at_times)")
axes[1].plot(series_times[b].cpu(), series_values[b][:, 0].cpu(), "o", color="k", ms=3, label="observations")
axes[1].set(xlabel="t", ylabel="$y_1$", title="series 0 (the encoder sees the grey window)")
axes[1].legend(fontsize=8)
plt.show()


# %% [markdown] slideshow={"slide_type": "slide"}
# ## Exercise 5: find the bug in "the last observation"
# The encoder of a latent ODE starts from each series' last real observation. `last_observed(values, mask)`
# should return it, `[B, D]`, from a padded batch `values` (`[B, L, D]`, real entries first, padding after)
# and its `mask` (`[B, L]`, True at real entries; every series has at least one). It worked on a batch of
# equally long series. Run the checker, find the bug, and repair it.

# %%
def last_observed(values, mask):
    """Each series' last real observation: [B, L, D] and mask [B, L] -> [B, D]."""
    last = mask.long().sum(dim=1) - 1
    return values[:, -1]

last_observed = ex09.check_last_observed(last_observed)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Exercise 6: predict, then check
# Eight series, each observed at 5 random times drawn uniformly from $[0, 10]$. How many output times does
# the union grid of exercise 3 (with $t_0 = 0$) hold, that is, how many times must one solve of the whole
# batch return? Write your prediction into `predicted_length` before you run the cell; it must be exact.

# %%
predicted_length = None  # your prediction: a number
measured_length = ex09.check_union_size_prediction(predicted_length)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Recap
# - A batch of irregular series is three tensors: padded times, padded values and a bool mask.
# - A loss over a padded batch selects the real entries (`torch.where`), it does not multiply by
#   the mask: padding may hold NaN.
# - `torch.unique(..., return_inverse=True)` turns a batch's times into one sorted grid plus the
#   positions to gather from; with $t_0$ in front, one ODE solve serves every series.
# - `path.transpose(0, 1).gather(1, index[..., None].expand(-1, -1, L))` picks each series' states;
#   one solve costs a fraction of one solve per series.
#
# ## Further reading
# - Y. Rubanova, R. T. Q. Chen, D. Duvenaud. *Latent ODEs for Irregularly-Sampled Time Series*.
#   NeurIPS 2019. arXiv:1907.03907.
# - R. T. Q. Chen, Y. Rubanova, J. Bettencourt, D. Duvenaud. *Neural Ordinary Differential
#   Equations*. NeurIPS 2018. arXiv:1806.07366.
# - Z. Che, S. Purushotham, K. Cho, D. Sontag, Y. Liu. *Recurrent Neural Networks for Multivariate
#   Time Series with Missing Values*. Scientific Reports 8, 6085, 2018. arXiv:1606.01865.
