"""Per-sample adaptive stepping: every sample of a batch keeps its own time, step size and decision.

The state is ``[B, N]``: dim 0 is the batch of independent problems. Each iteration takes one trial
step for every sample still running (finished samples have ``dt = 0``), accepts or rejects it per
sample, and serves the output times each accepted step passed from its dense output. The steps
that passed outputs are kept and their interpolants evaluated late, the outputs of many iterations
and all samples in one batched evaluation (:class:`Outputs`), so the cost of outputs grows with
their number only through the interpolation's arithmetic. Output times may be shared (``[T]``) or
each sample's own (``[B, T]``). One small vector crosses to the host per iteration.
"""
from __future__ import annotations

from typing import Callable, NamedTuple, Optional, Union

import torch

from .control import Control, Tolerance, error_ratio
from .interpolation import dense_weights
from .rk_step import nonzero_weights, rk_step
from .stats import SolveStats
from .tableaux import ButcherTableau


class Samples(NamedTuple):
    """The per-sample state between iterations: ``[B]`` vectors and ``[B, N]`` states."""

    t: torch.Tensor            # each sample's time
    dt: torch.Tensor           # its next trial step (0 once finished)
    y: torch.Tensor            # its state at t
    f: torch.Tensor            # the field at (t, y)
    active: torch.Tensor       # still integrating (bool)
    next_out: torch.Tensor     # index of its first output time not yet served (long)


class Trial(NamedTuple):
    """One iteration's trial step, as dense output and the error messages need it (``[B]`` / ``[B, N]``)."""

    t: torch.Tensor            # start of the step
    dt: torch.Tensor           # its size (0 for finished samples)
    t1: torch.Tensor           # its end
    y: torch.Tensor            # state at the start
    y1: torch.Tensor           # proposed state at the end
    f1: torch.Tensor           # field at (t1, y1)
    stages: list               # the S stage derivatives
    ratio: torch.Tensor        # error ratio (NaN where the trial gave non-finite values)
    accept: torch.Tensor       # accepted (bool)
    stalled: torch.Tensor      # time no longer advances (bool)
    crossed: torch.Tensor      # output times the accepted step passed (long; 0 if rejected)


class OutputTimes(NamedTuple):
    """Output times in the solver's (increasing) time: ``rows`` ``[B, T]`` contiguous, for
    ``searchsorted``; ``cols`` ``[T, B]``, for gathering; ``end`` ``[B]``, each sample's last time."""

    rows: torch.Tensor
    cols: torch.Tensor
    end: torch.Tensor

    @staticmethod
    def of(s: torch.Tensor, batch: int) -> "OutputTimes":
        """From shared times ``[T]`` or per-sample times ``[B, T]``."""
        rows = s.expand(batch, -1).contiguous() if s.dim() == 1 else s.contiguous()
        return OutputTimes(rows, rows.t(), rows[:, -1].contiguous())


def trial_step(evaluate: Callable, tableau: ButcherTableau, norm: Callable, control: Control, clip_last: bool,
               c: torch.Tensor, now: Samples, times: OutputTimes, rtol: Tolerance, atol: Tolerance
               ) -> tuple[Samples, Trial, torch.Tensor]:
    """One trial step per sample and every sample's decision, all on the device.

    ``c`` is the tableau's stage times ``[S, 1]``. Returns the next :class:`Samples`, the
    :class:`Trial`, and ``summary = [anyone running, anyone stalled, (output, sample) pairs passed]``,
    the one vector the host reads.
    """
    dt = now.dt
    if clip_last:  # a step that would pass the sample's last time lands on it
        last = dt >= times.end - now.t
        dt = torch.where(last, times.end - now.t, dt)
        t1 = torch.where(last, times.end, now.t + dt)
    else:
        t1 = now.t + dt
    stage_times = list(torch.addcmul(now.t, c, dt).unbind())  # [S, 1] x [B] -> S times [B]
    y1, error, stages = rk_step(evaluate, tableau, now.t, now.y, now.f, dt, stage_times)
    f1 = stages[-1] if nonzero_weights(tableau)["fsal"] else evaluate(t1, y1)
    ratio = error_ratio(norm, error, now.y, y1, rtol, atol, now.y.shape[0])

    small_enough = ratio <= 1
    accept = small_enough & now.active
    stalled = now.active & (t1 == now.t)
    running = now.active & ~(accept & (t1 >= times.end))
    factor = control.factor_tensor(ratio, small_enough).mul_(running)   # finished samples: dt = 0
    dt_next = dt * (factor if factor.dtype == dt.dtype else factor.to(dt.dtype))
    passed = torch.searchsorted(times.rows, t1.unsqueeze(1), right=True).squeeze(1)  # outputs <= t1
    crossed = (passed - now.next_out).mul_(accept)
    keep = accept.unsqueeze(1)
    after = Samples(torch.where(accept, t1, now.t), dt_next, torch.where(keep, y1, now.y), torch.where(keep, f1, now.f),
                    running, now.next_out + crossed)
    summary = torch.stack([running.sum(), stalled.sum(), crossed.sum()])
    return after, Trial(now.t, dt, t1, now.y, y1, f1, stages, ratio, accept, stalled, crossed), summary


