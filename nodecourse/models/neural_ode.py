"""The NeuralODE builder: input projection, an ODE solve with one shared dynamics MLP, output projection."""
from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from nodecourse._validation import check_batch, check_count, is_real
from nodecourse.solvers import ADAPTIVE_METHODS, FIXED_METHODS

from .gradients import Adjoint
from .mlp import MLP
from .ode_block import DEFAULT_ATOL, DEFAULT_RTOL, ODEBlock
from .odefunc import ODEFunc

__all__ = ["NeuralODE"]


class NeuralODE(nn.Module):
    """``[batch, input_size] -> [batch, output_size or hidden_size]`` through a continuous-depth hidden layer.

    ``h(0) = Linear(x)``; ``dh/dt = f(h)`` with ``f = MLP([hidden, hidden, hidden])`` shared by every
    step; ``h(T)`` with ``T = num_steps * step_size``; output ``Linear(h(T))``. Fixed-step methods take
    ``num_steps`` steps of ``step_size``; adaptive ones solve over the same ``[0, T]`` to ``rtol``/``atol``.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int = 256,
        num_steps: int = 10,
        step_size: float = 0.1,
        output_size: int | None = None,
        method: str = "euler",
        rtol: float = DEFAULT_RTOL,
        atol: float = DEFAULT_ATOL,
        adjoint: Adjoint = False,
        time_dependent: bool = False,
        activation: type[nn.Module] | nn.Module | Callable[[], nn.Module] = nn.Tanh,
    ) -> None:
        super().__init__()
        self.input_size = check_count("input_size", input_size)
        self.hidden_size = check_count("hidden_size", hidden_size)
        self.num_steps = check_count("num_steps", num_steps)
        self.output_size = self.hidden_size if output_size is None else check_count("output_size", output_size)
        if not is_real(step_size):
            raise TypeError(f"step_size must be a number, got {type(step_size).__name__}.")
        if not (math.isfinite(step_size) and step_size > 0):
            raise ValueError(f"step_size must be a finite positive number, got step_size={step_size}.")
        if method in FIXED_METHODS:
            options = {"step_size": float(step_size)}
        elif method in ADAPTIVE_METHODS:
            options = None
        else:
            raise ValueError(
                f"unknown method {method!r}; choose one of {', '.join(FIXED_METHODS + ADAPTIVE_METHODS)}."
            )
        self.step_size = float(step_size)
        self.method = method

        self.input_proj = nn.Linear(self.input_size, self.hidden_size)
        net = MLP([self.hidden_size + int(time_dependent), self.hidden_size, self.hidden_size], activation)
        self.block = ODEBlock(
            ODEFunc(net, time_dependent=time_dependent),
            t1=self.num_steps * self.step_size,
            method=method,
            rtol=rtol,
            atol=atol,
            adjoint=adjoint,
            options=options,
        )
        self.output_proj = nn.Linear(self.hidden_size, self.output_size)

    @property
    def dynamics(self) -> ODEFunc:
        """The shared vector field f(t, h)."""
        return self.block.func

    def _check_input(self, x: object) -> None:
        check_batch("NeuralODE", x, self.input_size, self.input_proj.weight, any_leading=True,
                    hint="flatten images first (x.flatten(1)).")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)
        return self.output_proj(self.block(self.input_proj(x)))

    def trajectory(self, x: torch.Tensor) -> torch.Tensor:
        """The hidden state at every step time ``k * step_size``: ``[num_steps + 1, batch, hidden_size]``."""
        self._check_input(x)
        h0 = self.input_proj(x)
        t = torch.arange(self.num_steps + 1, dtype=h0.dtype, device=h0.device) * self.step_size
        return self.block.trajectory(h0, t)
