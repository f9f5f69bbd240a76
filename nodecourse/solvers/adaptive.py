"""Adaptive Runge-Kutta integration with error control: the shared-step loop, and the entry point.

:func:`integrate_adaptive` checks the start, picks the first step and hands over to one of two
loops. Here, :func:`_shared_loop`: the whole batch shares one step size, as in torchdiffeq, and the
controller runs on the host on the one number it fetches per step. :mod:`per_sample`: every sample
keeps its own step size, on the device. The whole of one shared-step solve, written for reading
rather than speed, is :mod:`textbook`; tests hold the two to the same steps.
"""
from __future__ import annotations

import bisect
import math
from typing import Callable, Optional

import torch

from . import compiled, interpolation, per_sample, steps
from .checks import SolverError, all_finite
from .control import Control, Tolerance
from .norms import make_norm, works_on_rows
from .problem import FlatProblem
from .rk_step import combine, constant, midpoint, nonzero_weights, scaled, shifted, stage_fractions
from .stats import SolveStats
from .tableaux import ButcherTableau

# max_num_steps: a course problem takes hundreds of steps, a low-order method at a tight tolerance tens of
# thousands; 50,000 stops a stiff solve within seconds, with a message, instead of letting it run for minutes.
DEFAULTS = {"safety": 0.9, "ifactor": 10.0, "dfactor": 0.2, "max_num_steps": 50_000}


def initial_step(problem: FlatProblem, t0: torch.Tensor, y0: torch.Tensor, f0: torch.Tensor,
                 rtol: float, atol: float, error_order: int, norm: Callable) -> torch.Tensor:
    """A first step size ``[B]`` from the starting scale of ``y`` and ``f``.

    The algorithm of Hairer, Norsett and Wanner, Solving ODEs I, Sec. II.4: take the step for which
    an explicit Euler step changes ``y`` by 1% of its scale, then correct it with a second-derivative
    estimate from one extra evaluation so the local error is about the tolerance.
    """
    y0, f0 = y0.detach(), f0.detach()  # the first step is a choice, not part of the graph
    scale = atol + rtol * y0.abs()
    d0, d1 = norm(y0 / scale), norm(f0 / scale)
    h0 = torch.where((d0 < 1e-5) | (d1 < 1e-5), torch.full_like(d0, 1e-6), 0.01 * d0 / d1)
    y1 = y0 + h0.unsqueeze(1) * f0
    f1 = problem(t0 + h0.to(t0.dtype), y1)
    d2 = norm((f1 - f0) / scale) / h0
    d_max = torch.maximum(d1, d2)
    h1 = torch.where(d_max <= 1e-15, torch.clamp(h0 * 1e-3, min=1e-6),
                     (0.01 / d_max) ** (1.0 / error_order))
    return torch.minimum(100 * h0, h1).to(t0.dtype).detach()


def initial_step_shared(problem: FlatProblem, t0: torch.Tensor, y0: torch.Tensor, f0: torch.Tensor,
                        rtol: Tolerance, atol: Tolerance, error_order: int, norm: Callable) -> Optional[float]:
    """:func:`initial_step` for a batch that shares one step: the same algorithm, with the three norms
    read back as Python numbers (two reads) and the rest done on the host, which saves a solve about
    twenty tensor operations; ``t0`` is 0-d, the tolerances Python numbers or 0-d tensors of the state's
    dtype (cheaper operands). ``None`` when ``f0`` is not finite (its norm tells)."""
    y0, f0 = _without_grad(y0), _without_grad(f0)
    scale = y0.abs().mul_(rtol).add_(atol)
    if works_on_rows(norm):  # y0 and f0 as two rows of one tensor: one division and one norm, the same bits
        rows = [y0, f0, scale] if y0.dim() == 2 and y0.shape[0] == 1 else [x.reshape(1, -1) for x in (y0, f0, scale)]
        d0, d1 = norm(torch.cat(rows[:2]) / rows[2]).tolist()
    else:
        d0, d1 = torch.cat([norm(y0 / scale), norm(f0 / scale)]).tolist()
    if not math.isfinite(d1):
        return None
    h0 = 1e-6 if d0 < 1e-5 or d1 < 1e-5 else 0.01 * d0 / d1
    f1 = problem(t0 + h0, y0 + scaled(f0, h0))
    d2 = norm((_without_grad(f1) - f0) / scale).item() / h0
    d_max = max(d1, d2)
    h1 = max(h0 * 1e-3, 1e-6) if d_max <= 1e-15 else (0.01 / d_max) ** (1.0 / error_order)
    return min(100 * h0, h1)