class Interpolants(NamedTuple):
    """Accepted steps whose dense output serves output times, as one batch of ``M`` entries: one
    iteration's ``B`` samples, or several iterations' stacked (``M = P B``).

    ``t``, ``dt`` ``[M]`` the step's start and size, ``y`` ``[M, N]`` its start state, ``stages``
    ``[S', M, N]`` its stage derivatives (with the field at the step's end where the tableau's
    interpolant needs it), ``crossed`` ``[M]`` how many outputs the step passed, ``first_out`` ``[M]``
    the first of them, ``sample`` ``[M]`` which sample each entry is (``None``: entry ``m`` is sample ``m``).
    """

    t: torch.Tensor
    dt: torch.Tensor
    y: torch.Tensor
    stages: torch.Tensor
    crossed: torch.Tensor
    first_out: torch.Tensor
    sample: Optional[torch.Tensor]

    @staticmethod
    def of(tableau: ButcherTableau, trial: Trial, first_out: torch.Tensor) -> "Interpolants":
        """One iteration's trial, ``first_out`` ``[B]`` each sample's first unserved output before it."""
        return Interpolants(trial.t, trial.dt, trial.y, torch.stack(_interpolated_stages(tableau, trial)),
                            trial.crossed, first_out, None)

    @staticmethod
    def stacked(tableau: ButcherTableau, pending: list) -> "Interpolants":
        """Several iterations' ``(trial, first_out)`` as one batch: entry ``p B + b`` is sample ``b`` of
        iteration ``p``. About a dozen tensor operations, however many iterations."""
        if len(pending) == 1:
            return Interpolants.of(tableau, *pending[0])
        trials = [trial for trial, _ in pending]
        P, (B, N) = len(trials), trials[0].y.shape
        stages = torch.stack([k for trial in trials for k in _interpolated_stages(tableau, trial)])  # [P S', B, N]
        stages = stages.reshape(P, -1, B, N).transpose(0, 1).reshape(-1, P * B, N)            # [S', P B, N]
        sample = torch.arange(B, device=trials[0].y.device).repeat(P)
        return Interpolants(torch.cat([trial.t for trial in trials]), torch.cat([trial.dt for trial in trials]),
                            torch.cat([trial.y for trial in trials]), stages,
                            torch.cat([trial.crossed for trial in trials]),
                            torch.cat([first_out for _, first_out in pending]), sample)


def _interpolated_stages(tableau: ButcherTableau, trial: Trial) -> list:
    """The derivatives the tableau's interpolant weighs: the stages, and ``f1`` unless it is the last stage."""
    n_weights = _dense_matrix(tableau, trial.y).shape[1]
    return trial.stages if len(trial.stages) == n_weights else [*trial.stages, trial.f1]


