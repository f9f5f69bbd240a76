"""The adjoint's reverse solve when every sample has its own output times ``t`` of shape ``[B, T]``.

Each sample's adjoint jumps only at its own output times, so each sample's reverse solve should stop
only there. The reverse solve is a per-sample solve (:mod:`nodecourse.solvers.per_sample`) of the
augmented state ``[y, a, g]``, interval by interval: from ``t[b, i]`` to ``t[b, i-1]`` for every
sample ``b`` at once, each with its own step sizes. That needs the parameter-gradient integral per
sample, ``g_b = -int a_b^T df_b/dtheta dt``: ``[B, *theta.shape]`` for every parameter, a
vector-Jacobian product per sample, computed for the whole batch at once with ``torch.func.vmap``
over ``torch.func.functional_call``. ``dL/dtheta`` is then ``sum_b g_b(t_b0)``.

Requirements this adds: ``func`` is an ``nn.Module`` whose parameters are the ones differentiated,
and it handles one sample at a time (a batch of one, ``t`` of shape ``[1]``), as a field that acts on
each row of the batch alone does.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn
from torch.func import functional_call, vjp, vmap

from .solvers import solve
from .solvers.tableaux import ADAPTIVE_METHODS


def check_per_sample_adjoint(func: Callable, params: tuple, options: dict, method: str,
                             adjoint_method: str, adjoint_options: dict) -> tuple[str, ...]:
    """Check that an adjoint with per-sample times can run; returns the parameters' names in ``func``."""
    if not options.get("per_sample"):
        raise ValueError("t of shape [batch, T] gives each sample its own output times; that needs "
                         "options={'per_sample': True} (or pass one 1-D t shared by the batch).")
    for name, value in (("method", method), ("adjoint_method", adjoint_method)):
        if value not in ADAPTIVE_METHODS:
            raise ValueError(f"Per-sample output times need an adaptive {name} ({', '.join(ADAPTIVE_METHODS)}), "
                             f"got {value!r}.")
    if callable(adjoint_options.get("norm")):
        raise ValueError("With per-sample output times the reverse solve takes adjoint_options={'norm': "
                         "'seminorm'} or the default norm, not a callable.")
    if not isinstance(func, nn.Module):
        raise TypeError("odeint_adjoint with per-sample output times computes each sample's parameter gradient "
                        "with torch.func.functional_call, so func must be an nn.Module holding the parameters.")
    names = {id(p): name for name, p in func.named_parameters()}
    missing = [i for i, p in enumerate(params) if id(p) not in names]
    if missing:
        raise ValueError(f"adjoint_params {missing} are not parameters of func; with per-sample output times "
                         "only func's own parameters can be differentiated (register them in the module).")
    return tuple(names[id(p)] for p in params)


def per_sample_backward(settings: dict, t: torch.Tensor, ys: tuple, grad_ys: tuple) -> tuple:
    """The gradients ``(grad_t, *grad_y0, *grad_params)`` for per-sample times ``t`` ``[B, T]``;
    ``ys`` and ``grad_ys`` are the forward states and their gradients, ``[T, B, ...]`` each."""
    func, params, names, n = settings["func"], settings["params"], settings["param_names"], settings["n_parts"]
    field = _AugmentedPerSample(func, params, names, n, settings["is_tuple"])
    backward = dict(settings["backward"])
    options = {**backward["options"], "per_sample": True}
    if settings["seminorm"]:
        widths = [y[0].reshape(y.shape[1], -1).shape[1] for y in ys]
        options["norm"] = _per_sample_seminorm(2 * sum(widths))
    user_first_step = options.get("first_step")
    backward["options"] = options
    a = tuple(g[-1] for g in grad_ys)
    g_params = tuple(p.new_zeros((t.shape[0], *p.shape)) for p in params)
    grad_t = torch.zeros_like(t) if t.requires_grad else None
    spent = None
    for i in range(t.shape[1] - 1, 0, -1):
        y_i = tuple(y[i] for y in ys)
        if grad_t is not None:
            grad_t[:, i] = _rowwise_dot(tuple(g[i] for g in grad_ys), field.field_values(t[:, i], y_i))
        reverse = solve(field, y_i + a + g_params, t[:, [i, i - 1]], **backward)
        spent = reverse.stats if spent is None else spent + reverse.stats
        # The next interval starts where this one ended: its first step is this interval's mean accepted
        # step, per sample, instead of the initial-step heuristic (which costs an evaluation per interval).
        if user_first_step is None:
            taken = (t[:, i] - t[:, i - 1]).abs().detach() / reverse.stats.n_accepted.clamp(min=1)
            options["first_step"] = taken.clamp(min=torch.finfo(t.dtype).tiny)
        if settings["record"] is not None:
            settings["record"].backward = spent
        a = tuple(s[-1] for s in reverse.ys[n:2 * n])
        g_params = tuple(s[-1] for s in reverse.ys[2 * n:])
        if i == 1 and grad_t is not None:
            grad_t[:, 0] = -_rowwise_dot(a, field.field_values(t[:, 0], tuple(y[0] for y in ys)))
        a = tuple(ai + g[i - 1] for ai, g in zip(a, grad_ys))
    return (grad_t, *a, *(g.sum(dim=0) for g in g_params))


class _AugmentedPerSample:
    """d/ds of ``[y, a, g]`` per sample: ``[f, -a^T df/dy, -a^T df/dtheta]``, each ``[B, ...]``, from one
    vmapped vector-Jacobian product of ``func`` on every sample alone."""

    def __init__(self, func: nn.Module, params: tuple, names: tuple, n_parts: int, is_tuple: bool):
        self.func, self.params, self.names, self.n, self.is_tuple = func, params, names, n_parts, is_tuple
        self._per_sample = vmap(self._one_sample, in_dims=(0, None, 0, 0))

    def _one_sample(self, s, params, y, a):
        """One sample: ``s`` 0-d, ``y`` and ``a`` tuples of its state's parts (without the batch dim)."""
        def field(theta, *y_parts):
            state = tuple(p.unsqueeze(0) for p in y_parts)
            f = functional_call(self.func, dict(zip(self.names, theta)),
                                (s.reshape(1), state if self.is_tuple else state[0]))
            return tuple(fi.squeeze(0) for fi in (f if self.is_tuple else (f,)))

        f, pullback = vjp(field, params, *y)
        grads = pullback(tuple(-ai for ai in a))
        return f, grads[1:], grads[0]

    def __call__(self, s: torch.Tensor, state: tuple) -> tuple:
        y, a = tuple(state[:self.n]), tuple(state[self.n:2 * self.n])
        with torch.enable_grad():
            params = tuple(p.detach() for p in self.params)
            f, a_dot, g_dot = self._per_sample(s, params, y, a)
        return tuple(x.detach() for x in (*f, *a_dot, *g_dot))

    def field_values(self, s: torch.Tensor, y: tuple) -> tuple:
        """``f(s, y)`` per sample (for the time gradients), ``[B, ...]`` each part."""
        with torch.no_grad():
            f = self.func(s, y if self.is_tuple else y[0])
        return tuple(f) if self.is_tuple else (f,)


def _rowwise_dot(xs: tuple, ys: tuple) -> torch.Tensor:
    return sum((x * y).reshape(x.shape[0], -1).sum(dim=1) for x, y in zip(xs, ys))


def _per_sample_seminorm(n_measured: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """RMS over the first ``n_measured`` columns of the flat ``[B, N]`` error (``y`` and ``a``), per sample."""
    def norm(error: torch.Tensor) -> torch.Tensor:
        return error[:, :n_measured].pow(2).mean(dim=1).sqrt()
    return norm
