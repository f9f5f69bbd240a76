"""An ODE solve as a layer: integrate the dynamics from 0 to t1 and return the final state."""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from nodecourse._validation import check_input, check_positive

from .gradients import Adjoint, check_adjoint, check_adjoint_options, solve_model

__all__ = ["ODEBlock", "DEFAULT_METHOD", "DEFAULT_RTOL", "DEFAULT_ATOL"]

DEFAULT_METHOD = "dopri5"
"""The solver every model uses unless told otherwise (why: see :mod:`nodecourse.models`)."""
DEFAULT_RTOL = 1e-3
"""The relative tolerance every model uses unless told otherwise."""
DEFAULT_ATOL = 1e-3
"""The absolute tolerance every model uses unless told otherwise."""


class _Counted(nn.Module):
    """Calls the block's dynamics and tells the block whether the call belongs to a forward or backward pass."""

    def __init__(self, block: ODEBlock) -> None:
        super().__init__()
        # A plain attribute, not a submodule: the parameters stay registered once, under the block.
        object.__setattr__(self, "block", block)

    def forward(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        block = self.block
        if block._in_forward:
            block.nfe_forward += 1
        else:  # the adjoint's reverse solve, called by autograd during backward
            block.nfe_backward += 1
        return block.func(t, y)


class ODEBlock(nn.Module):
    """``x -> y(t1)`` where ``dy/dt = func(t, y)``, ``y(0) = x``: the continuous-depth analogue of a ResNet.

    Shapes: ``[batch, ...] -> [batch, ...]`` (the state keeps its shape). ``adjoint=True`` computes
    gradients with the adjoint method (memory constant in the number of steps) instead of
    backpropagating through the solver; ``adjoint="checkpoint"`` replays the forward steps one at a time
    (backprop's gradient, about the forward's evaluations; see :mod:`nodecourse.models.gradients`).
    Fixed-step methods need ``options={"step_size": h}``.

    Counters: ``nfe_forward`` is the number of evaluations of ``func`` in the last forward pass;
    ``nfe_backward`` the number during the last backward pass through it (the adjoint's reverse
    solve, or the replayed steps of ``"checkpoint"``; 0 when backpropagating through the solver, which
    replays the recorded graph instead).
    """

    def __init__(
        self,
        func: nn.Module,
        t1: float = 1.0,
        method: str = DEFAULT_METHOD,
        rtol: float = DEFAULT_RTOL,
        atol: float = DEFAULT_ATOL,
        adjoint: Adjoint = False,
        options: dict[str, Any] | None = None,
        adjoint_options: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(func, nn.Module):
            raise TypeError(
                f"ODEBlock needs the dynamics as an nn.Module with forward(t, y), got {type(func).__name__}; "
                "wrap a network in ODEFunc(net)."
            )
        t1 = check_positive("t1", t1, "end time (the block integrates over [0, t1])")
        if options is not None and not isinstance(options, dict):
            raise TypeError(f"options must be a dict such as {{'step_size': 0.1}}, got {type(options).__name__}.")
        self.func = func
        self.t1 = t1
        self.method = method
        self.rtol = rtol
        self.atol = atol
        self.adjoint = check_adjoint(adjoint, method)
        check_adjoint_options(self.adjoint, adjoint_options)
        self.options = dict(options) if options is not None else None
        self.adjoint_options = dict(adjoint_options) if adjoint_options is not None else None
        self.nfe_forward: int = 0
        self.nfe_backward: int = 0
        self._in_forward = False
        # One counting wrapper for the block's life: the solver keeps a compiled step per field object,
        # so options={"compile": True} compiles on the first forward and reuses it after.
        object.__setattr__(self, "_counted", _Counted(self))

    def _odeint(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Solve from ``x`` at ``t[0]`` and return the states at all of ``t``: ``[len(t), *x.shape]``."""
        counted = self._counted
        kwargs: dict[str, Any] = dict(rtol=self.rtol, atol=self.atol, method=self.method, options=self.options)
        self._in_forward = True
        try:
            return solve_model(counted, x, t, self.adjoint, adjoint_params=tuple(self.func.parameters()),
                               adjoint_options=self.adjoint_options, **kwargs)
        finally:
            self._in_forward = False

    def _on_backward_start(self, grad: torch.Tensor) -> None:
        """Runs when backward reaches the block's output, just before any reverse solve."""
        self.nfe_backward = 0

    def _check_state(self, x: object) -> None:
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            got = f"a {x.dtype} tensor" if isinstance(x, torch.Tensor) else type(x).__name__
            raise TypeError(f"ODEBlock needs the initial state as a floating-point tensor, got {got}; convert "
                            "it with torch.as_tensor(x, dtype=torch.float32).")
        check_input("ODEBlock", x, next(self.func.parameters(), None))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_state(x)
        self.nfe_forward = 0
        self.nfe_backward = 0
        t = torch.tensor([0.0, self.t1], dtype=x.dtype, device=x.device)
        out = self._odeint(x, t)[-1]
        if out.requires_grad:
            out.register_hook(self._on_backward_start)
        return out

    def trajectory(self, x: torch.Tensor, t: torch.Tensor | None = None, steps: int = 50) -> torch.Tensor:
        """The states at times ``t`` (default: ``steps`` points on [0, t1]): ``[len(t), *x.shape]``.

        Used for plots and PCA of the hidden-state path; ``t`` must start at 0 (the input's time).
        """
        self._check_state(x)
        if t is None:
            t = torch.linspace(0.0, self.t1, steps, dtype=x.dtype, device=x.device)
        else:
            t = torch.as_tensor(t, dtype=x.dtype, device=x.device)
        self.nfe_forward = 0
        self.nfe_backward = 0
        return self._odeint(x, t)

    def extra_repr(self) -> str:
        return (
            f"t1={self.t1}, method={self.method!r}, rtol={self.rtol}, atol={self.atol}, adjoint={self.adjoint!r}"
            + (f", options={self.options}" if self.options else "")
        )
