"""The checkpointed gradient of an adaptive solve: replay each forward step and backpropagate through it.

The continuous adjoint (:mod:`nodecourse.adjoint`) solves backwards from the last output time and has
to stop at every output time, where the adjoint jumps by that output's gradient: a series with ``M``
observation times costs at least ``M`` reverse steps, however few steps its forward solve took.

The checkpointed gradient ("discretise, then optimise") solves nothing backwards. The forward solve
keeps the start of every trial step: its time, its step size, the state there (one ``[B, N]`` state
per step, the checkpoint) and which samples accepted it. The backward pass walks these steps from the
last to the first. It recomputes each one from its checkpoint with autograd on, then runs one
vector-Jacobian product through that step alone. The product carries back to the step's start the
cotangent of its end state and of the outputs its dense output served. An output time costs nothing
extra: it enters through the interpolant of the step that passed it.

A solve whose batch shares one step size is recorded as a batch of one sample (the whole state), so
the same replay serves it.

The result is the exact gradient of the computed solution, with the step sizes held fixed. It costs
the method's stages plus one evaluation (the field at the step's start, which the forward solve reused
from the previous step) and one backward pass per replayed step: with Dopri5, 7 evaluations against
the forward's 6. Its memory is one state per step instead of the reverse solve's constant memory.
This is the adaptive checkpoint adjoint of Zhuang et al. (2020), "Adaptive Checkpoint Adjoint Method
for Gradient Estimation in Neural ODE" (ICML). Diffrax's default gradient, ``RecursiveCheckpointAdjoint``,
is the same idea with fewer checkpoints stored.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch

from .solvers.api import solve_recording_steps
from .solvers.per_sample import Interpolants, OutputTimes, StepRecord, Trial, dense_values
from .solvers.problem import FlatProblem
from .solvers.rk_step import nonzero_weights, rk_step
from .solvers.stats import SolveStats
from .solvers.tableaux import ADAPTIVE_METHODS, TABLEAUX

GRADIENTS = ("adjoint", "checkpoint")


def check_checkpoint_gradient(gradient: str, options: dict, method: str, t: torch.Tensor,
                              reverse_settings: dict, event_fn: Optional[Callable]) -> bool:
    """Whether ``gradient`` asks for the checkpointed gradient, after checking that it can run."""
    if gradient not in GRADIENTS:
        raise ValueError(f"gradient must be 'adjoint' (solve the adjoint ODE backwards, constant memory) or "
                         f"'checkpoint' (replay the forward steps, one state per step); got {gradient!r}.")
    if gradient == "adjoint":
        return False
    if method not in ADAPTIVE_METHODS:
        raise ValueError(f"gradient='checkpoint' replays an adaptive solve's steps; method must be one of "
                         f"{', '.join(ADAPTIVE_METHODS)}, got {method!r}.")
    if t.dim() == 2 and not options.get("per_sample"):
        raise ValueError("t of shape [batch, T] gives each sample its own output times; that needs "
                         "options={'per_sample': True} (or pass one 1-D t shared by the batch).")
    landmarks = [k for k in ("step_t", "jump_t", "min_step", "max_step") if options.get(k) is not None]
    if landmarks:
        raise ValueError(f"gradient='checkpoint' replays steps chosen by the error estimate alone, without "
                         f"{', '.join(landmarks)}: remove them, or use gradient='adjoint'.")
    if callable(options.get("norm")) and not options.get("per_sample"):
        raise ValueError("gradient='checkpoint' solves a shared-step batch as one sample of flat [1, N] states, "
                         "so a callable norm would see another shape: use norm 'rms' or 'max', or "
                         "gradient='adjoint'.")
    given = [name for name, value in reverse_settings.items() if value is not None]
    if given:
        raise ValueError(f"gradient='checkpoint' has no reverse solve, so {', '.join(given)} would do nothing: "
                         f"remove them, or use gradient='adjoint'.")
    if event_fn is not None:
        raise ValueError("event_fn needs gradient='adjoint' (the event time's gradient comes from the adjoint).")
    if t.requires_grad:
        raise ValueError("gradient='checkpoint' holds the output times fixed and gives no gradient for t: pass "
                         "t.detach(), or use gradient='adjoint', which differentiates the output times too.")
    return True


@dataclass
class Recording:
    """A forward solve as the replay needs it: the field and outputs as the per-sample solver saw them
    (for a shared-step solve, a batch of one sample), the output times and the step records."""

    func: Callable
    method: str
    t: torch.Tensor
    ys: tuple              # the outputs, [T, B, ...] per part of the state
    is_tuple: bool
    one_sample: bool       # a shared-step solve, recorded as one sample
    steps: list


def recorded_solve(func: Callable, y0: tuple, is_tuple: bool, t: torch.Tensor, forward: dict
                   ) -> tuple[tuple, SolveStats, Recording]:
    """Solve without a graph, keeping every step's start; returns the outputs (``[T, *shape]`` per part
    of the state), the solve's statistics and the :class:`Recording`."""
    one_sample = not forward["options"].get("per_sample")
    if one_sample:
        func, y0 = _AsOneSample(func, is_tuple), tuple(p.unsqueeze(0) for p in y0)
    options = {**forward["options"], "per_sample": True}
    steps: list = []
    with torch.no_grad():
        solution = solve_recording_steps(func, y0 if is_tuple else y0[0], t, forward["rtol"], forward["atol"],
                                         forward["method"], options, steps)
    ys = tuple(solution.ys) if is_tuple else (solution.ys,)
    stats = solution.stats
    if one_sample:
        stats = SolveStats(*(int(v[0]) if torch.is_tensor(v) else v for v in stats.as_tuple()))
    recording = Recording(func, forward["method"], t, ys, is_tuple, one_sample, steps)
    return tuple(y.squeeze(1) for y in ys) if one_sample else ys, stats, recording


