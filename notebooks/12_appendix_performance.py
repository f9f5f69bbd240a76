# %% [markdown] slideshow={"slide_type": "slide"}
# # 12 · Appendix · Performance: compiled steps and benchmarks
#
# An optional notebook for those who want to know where a solve's time goes. It continues section 9
# of notebook 03 (the overhead factor) and section 6 of notebook 04 (the adjoint against backprop):
# it times a mixed batch with one shared step, with one step per sample and with torchode; it removes
# most of a solver's overhead with a compiled step; and it runs `nodecourse`'s adjoint beside
# torchdiffeq's. No lecture depends on it.
#
# Times are your machine's, and they change with whatever else it is doing, so they are shown
# (lines starting with ·) and never checked. What is checked (lines starting with ✓) does not depend on
# the clock: evaluation counts, steps, operations launched, accuracy.
#
# **Learning objectives**
# - compare a shared step, one step per sample and torchode on a batch whose samples need very
#   different steps, in steps, evaluations and time;
# - count the operations a solver step launches and cut them with a compiled step
#   (`options={"compile": True}`), and say when compiling pays;
# - compare two implementations of the adjoint method: the same reverse solve, the same accuracy,
#   different bookkeeping.
#
# **Estimated time:** 30 minutes (optional: outside every lecture's plan).

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

# %% [markdown]
# The rest of the imports. Reference solutions are computed in float64; Apple's MPS has no float64,
# so there we fall back to the CPU. torchode is optional (`pip install torchode`); without it its rows
# are left out.

# %%
import statistics
import time
import warnings

import torchdiffeq

from nodecourse import odeint, odeint_adjoint, solve
from nodecourse.benchmarking import Counted, Row, call_time, fill_ratios, launched_ops, median_time, table
from nodecourse.claims import check, claim, report

try:
    import torchode
except ImportError:  # optional: pip install torchode
    torchode = None

DEV = torch.device("cpu") if DEVICE.type == "mps" else DEVICE
F64 = {"dtype": torch.float64, "device": DEV}

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Hyperparameters
# The only cell the test suite changes: fast mode takes fewer timed repeats and smaller batches.

# %% [markdown] slideshow={"slide_type": "notes"}
# Speaker notes (2 min with the setup). An optional appendix, outside every lecture's plan: for a
# tutorial, a lab or learners who ask where the time goes. Stress the two kinds of line: every time is a
# `·` line, shown and never checked, because it depends on the machine and on what else runs on it; the
# `✓` lines are the counts (NFE, steps, operations) and the accuracy, which do not. Ask the room why a
# lecture should never fail on a clock.

# %%
n_timing = 3 if FAST else 15     # timed repeats per solver (the median is shown)
n_repeats = 1 if FAST else 5     # timed repeats of the adjoint comparison, plus two
n_batch = 16 if FAST else 64     # samples in the mixed batch of section 1
n_compare = 64 if FAST else 256  # batch of the adjoint comparison of section 3

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 1. A mixed batch: one shared step, one step per sample, torchode
# The batch of notebook 03, section 8: decay rates $k_b$ spread over two orders of magnitude,
# $\dot y_b = -k_b y_b$. With one shared step every sample takes the steps of the fastest decay; with
# one step per sample (`options={"per_sample": True}`) each takes its own, while the batched function
# is still called until the slowest sample is done. torchode always keeps one step per sample. We
# time all of them with dopri5 and torchdiffeq's shared step beside them.

# %% [markdown] slideshow={"slide_type": "notes"}
# Speaker notes (8 min). The decay batch of notebook 03: with one step per sample each sample takes about
# a third of the shared step's steps (checked), and on a problem this small it is still slower on the
# clock (shown), because the batch waits for its slowest sample and every step does more bookkeeping. Ask:
# on what kind of problem would per-sample steps also win on the clock?

# %%
rates = torch.logspace(0, 2, n_batch, **F64)  # 1 ... 100


def decay(t, y):
    return -rates[:, None] * y


yb0 = torch.ones(n_batch, 1, **F64)
T_b, tol_b = 5.0, 1e-6
t_b = torch.tensor([0.0, T_b], **F64)


def torchode_solve(f, y0, t, tol):
    term = torchode.ODETerm(f)
    controller = torchode.IntegralController(atol=tol, rtol=tol, term=term)
    method = torchode.AutoDiffAdjoint(torchode.Dopri5(term=term), controller)
    return method.solve(torchode.InitialValueProblem(y0=y0, t_eval=t.expand(y0.shape[0], -1)))


