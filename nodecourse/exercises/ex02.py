"""Checkers for notebook 02 (Euler's method and ResNets): an Euler step, an Euler solve on a grid, a
ResNet's forward pass, the ResNet-as-Euler equivalence and the gap of ResNets to their continuous limit.

Each ``check_*`` runs the learner's function against the reference below on several cases, prints a
report and returns the function to go on with (the learner's when every case passed, else the
reference). The references are public so a notebook can also call them directly.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Callable, Optional

import torch
from torch import nn

from nodecourse.models import MLP, ODEFunc
from nodecourse.solvers import odeint

from .checking import Case, check_function, close, require_callable
from .checking import answers_for, check_prediction, keep_random_state, one_thread, prediction

__all__ = ["show_answer", "euler_solve", "buggy_euler_solve", "check_euler_solve", "check_error_ratio_prediction", 
    "euler_step",
    "euler_trajectory",
    "resnet_forward",
    "resnet_as_euler",
    "continuous_limit_gaps",
    "check_euler_step",
    "check_euler_trajectory",
    "check_resnet_forward",
    "check_resnet_as_euler",
    "check_continuous_limit_gaps",
]

Field = Callable[[Any, torch.Tensor], torch.Tensor]


# --------------------------------------------------------------------------------------------------
# references
# --------------------------------------------------------------------------------------------------


def euler_step(f: Field, t: Any, y: torch.Tensor, h: Any) -> torch.Tensor:
    """One explicit Euler step ``y + h f(t, y)``: the state ``y`` [*S] at ``t`` -> the state at ``t + h`` [*S]."""
    return y + h * f(t, y)


def euler_trajectory(f: Field, y0: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Euler's method on the grid ``t`` [n+1] (any spacing, increasing or decreasing).

    Step k goes from ``t[k]`` to ``t[k+1]`` with ``h_k = t[k+1] - t[k]``, evaluating ``f(t[k], y_k)``.
    Returns every state, ``y0`` included: ``[n+1, *y0.shape]``.
    """
    if not torch.is_tensor(y0) or not y0.is_floating_point():
        raise TypeError(f"y0 must be a floating-point tensor, got {type(y0).__name__}; e.g. torch.tensor([1.0]).")
    t = torch.as_tensor(t, dtype=y0.dtype, device=y0.device)
    if t.ndim != 1 or t.numel() < 1:
        raise ValueError(f"t must be a 1-D grid of times [n+1], got shape {tuple(t.shape)}.")
    ys = [y0]
    for k in range(t.numel() - 1):
        ys.append(ys[-1] + (t[k + 1] - t[k]) * f(t[k], ys[-1]))
    return torch.stack(ys)


def resnet_forward(blocks: Sequence[nn.Module], y0: torch.Tensor, step_size: float = 1.0) -> torch.Tensor:
    """A residual network with one residual function per layer: ``y_{l+1} = y_l + step_size * blocks[l](y_l)``.

    ``blocks`` lists L modules (the same module L times for shared weights); ``y0`` is ``[batch, D]``.
    Returns the input and every hidden state, ``[L+1, batch, D]``, like ``ResNet.trajectory``.
    """
    if isinstance(blocks, nn.Module) and not isinstance(blocks, nn.ModuleList):
        raise TypeError(f"blocks must be a list of modules, one per layer, got one {type(blocks).__name__}; "
                        "for shared weights pass [mlp] * depth.")
    ys = [y0]
    for block in blocks:
        ys.append(ys[-1] + step_size * block(ys[-1]))
    return torch.stack(ys)


def resnet_as_euler(mlp: nn.Module, y0: torch.Tensor, depth: int) -> torch.Tensor:
    """Euler's method with h = 1 for ``dy/dt = mlp(y)`` on the grid 0, 1, ..., depth, via ``nodecourse.odeint``.

    ``y0`` is ``[batch, D]``; returns ``[depth+1, batch, D]``, equal to ``ResNet(mlp, depth).trajectory(y0)``.
    """
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
        raise ValueError(f"depth must be a positive integer (the number of residual blocks), got {depth!r}.")
    t = torch.arange(depth + 1, dtype=y0.dtype, device=y0.device)
    return odeint(ODEFunc(mlp), y0, t, method="euler", options={"step_size": 1.0})


