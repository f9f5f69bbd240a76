"""Augmented Neural ODEs: zero augmentation, input-layer augmentation and second-order Neural ODEs.

A plain Neural ODE is a flow on its input space, so it preserves what flows preserve (the order of
points on the line, the nesting of a disk inside a ring). Every model here first *lifts* the input
``x [batch, input_size]`` into a larger state ``z(0) [batch, state_size]``, solves ``dz/dt = f(z)`` there with
an ``ODEBlock`` and reads the result out of ``z(t1)``:

- ``PlainNODE``: no lift, ``z(0) = x`` (the baseline);
- ``AugmentedNODE``: ``z(0) = [x, 0]`` with ``aug_size`` zeros appended (Dupont et al., 2019);
- ``InputLayerAugmentedNODE``: ``z(0) = W x + b``, a learned linear map (Massaroli et al., 2020);
- ``SecondOrderNODE``: ``z = [x, v]`` with ``v(0) = 0``, ``x' = v``, ``v' = f(x, v)`` (Massaroli et al., 2020).

Readout: with ``output_size=None`` the output is the first ``input_size`` coordinates of ``z(t1)`` (a
fixed projection, so the model maps ``R^input_size`` to itself with no parameters outside the flow and
the lift); with an integer ``output_size`` it is a learned ``Linear(state_size, output_size)`` of the
whole final state (e.g. class logits). ``hidden_size`` is the width of the vector field's MLP.
"""
from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import torch
from torch import nn

from nodecourse._validation import check_batch, check_count

from .gradients import Adjoint
from .mlp import MLP, hidden_sizes
from ._compat import _warn, renamed
from .ode_block import DEFAULT_ATOL, DEFAULT_METHOD, DEFAULT_RTOL, ODEBlock
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


_Fn = TypeVar("_Fn", bound=Callable[..., Any])


