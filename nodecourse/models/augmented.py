"""Augmented Neural ODEs: zero augmentation, input-layer augmentation and second-order Neural ODEs.

A plain Neural ODE is a flow on its input space, so it preserves what flows preserve (the order of
points on the line, the nesting of a disk inside a ring). Every model here first *lifts* the input
``x [batch, dim]`` into a larger state ``z(0) [batch, state_dim]``, solves ``dz/dt = f(z)`` there with
an ``ODEBlock`` and reads the result out of ``z(t1)``:

- ``PlainNODE``: no lift, ``z(0) = x`` (the baseline);
- ``AugmentedNODE``: ``z(0) = [x, 0]`` with ``aug_dim`` zeros appended (Dupont et al., 2019);
- ``InputLayerAugmentedNODE``: ``z(0) = W x + b``, a learned linear map (Massaroli et al., 2020);
- ``SecondOrderNODE``: ``z = [x, v]`` with ``v(0) = 0``, ``x' = v``, ``v' = f(x, v)`` (Massaroli et al., 2020).

Readout: with ``out_dim=None`` the output is the first ``dim`` coordinates of ``z(t1)`` (a fixed
projection, so the model is a map ``R^dim -> R^dim`` with no parameters outside the flow and the lift);
with an integer ``out_dim`` it is a learned ``Linear(state_dim, out_dim)`` of the whole final state
(e.g. class logits).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from nodecourse._validation import check_count, check_input

from .mlp import MLP, hidden_sizes
from .ode_block import ODEBlock
from .odefunc import ODEFunc, time_column

__all__ = [
    "augment",
    "SecondOrderField",
    "PlainNODE",
    "AugmentedNODE",
    "InputLayerAugmentedNODE",
    "SecondOrderNODE",
]

Activation = type[nn.Module] | nn.Module | Callable[[], nn.Module]


# --------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------


def augment(x: torch.Tensor, aug_dim: int) -> torch.Tensor:
    """``x [..., d]`` with ``aug_dim`` zeros appended along the last dimension: ``[..., d + aug_dim]``.

    The zeros are made on x's device and dtype, and gradients flow to ``x`` through the first ``d``
    entries. This is the lift of an augmented Neural ODE (ANODE): solve in ``R^(d + aug_dim)``.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"augment needs a tensor x of shape [..., d], got {type(x).__name__}.")
    if x.dim() == 0:
        raise ValueError("augment needs x of shape [..., d] with at least one dimension, got a 0-d tensor; "
                         "use x.reshape(1) for a single number.")
    aug_dim = check_count("aug_dim", aug_dim, 0)
    zeros = x.new_zeros((*x.shape[:-1], aug_dim))
    return torch.cat([x, zeros], dim=-1)


# --------------------------------------------------------------------------------------------------
# the second-order vector field
# --------------------------------------------------------------------------------------------------


class SecondOrderField(nn.Module):
    """The first-order form of ``x'' = f(x, v)``: on ``z = [x, v]`` (each ``[..., dim]``) it returns
    ``dz/dt = [v, net([x, v])]``, or ``net([x, v, t])`` when ``time_dependent``.

    ``net`` maps ``[..., 2 dim (+1)] -> [..., dim]`` (the acceleration). The position's derivative is
    the velocity by construction, whatever the weights. ``nfe`` counts the evaluations.
    """

    def __init__(self, net: nn.Module, dim: int, time_dependent: bool = False) -> None:
        super().__init__()
        if not isinstance(net, nn.Module):
            raise TypeError(f"SecondOrderField needs an nn.Module as its net, got {type(net).__name__}; "
                            "wrap the acceleration in an nn.Module (e.g. an MLP).")
        self.net = net
        self.dim = check_count("dim", dim, 1)
        self.time_dependent = bool(time_dependent)
        self.nfe: int = 0

    def forward(self, t: torch.Tensor | float, z: torch.Tensor) -> torch.Tensor:
        if z.shape[-1] != 2 * self.dim:
            raise ValueError(f"the state of a second-order field with dim={self.dim} is [x, v] of width "
                             f"{2 * self.dim}, got shape {tuple(z.shape)}.")
        self.nfe += 1
        inputs = torch.cat([z, time_column(t, z)], dim=-1) if self.time_dependent else z
        return torch.cat([z[..., self.dim:], self.net(inputs)], dim=-1)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, time_dependent={self.time_dependent}"