def _without_grad(x: torch.Tensor) -> torch.Tensor:
    """``x.detach()``, skipped (one operation less) when ``x`` is outside any graph already."""
    return x.detach() if x.requires_grad else x


def integrate_adaptive(problem: FlatProblem, tableau: ButcherTableau, rtol: float, atol: float,
                       options: dict, record: Optional[list] = None) -> tuple[list, SolveStats]:
    """Solve with step-size control; returns the ``[B, N]`` states at the output times and statistics.
    With ``options["compile"]`` each trial step runs as one compiled graph (:mod:`compiled`); a per-sample
    solve appends its steps to ``record`` when given (see :func:`per_sample.per_sample_loop`)."""
    opts = {**DEFAULTS, **{k: v for k, v in options.items() if v is not None}}
    control = Control(float(opts["safety"]), float(opts["ifactor"]), float(opts["dfactor"]),
                      -1.0 / tableau.error_order, int(opts["max_num_steps"]))
    norm = make_norm(opts.get("norm"), problem)
    if problem.t.shape[-1] == 1:
        return [problem.y0], SolveStats.zeros(problem)
    if problem.per_sample:
        t0 = problem.t[:, 0].clone() if problem.t.dim() == 2 else problem.t[:1].expand(problem.batch).clone()
    else:
        t0 = problem.t[0]
    f0 = problem(t0, problem.y0)  # checks func's output
    stepper = _Stepper(problem, tableau, rtol, atol, bool(opts.get("compile")))
    dt0 = None
    if not problem.per_sample and "first_step" not in opts:  # the first step's norms also test f0
        dt0 = initial_step_shared(problem, t0, problem.y0, f0, stepper.rtol, stepper.atol, tableau.error_order, norm)
    nan_aware = opts.get("norm") in (None, "rms", "max")  # a built-in norm of a NaN/inf f0 is NaN/inf
    if (dt0 is None or not nan_aware) and not all_finite(f0):
        samples = nonfinite_samples(problem, f0)
        raise SolverError(
            f"func(t, y) returned NaN/inf at the initial time t={float(problem.t.reshape(-1)[0].detach()) * problem.direction:g}"
            f"{' for samples ' + _short(samples) if problem.unflatten(f0)[0].dim() > 0 else ''}, although the "
            f"initial state is finite: the field itself is broken there. Check its parameters for NaN or inf "
            f"(a diverged training step leaves them so) and its formula for divisions by zero or logs of "
            f"negative numbers.")
    if problem.per_sample:
        first = opts.get("first_step")
        if torch.is_tensor(first) and first.numel() > 1:  # one first step per sample
            if first.shape != t0.shape:
                raise ValueError(f"first_step holds {first.numel()} values; per-sample mode needs one per sample, "
                                 f"shape [{problem.batch}].")
            dt0 = first.detach().to(t0.dtype).to(t0.device).clone()
        elif first is not None:
            dt0 = torch.full_like(t0, float(first))
        else:
            dt0 = initial_step(problem, t0, problem.y0, f0, rtol, atol, tableau.error_order, norm)
        if any(opts.get(k) is not None for k in ("step_t", "jump_t", "min_step", "max_step")):
            raise ValueError("step_t, jump_t, min_step and max_step need one step size for the whole batch: drop "
                             "per_sample, or solve the samples that share those times together.")
        def on_stall(trial, nonfinite):
            _raise_underflow(problem, trial.t, trial.dt, trial.stalled, nonfinite, trial.y, trial.y1)

        return per_sample.per_sample_loop(problem, tableau, stepper, control, norm, f0, dt0,
                                          1 + ("first_step" not in opts), on_stall, record)
    landmarks = Landmarks(problem, opts.get("step_t"), opts.get("jump_t"), float(opts.get("min_step", 0.0)),
                          float(opts.get("max_step", math.inf)))
    if "first_step" in opts:
        dt0 = float(opts["first_step"])
    return _shared_loop(problem, tableau, stepper, control, norm, t0, f0, dt0, landmarks)