mixed = []
with torch.no_grad():
    for name, options in (("nodecourse shared", None), ("nodecourse per-sample", {"per_sample": True})):
        sol = solve(decay, yb0, t_b, rtol=tol_b, atol=tol_b, options=options)
        seconds = median_time(lambda: solve(decay, yb0, t_b, rtol=tol_b, atol=tol_b, options=options), repeats=n_timing)
        mixed.append(Row("decay batch dopri5", name, seconds, float(sol.stats.n_calls),
                         float(sol.stats.n_steps if options is None else sol.stats.n_steps.double().mean())))
    counted = Counted(decay)
    torchdiffeq.odeint(counted, yb0, t_b, rtol=tol_b, atol=tol_b)
    seconds = median_time(lambda: torchdiffeq.odeint(decay, yb0, t_b, rtol=tol_b, atol=tol_b), repeats=n_timing)
    mixed.append(Row("decay batch dopri5", "torchdiffeq", seconds, counted.calls))
    if torchode is not None:
        out = torchode_solve(decay, yb0, t_b, tol_b)
        seconds = median_time(lambda: torchode_solve(decay, yb0, t_b, tol_b), repeats=n_timing)
        mixed.append(Row("decay batch dopri5", "torchode", seconds, out.stats["n_f_evals"].max().item(),
                         out.stats["n_steps"].double().mean().item()))
fill_ratios(mixed)
print(table(mixed))
claim("per sample: mean steps per sample / the shared step's steps", measured=mixed[1].steps / mixed[0].steps,
      at_most=0.5, fmt=".2f")
report("time per sample / time shared", mixed[1].seconds / mixed[0].seconds, fmt=".2f",
       why="a ratio of wall-clock times on this machine")

# %% [markdown]
# Read the columns: NFE here counts batched calls of `func`; "steps" is the mean number of steps a
# sample took. The time ratio `/tdq` compares with torchdiffeq on the same problem. Per-sample steps
# save work per sample, but the batch still waits for its slowest sample, and every step does more
# bookkeeping (a time, a step size and an accept/reject decision per sample): on a problem this small
# that bookkeeping, not the vector field, sets the time.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 2. Taking the overhead away: one compiled step
# Every small tensor operation launched from Python costs a few microseconds of dispatch, whatever
# its size. An RK4 step of a 4-32-32-4 tanh MLP launches about thirty of them: five per call of $f$
# (three linear layers, two tanh) and a dozen for the stage combinations. `torch.compile` can trace a
# whole step, the four calls of $f$ included, into one graph and fuse its elementwise work (bias,
# tanh, the combinations $y_0 + h\sum_j a_{ij} k_j$) into a few generated kernels. `nodecourse` does
# this with `options={"compile": True}`: the first solve pays the compilation (seconds), later solves
# with the same field and shapes reuse it. If your machine cannot compile (no C++ compiler), the
# solver warns and carries on without it.
#
# The network of notebook 03, section 9, with a batch of 64, and the time of one bare call of it:

# %% [markdown] slideshow={"slide_type": "notes"}
# Speaker notes (10 min). About 30 operations launched per step eager (the cell prints the count) against
# 2-3 compiled (a ratio of at least 10 is checked); the first compilation takes seconds and the speed-up is shown, not checked.
# Compilation pays back in training loops of thousands of solves, not in one. On a machine without a C++
# compiler the compiled cell warns and falls back to eager steps, and the notebook says so instead of
# checking the operation counts. Ask the room: how many solves does it take to pay back a compilation of
# about 15 s?

# %%
torch.manual_seed(0)
mlp = torch.nn.Sequential(torch.nn.Linear(4, 32), torch.nn.Tanh(), torch.nn.Linear(32, 32), torch.nn.Tanh(),
                          torch.nn.Linear(32, 4)).to(DEV).requires_grad_(False)
field = lambda t, y: mlp(y)  # noqa: E731
y_mlp = torch.randn(64, 4, device=DEV)
t_mlp = torch.tensor([0.0, 5.0], device=DEV)
bare = call_time(field, t_mlp[0], y_mlp)
report("one bare call of the MLP [microseconds]", 1e6 * bare, why="a wall-clock time on this machine")

# %% [markdown]
# We count the operations each solve launches (`launched_ops`, from the PyTorch profiler) and time
# both. Same method, same steps: the answers agree to round-off.

