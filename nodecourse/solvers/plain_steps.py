"""The stepping loop of a fixed-step solve in its common case, written out per method.

On a tiny field a fixed step spends about as long in Python around its tensor operations as in
some of them: a loop over the tableau's stages and weights costs about 6 us a step on a 64 x 4 state
(function calls, weight lookups, list building), next to about 10 us for the 10 tensor operations of
an rk4 step. Where a step needs nothing but its stages (no callbacks, no compiled steps, no field
values kept for a cubic interpolant, step sizes plain floats because no time needs a gradient), this
module runs the steps in a loop written out for the method: its Python source is generated once from
the tableau's nonzero weights (:func:`march_source`; print it to read the rk4 step as straight-line
code) and compiled. The step sizes enter as the weights times h, made once per distinct step size.

The tensor operations are :func:`rk_step.rk_step`'s, in the same order with the same operands, so the
results are the same bit for bit (tested against the general loop). They are called as tensor methods
(``y.add(k, alpha=w)`` parses its arguments about 0.4 us faster than ``torch.add``), and a weight of 1
is passed as no ``alpha`` at all (0.6 us less; ``k + 1 * k'`` is ``k + k'`` exactly).
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch

from .rk_step import nonzero_weights
from .tableaux import ButcherTableau


def plain_steps_apply(tableau: ButcherTableau) -> bool:
    """Whether :func:`march` can run this method: a fixed-step method that is not First-Same-As-Last."""
    weights = nonzero_weights(tableau)
    return not weights["adaptive"] and not weights["fsal"] and "b_factored" in weights


def step_weights(tableau: ButcherTableau, h: float) -> tuple[float, ...]:
    """The step-size dependent weights of one step of size ``h``, in the order the loop uses them: each
    stage input's ``a_ij h`` (stages 1 .. S-1, nonzero ``a_ij`` in order of j), then ``b_0 h``."""
    weights = nonzero_weights(tableau)
    scale, _ = weights["b_factored"]
    return tuple(a * h for row in weights["a"][1:] for _, a in row) + (scale * h,)


def march_source(tableau: ButcherTableau) -> str:
    """The Python source of :func:`march`'s loop for this method (see the module docstring)."""
    weights = nonzero_weights(tableau)
    n_stages = weights["n_stages"]
    times = ", ".join(f"t{i}" for i in range(n_stages)) + ("," if n_stages == 1 else "")
    lines = ["def march(call, on_bad_output, y, grid, stage_times, steps, keep, kept, kept_shape, plans, make_plan):",
             "    shape = y.shape",
             "    for g in steps:",
             "        h = grid[g + 1] - grid[g]",
             "        w = plans.get(h)",
             "        if w is None:",
             "            w = plans[h] = make_plan(h)",
             f"        {times} = stage_times[g]",
             "        k0 = call(t0, y)",
             "        if k0.shape != shape:",
             "            on_bad_output(k0)"]
    n = 0
    for i, row in enumerate(weights["a"][1:], 1):
        if not row:
            state = "y.clone()"
        else:
            terms = []
            for position, (j, _) in enumerate(row):
                terms.append(f"{'y.add' if position == 0 else '.add_'}(k{j}, alpha=w[{n}])")
                n += 1
            state = "".join(terms)
        lines += [f"        k{i} = call(t{i}, {state})", f"        if k{i}.shape != shape:",
                  f"            on_bad_output(k{i})"]
    _, ratios = weights["b_factored"]
    total = f"k{ratios[0][0]}"
    for position, (j, r) in enumerate(ratios[1:]):
        alpha = "" if r == 1.0 else f", alpha={r!r}"
        total += f"{'.add' if position == 0 else '.add_'}(k{j}{alpha})"
    lines += [f"        y = y.add({total}, alpha=w[{n}])",
              "        if g + 1 in keep:",
              "            kept[g + 1] = y.reshape(kept_shape)",
              "    return y"]
    return "\n".join(lines) + "\n"


def _compiled_march(tableau: ButcherTableau) -> Callable:
    """:func:`march_source` compiled once per tableau."""
    if "plain_march" not in tableau._cache:
        namespace: dict = {}
        exec(compile(march_source(tableau), f"<plain steps: {tableau.name}>", "exec"), namespace)
        tableau._cache["plain_march"] = namespace["march"]
    return tableau._cache["plain_march"]


def march(call: Callable, on_bad_output: Callable, tableau: ButcherTableau, y: torch.Tensor,
          grid: Sequence[float], stage_times: Sequence[Sequence[torch.Tensor]], steps: range,
          keep: set[int], kept: dict[int, torch.Tensor], kept_shape: torch.Size) -> torch.Tensor:
    """Take the ``steps`` of ``grid`` (``G + 1`` increasing floats; step g goes from ``grid[g]`` to
    ``grid[g + 1]``) from ``y``, the state at the first one's start, and return the last state.

    ``call(t, y)`` is the field on ``y``'s shape; an output of another shape goes to ``on_bad_output``
    (which raises). ``stage_times[g]`` are step g's stage times as tensors. The state after step g is
    stored in ``kept[g + 1]``, reshaped to ``kept_shape``, when ``g + 1`` is in ``keep``.
    """
    plans: dict[float, tuple[float, ...]] = {}  # a float32 grid's steps differ in their last bits: a few plans
    return _compiled_march(tableau)(call, on_bad_output, y, grid, stage_times, steps, keep, kept, kept_shape,
                                    plans, lambda h: step_weights(tableau, h))
