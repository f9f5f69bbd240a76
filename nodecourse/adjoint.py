"""The adjoint method: gradients of an ODE solve in memory that does not grow with the step count.

Chen et al. (2018), "Neural Ordinary Differential Equations", Sec. 2; Pontryagin et al. (1962). For
a loss L of the states y(t_i), the adjoint a(t) = dL/dy(t) obeys

    da/dt = -a(t)^T df/dy(t, y(t)),          a(t_N) = dL/dy(t_N),
    dL/dtheta = integral_{t_0}^{t_N} a(t)^T df/dtheta(t, y(t)) dt,

so one reverse solve of the augmented state [y, a, g] from t_N to t_0, with dg/dt = -a^T df/dtheta
and g(t_N) = 0, gives a(t_0) = dL/dy_0 and g(t_0) = dL/dtheta. y(t) is recomputed backwards
instead of stored; between two output times the solve restarts from the stored output state and
``a`` jumps by that output's own gradient. Only the ``len(t)`` output states are kept for backward.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence, Union

import torch
from torch import nn

from .adjoint_checkpoint import check_checkpoint_gradient, recorded_solve, replay_backward
from .adjoint_per_sample import check_per_sample_adjoint, per_sample_backward
from .solvers import SolveStats, odeint, solve
from .solvers.events import with_event_time_gradient
from .solvers.checks import check_callable, check_method, check_options, check_y0
from .solvers.problem import CALLBACKS

State = Union[torch.Tensor, Sequence[torch.Tensor]]

__all__ = ["odeint_adjoint", "solve_adjoint", "AdjointSolution"]


@dataclass
class AdjointSolution:
    """The result of :func:`solve_adjoint`: the states ``ys`` (as :func:`odeint_adjoint` returns them), the
    output times ``t``, the forward solve's :class:`SolveStats`, and ``backward``: the reverse solve's
    statistics, summed over its intervals, filled in when a backward pass runs (``None`` before; each
    backward pass through ``ys`` replaces it)."""

    ys: Union[torch.Tensor, tuple]
    t: torch.Tensor
    stats: SolveStats
    backward: Optional[SolveStats] = None


def solve_adjoint(func: Callable, y0: State, t: Any, rtol: float = 1e-7, atol: float = 1e-9,
                  method: str = "dopri5", options: Optional[dict] = None, **adjoint_kwargs) -> AdjointSolution:
    """:func:`odeint_adjoint` that also reports what the forward and the backward (reverse) solves cost,
    as :func:`nodecourse.solve` does for one solve. Same arguments; read ``.backward`` after ``backward()``."""
    result = AdjointSolution(ys=None, t=None, stats=None)
    result.ys = odeint_adjoint(func, y0, t, rtol, atol, method, options, _record=result, **adjoint_kwargs)
    result.t = torch.as_tensor(t)
    return result


def odeint_adjoint(func: Callable, y0: State, t: Any, rtol: float = 1e-7, atol: float = 1e-9,
                   method: str = "dopri5", options: Optional[dict] = None,
                   adjoint_params: Optional[Sequence[torch.Tensor]] = None,
                   adjoint_rtol: Optional[float] = None, adjoint_atol: Optional[float] = None,
                   adjoint_method: Optional[str] = None, adjoint_options: Optional[dict] = None, *,
                   event_fn: Optional[Callable] = None, gradient: str = "adjoint",
                   _record: Optional[AdjointSolution] = None):
    """:func:`nodecourse.odeint` whose backward pass solves the adjoint ODE instead of backpropagating
    through the solver's operations.

    Same forward result ``[len(t), *y0.shape]``. ``adjoint_params`` are the tensors to differentiate
    (default: ``func.parameters()``, so ``func`` must be an ``nn.Module`` unless they are given).
    The ``adjoint_*`` arguments set the reverse solve (default: the forward's settings);
    ``adjoint_options={"norm": "seminorm"}`` measures its error on ``y`` and ``a`` only, not on the
    parameter-gradient integral, which usually saves steps (Kidger et al. 2021). The reverse solve
    restarts at every output time, where the adjoint jumps by that output's gradient: many output
    times make it cost more than the forward solve (:func:`solve_adjoint` reports both). With
    ``options={"per_sample": True}``, ``t`` may be ``[batch, T]``, each sample's own times: each
    sample's reverse solve then stops only at its own times (:mod:`nodecourse.adjoint_per_sample`);
    with the seminorm it also skips the per-sample parameter gradient, several times faster.

    ``gradient="checkpoint"`` (adaptive methods) solves nothing backwards: it keeps each forward step's
    start state and backpropagates through one replayed step at a time
    (:mod:`nodecourse.adjoint_checkpoint`). The exact gradient of the computed solution, at about the
    forward's evaluations however many output times, for one stored state per step.

    With ``event_fn`` (as in torchdiffeq): solve until ``event_fn(t, y)`` changes sign and return
    ``(t_event, [y0, y(t_event)])``; the state's gradients come from the adjoint, the event time's from
    the implicit function theorem (see :func:`nodecourse.odeint_event`).
    """
    checkpoint = check_checkpoint_gradient(
        gradient, options or {}, method, torch.as_tensor(t),
        {"adjoint_rtol": adjoint_rtol, "adjoint_atol": adjoint_atol, "adjoint_method": adjoint_method,
         "adjoint_options": adjoint_options}, event_fn)
    if event_fn is not None:
        with torch.no_grad():
            event_t, _ = odeint(func, y0, t, rtol=rtol, atol=atol, method=method, options=options, event_fn=event_fn)
        t = torch.as_tensor(t)
        times = torch.stack([t[0].to(event_t), event_t])
        solution = odeint_adjoint(func, y0, times, rtol, atol, method, options, adjoint_params, adjoint_rtol,
                                  adjoint_atol, adjoint_method, adjoint_options)
        return with_event_time_gradient(func, event_fn, event_t, solution)
    check_callable(func)
    check_method(method)
    options = check_options(method, options)
    is_tuple = isinstance(y0, (tuple, list))
    parts = check_y0(y0)
    if adjoint_params is None:
        if not isinstance(func, nn.Module):
            raise TypeError(
                "odeint_adjoint differentiates func's parameters, so func must be an nn.Module; for a plain "
                "function pass the tensors to differentiate as adjoint_params=(...) (or () for none)."
            )
        adjoint_params = tuple(func.parameters())
    params = tuple(p for p in adjoint_params if torch.is_tensor(p) and p.requires_grad)

    adjoint_method = method if adjoint_method is None else adjoint_method
    check_method(adjoint_method)
    if adjoint_options is None:
        same = adjoint_method == method
        adjoint_options = {k: v for k, v in options.items() if same and k not in ("per_sample", "norm", "compile")}
    adjoint_options = dict(adjoint_options)
    seminorm = adjoint_options.get("norm") == "seminorm"
    user_norm = adjoint_options.get("norm") if callable(adjoint_options.get("norm")) else None
    if seminorm:
        del adjoint_options["norm"]
    elif user_norm is not None:
        adjoint_options["norm"] = _TorchdiffeqAdjointNorm(user_norm, len(parts), flatten=False)
    if adjoint_options.get("compile"):
        raise ValueError("The adjoint's reverse solve builds a new augmented field for every backward pass, so "
                         "it cannot reuse a compiled step; remove 'compile' from adjoint_options (it may stay in "
                         "options for the forward solve).")
    if "per_sample" in adjoint_options:
        raise ValueError("The adjoint's reverse solve shares one step size (per-sample only with per-sample "
                         "output times t [batch, T]); remove 'per_sample' from adjoint_options (it may stay in "
                         "options for the forward solve).")
    check_options(adjoint_method, adjoint_options)
    t = torch.as_tensor(t)
    param_names = None
    if t.dim() == 2 and not checkpoint:
        param_names = check_per_sample_adjoint(func, params, options, method, adjoint_method, adjoint_options)
    settings = {
        "func": func, "n_parts": len(parts), "is_tuple": is_tuple, "params": params,
        "forward": dict(rtol=rtol, atol=atol, method=method, options=options),
        "backward": dict(rtol=rtol if adjoint_rtol is None else adjoint_rtol,
                         atol=atol if adjoint_atol is None else adjoint_atol,
                         method=adjoint_method, options=adjoint_options),
        "seminorm": seminorm, "user_norm": user_norm, "record": _record, "param_names": param_names,
        "checkpoint": checkpoint,
    }
    flat = _AdjointSolve.apply(settings, t, *parts, *params)
    if not is_tuple:
        return flat
    # a tuple state travels as one flat tensor [T, total] and is split here, as torchdiffeq does (its tests
    # reach the norm through xs[i].grad_fn.next_functions twice: a view of a slice of the solve's output)
    outputs, start = [], 0
    for p in parts:
        outputs.append(flat[..., start:start + p.numel()].view(flat.shape[0], *p.shape))
        start += p.numel()
    return tuple(outputs)


class _AdjointSolve(torch.autograd.Function):
    """Forward: a plain solve without a graph. Backward: the reverse augmented solve."""

    @staticmethod
    def forward(ctx, settings: dict, t: torch.Tensor, *tensors: torch.Tensor):
        n = settings["n_parts"]
        y0 = tensors[:n]
        if settings["checkpoint"]:  # keep every step's start for the replay
            ys, stats, ctx.recording = recorded_solve(settings["func"], y0, settings["is_tuple"], t,
                                                      settings["forward"])
        else:
            with torch.no_grad():
                solution = solve(settings["func"], _user_state(y0, settings), t, **settings["forward"])
            ys, stats = (tuple(solution.ys) if settings["is_tuple"] else (solution.ys,)), solution.stats
        if settings["record"] is not None:
            settings["record"].stats = stats
        ctx.settings = settings
        # As in torchdiffeq, the reverse solve's norm is readable (and replaceable) on the output's grad_fn:
        # ys.grad_fn.adjoint_options["norm"], called on (t, y, a, *param_grads), a tuple state's y and a
        # flattened into one tensor each (t's part is 0 here).
        sizes = [p.numel() for p in y0] if settings["is_tuple"] else None
        ctx.adjoint_options = {"norm": settings["user_norm"] or _DefaultAdjointNorm(settings["seminorm"], sizes)}
        ctx.save_for_backward(t, *ys)
        if not settings["is_tuple"]:
            return ys[0]
        return torch.cat([y.reshape(y.shape[0], -1) for y in ys], dim=1)

    @staticmethod
    def backward(ctx, grad_flat: torch.Tensor):
        settings = ctx.settings
        func, params, n = settings["func"], settings["params"], settings["n_parts"]
        t, *ys = ctx.saved_tensors
        grad_ys = _split_like(grad_flat, ys) if settings["is_tuple"] else (grad_flat,)
        t = t.to(ys[0].dtype) if not torch.is_floating_point(t) else t
        if settings["checkpoint"]:
            grad_y0, grad_params, spent = replay_backward(ctx.recording, grad_ys, params)
            if settings["record"] is not None:
                settings["record"].backward = spent
            return (None, None, *grad_y0, *grad_params)
        if settings["param_names"] is not None:  # each sample its own output times
            return (None, *per_sample_backward(settings, t, tuple(ys), grad_ys))

        def augmented(s: torch.Tensor, state: tuple) -> tuple:
            """d/ds of [y, a, g]: [f, -a^T df/dy, -a^T df/dtheta]."""
            y, a = state[:n], state[n:2 * n]
            with torch.enable_grad():
                y = tuple(yi.detach().requires_grad_(True) for yi in y)
                f = func(s, _user_state(y, settings))
                f = tuple(f) if settings["is_tuple"] else (f,)
                inputs = y + params
                # parts of f that do not depend on y or theta (e.g. a constant zero) add nothing
                pairs = [(fi, -ai) for fi, ai in zip(f, a) if fi.requires_grad]
                if pairs:
                    outputs, cotangents = zip(*pairs)
                    vjps = torch.autograd.grad(outputs, inputs, cotangents, allow_unused=True)
                else:
                    vjps = (None,) * len(inputs)
            vjps = tuple(torch.zeros_like(x) if v is None else v for x, v in zip(inputs, vjps))
            return tuple(fi.detach() for fi in f) + vjps

        for name in CALLBACKS:  # func's adjoint callbacks become the reverse solve's callbacks
            adjoint_callback = getattr(func, name + "_adjoint", None)
            if callable(adjoint_callback):
                setattr(augmented, name, adjoint_callback)
        backward_settings = dict(settings["backward"])
        norm = ctx.adjoint_options.get("norm")
        if not isinstance(norm, _DefaultAdjointNorm):  # the user's, or one put on grad_fn since the forward
            # torchdiffeq hands a user's norm a tuple state's parts one by one, a norm that replaced the
            # default on grad_fn the flattened y and a (the default's own layout)
            flat = settings["is_tuple"] and norm is not settings["user_norm"]
            backward_settings["options"] = {**backward_settings["options"],
                                            "norm": _TorchdiffeqAdjointNorm(norm, n, flat)}
        elif settings["seminorm"]:
            backward_settings["options"] = {**backward_settings["options"], "norm": _seminorm(2 * n)}

        a = tuple(g[-1] for g in grad_ys)
        g_params = tuple(torch.zeros_like(p) for p in params)
        grad_t = torch.zeros_like(t) if t.requires_grad else None
        spent = None
        for i in range(len(t) - 1, 0, -1):
            y_i = tuple(y[i] for y in ys)
            if grad_t is not None:
                f_i = _as_tuple(func(t[i], _user_state(y_i, settings)), settings)
                grad_t[i] = _dot(tuple(g[i] for g in grad_ys), f_i)
            state = y_i + a + g_params
            reverse = solve(augmented, state, t[i - 1:i + 1].flip(0), **backward_settings)
            spent = reverse.stats if spent is None else spent + reverse.stats
            if settings["record"] is not None:
                settings["record"].backward = spent
            states = reverse.ys
            a = tuple(s[-1] for s in states[n:2 * n])
            g_params = tuple(s[-1] for s in states[2 * n:])
            if i == 1 and grad_t is not None:  # moving t_0 shifts the whole trajectory, not y(t_0)
                y_0 = tuple(y[0] for y in ys)
                f_0 = _as_tuple(func(t[0], _user_state(y_0, settings)), settings)
                grad_t[0] = -_dot(a, f_0)
            a = tuple(ai + g[i - 1] for ai, g in zip(a, grad_ys))
        return (None, grad_t, *a, *g_params)


def _user_state(parts: tuple, settings: dict):
    return tuple(parts) if settings["is_tuple"] else parts[0]


def _as_tuple(f, settings: dict) -> tuple:
    return tuple(f) if settings["is_tuple"] else (f,)


def _dot(xs: tuple, ys: tuple) -> torch.Tensor:
    return sum((x * y).sum() for x, y in zip(xs, ys))


class _TorchdiffeqAdjointNorm:
    """An adjoint norm called as torchdiffeq calls it, on ``(t, *y, *a, *param_grads)``: the augmented
    state's parts (with ``flatten``, a tuple state's ``y`` and ``a`` each as one flat tensor), led by the
    time-gradient part (which this solve keeps out of the state, so it enters as a zero)."""

    def __init__(self, norm: Callable, n_parts: int, flatten: bool):
        self.norm, self.n, self.flatten = norm, n_parts, flatten

    def __call__(self, parts: tuple) -> torch.Tensor:
        y, a, grads = parts[:self.n], parts[self.n:2 * self.n], parts[2 * self.n:]
        if self.flatten:
            y, a = (torch.cat([p.reshape(-1) for p in y]),), (torch.cat([p.reshape(-1) for p in a]),)
        return self.norm((parts[0].new_zeros(()), *y, *a, *grads))


class _DefaultAdjointNorm:
    """The reverse solve's default norm in torchdiffeq's layout ``(t, y, a, *param_grads)``: the largest
    RMS over the state's parts (a tuple state's flat ``y`` and ``a`` split back by ``sizes``) and the
    parameter gradients, or over ``y`` and ``a`` only for the seminorm. The solve itself uses the
    equivalent built-in norm unless this object is replaced on ``grad_fn``."""

    def __init__(self, seminorm: bool, sizes: Optional[list]):
        self.seminorm, self.sizes = seminorm, sizes

    def __call__(self, parts: tuple) -> torch.Tensor:
        t, y, a, grads = parts[0], parts[1], parts[2], parts[3:]
        split = (lambda x: x.reshape(-1).split(self.sizes)) if self.sizes else (lambda x: (x,))
        measured = [*split(y), *split(a), *(() if self.seminorm else grads)]
        return torch.stack([t.abs().reshape(())] + [p.pow(2).mean().sqrt() for p in measured]).amax()


def _split_like(flat: torch.Tensor, ys: list) -> tuple:
    """``[T, total]`` -> tensors shaped like each of ``ys`` (``[T, *shape]``)."""
    out, start = [], 0
    for y in ys:
        width = y[0].numel()
        out.append(flat[:, start:start + width].reshape(y.shape))
        start += width
    return tuple(out)


def _seminorm(n_measured: int) -> Callable:
    """RMS error over the first ``n_measured`` parts of the augmented state (``y`` and ``a``)."""

    def norm(error: tuple) -> torch.Tensor:
        return torch.stack([e.pow(2).mean().sqrt() for e in error[:n_measured]]).amax()

    return norm