def _keyword_renamed(old: str, new: str) -> Callable[[_Fn], _Fn]:
    """Function decorator, the functions' form of ``_compat.renamed``: the old keyword ``old`` still works for
    one release, with a DeprecationWarning naming ``new``; passing both is a TypeError. The signature shows
    only the new name."""

    def decorate(fn: _Fn) -> _Fn:
        signature = inspect.signature(fn)

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if old in kwargs:
                if new in kwargs or new in signature.bind_partial(*args).arguments:
                    raise TypeError(f"{fn.__name__} got both {old!r} and its new name {new!r}; pass only {new}=....")
                _warn(fn.__name__, old, new, "keyword")
                kwargs[new] = kwargs.pop(old)
            return fn(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate


@_keyword_renamed("aug_dim", "aug_size")
def augment(x: torch.Tensor, aug_size: int) -> torch.Tensor:
    """``x [..., d]`` with ``aug_size`` zeros appended along the last dimension: ``[..., d + aug_size]``.

    The zeros are made on x's device and dtype, and gradients flow to ``x`` through the first ``d``
    entries. This is the lift of an augmented Neural ODE (ANODE): solve in ``R^(d + aug_size)``.
    The old keyword ``aug_dim=`` still works for one release, with a DeprecationWarning.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"augment needs a tensor x of shape [..., d], got {type(x).__name__}.")
    if x.dim() == 0:
        raise ValueError("augment needs x of shape [..., d] with at least one dimension, got a 0-d tensor; "
                         "use x.reshape(1) for a single number.")
    aug_size = check_count("aug_size", aug_size, 0)
    zeros = x.new_zeros((*x.shape[:-1], aug_size))
    return torch.cat([x, zeros], dim=-1)


# --------------------------------------------------------------------------------------------------
# the second-order vector field
# --------------------------------------------------------------------------------------------------


@renamed({"dim": "input_size"})
class SecondOrderField(nn.Module):
    """The first-order form of ``x'' = f(x, v)``: on ``z = [x, v]`` (each ``[..., input_size]``) it returns
    ``dz/dt = [v, net([x, v])]``, or ``net([x, v, t])`` when ``time_dependent``.

    ``net`` maps ``[..., 2 input_size (+1)] -> [..., input_size]`` (the acceleration). The position's
    derivative is the velocity by construction, whatever the weights. ``nfe`` counts the evaluations.
    """

    def __init__(self, net: nn.Module, input_size: int, time_dependent: bool = False) -> None:
        super().__init__()
        if not isinstance(net, nn.Module):
            raise TypeError(f"SecondOrderField needs an nn.Module as its net, got {type(net).__name__}; "
                            "wrap the acceleration in an nn.Module (e.g. an MLP).")
        self.net = net
        self.input_size = check_count("input_size", input_size, 1)
        self.time_dependent = bool(time_dependent)
        self.nfe: int = 0

    def forward(self, t: torch.Tensor | float, z: torch.Tensor) -> torch.Tensor:
        n = self.input_size
        if z.shape[-1] != 2 * n:
            raise ValueError(f"the state of a second-order field with input_size={n} is [x, v] of width "
                             f"{2 * n}, got shape {tuple(z.shape)}.")
        self.nfe += 1
        inputs = torch.cat([z, time_column(t, z)], dim=-1) if self.time_dependent else z
        return torch.cat([z[..., n:], self.net(inputs)], dim=-1)

    def extra_repr(self) -> str:
        return f"input_size={self.input_size}, time_dependent={self.time_dependent}"


# --------------------------------------------------------------------------------------------------
# the models
# --------------------------------------------------------------------------------------------------


class _LiftedNODE(nn.Module):
    """Lift ``x [batch, input_size]`` to ``z(0) [batch, state_size]``, flow with an ODEBlock, read out.

    Subclasses set the lift; everything else (the solve, the readout, the counters, the trajectory
    for plots) is shared.
    """

    def __init__(self, input_size: int, state_size: int, func: nn.Module, output_size: int | None, t1: float,
                 method: str, rtol: float, atol: float, adjoint: Adjoint, options: dict[str, Any] | None) -> None:
        super().__init__()
        self.input_size = input_size
        self.state_size = state_size
        self.output_size = None if output_size is None else check_count("output_size", output_size, 1)
        self.block = ODEBlock(func, t1=t1, method=method, rtol=rtol, atol=atol, adjoint=adjoint, options=options)
        self.readout = None if output_size is None else nn.Linear(state_size, self.output_size)

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
        """Evaluations of the dynamics in the last backward pass (0 with ``adjoint=False``, which backpropagates
        through the recorded graph instead)."""
        return self.block.nfe_backward

    def lift(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - every subclass overrides it
        raise NotImplementedError

    def _check_input(self, x: torch.Tensor) -> None:
        check_batch(type(self).__name__, x, self.input_size, next(self.parameters(), None),
                    hint="a batch of 1-D points is x.reshape(-1, 1).")

    def read(self, z: torch.Tensor) -> torch.Tensor:
        """The output for a final state ``z [..., state_size]``: its first ``input_size`` entries, or the readout."""
        return z[..., : self.input_size] if self.readout is None else self.readout(z)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)
        return self.read(self.block(self.lift(x)))

    def trajectory(self, x: torch.Tensor, steps: int = 50) -> torch.Tensor:
        """The lifted state at ``steps`` equally spaced times on [0, t1]: ``[steps, batch, state_size]``."""
        self._check_input(x)
        steps = check_count("steps", steps, 2)
        return self.block.trajectory(self.lift(x), steps=steps)


def _dynamics(state_size: int, hidden_size: int | Sequence[int], out: int, time_dependent: bool,
              activation: Activation) -> nn.Module:
    """The MLP of a vector field: ``[state_size (+1 for the time)] -> hidden_size... -> out``."""
    return MLP([state_size + int(time_dependent), *hidden_sizes(hidden_size), out], activation)


_OLD = {"dim": "input_size", "aug_dim": "aug_size", "hidden": "hidden_size", "out_dim": "output_size",
        "state_dim": "state_size"}


@renamed(_OLD)
class AugmentedNODE(_LiftedNODE):
    """Zero augmentation (ANODE): ``z(0) = [x, 0_aug_size]``, ``dz/dt = MLP(z)`` in ``R^state_size``,
    ``state_size = input_size + aug_size``.

    Shapes: ``[batch, input_size] -> [batch, input_size]`` (``output_size=None``: the first ``input_size``
    coordinates of ``z(t1)``) or ``[batch, output_size]`` (a learned linear readout of all of ``z(t1)``).
    ``aug_size=0`` is the plain Neural ODE. The dynamics are
    ``ODEFunc(MLP([state_size, *hidden_size, state_size]))``.
    """

    def __init__(self, input_size: int, aug_size: int = 1, hidden_size: int | Sequence[int] = 32,
                 output_size: int | None = None, *, t1: float = 1.0, method: str = DEFAULT_METHOD,
                 rtol: float = DEFAULT_RTOL, atol: float = DEFAULT_ATOL, adjoint: Adjoint = False,
                 time_dependent: bool = False, activation: Activation = nn.Tanh,
                 options: dict[str, Any] | None = None) -> None:
        input_size = check_count("input_size", input_size, 1)
        aug = check_count("aug_size", aug_size, 0)
        state_size = input_size + aug
        func = ODEFunc(_dynamics(state_size, hidden_size, state_size, time_dependent, activation), time_dependent)
        super().__init__(input_size, state_size, func, output_size, t1, method, rtol, atol, adjoint, options)
        self.aug_size = aug

    def lift(self, x: torch.Tensor) -> torch.Tensor:
        return augment(x, self.aug_size)

    def extra_repr(self) -> str:
        return f"input_size={self.input_size}, aug_size={self.aug_size}, output_size={self.output_size}"


@renamed(_OLD)
class PlainNODE(AugmentedNODE):
    """The plain Neural ODE, ``z(0) = x``: a flow on the input space itself (``AugmentedNODE`` with
    ``aug_size=0``). Shapes ``[batch, input_size] -> [batch, input_size]`` or ``[batch, output_size]``."""

    def __init__(self, input_size: int, hidden_size: int | Sequence[int] = 32, output_size: int | None = None,
                 **kwargs: Any) -> None:
        if "aug_size" in kwargs:
            raise TypeError("PlainNODE has no augmentation; use AugmentedNODE(input_size, aug_size, ...) to add "
                            "dimensions.")
        super().__init__(input_size, 0, hidden_size, output_size, **kwargs)


@renamed(_OLD)
class InputLayerAugmentedNODE(AugmentedNODE):
    """Input-layer augmentation: ``z(0) = Linear(input_size, input_size + aug_size)(x)``, then ``dz/dt = MLP(z)``.

    The learned lift puts the input on an ``input_size``-dimensional plane of the larger state space,
    chosen by training (zero augmentation is the fixed lift ``W = [I; 0]``, ``b = 0``). Shapes and
    keyword options as for ``AugmentedNODE``; with ``output_size=None`` the output is the first
    ``input_size`` coordinates of ``z(t1)``.
    """

    def __init__(self, input_size: int, aug_size: int = 1, hidden_size: int | Sequence[int] = 32,
                 output_size: int | None = None, **kwargs: Any) -> None:
        super().__init__(input_size, aug_size, hidden_size, output_size, **kwargs)
        self.input_layer = nn.Linear(self.input_size, self.input_size + self.aug_size)

    def lift(self, x: torch.Tensor) -> torch.Tensor:
        return self.input_layer(x)


@renamed(_OLD)
class SecondOrderNODE(_LiftedNODE):
    """A second-order Neural ODE ``x'' = MLP([x, v])``: state ``z = [x, v]`` (``state_size = 2 input_size``)
    with ``x(0)`` the input and ``v(0) = 0``, dynamics ``SecondOrderField`` (``x' = v``,
    ``v' = MLP([x, v])``, the MLP mapping ``2 input_size -> input_size``).

    Shapes: ``[batch, input_size] -> [batch, input_size]`` (``output_size=None``: the position ``x(t1)``)
    or ``[batch, output_size]`` (a learned linear readout of ``[x(t1), v(t1)]``).
    """

    def __init__(self, input_size: int, hidden_size: int | Sequence[int] = 32, output_size: int | None = None, *,
                 t1: float = 1.0, method: str = DEFAULT_METHOD, rtol: float = DEFAULT_RTOL,
                 atol: float = DEFAULT_ATOL, adjoint: Adjoint = False, time_dependent: bool = False,
                 activation: Activation = nn.Tanh, options: dict[str, Any] | None = None) -> None:
        input_size = check_count("input_size", input_size, 1)
        net = _dynamics(2 * input_size, hidden_size, input_size, time_dependent, activation)
        func = SecondOrderField(net, input_size, time_dependent)
        super().__init__(input_size, 2 * input_size, func, output_size, t1, method, rtol, atol, adjoint, options)

    def lift(self, x: torch.Tensor) -> torch.Tensor:
        return augment(x, self.input_size)

    def extra_repr(self) -> str:
        return f"input_size={self.input_size}, output_size={self.output_size}"
