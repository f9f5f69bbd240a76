"""One explicit Runge-Kutta step, driven by a Butcher tableau, on a ``[B, N]`` state.

On the small problems of a course every tensor operation costs a few microseconds of dispatch,
more than its arithmetic, so each combination skips the zero weights and uses as few operations as
its rounding allows (in-place ``add_(..., alpha=)`` costs about 1 us on a 64 x 4 state, against
3.7 us for a matrix-vector product over stacked stages plus 2 us to store each stage):

- the new state ``y1 = y0 + dt * sum_i b_i k_i`` builds the increment first (one :func:`scaled`, then
  ``add_`` per term) and adds it to ``y0`` once: one rounding at the size of ``y`` per step. Adding
  each term to ``y0`` would round at ``y``'s size once per term, and in float32 that error grows with
  the number of steps (measured: 5e-5 after 155 rk4 steps on a state of size 3, against 1.4e-5);
- a stage's input ``y0 + dt * sum_j a_ij k_j`` adds its terms to ``y0`` one by one (``y0.add``
  then ``add_``), one operation fewer. Its rounding enters the result only through ``dt * f``, so it
  does not accumulate. The last stage of a First-Same-As-Last method is taken at ``y1`` itself;
- a fixed-step method's weights are small multiples of the first (rk4: 1, 3, 3, 1 eighths), so its
  new state is ``y0 + (b_0 dt) * (k_0 + sum_j (b_j / b_0) k_j)``: still one rounding at ``y``'s size,
  one operation fewer, and no multiplication by a Python number, which costs about twice an
  ``add_`` (the number becomes a tensor first). The adaptive methods keep the form above, the one
  :mod:`.textbook` writes, so the two take the same steps.
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence, Union

import torch

from .tableaux import ButcherTableau

Step = Union[float, torch.Tensor]
Weights = Sequence[tuple[int, float]]


def nonzero_weights(tableau: ButcherTableau) -> dict:
    """Each row of the tableau as its ``(j, weight)`` pairs with nonzero weight, Python floats, made once
    per tableau: ``a`` (one list per stage), ``b``, ``err`` (``b - b_embedded``) and ``mid``; with ``c`` as
    floats and the tableau's ``n_stages``, ``fsal`` and ``adaptive`` (properties that cost to recompute)."""
    if "nonzero" not in tableau._cache:
        def pairs(row):
            return [(j, float(w)) for j, w in enumerate(row) if w != 0] if row is not None else None

        tableau._cache["nonzero"] = {
            "n_stages": tableau.n_stages, "fsal": tableau.fsal, "adaptive": tableau.adaptive,
            "c": [float(c) for c in tableau.c],
            "a": [pairs(row) for row in tableau.a],
            "b": pairs(tableau.b),
            "err": pairs([b - bl for b, bl in zip(tableau.b, tableau.b_embedded)]) if tableau.adaptive else None,
            "mid": pairs(tableau.b_mid),
        }
        b = tableau._cache["nonzero"]["b"]
        if not tableau.adaptive and b:  # (b_0, [(j, b_j / b_0), ...]): see the module docstring
            (j0, w0), rest = b[0], b[1:]
            tableau._cache["nonzero"]["b_factored"] = (w0, [(j0, 1.0)] + [(j, w / w0) for j, w in rest])
    return tableau._cache["nonzero"]


def stage_fractions(tableau: ButcherTableau, like: torch.Tensor) -> torch.Tensor:
    """The tableau's ``c`` as a ``[S]`` tensor in ``like``'s dtype and device, made once per tableau."""
    key = ("c", like.dtype, like.device)
    if key not in tableau._cache:
        tableau._cache[key] = torch.tensor([float(c) for c in tableau.c], dtype=like.dtype, device=like.device)
    return tableau._cache[key]


_CONSTANTS: dict = {}