# --------------------------------------------------------------------------------------------------
# the models
# --------------------------------------------------------------------------------------------------


class _LiftedNODE(nn.Module):
    """Lift ``x [batch, dim]`` to ``z(0) [batch, state_dim]``, flow with an ODEBlock, read out.

    Subclasses set the lift; everything else (the solve, the readout, the counters, the trajectory
    for plots) is shared.
    """

    def __init__(self, dim: int, state_dim: int, func: nn.Module, out_dim: int | None, t1: float, method: str,
                 rtol: float, atol: float, adjoint: bool, options: dict[str, Any] | None) -> None:
        super().__init__()
        self.dim = dim
        self.state_dim = state_dim
        self.out_dim = None if out_dim is None else check_count("out_dim", out_dim, 1)
        self.block = ODEBlock(func, t1=t1, method=method, rtol=rtol, atol=atol, adjoint=adjoint, options=options)
        self.readout = None if out_dim is None else nn.Linear(state_dim, self.out_dim)

    @property
    def dynamics(self) -> nn.Module:
        """The vector field f(t, z) on the lifted state."""
        return self.block.func

    @property
    def nfe_forward(self) -> int:
        """Evaluations of the dynamics in the last forward pass."""
        return self.block.nfe_forward

    @property
    def nfe_backward(self) -> int:
        """Evaluations of the dynamics in the last backward pass (0 unless ``adjoint=True``)."""
        return self.block.nfe_backward

    def lift(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - every subclass overrides it
        raise NotImplementedError

    def _check_input(self, x: torch.Tensor) -> None:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{type(self).__name__} needs a tensor of shape [batch, {self.dim}], "
                            f"got {type(x).__name__}.")
        if x.dim() != 2 or x.shape[-1] != self.dim:
            raise ValueError(f"{type(self).__name__} expects inputs of shape [batch, {self.dim}], got "
                             f"{tuple(x.shape)}; a batch of 1-D points is x.reshape(-1, 1).")
        check_input(type(self).__name__, x, next(self.parameters(), None))

    def read(self, z: torch.Tensor) -> torch.Tensor:
        """The output for a final state ``z [..., state_dim]``: its first ``dim`` entries, or the readout."""
        return z[..., : self.dim] if self.readout is None else self.readout(z)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)
        return self.read(self.block(self.lift(x)))

    def trajectory(self, x: torch.Tensor, steps: int = 50) -> torch.Tensor:
        """The lifted state at ``steps`` equally spaced times on [0, t1]: ``[steps, batch, state_dim]``."""
        self._check_input(x)
        steps = check_count("steps", steps, 2)
        return self.block.trajectory(self.lift(x), steps=steps)


def _dynamics(state_dim: int, hidden: int | Sequence[int], out: int, time_dependent: bool,
              activation: Activation) -> nn.Module:
    """The MLP of a vector field: ``[state_dim (+1 for the time)] -> hidden... -> out``."""
    return MLP([state_dim + int(time_dependent), *hidden_sizes(hidden), out], activation)