def dense_values(tableau: ButcherTableau, steps: Interpolants, times: OutputTimes, served: int
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The states at the output times the steps passed, from their interpolants, all at once.

    ``served`` is how many (output, sample) pairs the steps passed in all, ``steps.crossed.sum()``
    (the host knows it from the iterations' summaries). Only those pairs are evaluated. Returns
    ``(index, sample, values)``: each pair's output index and sample ``[K]``, and its state ``[K, N]``.
    """
    D = _dense_matrix(tableau, steps.y)                                          # [4, S']
    entry = torch.repeat_interleave(steps.crossed, output_size=served)            # [K]: the step serving each pair
    first_pair = steps.crossed.cumsum(0).sub_(steps.crossed)                      # [M]: its first pair's position
    offset = torch.arange(served, device=entry.device) - first_pair.index_select(0, entry)
    index = steps.first_out.index_select(0, entry) + offset
    sample = entry if steps.sample is None else steps.sample.index_select(0, entry)
    # index_select rather than advanced indexing: several times faster on CPU for many pairs
    t, dt, y = (v.index_select(0, entry) for v in (steps.t, steps.dt, steps.y))   # [K], [K], [K, N]
    s = times.rows.take(sample * times.rows.shape[1] + index)                      # [K]: the output times
    x = ((s - t) / dt.masked_fill(dt == 0, 1.0)).to(y.dtype).unsqueeze(1)         # [K, 1]
    K, N = y.shape
    # the polynomial's coefficients for every pair at once: one [4, S'] x [S', K N] product (not K small ones)
    coeffs = (D @ steps.stages.index_select(1, entry).reshape(D.shape[1], K * N)).reshape(4, K, N)
    increment = coeffs[3]                                         # Horner's rule: sum_p x^(p+1) coeffs[p]
    for p in (2, 1, 0):
        increment = torch.addcmul(coeffs[p], x, increment)
    return index, sample, torch.addcmul(y, x * dt.to(y.dtype).unsqueeze(1), increment)


def _dense_matrix(tableau: ButcherTableau, like: torch.Tensor) -> torch.Tensor:
    """:func:`interpolation.dense_weights` as a ``[4, S']`` tensor (row p multiplies ``x^(p+1)``), made
    once per dtype and device."""
    key = ("dense", like.dtype, like.device)
    if key not in tableau._cache:
        weights = torch.tensor(dense_weights(tableau), dtype=like.dtype, device=like.device)  # [S', 4]
        tableau._cache[key] = weights.t().contiguous()
    return tableau._cache[key]


class Outputs:
    """The ``[T, B, N]`` outputs, filled as the steps serve them: output 0 is ``y0``.

    The interpolants are evaluated late, many iterations at once: :meth:`add` keeps an accepted
    step that passed outputs, and once the kept steps hold more than ``budget`` stage values, or
    ``most_kept`` iterations, or at the end, :meth:`flush` evaluates the outputs they passed in one
    :func:`dense_values` and writes them in one differentiable ``index_put_``. So an iteration that
    serves outputs costs a list append, not the twenty-odd small tensor operations of an evaluation,
    and the kept steps hold their stages (at most ``budget`` values) until then.
    """

    def __init__(self, y0: torch.Tensor, times: OutputTimes, tableau: ButcherTableau, budget: int = 2 ** 20,
                 most_kept: int = 64):
        self.times, self.tableau, self.budget, self.most_kept = times, tableau, budget, most_kept
        self.n_times = times.cols.shape[0]
        self.buffer = y0.new_zeros(self.n_times, *y0.shape)
        self.buffer[0] = y0
        self.kept: list = []
        self.served = 0

    def add(self, trial: Trial, first_out: torch.Tensor, served: int) -> None:
        """Keep an iteration's trial whose accepted steps passed ``served`` (output, sample) pairs."""
        held = (len(self.kept) + 1) * len(trial.stages) * trial.y.numel()
        if self.kept and (held > self.budget or len(self.kept) == self.most_kept):
            self.flush()
        self.kept.append((trial, first_out))
        self.served += served

    def flush(self) -> None:
        """Evaluate the kept steps' interpolants and write the outputs they serve."""
        if not self.kept:
            return
        index, sample, values = dense_values(self.tableau, Interpolants.stacked(self.tableau, self.kept),
                                             self.times, self.served)
        self.buffer.index_put_((index, sample), values)
        self.kept, self.served = [], 0

    def result(self) -> torch.Tensor:
        self.flush()
        return self.buffer


class StepRecord(NamedTuple):
    """What replaying one iteration needs (:mod:`nodecourse.adjoint_checkpoint`): the trial's start
    ``t`` ``[B]``, step ``dt`` ``[B]`` and end ``t1`` ``[B]``, state ``y`` ``[B, N]``, which samples
    accepted it, each sample's first unserved output before it, how many outputs each sample's step
    served, and how many that makes in all; in a :class:`StageRecord`, also its ``S`` stage derivatives
    (``[B, N]`` each)."""

    t: torch.Tensor
    dt: torch.Tensor
    t1: torch.Tensor
    y: torch.Tensor
    accept: torch.Tensor
    first_out: torch.Tensor
    crossed: torch.Tensor
    served: int
    stages: Optional[list] = None


class StageRecord(list):
    """A ``record`` list whose :class:`StepRecord` s keep their trial's stages as well (``S`` times the
    memory of the plain record): what a quadrature over the accepted steps needs
    (:mod:`nodecourse.adjoint_per_sample`)."""


def per_sample_loop(problem, tableau: ButcherTableau, stepper, control: Control, norm: Callable, f0: torch.Tensor,
                    dt0: torch.Tensor, start_nfe: int, on_stall: Callable, record: Optional[list] = None
                    ) -> tuple[torch.Tensor, SolveStats]:
    """Integrate every sample to its last output time; returns the ``[T, B, N]`` outputs and per-sample
    statistics. ``on_stall(trial, nonfinite)`` raises the error for samples whose step underflowed.
    ``record``, a list, receives a :class:`StepRecord` per iteration (the checkpoints of a replay)."""
    from .adaptive import _clips_last_step  # the rule shared with the shared-step loop

    times = OutputTimes.of(problem.t, problem.batch)
    y0 = problem.y0
    B = problem.batch
    now = Samples(times.rows[:, 0].clone(), dt0, y0, f0, torch.ones(B, dtype=torch.bool, device=y0.device),
                  torch.ones(B, dtype=torch.long, device=y0.device))
    history: list = []  # each iteration's (active, ratio, accept): the statistics and the underflow message read it
    c = torch.tensor(nonzero_weights(tableau)["c"], dtype=now.t.dtype, device=now.t.device).unsqueeze(1)
    clip_last = _clips_last_step(tableau)
    outputs = Outputs(y0, times, tableau)
    n_iter = 0
    while True:
        n_iter += 1
        control.check_steps(n_iter, problem, now.t)
        after, trial, summary = stepper.step(stepper.evaluate, tableau, norm, control, clip_last, c, now, times,
                                             stepper.rtol, stepper.atol)
        if not stepper.counts_itself:
            problem.nfe += stepper.evals_per_step
        history.append((now.active, trial.ratio, trial.accept))
        any_running, any_stalled, served = summary.tolist()  # the one host sync of the iteration
        if any_stalled:
            on_stall(trial, nonfinite_since_accepted(history))
        if served > 0:
            outputs.add(trial, now.next_out, int(served))
        if record is not None:
            record.append(StepRecord(trial.t, trial.dt, trial.t1, trial.y, trial.accept, now.next_out, trial.crossed,
                                     int(served), trial.stages if isinstance(record, StageRecord) else None))
        now = after
        if not any_running:
            break
    n_steps = torch.stack([active for active, _, _ in history]).sum(0)
    n_accepted = torch.stack([accept for _, _, accept in history]).sum(0)
    stats = SolveStats(start_nfe + n_steps * stepper.evals_per_step, n_steps, n_accepted, n_steps - n_accepted,
                       problem.nfe)
    return outputs.result(), stats


def nonfinite_since_accepted(history: list) -> torch.Tensor:
    """``[B]``: whether a trial since the sample's last accepted step gave NaN/inf (for the underflow
    message), read back from the iterations' ``(active, ratio, accept)``, newest last."""
    nonfinite, accepted_since = torch.zeros_like(history[-1][2]), torch.zeros_like(history[-1][2])
    for _, ratio, accept in reversed(history):
        accepted_since |= accept
        nonfinite |= ratio.isnan() & ~accepted_since
    return nonfinite
