"""Continuous normalizing flows: the instantaneous change of variables with exact or stochastic traces.

Chen et al. (2018), Sec. 4; Grathwohl et al. (2019), FFJORD. A state ``z(t)`` that follows
``dz/dt = f(t, z)`` carries its log-density along with it by

    d log p(z(t)) / dt = -tr(df/dz),

so the joint state ``(z, delta)`` with ``d delta / dt = -tr(df/dz)``, ``delta(0) = 0``, solved from the
data ``x = z(0)`` to ``z(t1)``, gives ``log p(x) = log N(z(t1); 0, I) - delta(t1)``. The trace is
computed exactly (``dim`` vector-Jacobian products) or estimated by Hutchinson's ``eps^T (df/dz) eps``
with one product. Sampling draws ``z(t1)`` from the base Gaussian and solves back to ``t = 0``.
"""
from __future__ import annotations

import math
from typing import Callable, Optional

import torch
from torch import nn

from nodecourse._validation import check_batch, check_count, is_real

from ._compat import renamed
from .gradients import Adjoint, check_adjoint, solve_model
from .mlp import MLP
from .ode_block import DEFAULT_ATOL, DEFAULT_METHOD, DEFAULT_RTOL

__all__ = [
    "standard_normal_log_prob",
    "exact_trace",
    "hutchinson_trace",
    "sample_probe",
    "CNFField",
    "CNF",
    "TRACES",
    "PROBES",
]

TRACES = ("exact", "hutchinson")
PROBES = ("rademacher", "gaussian")


def _check_batch(name: str, z: torch.Tensor) -> None:
    if not torch.is_tensor(z):
        raise TypeError(f"{name} must be a tensor [batch, dim], got {type(z).__name__}.")
    if z.dim() != 2:
        raise ValueError(f"{name} must be a batch of vectors [batch, dim], got shape {tuple(z.shape)}; "
                         "add a batch dimension with z.unsqueeze(0) for a single point.")


def standard_normal_log_prob(z: torch.Tensor) -> torch.Tensor:
    """log N(z; 0, I) per sample: ``[batch, dim] -> [batch]``, i.e. ``-|z|^2 / 2 - dim/2 log(2 pi)``."""
    _check_batch("z", z)
    return -0.5 * z.pow(2).sum(dim=-1) - 0.5 * z.shape[-1] * math.log(2 * math.pi)


def _check_pair(f: torch.Tensor, z: torch.Tensor) -> None:
    _check_batch("z", z)
    if not torch.is_tensor(f) or f.shape != z.shape:
        raise ValueError(f"f must be the field's output, shaped like z {tuple(z.shape)}, got "
                         f"{tuple(f.shape) if torch.is_tensor(f) else type(f).__name__}.")
    if not (z.requires_grad and f.requires_grad):
        raise ValueError("f must be computed from z with autograd on: call z.requires_grad_(True) before "
                         "f = field(z), inside torch.enable_grad() if gradients are off.")


def exact_trace(f: torch.Tensor, z: torch.Tensor, create_graph: bool = True) -> torch.Tensor:
    """tr(df/dz) per sample, exactly, by ``dim`` vector-Jacobian products: ``[batch, dim] -> [batch]``.

    ``f`` must have been computed from ``z`` (which requires grad), one sample per row with no mixing
    across rows (then the sum over the batch of row i of the Jacobian gives each sample's own
    ``df_i/dz``). ``create_graph`` keeps the result differentiable, as training needs.
    """
    _check_pair(f, z)
    dim = z.shape[-1]
    diagonal = []
    for i in range(dim):
        (row,) = torch.autograd.grad(f[:, i].sum(), z, create_graph=create_graph,
                                     retain_graph=create_graph or i < dim - 1, allow_unused=True)
        diagonal.append(torch.zeros_like(z[:, i]) if row is None else row[:, i])
    return torch.stack(diagonal, dim=-1).sum(dim=-1)