class AugmentedNODE(_LiftedNODE):
    """Zero augmentation (ANODE): ``z(0) = [x, 0_aug_dim]``, ``dz/dt = MLP(z)`` in ``R^(dim + aug_dim)``.

    Shapes: ``[batch, dim] -> [batch, dim]`` (``out_dim=None``: the first ``dim`` coordinates of
    ``z(t1)``) or ``[batch, out_dim]`` (a learned linear readout of all of ``z(t1)``). ``aug_dim=0``
    is the plain Neural ODE. The dynamics are ``ODEFunc(MLP([dim + aug_dim, *hidden, dim + aug_dim]))``.
    """

    def __init__(self, dim: int, aug_dim: int = 1, hidden: int | Sequence[int] = 32, out_dim: int | None = None,
                 *, t1: float = 1.0, method: str = "dopri5", rtol: float = 1e-3, atol: float = 1e-3,
                 adjoint: bool = False, time_dependent: bool = False, activation: Activation = nn.Tanh,
                 options: dict[str, Any] | None = None) -> None:
        dim = check_count("dim", dim, 1)
        aug = check_count("aug_dim", aug_dim, 0)
        state_dim = dim + aug
        func = ODEFunc(_dynamics(state_dim, hidden, state_dim, time_dependent, activation), time_dependent)
        super().__init__(dim, state_dim, func, out_dim, t1, method, rtol, atol, adjoint, options)
        self.aug_dim = aug

    def lift(self, x: torch.Tensor) -> torch.Tensor:
        return augment(x, self.aug_dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, aug_dim={self.aug_dim}, out_dim={self.out_dim}"


class PlainNODE(AugmentedNODE):
    """The plain Neural ODE, ``z(0) = x``: a flow on the input space itself (``AugmentedNODE`` with
    ``aug_dim=0``). Shapes ``[batch, dim] -> [batch, dim]`` or ``[batch, out_dim]``."""

    def __init__(self, dim: int, hidden: int | Sequence[int] = 32, out_dim: int | None = None, **kwargs: Any) -> None:
        if "aug_dim" in kwargs:
            raise TypeError("PlainNODE has no augmentation; use AugmentedNODE(dim, aug_dim, ...) to add dimensions.")
        super().__init__(dim, 0, hidden, out_dim, **kwargs)


class InputLayerAugmentedNODE(AugmentedNODE):
    """Input-layer augmentation: ``z(0) = Linear(dim, dim + aug_dim)(x)``, then ``dz/dt = MLP(z)``.

    The learned lift puts the input on a ``dim``-dimensional plane of the larger state space, chosen
    by training (zero augmentation is the fixed lift ``W = [I; 0]``, ``b = 0``). Shapes and keyword
    options as for ``AugmentedNODE``; with ``out_dim=None`` the output is the first ``dim``
    coordinates of ``z(t1)``.
    """

    def __init__(self, dim: int, aug_dim: int = 1, hidden: int | Sequence[int] = 32, out_dim: int | None = None,
                 **kwargs: Any) -> None:
        super().__init__(dim, aug_dim, hidden, out_dim, **kwargs)
        self.input_layer = nn.Linear(self.dim, self.dim + self.aug_dim)

    def lift(self, x: torch.Tensor) -> torch.Tensor:
        return self.input_layer(x)


class SecondOrderNODE(_LiftedNODE):
    """A second-order Neural ODE ``x'' = MLP([x, v])``: state ``z = [x, v]`` with ``x(0)`` the input and
    ``v(0) = 0``, dynamics ``SecondOrderField`` (``x' = v``, ``v' = MLP([x, v])``, the MLP mapping
    ``2 dim -> dim``).

    Shapes: ``[batch, dim] -> [batch, dim]`` (``out_dim=None``: the position ``x(t1)``) or
    ``[batch, out_dim]`` (a learned linear readout of ``[x(t1), v(t1)]``).
    """

    def __init__(self, dim: int, hidden: int | Sequence[int] = 32, out_dim: int | None = None, *, t1: float = 1.0,
                 method: str = "dopri5", rtol: float = 1e-3, atol: float = 1e-3, adjoint: bool = False,
                 time_dependent: bool = False, activation: Activation = nn.Tanh,
                 options: dict[str, Any] | None = None) -> None:
        dim = check_count("dim", dim, 1)
        net = _dynamics(2 * dim, hidden, dim, time_dependent, activation)
        func = SecondOrderField(net, dim, time_dependent)
        super().__init__(dim, 2 * dim, func, out_dim, t1, method, rtol, atol, adjoint, options)

    def lift(self, x: torch.Tensor) -> torch.Tensor:
        return augment(x, self.dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, out_dim={self.out_dim}"
