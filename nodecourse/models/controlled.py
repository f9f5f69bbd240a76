"""Data-controlled and adaptive-depth Neural ODEs (Massaroli et al. 2020, "Dissecting Neural ODEs", Sec. 5).

- Data control: the input ``x`` enters the vector field at every depth, ``dh/ds = f(s, h, x)``, so each
  input gets its own field. The solver carries ``x`` as a constant part of a tuple state ``(h, x)``
  with ``dx/ds = 0``, which also gives the adjoint its gradient with respect to ``x``.
- Adaptive depth: each input gets its own integration time ``T(x) = softplus(g(x)) + min_depth``. All
  samples are solved together on the unit interval by rescaling depth, ``s = T sigma``:
  ``dh/dsigma = T f(T sigma, h)`` for ``sigma`` in ``[0, 1]``, so ``h(sigma = 1) = h(s = T)``.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from nodecourse._validation import check_batch, check_count, check_nonnegative, check_positive
from nodecourse.solvers import FIXED_METHODS

from ._compat import renamed
from .gradients import Adjoint, check_adjoint, solve_model
from .mlp import MLP, hidden_sizes
from .ode_block import DEFAULT_ATOL, DEFAULT_METHOD, DEFAULT_RTOL
from .odefunc import time_column

__all__ = ["DataControlledField", "DataControlledODE", "RescaledField", "AdaptiveDepthODE"]

Activation = type[nn.Module] | nn.Module | Callable[[], nn.Module]


def _solver_kwargs(method: str, step_size: float | None, rtol: float, atol: float) -> dict[str, Any]:
    """The solver's arguments: ``step_size`` (checked whenever given) is used by the fixed-step methods only."""
    options = None
    if step_size is not None:
        step_size = check_positive("step_size", step_size)
        if method in FIXED_METHODS:
            options = {"step_size": step_size}
    return dict(method=method, rtol=rtol, atol=atol, options=options)


# --------------------------------------------------------------------------------------------------
# data control
# --------------------------------------------------------------------------------------------------


