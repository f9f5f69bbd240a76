"""The optional ``torch.compile`` path: ``options={"compile": True}``.

On the small problems of a course a step costs more in Python and per-operation dispatch than in
arithmetic. Here one whole step (every evaluation of ``func`` in it, the stage combinations, the
error norm and, per sample, the step-size controller) is traced once by ``torch.compile`` into
one graph whose elementwise work is fused. The first solve pays the compilation (seconds); later
solves with the same ``func``, shapes, dtype and method reuse it (each ``func`` has its own compiled
copy of the step). If compiling fails (no C++ compiler, a ``func`` the tracer cannot follow), the
solve warns and continues without it.
"""
from __future__ import annotations

import functools
import types
import warnings
import weakref
from typing import Callable, Optional

import torch

from .norms import max_norm, rms_norm
from .tableaux import ButcherTableau


class FlatField:
    """``func`` seen on the flat ``[B, N]`` state; a plain object so the tracer can inline it.

    ``s`` is the internal time: 0-d (shared step) or ``[B]`` (per sample); a decreasing time span
    is solved as ``dy/ds = -f(-s, y)``.
    """

    def __init__(self, func: Callable, shapes: list, widths: list, batch: int, is_tuple: bool,
                 direction: float):
        self.func, self.shapes, self.widths, self.batch = func, shapes, widths, batch
        self.is_tuple, self.direction = is_tuple, direction

    def __call__(self, s: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        t = -s if self.direction < 0 else s
        if not self.is_tuple:
            f = self.func(t, y.reshape(self.shapes[0])).reshape(self.batch, -1)
        else:
            parts, start = [], 0
            for shape, width in zip(self.shapes, self.widths):
                parts.append(y[:, start:start + width].reshape(shape))
                start += width
            f = torch.cat([p.reshape(self.batch, -1) for p in self.func(t, tuple(parts))], dim=1)
        return -f if self.direction < 0 else f


class Scheme:
    """A tableau as Python floats, the constants baked into the traced graph."""

    def __init__(self, tableau: ButcherTableau):
        self.n_stages, self.fsal = tableau.n_stages, tableau.fsal
        self.c = [float(c) for c in tableau.c]
        self.a = [[float(a) for a in row] for row in tableau.a]
        self.b = [float(b) for b in tableau.b]
        self.err = [float(b - bl) for b, bl in zip(tableau.b, tableau.b_low)] if tableau.adaptive else None
        self.mid = [float(m) for m in tableau.b_mid] if tableau.b_mid is not None else None


def scheme(tableau: ButcherTableau) -> Scheme:
    """The :class:`Scheme` of ``tableau``, made once and kept with it, so every solve hands the tracer
    the same object."""
    if "scheme" not in tableau._cache:
        tableau._cache["scheme"] = Scheme(tableau)
    return tableau._cache["scheme"]


def _weighted(weights: list, stages: list) -> torch.Tensor:
    """``sum_j w_j k_j`` over the nonzero weights (the zeros cost nothing once traced)."""
    terms = [w * k for w, k in zip(weights, stages) if w != 0.0]
    total = terms[0]
    for term in terms[1:]:
        total = total + term
    return total


def _stages(field: FlatField, coef: Scheme, t: torch.Tensor, y: torch.Tensor, f: torch.Tensor,
            dt: torch.Tensor, dt_col: torch.Tensor) -> tuple[list, torch.Tensor]:
    """All stage derivatives of one step (``f`` is the first) and the propagated solution."""
    stages, y1 = [f], y
    for i in range(1, coef.n_stages):
        y_i = y + dt_col * _weighted(coef.a[i], stages)
        stages.append(field(t + coef.c[i] * dt, y_i))
        y1 = y_i
    if not coef.fsal:
        y1 = y + dt_col * _weighted(coef.b, stages)
    return stages, y1


def _ratio(norm: Optional[Callable], error: torch.Tensor, y: torch.Tensor, y1: torch.Tensor,
           rtol: torch.Tensor, atol: torch.Tensor) -> torch.Tensor:
    """The error ratio per sample ``[B]`` (NaN where ``y1`` is not finite), or, without a traceable
    norm, the scaled error ``[B, N]`` for the caller to measure."""
    scaled = error / (torch.maximum(y.abs(), y1.abs()) * rtol + atol)
    if norm is None:
        return scaled
    return torch.where(torch.isfinite(y1).all(dim=1), norm(scaled), float("nan"))


def fixed_step(field: FlatField, coef: Scheme, t: torch.Tensor, h: torch.Tensor,
               y: torch.Tensor) -> torch.Tensor:
    """One fixed step from ``(t, y)`` of size ``h`` (0-d, or ``[B]`` per sample)."""
    dt_col = h.unsqueeze(1).to(y.dtype) if h.dim() == 1 else h.to(y.dtype)
    _, y1 = _stages(field, coef, t, y, field(t, y), h, dt_col)
    return y1


def shared_step(field: FlatField, coef: Scheme, norm: Optional[Callable], t: torch.Tensor,
                dt: torch.Tensor, y: torch.Tensor, f: torch.Tensor, rtol: torch.Tensor, atol: torch.Tensor):
    """One trial step with a shared ``dt`` (0-d): ``(y1, f1, ratio, y_mid)``; ``f1`` is the field at
    ``(t + dt, y1)`` and ``y_mid`` the midpoint state for dense output (``None`` if the method has none)."""
    dt_y = dt.to(y.dtype)
    stages, y1 = _stages(field, coef, t, y, f, dt, dt_y)
    f1 = stages[-1] if coef.fsal else field(t + dt, y1)
    ratio = _ratio(norm, dt_y * _weighted(coef.err, stages), y, y1, rtol, atol)
    y_mid = y + dt_y * _weighted(coef.mid, stages) if coef.mid is not None else None
    return y1, f1, ratio, y_mid


def per_sample_step(field: FlatField, coef: Scheme, norm: Callable, control: tuple, clip_last: bool,
                    t: torch.Tensor, dt: torch.Tensor, y: torch.Tensor, f: torch.Tensor, active: torch.Tensor,
                    nonfinite: torch.Tensor, steps: torch.Tensor, accepted: torch.Tensor, t_end: torch.Tensor,
                    rtol: torch.Tensor, atol: torch.Tensor):
    """One trial step with a step size per sample, controller and masks included (the same rules as
    the eager loop in :mod:`adaptive`). Returns the next solver state, what dense output needs, and
    ``summary = [anyone running, anyone stalled, first and last accepted time]``."""
    safety, ifactor, dfactor, exponent = control
    if clip_last:
        last = dt >= t_end - t
        dt = torch.where(last, t_end - t, dt)
        t1 = torch.where(last, t_end, t + dt)
    else:
        t1 = t + dt
    dt_col = dt.to(y.dtype).unsqueeze(1)
    stages, y1 = _stages(field, coef, t, y, f, dt, dt_col)
    f1 = stages[-1] if coef.fsal else field(t1, y1)
    ratio = _ratio(norm, dt_col * _weighted(coef.err, stages), y, y1, rtol, atol)
    y_mid = y + dt_col * _weighted(coef.mid, stages) if coef.mid is not None else None
    accept = (ratio <= 1) & active
    stalled = active & (t1 == t)
    nonfinite = torch.where(accept & ~stalled, False, nonfinite | torch.isnan(ratio))
    running = active & ~(accept & (t1 >= t_end))
    factor = torch.clamp(safety * ratio.pow(exponent), max=ifactor)
    factor = torch.maximum(factor, torch.where(ratio <= 1, 1.0, dfactor).to(factor.dtype))
    factor = torch.nan_to_num(factor, nan=dfactor)
    dt_next = torch.where(running, dt * factor.to(dt.dtype), 0.0)
    t_lo = torch.where(accept, t, float("inf")).amin()
    t_hi = torch.where(accept, t1, float("-inf")).amax()
    summary = torch.stack([running.any().to(t.dtype), stalled.any().to(t.dtype), t_lo, t_hi])
    keep = accept.unsqueeze(1)
    state = (torch.where(keep, y1, y), torch.where(keep, f1, f), torch.where(accept, t1, t), dt_next, running,
             nonfinite, steps + active.long(), accepted + accept.long())
    dense = (y1, f1, y_mid, t1, accept, stalled, dt)
    return state, dense, summary


def traceable_norm(norm: Callable) -> Optional[Callable]:
    """The norm if the compiled step may call it (the built-in ones), else ``None``."""
    if norm in (rms_norm, max_norm) or getattr(norm, "traceable", False):
        return norm
    return None


class CompiledStep:
    """One solve's step function: compiled for this ``func`` (once, then reused), or eager after a failure.

    If compiling or running the compiled step raises, the solve warns and takes the eager step from
    then on; a genuine error in ``func`` then surfaces from the eager call with its usual traceback.
    """

    def __init__(self, step: Callable, func: Callable):
        self.step, self.func = step, func
        self.failed = False

    def __call__(self, *args):
        if not self.failed:
            try:
                return _compiled_for(self.step, self.func)(*args)
            except Exception as error:  # noqa: BLE001 - any compiler failure falls back to eager
                self.failed = True
                first_line = (str(error).strip().splitlines() or [""])[0][:200]
                warnings.warn(f"options['compile']=True: torch.compile could not compile the solver step "
                              f"({type(error).__name__}: {first_line}). Solving without compilation.",
                              RuntimeWarning, stacklevel=3)
        return self.step(*args)


_PER_FUNC: "weakref.WeakKeyDictionary[Callable, dict]" = weakref.WeakKeyDictionary()


def _compiled_for(step: Callable, func: Callable) -> Callable:
    """``torch.compile(step)`` for one vector field ``func``, kept while ``func`` lives.

    The compiler caches its graphs per code object, at most a few per object (torch's recompile
    limit), and checks them one by one on every call. Each field therefore gets its own copy of the
    step's code: a program or notebook that solves many fields keeps every one compiled, and a call
    checks only the graphs of its own field.
    """
    try:
        table = _PER_FUNC.setdefault(func, {})
    except TypeError:  # func cannot be weakly referenced: share one compiled step
        return _shared_compiled(step)
    if step not in table:
        own_copy = types.FunctionType(step.__code__.replace(), step.__globals__, step.__name__, step.__defaults__,
                                      step.__closure__)
        table[step] = torch.compile(own_copy)
    return table[step]


@functools.lru_cache(maxsize=None)
def _shared_compiled(step: Callable) -> Callable:
    return torch.compile(step)