def hutchinson_trace(f: torch.Tensor, z: torch.Tensor, eps: torch.Tensor,
                     create_graph: bool = True) -> torch.Tensor:
    """Hutchinson's estimate ``eps^T (df/dz) eps`` per sample, by one vector-Jacobian product.

    ``eps`` ``[batch, dim]`` holds probes with ``E[eps eps^T] = I`` (Rademacher or standard normal),
    so the estimate's mean is ``tr(df/dz)``. Returns ``[batch]``.
    """
    _check_pair(f, z)
    if not torch.is_tensor(eps) or eps.shape != z.shape:
        raise ValueError(f"eps must hold one probe per sample, shaped like z {tuple(z.shape)}, got "
                         f"{tuple(eps.shape) if torch.is_tensor(eps) else type(eps).__name__}.")
    (eps_jac,) = torch.autograd.grad(f, z, grad_outputs=eps, create_graph=create_graph,
                                     retain_graph=create_graph, allow_unused=True)
    if eps_jac is None:  # f does not depend on z: its Jacobian is zero
        return torch.zeros_like(z[:, 0])
    return (eps_jac * eps).sum(dim=-1)


def sample_probe(like: torch.Tensor, kind: str = "rademacher",
                 generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Random probes shaped like ``like`` with ``E[eps eps^T] = I``: entries +-1 ("rademacher") or
    standard normal ("gaussian"), on ``like``'s device and dtype."""
    if kind not in PROBES:
        raise ValueError(f"unknown probe kind {kind!r}; use one of {PROBES}.")
    where = generator.device if generator is not None else like.device
    if kind == "gaussian":
        eps = torch.randn(like.shape, generator=generator, device=where, dtype=like.dtype)
    else:
        eps = torch.randint(0, 2, like.shape, generator=generator, device=where).to(like.dtype) * 2 - 1
    return eps.to(like.device)


def _positive_int(name: str, value: object, minimum: int = 1) -> int:
    return check_count(name, value, minimum, kind=f"an integer >= {minimum}")


_OLD = {"dim": "input_size", "hidden": "hidden_size", "condition_dim": "condition_size"}


@renamed(_OLD)
class CNFField(nn.Module):
    """The vector field ``f(t, z, c) = MLP([z, t, c])`` of a (conditional) CNF: ``[B, input_size] -> [B, input_size]``.

    ``c`` ``[B, condition_size]`` is the condition (e.g. a one-hot class label); with
    ``condition_size = 0`` the field takes none. Time enters as one more input feature, so the field
    can change along the flow. The MLP has ``n_hidden`` hidden layers of ``hidden_size`` units.
    ``nfe`` counts evaluations.
    """

    def __init__(self, input_size: int, hidden_size: int = 64, n_hidden: int = 2, condition_size: int = 0,
                 activation: type[nn.Module] = nn.Tanh) -> None:
        super().__init__()
        self.input_size = _positive_int("input_size", input_size)
        self.condition_size = _positive_int("condition_size", condition_size, minimum=0)
        self.hidden_size = _positive_int("hidden_size", hidden_size)
        n_hidden = _positive_int("n_hidden", n_hidden)
        self.net = MLP([self.input_size + 1 + self.condition_size] + [self.hidden_size] * n_hidden
                       + [self.input_size], activation=activation)
        self.nfe = 0

    def forward(self, t: torch.Tensor | float, z: torch.Tensor,
                condition: Optional[torch.Tensor] = None) -> torch.Tensor:
        if z.dim() != 2 or z.shape[-1] != self.input_size:
            raise ValueError(f"CNFField expects states [batch, {self.input_size}], got {tuple(z.shape)}.")
        if self.condition_size and (condition is None or condition.shape != (z.shape[0], self.condition_size)):
            got = "none" if condition is None else f"shape {tuple(condition.shape)}"
            raise ValueError(f"this CNFField is conditional: pass condition [{z.shape[0]}, {self.condition_size}], "
                             f"got {got}.")
        self.nfe += 1
        t_col = torch.as_tensor(t, dtype=z.dtype, device=z.device).reshape(()).expand(z.shape[0], 1)
        parts = [z, t_col] if condition is None else [z, t_col, condition]
        return self.net(torch.cat(parts, dim=-1))


@renamed(_OLD)
class CNF(nn.Module):
    """A continuous normalizing flow from the data (t = 0) to a standard Gaussian (t = ``t1``).

    ``log_prob(x)`` solves the joint state ``(z, delta)`` with ``d delta/dt = -tr(df/dz)`` and returns
    ``log N(z(t1)) - delta(t1)`` per sample ``[B]``; ``trace`` chooses the exact trace or Hutchinson's
    estimator (one fresh probe per sample per solve, ``probe`` "rademacher" or "gaussian").
    ``sample(n)`` draws ``z(t1) ~ N(0, I)`` and solves back to ``t = 0``. With ``condition_size > 0``
    every call takes a condition ``[B, condition_size]`` (or one ``[condition_size]`` vector for all).
    ``input_size`` is the data's width (the flow's state has the same width), ``hidden_size`` the width of
    the field's MLP.
    ``method``, ``rtol``, ``atol`` and ``options`` go to the solver; ``adjoint=True`` trains through
    :func:`nodecourse.odeint_adjoint` instead of backpropagating through the solver, ``adjoint="checkpoint"``
    through replayed forward steps (:mod:`nodecourse.models.gradients`).
    """

    def __init__(self, input_size: int, hidden_size: int = 64, trace: str = "exact", condition_size: int = 0, *,
                 n_hidden: int = 2, t1: float = 1.0, probe: str = "rademacher", method: str = DEFAULT_METHOD,
                 rtol: float = DEFAULT_RTOL, atol: float = DEFAULT_ATOL, options: Optional[dict] = None,
                 adjoint: Adjoint = False, activation: type[nn.Module] = nn.Tanh) -> None:
        super().__init__()
        self._check_trace(trace)
        if probe not in PROBES:
            raise ValueError(f"unknown probe {probe!r}; use one of {PROBES}.")
        if not (is_real(t1) and math.isfinite(t1) and t1 > 0):
            raise ValueError(f"t1 must be a positive finite time, got t1={t1!r}.")
        self.field = CNFField(input_size, hidden_size, n_hidden, condition_size, activation)
        self.input_size, self.condition_size = self.field.input_size, self.field.condition_size
        self.hidden_size = self.field.hidden_size
        self.trace, self.probe, self.t1 = trace, probe, float(t1)
        self.solver = dict(method=method, rtol=rtol, atol=atol, options=options)
        self.adjoint = check_adjoint(adjoint, method)

    @staticmethod
    def _check_trace(trace: str) -> None:
        if trace not in TRACES:
            raise ValueError(f"unknown trace {trace!r}; use 'exact' (dim autograd passes) or 'hutchinson' "
                             "(one pass, unbiased but noisy).")

    @property
    def nfe(self) -> int:
        """Evaluations of the vector field since construction (set to 0 to restart the count)."""
        return self.field.nfe

    @nfe.setter
    def nfe(self, value: int) -> None:
        self.field.nfe = value

    # --- inputs -------------------------------------------------------------------------------------

    def _check_x(self, x: torch.Tensor, name: str = "x") -> None:
        check_batch("CNF", x, self.input_size, self.field.net._modules["0"].weight, name=name,
                    hint="add a batch dimension with x.unsqueeze(0) for a single point.")

    def _condition(self, condition: Optional[torch.Tensor], batch: int, like: torch.Tensor
                   ) -> Optional[torch.Tensor]:
        """The condition as ``[batch, condition_size]`` on ``like``'s device and dtype (None if none)."""
        if self.condition_size == 0:
            if condition is not None:
                raise ValueError("this CNF has condition_size=0 and takes no condition; build it with "
                                 "CNF(..., condition_size=k) to condition on a k-vector.")
            return None
        if condition is None:
            raise ValueError(f"this CNF is conditional (condition_size={self.condition_size}): pass "
                             f"condition=[batch, {self.condition_size}] (e.g. a one-hot label).")
        condition = torch.as_tensor(condition).to(device=like.device, dtype=like.dtype)
        if condition.dim() == 1:
            condition = condition.expand(batch, -1)
        if condition.shape != (batch, self.condition_size):
            raise ValueError(f"condition must be [{self.condition_size}] or [{batch}, {self.condition_size}], "
                             f"got shape {tuple(condition.shape)}.")
        return condition

    def _times(self, like: torch.Tensor, reverse: bool = False) -> torch.Tensor:
        t = torch.tensor([0.0, self.t1], dtype=like.dtype, device=like.device)
        return t.flip(0) if reverse else t

    def _solve(self, func: Callable, state, t: torch.Tensor):
        adjoint = self.adjoint if torch.is_grad_enabled() else False  # no backward pass: nothing to prepare for it
        return solve_model(func, state, t, adjoint, adjoint_params=tuple(self.parameters()), **self.solver)

    # --- the flow -------------------------------------------------------------------------------------

    def augmented_dynamics(self, t: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor],
                           condition: Optional[torch.Tensor] = None, trace: Optional[str] = None,
                           eps: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``d/dt (z, delta) = (f(t, z), -tr(df/dz))`` with the exact or Hutchinson trace ([B, D], [B]).

        Works with autograd off too (the trace needs it internally); the outputs are then detached.
        """
        trace = self.trace if trace is None else trace
        z = state[0]
        keep_graph = torch.is_grad_enabled()
        with torch.enable_grad():
            if not z.requires_grad:
                z = z.detach().requires_grad_(True)
            f = self.field(t, z, condition)
            if trace == "exact":
                tr = exact_trace(f, z, create_graph=keep_graph)
            else:
                if eps is None:
                    raise ValueError("the Hutchinson trace needs a probe eps shaped like z.")
                tr = hutchinson_trace(f, z, eps, create_graph=keep_graph)
        if not keep_graph:
            f, tr = f.detach(), tr.detach()
        return f, -tr

    def forward(self, x: torch.Tensor, condition: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``model(x)`` is ``model.log_prob(x)``: ``[B, dim] -> [B]``."""
        return self.log_prob(x, condition)

    def log_prob(self, x: torch.Tensor, condition: Optional[torch.Tensor] = None,
                 trace: Optional[str] = None) -> torch.Tensor:
        """log p(x) (or log p(x | condition)) per sample: ``[B, dim] -> [B]``.

        ``trace`` overrides the model's estimator for this call (e.g. evaluate a model trained with
        Hutchinson's estimator with the exact trace).
        """
        return self.log_prob_and_base(x, condition, trace)[0]

    def log_prob_and_base(self, x: torch.Tensor, condition: Optional[torch.Tensor] = None,
                          trace: Optional[str] = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(log p(x) [B], z(t1) [B, dim], delta(t1) [B])``: the density and the solve behind it."""
        self._check_x(x)
        trace = self.trace if trace is None else trace
        self._check_trace(trace)
        c = self._condition(condition, x.shape[0], x)
        eps = sample_probe(x, self.probe) if trace == "hutchinson" else None

        def dynamics(t, state):
            return self.augmented_dynamics(t, state, c, trace, eps)

        delta0 = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        zs, deltas = self._solve(dynamics, (x, delta0), self._times(x))
        z1, delta1 = zs[-1], deltas[-1]
        return standard_normal_log_prob(z1) - delta1, z1, delta1

    def _flow(self, y: torch.Tensor, condition: Optional[torch.Tensor], reverse: bool,
              times: Optional[torch.Tensor] = None) -> torch.Tensor:
        c = self._condition(condition, y.shape[0], y)
        t = self._times(y, reverse) if times is None else times.to(device=y.device, dtype=y.dtype)
        return self._solve(lambda s, z: self.field(s, z, c), y, t)

    def to_base(self, x: torch.Tensor, condition: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The flow map from the data to the base space, ``z(t1)`` from ``z(0) = x``: ``[B, dim]``."""
        self._check_x(x)
        return self._flow(x, condition, reverse=False)[-1]

    def from_base(self, z: torch.Tensor, condition: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The inverse map, ``z(0)`` from ``z(t1) = z``, by solving backwards in time: ``[B, dim]``."""
        self._check_x(z, "z")
        return self._flow(z, condition, reverse=True)[-1]

    def trajectory(self, z: torch.Tensor, times: torch.Tensor,
                   condition: Optional[torch.Tensor] = None) -> torch.Tensor:
        """States at ``times`` (1-D, monotone, within [0, t1]) starting from ``z`` at ``times[0]``:
        ``[len(times), B, dim]``. Use decreasing times from ``t1`` to watch samples being made."""
        self._check_x(z, "z")
        return self._flow(z, condition, reverse=False, times=torch.as_tensor(times))

    def sample(self, n: int, condition: Optional[torch.Tensor] = None,
               generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """``n`` samples ``[n, dim]``: base Gaussian draws carried from ``t1`` back to ``t = 0``."""
        n = _positive_int("n", n)
        param = next(self.parameters())
        where = generator.device if generator is not None else param.device
        z = torch.randn(n, self.input_size, generator=generator, device=where, dtype=param.dtype).to(param.device)
        return self.from_base(z, condition)

    def extra_repr(self) -> str:
        return (f"input_size={self.input_size}, condition_size={self.condition_size}, trace={self.trace!r}, "
                f"probe={self.probe!r}, t1={self.t1}, method={self.solver['method']!r}")