def continuous_limit_gaps(mlp: nn.Module, y0: torch.Tensor, T: float, depths: Sequence[int]) -> torch.Tensor:
    """How far shared-weight ResNets are from their ODE: one number per depth L in ``depths``.

    For each L, the ResNet ``y <- y + (T / L) mlp(y)`` with L blocks is compared with the solution at
    time T of ``dy/dt = mlp(y)`` from ``y0`` [B, D] (``dopri5``, rtol 1e-10, atol 1e-12); the gap is the
    largest absolute difference over all entries. Returns ``[len(depths)]`` in y0's dtype.
    """
    if not torch.is_tensor(y0) or not y0.is_floating_point():
        raise TypeError(f"y0 must be a floating-point tensor, got {type(y0).__name__}.")
    depths = list(depths)
    if not depths or any(isinstance(L, bool) or not isinstance(L, int) or L < 1 for L in depths):
        raise ValueError(f"depths must be a non-empty list of positive integers, got {depths!r}.")
    if not (isinstance(T, (int, float)) and math.isfinite(T) and T > 0):
        raise ValueError(f"T must be a finite positive end time, got {T!r}.")
    with torch.no_grad():
        t = torch.tensor([0.0, T], dtype=y0.dtype, device=y0.device)
        reference = odeint(ODEFunc(mlp), y0, t, rtol=1e-10, atol=1e-12)[-1]
        gaps = []
        for L in depths:
            y = y0
            for _ in range(L):
                y = y + (T / L) * mlp(y)
            gaps.append((y - reference).abs().max())
    return torch.stack(gaps)


# --------------------------------------------------------------------------------------------------
# helpers for the checkers
# --------------------------------------------------------------------------------------------------


def _same_tensor(expected: torch.Tensor, got: Any) -> Optional[str]:
    """Like ``close`` but the dtype must match too, with a tolerance that suits the dtype."""
    if torch.is_tensor(got) and got.dtype != expected.dtype:
        return f"expected dtype {expected.dtype}, got {got.dtype} (build the result from y, not from new tensors)"
    if expected.dtype == torch.float64:
        return close(expected, got, rtol=1e-10, atol=1e-12)
    return close(expected, got, rtol=1e-5, atol=1e-6)