def constant(value: float, like: torch.Tensor) -> torch.Tensor:
    """``value`` as a 0-d tensor of ``like``'s dtype and device, made once (never written to). The
    tolerances of every solve are kept too, so a loop over thousands of them starts the cache afresh."""
    key = (value, like.dtype, like.device)
    constant = _CONSTANTS.get(key)
    if constant is None:
        if len(_CONSTANTS) >= 1024:
            _CONSTANTS.clear()
        constant = _CONSTANTS[key] = torch.tensor(value, dtype=like.dtype, device=like.device)
    return constant


def scaled(x: torch.Tensor, s: float) -> torch.Tensor:
    """``s * x`` for a Python float ``s``, computed as ``0 + s x`` from a cached 0-d zero: the same bits
    (the addition of 0 is exact; a zero product comes out as +0, as :mod:`.textbook`'s ``zeros + s x``
    gives) at about half the cost, because ``torch.mul`` first makes a tensor of the Python number while
    ``add``'s ``alpha`` stays a plain scalar (2.6 us against 4-5 us on a 64 x 4 state)."""
    if torch.compiler.is_compiling():
        return x * s
    return constant(0.0, x).add(x, alpha=s)


def shifted(x: torch.Tensor, s: float) -> torch.Tensor:
    """``x + s`` for a Python float ``s``, computed as ``x + s * 1`` from a cached 0-d one: the same bits
    (``s * 1`` is exact) at about half the cost, as in :func:`scaled`."""
    if torch.compiler.is_compiling():
        return x + s
    return x.add(constant(1.0, x), alpha=s)


def weighted_sum(stages: Sequence[torch.Tensor], weights: Weights, scale: float = 1.0) -> torch.Tensor:
    """``scale * sum_j w_j k_j`` over the given nonzero ``(j, w_j)``, into a fresh tensor."""
    if not weights:
        return torch.zeros_like(stages[0])
    (j0, w0), rest = weights[0], weights[1:]
    total = scaled(stages[j0], w0 * scale)
    for j, w in rest:
        total.add_(stages[j], alpha=w * scale)
    return total


def stage_input(y0: torch.Tensor, stages: Sequence[torch.Tensor], weights: Weights, dt: float) -> torch.Tensor:
    """A stage's input ``y0 + sum_j (a_ij dt) k_j`` for a float ``dt``, the terms added to ``y0`` one at a time
    (see the module docstring: one operation per nonzero weight)."""
    if not weights:
        return y0.clone()
    (j0, w0), rest = weights[0], weights[1:]
    state = y0.add(stages[j0], alpha=w0 * dt)
    for j, w in rest:
        state.add_(stages[j], alpha=w * dt)
    return state