# %%
eager_options = {"step_size": 0.05}
compiled_options = {"step_size": 0.05, "compile": True}
with torch.no_grad(), warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    start = time.perf_counter()
    ys_compiled = odeint(field, y_mlp, t_mlp, method="rk4", options=compiled_options)
    first_solve = time.perf_counter() - start
compiled_ok = not any("could not compile" in str(w.message) for w in caught)

with torch.no_grad():
    ys_eager = odeint(field, y_mlp, t_mlp, method="rk4", options=eager_options)
    ops = {name: launched_ops(lambda: odeint(field, y_mlp, t_mlp, method="rk4", options=opts))
           for name, opts in (("eager", eager_options), ("compiled", compiled_options))}
    seconds = {name: median_time(lambda: odeint(field, y_mlp, t_mlp, method="rk4", options=opts), repeats=n_timing)
               for name, opts in (("eager", eager_options), ("compiled", compiled_options))}
n_steps = 100  # 5 / 0.05
for name in ops:
    print(f"{name:>8}: {ops[name] / n_steps:5.1f} operations launched per step, {seconds[name] * 1e3:6.2f} ms, "
          f"overhead factor {seconds[name] / (4 * n_steps * bare):.2f}")
claim("largest gap, compiled vs eager solve: the same steps, float32 round-off only",
      measured=(ys_compiled - ys_eager).abs().max(), at_most=1e-4)
if compiled_ok:
    claim("operations launched, eager / compiled: one graph per step", measured=ops["eager"] / ops["compiled"],
          at_least=10, fmt=".0f")
else:
    print("This machine could not compile: both solves ran eagerly, so the operation counts are the same.")
report("first compiled solve (tracing and compiling) [s]", first_solve, why="a wall-clock time on this machine")
report("speed-up of the compiled solve, eager time / compiled time", seconds["eager"] / seconds["compiled"],
       why="a ratio of wall-clock times on this machine", fmt=".2f")


# %% [markdown]
# The compiled solve launches a small fraction of the operations, and on most machines it is also the
# faster one. Look at its overhead factor: where it is below 1, the fused graph does the network's own
# elementwise work more cheaply than 400 separate eager calls of $f$. The price is the first solve's
# compilation, which pays off in a training loop of thousands of solves, not in a single one.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 3. Side by side with torchdiffeq's adjoint
# `torchdiffeq.odeint_adjoint` solves the same augmented system. Timing both on one problem in this
# process shows what an implementation adds on top of the mathematics: a 2-64-64-2 tanh MLP, a batch
# of samples, dopri5 at rtol = atol = 1e-5, a forward solve and a backward pass, with and without the
# seminorm. The time column ("ms") and "NFE" below are those of the backward pass, the adjoint's own
# work (the forward solve's time is listed under each row); the gradient error is measured against a
# float64 backprop reference at a tight tolerance.

# %% [markdown] slideshow={"slide_type": "notes"}
# Speaker notes (8 min). The same reverse steps (backward NFE equal, checked) and the same accuracy
# (checked), with and without the seminorm; only the backward times differ, and they are shown. Stress the
# order: compare solvers by NFE and accuracy first, then by the clock. Ask: if two adjoints take the same
# steps, where can their times differ?

# %%
class CountedMLP(torch.nn.Module):
    """f(t, h) = MLP(h), counting its evaluations."""

    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(2, 64), torch.nn.Tanh(), torch.nn.Linear(64, 64),
                                       torch.nn.Tanh(), torch.nn.Linear(64, 2))
        self.calls = 0

    def forward(self, t, h):
        self.calls += 1
        return self.net(h)


torch.manual_seed(0)
f_cmp = CountedMLP().to(DEVICE)
h0_cmp = torch.randn(n_compare, 2, device=DEVICE)
t_cmp = torch.tensor([0.0, 1.0], device=DEVICE)
params = tuple(f_cmp.parameters())

f64 = CountedMLP().to(**F64)
f64.load_state_dict({k: v.to(torch.float64) for k, v in f_cmp.state_dict().items()})
h_ref = odeint(f64, h0_cmp.to(**F64), t_cmp.to(**F64), rtol=1e-12, atol=1e-12)
reference = torch.autograd.grad(h_ref[-1].pow(2).sum(), tuple(f64.parameters()))