def _mlp(sizes: list[int], seed: int, dtype: torch.dtype = torch.float32, scale: float = 1.0) -> MLP:
    """A tanh MLP built under a fixed seed (the notebook's random state is left untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = MLP(sizes).to(dtype)
        with torch.no_grad():
            for p in net.parameters():
                p.mul_(scale)
    return net


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _decay(t: Any, y: torch.Tensor) -> torch.Tensor:
    return -y


def _rotation(t: Any, y: torch.Tensor) -> torch.Tensor:
    """dy/dt = (y2, -y1) on [..., 2] states: the harmonic oscillator."""
    return torch.stack([y[..., 1], -y[..., 0]], dim=-1)


def _forced(t: Any, y: torch.Tensor) -> torch.Tensor:
    """A time-dependent field: it tells apart f(t_k, y) from f(t_{k+1}, y) or f(0, y)."""
    return -0.5 * y + torch.cos(3.0 * torch.as_tensor(t, dtype=y.dtype))


# --------------------------------------------------------------------------------------------------
# the checkers
# --------------------------------------------------------------------------------------------------


def check_euler_step(fn: Callable[..., torch.Tensor], verbose: bool = True) -> Callable[..., torch.Tensor]:
    """Exercise 1: one Euler step ``y + h f(t, y)`` on states of any shape."""
    require_callable("check_euler_step", fn)
    g = _generator(20)
    batch = torch.randn(5, 2, generator=g)
    cases = [
        Case("y' = -y, one number, h = 0.1", (_decay, 0.0, torch.tensor([1.0]), 0.1)),
        Case("rotation, a batch [5, 2], h = 0.25", (_rotation, 0.0, batch, 0.25)),
        Case("time-dependent field at t = 0.7 (f is evaluated at t, not t + h)", (_forced, 0.7, batch, 0.3)),
        Case("h = 2 (not 1: the step is scaled by h)", (_rotation, 0.0, batch, 2.0)),
        Case("a backward step, h = -0.5", (_forced, 1.0, batch, -0.5)),
        Case("t and h as 0-d tensors, a state [2, 3, 2]", (_rotation, torch.tensor(0.5),
                                                           torch.randn(2, 3, 2, generator=g), torch.tensor(0.2))),
        Case("float64 stays float64", (_forced, 0.3, batch.double(), 0.1)),
    ]
    hint = ("the Euler step is y + h * f(t, y): evaluate the field once, at the start of the step (t, y), "
            "and scale it by h.")
    result, _ = check_function("Exercise 1 (Euler step)", fn, euler_step, cases, hint=hint,
                               compare=_same_tensor, verbose=verbose)
    return result


def check_euler_trajectory(fn: Callable[..., torch.Tensor], verbose: bool = True) -> Callable[..., torch.Tensor]:
    """Exercise 2: Euler's method on a given time grid, returning every state ``[n+1, *y0.shape]``."""
    require_callable("check_euler_trajectory", fn)
    f64 = torch.float64
    g = _generator(21)
    batch = torch.randn(4, 2, generator=g, dtype=f64)
    uneven = torch.tensor([0.0, 0.05, 0.2, 0.25, 0.6, 1.0], dtype=f64)
    cases = [
        Case("y' = -y, one number, 10 steps on [0, 1]", (_decay, torch.ones(1, dtype=f64),
                                                         torch.linspace(0.0, 1.0, 11, dtype=f64))),
        Case("rotation, a batch [4, 2], 8 steps on [0, 2]", (_rotation, batch, torch.linspace(0.0, 2.0, 9, dtype=f64))),
        Case("an uneven grid (h changes from step to step)", (_forced, batch, uneven)),
        Case("a grid starting at t = 1 (f sees the true times)", (_forced, batch, uneven + 1.0)),
        Case("backwards in time, t from 1 to 0", (_forced, batch, torch.linspace(1.0, 0.0, 6, dtype=f64))),
        Case("one time only: just y0, shape [1, 4, 2]", (_rotation, batch, torch.zeros(1, dtype=f64))),
        Case("a state of shape [2, 3, 2], float32", (_rotation, torch.randn(2, 3, 2, generator=g),
                                                      torch.linspace(0.0, 1.0, 5))),
    ]
    hint = ("start from ys = [y0]; for k in range(len(t) - 1): h = t[k+1] - t[k] and append "
            "ys[-1] + h * f(t[k], ys[-1]); return torch.stack(ys), which holds y0 too ([n+1, *y0.shape]).")
    result, _ = check_function("Exercise 2 (Euler on a grid)", fn, euler_trajectory, cases, hint=hint,
                               compare=_same_tensor, verbose=verbose)
    return result


def check_resnet_forward(fn: Callable[..., torch.Tensor], verbose: bool = True) -> Callable[..., torch.Tensor]:
    """Exercise 3: a ResNet's forward pass with one residual function per layer, every hidden state returned."""
    require_callable("check_resnet_forward", fn)
    g = _generator(22)
    x = torch.randn(6, 2, generator=g)
    shared = _mlp([2, 16, 2], seed=30)
    variant = [_mlp([2, 16, 2], seed=31 + layer, scale=0.8) for layer in range(4)]
    wide = [_mlp([3, 8, 8, 3], seed=40 + layer) for layer in range(2)]
    cases = [
        Case("one block", ([shared], x)),
        Case("shared weights: the same MLP 3 times", ([shared] * 3, x)),
        Case("depth-variant weights: 4 different MLPs (applied in order)", (variant, x)),
        Case("step_size = 0.25", (variant, x), {"step_size": 0.25}),
        Case("D = 3, 2 blocks, batch of 1", (wide, torch.randn(1, 3, generator=g))),
        Case("float64", ([_mlp([2, 16, 2], seed=50, dtype=torch.float64)] * 5, x.double())),
    ]
    hint = ("keep a list ys = [y0]; for each block append ys[-1] + step_size * block(ys[-1]) (the skip "
            "connection adds the input back); return torch.stack(ys), shape [len(blocks) + 1, batch, D].")
    result, _ = check_function("Exercise 3 (ResNet forward pass)", fn, resnet_forward, cases, hint=hint,
                               compare=_same_tensor, verbose=verbose)
    return result