def step_column(dt: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """A tensor step in ``y``'s dtype, shaped to scale ``[B, N]`` rows: ``[B] -> [B, 1]``; 0-d stays 0-d."""
    dt = dt if dt.dtype == y.dtype else dt.to(y.dtype)
    return dt.unsqueeze(1) if dt.dim() == 1 else dt


def combine(y0: torch.Tensor, stages: Sequence[torch.Tensor], weights: Weights, dt: Step) -> torch.Tensor:
    """``y0 + dt * sum_j w_j k_j``; ``y0`` and each stage ``[B, N]``, ``dt`` a float (shared step), a
    ``[B]`` tensor (one step per sample) or a 0-d tensor."""
    if not weights:
        return y0.clone()
    if isinstance(dt, float):  # the increment first, then one addition to y0: one rounding at y's size
        return y0 + weighted_sum(stages, weights, dt)
    return torch.addcmul(y0, step_column(dt, y0), weighted_sum(stages, weights))


def error_estimate(stages: Sequence[torch.Tensor], tableau: ButcherTableau, dt: Step) -> torch.Tensor:
    """The embedded error estimate ``dt * sum_j (b_j - b_embedded_j) k_j``, ``[B, N]``."""
    weights = nonzero_weights(tableau)["err"]
    if isinstance(dt, float):
        return weighted_sum(stages, weights, dt)
    return weighted_sum(stages, weights).mul_(step_column(dt, stages[0]))


def rk_step(func: Callable, tableau: ButcherTableau, t0: torch.Tensor, y0: torch.Tensor, f0: torch.Tensor,
            dt: Step, stage_times: Optional[Sequence[torch.Tensor]] = None
            ) -> tuple[torch.Tensor, Optional[torch.Tensor], list[torch.Tensor]]:
    """Advance ``y0`` (``[B, N]``, at times ``t0``) by the step ``dt``.

    ``dt`` is a float when the batch shares one step, a ``[B]`` tensor per sample (or a 0-d tensor,
    as in a compiled step); ``stage_times`` may give the times ``t0 + c_i dt`` precomputed. Returns ``(y1, error, stages)``:
    the propagated solution, the embedded error estimate (``None`` for fixed-step methods) and the
    ``S`` stage derivatives, each ``[B, N]``. ``f0 = func(t0, y0)`` is passed in, so a
    First-Same-As-Last method costs ``S - 1`` evaluations a step.
    """
    weights = nonzero_weights(tableau)
    if not isinstance(dt, float):
        return _tensor_step(func, weights, t0, y0, f0, dt, stage_times)
    if stage_times is None:  # all stage times in one operation: t0 + c dt
        stage_times = (t0 + scaled(stage_fractions(tableau, t0), dt)).unbind()
    stages = [f0]
    y1 = y0
    n_stages, fsal, a = weights["n_stages"], weights["fsal"], weights["a"]
    for i in range(1, n_stages):
        if fsal and i == n_stages - 1:  # the last stage is at the new state: its rounding is the result's
            y1 = combine(y0, stages, weights["b"], dt)
            stages.append(func(stage_times[i], y1))
        else:
            stages.append(func(stage_times[i], stage_input(y0, stages, a[i], dt)))
    if not fsal:
        factored = weights.get("b_factored")
        y1 = combine(y0, stages, weights["b"], dt) if factored is None else combine_factored(y0, stages, *factored, dt)
    error = error_estimate(stages, tableau, dt) if weights["adaptive"] else None
    return y1, error, stages


def combine_factored(y0: torch.Tensor, stages: Sequence[torch.Tensor], scale: float, ratios: Weights,
                     dt: float) -> torch.Tensor:
    """``y0 + (scale dt) * sum_j r_j k_j`` with ``ratios`` the ``(j, r_j)`` pairs, the first ``r_j = 1``: a
    fixed-step method's new state (see the module docstring); ``dt`` a float."""
    (j0, _), rest = ratios[0], ratios[1:]
    if not rest:
        return torch.add(y0, stages[j0], alpha=scale * dt)
    (j1, r1), rest = rest[0], rest[1:]
    total = torch.add(stages[j0], stages[j1], alpha=r1)
    for j, r in rest:
        total.add_(stages[j], alpha=r)
    return torch.add(y0, total, alpha=scale * dt)


def midpoint(tableau: ButcherTableau, y0: torch.Tensor, stages: Sequence[torch.Tensor], dt: Step
             ) -> Optional[torch.Tensor]:
    """The state at the step's midpoint from its stages, for dense output (``None`` if the method has
    no such weights)."""
    weights = nonzero_weights(tableau)["mid"]
    return combine(y0, stages, weights, dt) if weights is not None else None


def _tensor_step(func: Callable, weights: dict, t0: torch.Tensor, y0: torch.Tensor, f0: torch.Tensor,
                 dt: torch.Tensor, stage_times: Optional[Sequence[torch.Tensor]]):
    """:func:`rk_step` with the step as a tensor (``[B]`` per sample, or 0-d): each combination is the
    plain weighted sum of the stages, scaled by the samples' ``dt`` as it is added to ``y0``
    (``torch.addcmul``: one operation), so a stage costs its nonzero weights plus one."""
    dt_col = step_column(dt, y0)
    stages = [f0]
    y1 = y0
    for i in range(1, weights["n_stages"]):
        y1 = combine(y0, stages, weights["a"][i], dt_col)
        ti = stage_times[i] if stage_times is not None else t0 + weights["c"][i] * dt
        stages.append(func(ti, y1))
    if not weights["fsal"]:
        y1 = combine(y0, stages, weights["b"], dt_col)
    error = weighted_sum(stages, weights["err"]).mul_(dt_col) if weights["adaptive"] else None
    return y1, error, stages