def replay_backward(recording: Recording, grad_ys: tuple, params: tuple) -> tuple[tuple, tuple, SolveStats]:
    """The gradients of a recorded solve from its :class:`StepRecord` s, last step first.

    ``grad_ys`` are the outputs' gradients, ``[T, *shape]`` per part of the state. Returns
    ``(grad_y0, grad_params, stats)``: one gradient per state part and per parameter (``None`` where a
    parameter does not reach the outputs), and what the replay cost (per sample in per-sample mode).
    """
    if recording.one_sample:
        grad_ys = tuple(g.unsqueeze(1) for g in grad_ys)
    tableau = TABLEAUX[recording.method]
    t, ys = recording.t, recording.ys
    problem = FlatProblem(recording.func, tuple(y[0] for y in ys), recording.is_tuple, t, per_sample=True)
    B, T = problem.batch, t.shape[-1]
    times = OutputTimes.of(problem.t, B)
    grad_out = torch.cat([g.reshape(T, B, -1) for g in grad_ys], dim=2)      # [T, B, N]
    weights = nonzero_weights(tableau)
    c = torch.tensor(weights["c"], dtype=times.rows.dtype, device=times.rows.device).unsqueeze(1)
    a = torch.zeros_like(grad_out[0])                      # cotangent of the state after the current step
    grad_params: list = [None] * len(params)
    replayed = torch.zeros(B, dtype=torch.long, device=grad_out.device)   # steps replayed, per sample
    evaluations = torch.zeros_like(replayed)                                 # and their evaluations
    for record in reversed(recording.steps):
        if not bool(record.accept.any()):                   # a step every sample rejected changed nothing
            continue
        y, outputs, cotangents = _replay_step(problem, tableau, weights["fsal"], c, times, record, a, grad_out)
        grads = torch.autograd.grad(outputs, (y, *params), cotangents, allow_unused=True)
        a = grads[0]
        grad_params = [g if total is None else (total if g is None else total + g)
                       for total, g in zip(grad_params, grads[1:])]
        replayed += record.accept
        end_field = 0 if weights["fsal"] or record.served == 0 else 1    # f(t1, y1), for the interpolant
        evaluations += record.accept * (weights["n_stages"] + end_field)
    a = a + grad_out[0]                                     # output 0 is y0 itself
    grad_y0 = problem.unflatten(a)
    if recording.one_sample:
        grad_y0 = tuple(g.squeeze(0) for g in grad_y0)
        stats = SolveStats(int(evaluations[0]), int(replayed[0]), int(replayed[0]), 0, problem.nfe)
    else:
        stats = SolveStats(evaluations, replayed, replayed.clone(), torch.zeros_like(replayed), problem.nfe)
    return grad_y0, tuple(grad_params), stats


def _replay_step(problem: FlatProblem, tableau, fsal: bool, c: torch.Tensor, times: OutputTimes, record: StepRecord,
                 a: torch.Tensor, grad_out: torch.Tensor) -> tuple:
    """One recorded step recomputed with autograd on: its start state (a leaf), the tensors it produced
    (the state after it, the outputs it served) and their cotangents."""
    with torch.enable_grad():
        y = record.y.detach().requires_grad_(True)
        stage_times = list(torch.addcmul(record.t, c, record.dt).unbind())
        y1, _, stages = rk_step(problem, tableau, record.t, y, problem(record.t, y), record.dt, stage_times)
        after = torch.where(record.accept.unsqueeze(1), y1, y)
        outputs, cotangents = [after], [a]
        if record.served > 0:
            f1 = stages[-1] if fsal else problem(record.t1, y1)
            trial = Trial(t=record.t, dt=record.dt, t1=record.t1, y=y, y1=y1, f1=f1, stages=stages, ratio=None,
                          accept=record.accept, stalled=None, crossed=record.crossed)
            steps = Interpolants.of(tableau, trial, record.first_out)
            index, sample, values = dense_values(tableau, steps, times, record.served)
            outputs.append(values)
            cotangents.append(grad_out[index, sample])
    return y, outputs, cotangents


class _AsOneSample:
    """A field of the whole state seen as a batch of one sample: ``t`` ``[1]`` becomes 0-d, and every
    part of the state and of the field gains a leading dimension of 1."""

    def __init__(self, func: Callable, is_tuple: bool):
        self.func, self.is_tuple = func, is_tuple

    def __call__(self, t: torch.Tensor, y):
        if self.is_tuple:
            return tuple(f.unsqueeze(0) for f in self.func(t[0], tuple(p[0] for p in y)))
        return self.func(t[0], y[0]).unsqueeze(0)