def check_resnet_as_euler(fn: Callable[..., torch.Tensor], verbose: bool = True) -> Callable[..., torch.Tensor]:
    """Exercise 4: a ResNet's hidden states from ``nodecourse.odeint`` with the Euler method and h = 1."""
    require_callable("check_resnet_as_euler", fn)
    g = _generator(23)
    x = torch.randn(5, 2, generator=g, dtype=torch.float64)
    mlp = _mlp([2, 16, 2], seed=60, dtype=torch.float64)
    mlp3 = _mlp([3, 32, 3], seed=61, dtype=torch.float64, scale=0.7)
    cases = [
        Case("depth 1", (mlp, x, 1)),
        Case("depth 3", (mlp, x, 3)),
        Case("depth 10, D = 3", (mlp3, torch.randn(4, 3, generator=g, dtype=torch.float64), 10)),
        Case("float32 MLP and state, depth 4", (_mlp([2, 16, 2], seed=62), x.float(), 4)),
    ]
    hint = ("wrap the MLP as a vector field f(t, y) = mlp(y) (ODEFunc(mlp) does it), ask for the states at "
            "t = 0, 1, ..., depth (torch.arange(depth + 1, dtype=y0.dtype)) and call "
            "odeint(f, y0, t, method='euler', options={'step_size': 1.0}).")
    result, _ = check_function("Exercise 4 (ResNet as Euler)", fn, resnet_as_euler, cases, hint=hint,
                               compare=_same_tensor, verbose=verbose)
    return result


def _gaps_compare(expected: torch.Tensor, got: Any) -> Optional[str]:
    """Gaps as a tensor, list or tuple of numbers; relative tolerance 1e-6 (the reference solve is to 1e-10)."""
    if isinstance(got, (list, tuple)):
        try:
            got = torch.stack([torch.as_tensor(g, dtype=expected.dtype).reshape(()) for g in got])
        except (TypeError, ValueError, RuntimeError):
            return "expected one number per depth"
    if torch.is_tensor(got):
        got = got.detach().reshape(-1) if got.numel() == expected.numel() else got
    why = close(expected, got, rtol=1e-6, atol=1e-12)
    if why and torch.is_tensor(got) and got.shape == expected.shape:
        ratio = (got.to(expected.dtype) / expected).tolist()
        return f"{why}; your gaps / the reference's = {', '.join(f'{r:.3g}' for r in ratio)}"
    return why


def check_continuous_limit_gaps(fn: Callable[..., torch.Tensor], verbose: bool = True) -> Callable[..., torch.Tensor]:
    """Exercise 5: the gap between shared-weight ResNets of step T/L and the ODE solution, for several L."""
    require_callable("check_continuous_limit_gaps", fn)
    f64 = torch.float64
    g = _generator(24)
    x = torch.randn(16, 2, generator=g, dtype=f64)
    mlp = _mlp([2, 16, 2], seed=70, dtype=f64)
    strong = _mlp([2, 32, 2], seed=71, dtype=f64, scale=1.5)
    mlp3 = _mlp([3, 16, 3], seed=72, dtype=f64)
    cases = [
        Case("one depth, L = 1, T = 1", (mlp, x, 1.0, [1])),
        Case("L = 2, 4, 8 on [0, 1]", (mlp, x, 1.0, [2, 4, 8])),
        Case("T = 0.5 (the step is T / L, not 1 / L)", (mlp, x, 0.5, [2, 4, 8])),
        Case("T = 2, a stronger field, L = 3, 10, 30", (strong, x, 2.0, [3, 10, 30])),
        Case("D = 3, one sample", (mlp3, torch.randn(1, 3, generator=g, dtype=f64), 1.0, [4, 16])),
    ]
    hint = ("solve the ODE once: odeint(ODEFunc(mlp), y0, torch.tensor([0.0, T], dtype=y0.dtype), rtol=1e-10, "
            "atol=1e-12)[-1]; for each L run L residual blocks y = y + (T / L) * mlp(y) (or ResNet(mlp, L, "
            "step_size=T / L)(y0)) and take (y - reference).abs().max(); return torch.stack of the gaps.")
    result, _ = check_function("Exercise 5 (the continuous limit)", fn, continuous_limit_gaps, cases, hint=hint,
                               compare=_gaps_compare, verbose=verbose)
    return result