def landing_stage_times(problem: FlatProblem, tableau: ButcherTableau, t: torch.Tensor, dt: float,
                        landing: float) -> list[torch.Tensor]:
    """The stage times of a step that ends on a landmark, in the dtype ``func`` sees: stages at the end
    time are evaluated just before it (the next representable time down), as torchdiffeq does, so a
    field that jumps there is seen from the side the step integrates."""
    c = torch.tensor(nonzero_weights(tableau)["c"], dtype=problem.time_dtype, device=problem.device)
    times = (t + c * dt).to(problem.dtype)
    end = torch.tensor(landing, dtype=problem.dtype, device=problem.device)
    just_before = torch.nextafter(end, torch.tensor(-math.inf, dtype=problem.dtype, device=problem.device))
    return list(torch.where(c == 1, just_before, times).unbind())


class Landmarks:
    """The times a shared-step solve must land on (torchdiffeq's ``step_t`` and ``jump_t``), internal
    and increasing, and the bounds on its step size (``min_step``, ``max_step``). After landing on a jump time the field is evaluated again just after it, so the next
    step starts on the far side of the discontinuity."""

    def __init__(self, problem: FlatProblem, step_t, jump_t, min_step: float = 0.0, max_step: float = math.inf):
        self.min_step, self.max_step = min_step, max_step
        self.jumps, self.times, self.next = set(), [], 0
        if step_t is None and jump_t is None:  # the common case: nothing to read from the device
            return
        t0, t_end = float(problem.t[0].detach()), float(problem.t[-1].detach())
        steps, jumps = (self._internal(problem, values) for values in (step_t, jump_t))
        if set(steps) & set(jumps):
            raise ValueError("step_t and jump_t must not share any time: a time in jump_t is landed on already.")
        self.jumps = set(jumps)
        self.times = sorted(v for v in set(steps) | self.jumps if t0 < v < t_end)

    @staticmethod
    def _internal(problem: FlatProblem, values) -> list[float]:
        if values is None:
            return []
        values = torch.as_tensor(values, dtype=torch.float64).detach().reshape(-1)
        if not bool(torch.isfinite(values).all()):
            raise ValueError("step_t and jump_t must hold finite times.")
        return [v * problem.direction for v in values.tolist()]

    def clip(self, t: float, dt: float) -> tuple[float, Optional[float]]:
        """The step from ``t`` shortened to land on the next landmark it would pass, and that landmark
        (``None`` when the step passes none)."""
        while self.next < len(self.times) and self.times[self.next] <= t:
            self.next += 1
        if self.next < len(self.times) and self.times[self.next] < t + dt:
            return self.times[self.next] - t, self.times[self.next]
        return dt, None

    def is_jump(self, t: float) -> bool:
        return t in self.jumps


class _Stepper:
    """How the loops take a trial step: the functions of :mod:`steps`, called eagerly on the checked
    field (on states of the user's shape where that saves reshapes), or compiled with tensor
    arguments (so a new step size or tolerance does not retrace)."""

    def __init__(self, problem: FlatProblem, tableau: ButcherTableau, rtol: float, atol: float, compile: bool):
        trial = per_sample.trial_step if problem.per_sample else steps.shared_trial
        self.compiled = compile
        # The tolerances as 0-d tensors in the state's dtype: the same numbers a Python float becomes in each
        # operation, without converting it there every step; a compiled step takes them as inputs (no retrace).
        self.rtol, self.atol = constant(rtol, problem.y0), constant(atol, problem.y0)
        if compile:
            self.step = compiled.CompiledStep(trial, problem.func)
            self.evaluate = problem.traceable_field()
        else:
            self.step = trial
            self.evaluate = (problem.direct_flat() if problem.per_sample else problem.direct()) or problem
        direct = not compile and self.evaluate is not problem  # the user's func, shape-checked
        self.user_shape = direct and not problem.per_sample  # states kept in func's shape
        self.counts_itself = self.evaluate is problem  # else the loop adds the evaluations to problem.nfe
        cached = nonzero_weights(tableau)  # tableau.fsal compares fractions: too slow to ask every solve
        self.evals_per_step = cached["n_stages"] - (1 if cached["fsal"] else 0)