@renamed({"state_dim": "state_size", "control_dim": "input_size", "hidden": "hidden_size"})
class DataControlledField(nn.Module):
    """``f(s, h, x) = net(cat([h, x]))`` (or ``net(cat([h, x, s]))`` when ``time_dependent``).

    ``h`` is the ODE state ``[..., state_size]``, ``x`` the model's input ``[..., input_size]`` (the
    control). ``net = MLP([state_size + input_size (+1), *hidden_size, state_size])``. ``forward(t, (h, x))``
    returns ``(f, 0)``, the field of the tuple state with a constant control. The first layer's columns
    ``[state_size : state_size + input_size]`` are the control weights (``control_weight``): with
    them zero, the field is the uncontrolled ``f(s, h)``.
    """

    def __init__(self, state_size: int, input_size: int, hidden_size: int | Sequence[int] = 32,
                 activation: Activation = nn.Tanh, time_dependent: bool = False) -> None:
        super().__init__()
        self.state_size = check_count("state_size", state_size)
        self.input_size = check_count("input_size", input_size)
        self.time_dependent = bool(time_dependent)
        widths = [self.state_size + self.input_size + int(time_dependent), *hidden_sizes(hidden_size),
                  self.state_size]
        self.net = MLP(widths, activation)
        self.nfe: int = 0

    @property
    def control_weight(self) -> torch.Tensor:
        """The first layer's weights on ``x``: ``[hidden_size[0], input_size]`` (a view)."""
        return self.net[0].weight[:, self.state_size:self.state_size + self.input_size]

    def vector(self, t: torch.Tensor | float, h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``f(t, h, x)``: ``h [..., state_size]``, ``x [..., input_size]`` -> ``[..., state_size]``."""
        if h.shape[-1] != self.state_size or x.shape[-1] != self.input_size or h.shape[:-1] != x.shape[:-1]:
            raise ValueError(
                f"DataControlledField needs h [..., {self.state_size}] and x [..., {self.input_size}] with the same "
                f"leading shape, got h {tuple(h.shape)} and x {tuple(x.shape)}."
            )
        self.nfe += 1
        parts = [h, x.to(h.dtype)]
        if self.time_dependent:
            parts.append(time_column(t, h))
        return self.net(torch.cat(parts, dim=-1))

    def forward(self, t: torch.Tensor | float,
                state: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        if not isinstance(state, (tuple, list)) or len(state) != 2:
            raise TypeError("a data-controlled field is solved on the tuple state (h, x); got "
                            f"{type(state).__name__}. Use DataControlledODE, or odeint(field, (h0, x), t).")
        h, x = state
        # 0 * x, not zeros_like(x): the adjoint's vector-Jacobian product needs every output in the graph
        return self.vector(t, h, x), 0 * x


class DataControlledODE(nn.Module):
    """``x -> h(t1)`` with ``h(0) = x`` (or ``input_layer(x)``) and ``dh/ds = f(s, h, x)``.

    Shapes ``[batch, input_size] -> [batch, state_size]`` (``output_layer`` applied last when given).
    Without an input layer ``state_size`` must equal ``input_size``. ``step_size`` is the step of the
    fixed-step methods (``method="rk4", step_size=0.05``); the default adaptive solver ignores it.
    """

    def __init__(self, field: DataControlledField, t1: float = 1.0, method: str = DEFAULT_METHOD,
                 step_size: float | None = None, rtol: float = DEFAULT_RTOL, atol: float = DEFAULT_ATOL,
                 adjoint: Adjoint = False,
                 input_layer: nn.Module | None = None, output_layer: nn.Module | None = None) -> None:
        super().__init__()
        if not isinstance(field, DataControlledField):
            raise TypeError(f"field must be a DataControlledField, got {type(field).__name__}.")
        if input_layer is None and field.state_size != field.input_size:
            raise ValueError(f"without an input_layer h(0) = x, so state_size ({field.state_size}) must equal "
                             f"input_size ({field.input_size}); pass input_layer=nn.Linear(...) otherwise.")
        t1 = check_positive("t1", t1, "end depth")
        self.field, self.t1, self.adjoint = field, t1, check_adjoint(adjoint, method)
        self.input_layer = input_layer if input_layer is not None else nn.Identity()
        self.output_layer = output_layer if output_layer is not None else nn.Identity()
        self._kwargs = _solver_kwargs(method, step_size, rtol, atol)

    def trajectory(self, x: torch.Tensor, t: torch.Tensor | Sequence[float] | None = None,
                   steps: int = 50) -> torch.Tensor:
        """The hidden states at depths ``t`` (default ``steps`` points on ``[0, t1]``): ``[len(t), batch, D]``."""
        self._check_input(x)
        if t is None:
            t = torch.linspace(0.0, self.t1, check_count("steps", steps, 2), dtype=x.dtype, device=x.device)
        t = torch.as_tensor(t, dtype=x.dtype, device=x.device)
        return solve_model(self.field, (self.input_layer(x), x), t, self.adjoint, **self._kwargs)[0]

    def _check_input(self, x: object) -> None:
        check_batch("DataControlledODE", x, self.field.input_size, next(self.parameters(), None))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)
        t = torch.tensor([0.0, self.t1], dtype=x.dtype, device=x.device)
        return self.output_layer(self.trajectory(x, t)[-1])


# --------------------------------------------------------------------------------------------------
# adaptive depth
# --------------------------------------------------------------------------------------------------


class RescaledField(nn.Module):
    """The field of ``(h, T)`` in rescaled depth: ``d/dsigma (h, T) = (T f(T sigma, h), 0)``.

    ``T`` is ``[batch, 1]`` (broadcast over ``h [batch, D]``), one depth per sample; ``f`` is called with
    the per-sample depths ``T sigma`` of shape ``[batch]``, so a time-dependent ``f`` must accept them
    (``ODEFunc`` and ``ConcatMLP`` do).
    """

    def __init__(self, func: nn.Module) -> None:
        super().__init__()
        if not isinstance(func, nn.Module):
            raise TypeError(f"func must be an nn.Module called as func(t, h), got {type(func).__name__}.")
        self.func = func

    def forward(self, sigma: torch.Tensor,
                state: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        h, T = state
        return T * self.func(sigma * T.reshape(-1), h), 0 * T   # 0 * T keeps the output in the adjoint's graph


class AdaptiveDepthODE(nn.Module):
    """``x -> h(T(x))``: ``h(0) = x``, ``dh/ds = f(s, h)``, integrated to a learned per-input depth.

    ``T(x) = softplus(depth_net(x)) + min_depth`` (``depth_net: [batch, D] -> [batch, 1]``), solved for all
    samples at once as ``dh/dsigma = T f(T sigma, h)`` on ``sigma in [0, 1]`` (``RescaledField``).
    Shapes ``[batch, D] -> [batch, D]``. ``depth(x)`` returns ``T(x)`` as ``[batch, 1]``. ``step_size`` is
    the step of the fixed-step methods (``method="rk4", step_size=0.05``); the default adaptive solver
    ignores it.
    """

    def __init__(self, func: nn.Module, depth_net: nn.Module, min_depth: float = 0.0, method: str = DEFAULT_METHOD,
                 step_size: float | None = None, rtol: float = DEFAULT_RTOL, atol: float = DEFAULT_ATOL,
                 adjoint: Adjoint = False) -> None:
        super().__init__()
        if not isinstance(depth_net, nn.Module):
            raise TypeError(f"depth_net must be an nn.Module mapping [batch, D] to [batch, 1], got "
                            f"{type(depth_net).__name__}.")
        min_depth = check_nonnegative("min_depth", min_depth)
        self.rescaled = RescaledField(func)
        self.depth_net, self.min_depth, self.adjoint = depth_net, min_depth, check_adjoint(adjoint, method)
        self._kwargs = _solver_kwargs(method, step_size, rtol, atol)

    @property
    def func(self) -> nn.Module:
        """The field f(s, h) in the original depth."""
        return self.rescaled.func

    def depth(self, x: torch.Tensor) -> torch.Tensor:
        """``T(x) = softplus(depth_net(x)) + min_depth``: ``[batch, 1]``."""
        T = nn.functional.softplus(self.depth_net(x)) + self.min_depth
        if T.shape != (x.shape[0], 1):
            raise ValueError(f"depth_net must map [batch, D] to [batch, 1], got {tuple(T.shape)} for inputs "
                             f"{tuple(x.shape)}.")
        return T

    def trajectory(self, x: torch.Tensor, sigma: torch.Tensor | Sequence[float] | None = None,
                   steps: int = 50) -> tuple[torch.Tensor, torch.Tensor]:
        """``(h at sigma, depths T sigma)``: ``[len(sigma), batch, D]`` and ``[len(sigma), batch]``.

        ``sigma`` defaults to ``steps`` points on ``[0, 1]``; the second tensor gives each sample's own depth.
        """
        self._check_input(x)
        if sigma is None:
            sigma = torch.linspace(0.0, 1.0, check_count("steps", steps, 2), dtype=x.dtype, device=x.device)
        sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
        T = self.depth(x)
        hs = solve_model(self.rescaled, (x, T), sigma, self.adjoint, **self._kwargs)[0]
        return hs, sigma[:, None] * T.reshape(1, -1)

    def _check_input(self, x: object) -> None:
        check_batch("AdaptiveDepthODE", x, None, next(self.parameters(), None))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)
        sigma = torch.tensor([0.0, 1.0], dtype=x.dtype, device=x.device)
        return self.trajectory(x, sigma)[0][-1]