def forward_backward(adjoint, options):
    """Gradients, backward NFE, and the seconds of the forward solve and of the backward pass."""
    start = time.perf_counter()
    hs = adjoint(f_cmp, h0_cmp, t_cmp, rtol=1e-5, atol=1e-5, adjoint_params=params, adjoint_options=options)
    loss = hs[-1].pow(2).sum()
    middle = time.perf_counter()
    f_cmp.calls = 0
    grads = torch.autograd.grad(loss, params)
    return grads, f_cmp.calls, middle - start, time.perf_counter() - middle


compare = []
for name, adjoint in (("nodecourse", odeint_adjoint), ("torchdiffeq", torchdiffeq.odeint_adjoint)):
    for options in (None, {"norm": "seminorm"}):
        grads, backward_nfe, _, _ = forward_backward(adjoint, options)
        error = max(((g.double() - r).abs().max() / r.abs().max()).item() for g, r in zip(grads, reference))
        runs = [forward_backward(adjoint, options) for _ in range(n_repeats + 2)]
        forward_ms = 1e3 * statistics.median(r[2] for r in runs)
        backward = statistics.median(r[3] for r in runs)
        case = "adjoint" + (" + seminorm" if options else "")
        compare.append(Row(case, name, backward, backward_nfe, error=error, extra={"forward ms": forward_ms}))
fill_ratios(compare)
print(table(compare))
by = {(r.case, r.solver): r for r in compare}
for case in ("adjoint", "adjoint + seminorm"):
    ours, theirs = by[case, "nodecourse"], by[case, "torchdiffeq"]
    claim(f"{case}: the same reverse solve, backward NFE nodecourse / torchdiffeq", measured=ours.nfe / theirs.nfe,
          expected=1, tol=0.1, fmt=".2f")
    claim(f"{case}: gradient error, nodecourse", measured=ours.error, at_most=1e-3)
    claim(f"{case}: gradient error, torchdiffeq", measured=theirs.error, at_most=1e-3)
    report(f"{case}: backward time, nodecourse / torchdiffeq", ours.seconds / theirs.seconds, fmt=".2f",
           why="a ratio of wall-clock times on this machine")
check("the seminorm saves backward evaluations",
      by["adjoint + seminorm", "nodecourse"].nfe < by["adjoint", "nodecourse"].nfe,
      detail=f"{by['adjoint + seminorm', 'nodecourse'].nfe:.0f} instead of {by['adjoint', 'nodecourse'].nfe:.0f}")

# %% [markdown]
# The two implementations take the same reverse steps, so the same evaluations and gradients of the
# same accuracy; the time column (and its ratio to torchdiffeq, `/tdq`) is what remains: the
# per-step bookkeeping of each library. The repository's `make bench` runs these comparisons at full
# size, with torchode alongside and the saved memory at 10, 100 and 1,000 steps.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Recap
# - On course-sized problems a solver's own bookkeeping can cost as much as the network: the overhead
#   factor, time / (NFE x one call of f), shows it.
# - One step per sample saves steps per sample on a mixed batch, but the batch still waits for its
#   slowest sample and each step does more bookkeeping.
# - A compiled step (`options={"compile": True}`) turns dozens of small operations per step into a
#   few fused kernels; it costs seconds of compilation once, so it pays in training loops.
# - Two adjoint implementations that take the same reverse steps differ only in time, never in the
#   evaluations or the accuracy: compare solvers by NFE first, then by the clock.
#
# ## Further reading
# - J. Ansel et al. *PyTorch 2: Faster Machine Learning Through Dynamic Python Bytecode Transformation
#   and Graph Compilation*. ASPLOS 2024. (`torch.compile`.)
# - M. Lienen, S. Günnemann. *torchode: A Parallel ODE Solver for PyTorch*. The Symbiosis of Deep Learning
#   and Differential Equations workshop, NeurIPS 2022. arXiv:2210.12375.
# - P. Kidger, R. T. Q. Chen, T. Lyons. *"Hey, that's not an ODE": Faster ODE Adjoints via Seminorms*.
#   ICML 2021. arXiv:2009.09457.
# - R. T. Q. Chen. *torchdiffeq: ODE solvers and adjoint sensitivity analysis in PyTorch*, 2018 (the library
#   compared with here).

# %% [markdown] slideshow={"slide_type": "notes"}
# Speaker notes (2 min). Counts are checked, clocks are shown. Ask: which line of this notebook would you
# rerun on the machine you train on?