def _dense_output(y, y1, f, f1, y_mid, dt, t, s_w) -> torch.Tensor:
    """The interpolant of one step evaluated at the times ``s_w`` ``[W, 1]``: ``[W, *y.shape]``.
    ``dt`` is a float (then ``y`` may have any shape) or ``[B]`` (then ``y`` is ``[B, N]``); ``t`` the
    step's start (0-d or ``[B]``); ``y_mid`` the midpoint state or ``None``."""
    dt_col = dt if isinstance(dt, float) else dt.to(y.dtype).unsqueeze(1)
    poly = interpolation.fit(y, y1, f, f1, dt_col, y_mid)
    if isinstance(dt, float):
        x = (s_w - t.unsqueeze(0)) / dt
    else:
        x = (s_w - t.unsqueeze(0)) / torch.where(dt == 0, torch.ones_like(dt), dt).unsqueeze(0)  # no 0/0
    return interpolation.evaluate(poly, x.to(y.dtype).reshape(x.shape + (1,) * (y.dim() - 1)))


# Up to this many outputs in one step are each served as y + dt sum_j w_j(x) k_j with the weights w_j(x)
# computed on the host (S' + 1 operations each); more share one fitted polynomial (about 30 operations),
# and so do output times that need a gradient.
FEW_OUTPUTS = 2


def _clips_last_step(tableau: ButcherTableau) -> bool:
    """Whether the last step is shortened to end exactly at the final time (see
    :attr:`ButcherTableau.lands_on_last_time`)."""
    return tableau.lands_on_last_time


def _advances(t: float, dt: float, dtype: torch.dtype) -> bool:
    """Whether ``t + dt`` differs from ``t`` in the time dtype (else the step has underflowed)."""
    if dtype == torch.float64:
        return t + dt != t
    return abs(dt) > 0.5 * torch.finfo(dtype).eps * abs(t)


def _shared_loop(problem, tableau, stepper, control, norm, t_dev, f, dt0, landmarks):
    """The batch shares one step: the controller runs on the host on the error ratio, the one number
    fetched from the device each step, so the stepping itself launches only the stage arithmetic."""
    s_out, y = problem.t, problem.y0
    s_list = s_out.tolist()
    outputs: list = [y] + [None] * (len(s_list) - 1)
    t, t_end, dt = s_list[0], s_list[-1], dt0
    n_steps = n_accepted = 0
    nonfinite, y1 = False, y
    clip_last = _clips_last_step(tableau)
    dense_rows = interpolation.dense_weights(tableau)
    times_need_grad = s_out.requires_grad  # then x = (s - t) / dt stays in the graph: the fitted polynomial
    end_stage = nonzero_weights(tableau)["c"][-1] == 1.0  # the last stage's time is the step's end, t + dt
    flat_shape = y.shape
    if stepper.user_shape:
        y, f = y.reshape(problem.shapes[0]), f.reshape(problem.shapes[0])
    while True:
        n_steps += 1
        control.check_steps(n_steps, problem, t)
        if landmarks.min_step or landmarks.max_step < math.inf:  # torchdiffeq's min_step / max_step
            dt = landmarks.min_step if dt != dt else min(max(dt, landmarks.min_step), landmarks.max_step)
        if not _advances(t, dt, problem.time_dtype):
            stalled = torch.ones(1, dtype=torch.bool, device=y.device)
            _raise_underflow(problem, t_dev.reshape(1), torch.tensor([dt]), stalled,
                             torch.tensor([nonfinite]), y.reshape(flat_shape), y1.reshape(flat_shape))
        last = clip_last and dt >= t_end - t
        if last:  # land on the end time: this interpolant is less accurate than the step
            dt = t_end - t
        dt, landing = landmarks.clip(t, dt)
        last = last and landing is None
        times = None
        if landing is None and not stepper.compiled:  # the stage times t + c dt, all in one operation
            times = (t_dev + scaled(stage_fractions(tableau, t_dev), dt)).unbind()
        if last or landing is not None:
            t1_dev = s_out[-1] if last else t_dev.new_tensor(landing)
        else:  # t + dt: the last stage's time when that is the step's end (the same bits), else one addition
            t1_dev = times[-1] if end_stage and times is not None else shifted(t_dev, dt)
        if problem.callbacks:
            problem.callback("callback_step", t_dev, y, dt)
        if landing is None:
            y1, f1, ratio_dev, stages = stepper.step(stepper.evaluate, tableau, norm, t_dev, t1_dev,
                                                     t_dev.new_tensor(dt) if stepper.compiled else dt, y, f,
                                                     stepper.rtol, stepper.atol, times)
        else:  # an eager step whose end-time stages see the field just before the landmark
            times = landing_stage_times(problem, tableau, t_dev, dt, landing)
            y1, f1, ratio_dev, stages = steps.shared_trial(stepper.evaluate, tableau, norm, t_dev, times[-1], dt, y,
                                                           f, stepper.rtol, stepper.atol, times)
        if not stepper.counts_itself:
            problem.nfe += stepper.evals_per_step
        ratio = ratio_dev.item()  # the one host sync of the step
        accepted = ratio <= 1.0 or dt <= landmarks.min_step  # a step at min_step is taken whatever its error
        nonfinite = (nonfinite or ratio != ratio) and not accepted
        if problem.callbacks:
            problem.callback("callback_accept_step" if accepted else "callback_reject_step", t_dev, y, dt)
        if accepted:
            t1 = t_end if last else (t + dt if landing is None else landing)
            if landing is not None and landmarks.is_jump(t1):  # the field jumps here: continue from its far side
                just_after = torch.nextafter(t1_dev.to(problem.dtype), t1_dev.new_tensor(math.inf, dtype=problem.dtype))
                f1 = problem(just_after, y1.reshape(flat_shape)).reshape(y1.shape)
            j_lo, j_hi = bisect.bisect_right(s_list, t), bisect.bisect_right(s_list, t1)
            if 0 < j_hi - j_lo <= FEW_OUTPUTS and not times_need_grad:  # the interpolant's weights, on the host
                ks = stages if len(stages) == len(dense_rows) else [*stages, f1]
                for j in range(j_lo, j_hi):
                    outputs[j] = combine(y, ks, interpolation.stage_weights_at(dense_rows, (s_list[j] - t) / dt), dt).reshape(flat_shape)
            elif j_hi > j_lo:
                y_mid = midpoint(tableau, y, stages, dt)
                values = _dense_output(y, y1, f, f1, y_mid, dt, t_dev, s_out[j_lo:j_hi].unsqueeze(1))
                outputs[j_lo:j_hi] = [v.reshape(flat_shape) for v in values.unbind()]
            y, f, t, t_dev = y1, f1, t1, t1_dev
            n_accepted += 1
            if t >= t_end:
                break
        dt = dt * control.factor(ratio)
    stats = SolveStats(problem.nfe, n_steps, n_accepted, n_steps - n_accepted, problem.nfe)
    return outputs, stats