# --- exercise 6 (find the bug) and exercise 7 (predict, then check) ------------------------------

def euler_solve(f: Field, y0: torch.Tensor, t0: float, t1: float, n_steps: int) -> torch.Tensor:
    """``n_steps`` Euler steps of size ``(t1 - t0) / n_steps`` from ``(t0, y0)``: the state at ``t1``."""
    h = (t1 - t0) / n_steps
    y = y0
    for k in range(n_steps):
        y = y + h * f(t0 + k * h, y)
    return y


def buggy_euler_solve(f: Field, y0: torch.Tensor, t0: float, t1: float, n_steps: int) -> torch.Tensor:
    """Exercise 6 ships this broken :func:`euler_solve` for the learner to repair."""
    h = (t1 - t0) / n_steps
    y = y0
    for k in range(n_steps):
        y = y + h * f(t0, y)
    return y


def _decay_field(t: Any, y: torch.Tensor) -> torch.Tensor:
    return -0.5 * y


def _time_field(t: Any, y: torch.Tensor) -> torch.Tensor:
    return torch.cos(torch.as_tensor(t, dtype=y.dtype)) - 0.3 * y


def check_euler_solve(fn: Callable[..., torch.Tensor], verbose: bool = True) -> Callable[..., torch.Tensor]:
    """Exercise 6 (find the bug): the repaired :func:`buggy_euler_solve`."""
    require_callable("check_euler_solve", fn)
    f64 = torch.float64
    cases = [
        Case("an autonomous field y' = -y/2 (the quick test)", (_decay_field, torch.tensor([1.0, -2.0], dtype=f64),
                                                              0.0, 2.0, 20)),
        Case("a time-dependent field y' = cos t - 0.3 y from t0 = 0", (_time_field, torch.tensor([0.5], dtype=f64),
                                                                     0.0, 3.0, 30)),
        Case("the same field from t0 = 1 to t1 = 2.5", (_time_field, torch.tensor([0.5, 1.0], dtype=f64), 1.0, 2.5, 7)),
        Case("one step: exactly y0 + h f(t0, y0)", (_time_field, torch.tensor([2.0], dtype=f64), 0.5, 0.75, 1)),
    ]
    hint = ["it is right for fields that do not depend on time and wrong for those that do (except for a "
            "single step): look at the time each step evaluates f at.",
            "step k starts at time t0 + k h, and that is where f must be evaluated; the loop never updates the time."]
    return check_function("Exercise 6 (find the bug: an Euler solve)", fn, euler_solve, cases, hint=hint,
                          compare=lambda e, g: close(e, g, rtol=1e-10, atol=1e-12), verbose=verbose)[0]


@prediction
@keep_random_state()
def check_error_ratio_prediction(guess: Optional[float], verbose: bool = True) -> float:
    """Exercise 7 (predict, then check): Euler's global error at y(2) of the logistic equation with 20 steps
    divided by the error with 80 steps."""
    with one_thread():
        y0 = torch.tensor([0.1], dtype=torch.float64)
        exact = 1 / (1 + 9 * math.exp(-2.0))

        def error(n: int) -> float:
            return abs(euler_solve(lambda t, y: y * (1 - y), y0, 0.0, 2.0, n).item() - exact)

        truth = round(error(20) / error(80), 3)
    check_prediction("Exercise 7 (predict: four times the steps)", guess, truth, notebook="02",
                     variable="predicted_ratio", rtol=0.15,
                     explanation="Euler's method is first order: its global error is about C h, so a step four times "
                                 "smaller gives an error about four times smaller (the ratio tends to 4 as h -> 0).",
                     verbose=verbose)
    return truth


show_answer = answers_for("02")