def _user_t(problem: FlatProblem, s: float) -> float:
    return -s if problem.direction < 0 else s


def _raise_underflow(problem: FlatProblem, t: torch.Tensor, dt: torch.Tensor, stalled: torch.Tensor,
                     nonfinite: torch.Tensor, y: torch.Tensor, y1: torch.Tensor) -> None:
    samples = stalled.nonzero().flatten().tolist()
    first = samples[0]
    when = _user_t(problem, float(t[first]))
    bad_values = bool(nonfinite[stalled].any())
    size = float(y[first].abs().max())
    if not problem.per_sample:
        samples = nonfinite_samples(problem, y1) if bad_values else []
    which = f" for samples {_short(samples)}" if samples else ""
    if bad_values:
        cause = (" The vector field or the trial state became NaN/inf there: func returns invalid values "
                 "at these times or states.")
    elif size > 1e8:
        cause = (f" The state has grown to |y| = {size:.3g}: the solution probably blows up in finite "
                 "time here, so no step size can follow it.")
    else:
        cause = (" The error estimate stays above the tolerance however small the step: the problem may be "
                 "stiff or discontinuous there.")
    raise SolverError(
        f"Step size underflow at t={when:.6g}{which}: the step (dt={float(dt[first]):.3g}) became too "
        f"small to advance time.{cause} Try looser rtol/atol, float64, a shorter time span, or check func."
    )


def nonfinite_samples(problem: FlatProblem, y: torch.Tensor) -> list[int]:
    """Indices along dim 0 of the (first) state tensor whose entries are NaN or infinite."""
    first = problem.unflatten(y)[0]
    if first.dim() == 0:
        return [0] if not bool(torch.isfinite(first)) else []
    bad = ~torch.isfinite(first.reshape(first.shape[0], -1)).all(dim=1)
    return bad.nonzero().flatten().tolist()


def _short(items: list[int]) -> str:
    return f"{items[:20]}{' ...' if len(items) > 20 else ''}"
