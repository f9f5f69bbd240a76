"""A vector field f(t, y) = net(y) or net([y, t]) built from any network, counting its evaluations."""
from __future__ import annotations

import torch
from torch import nn

from nodecourse._validation import is_int

__all__ = ["ODEFunc"]


def time_column(t: torch.Tensor | float, y: torch.Tensor) -> torch.Tensor:
    """The time as one extra feature of ``y``: shape ``[*y.shape[:-1], 1]``, on y's device and dtype.

    ``t`` is a scalar (0-d, shared by every sample) or, in per-sample solves, a ``[batch]`` tensor
    holding one time per sample along dim 0 of ``y``.
    """
    t = torch.as_tensor(t, dtype=y.dtype, device=y.device)
    target = (*y.shape[:-1], 1)
    if t.dim() == 0 or t.numel() == 1:
        return t.reshape(()).expand(target)
    if t.dim() == 1 and y.dim() >= 2 and t.shape[0] == y.shape[0]:
        return t.reshape(-1, *([1] * (y.dim() - 1))).expand(target)
    raise ValueError(
        f"time t must be a scalar or hold one time per sample (shape [{y.shape[0] if y.dim() else 1}]), "
        f"got t of shape {tuple(t.shape)} for a state of shape {tuple(y.shape)}."
    )


class ODEFunc(nn.Module):
    """The dynamics dy/dt = net(y), or net(cat([y, t], -1)) when ``time_dependent``.

    ``forward(t, y)`` takes the solver's time (0-d, or ``[batch]`` in per-sample mode) and a state
    ``[..., D]`` and returns ``[..., D]``. A time-dependent net therefore takes ``D + 1`` inputs.
    ``nfe`` counts the evaluations since construction (set it to 0 to restart the count).
    """

    def __init__(self, net: nn.Module, time_dependent: bool = False) -> None:
        super().__init__()
        if not isinstance(net, nn.Module):
            raise TypeError(
                f"ODEFunc needs an nn.Module as its net, got {type(net).__name__}; wrap the function in an "
                "nn.Module (e.g. an MLP) so that its parameters can be trained."
            )
        self.net = net
        self.time_dependent = bool(time_dependent)
        self.nfe: int = 0
        # The state width the net expects, when the net says (MLP and nn.Linear have in_features).
        width = getattr(net, "in_features", None)
        self._state_width: int | None = int(width) - self.time_dependent if is_int(width) else None
        if self._state_width is not None and self._state_width < 1:
            raise ValueError(f"a time-dependent ODEFunc feeds [y, t] to its net, so the net needs at least 2 "
                             f"inputs, got a net with in_features={width}.")

    def forward(self, t: torch.Tensor | float, y: torch.Tensor) -> torch.Tensor:
        if self._state_width is not None and (not isinstance(y, torch.Tensor) or y.dim() == 0
                                             or y.shape[-1] != self._state_width):
            self._reject_state(y)
        self.nfe += 1
        if self.time_dependent:
            return self.net(torch.cat([y, time_column(t, y)], dim=-1))
        return self.net(y)

    def _reject_state(self, y: object) -> None:
        if not isinstance(y, torch.Tensor):
            raise TypeError(f"ODEFunc needs the state y as a tensor [..., {self._state_width}], got {type(y).__name__}.")
        inputs = f"{self._state_width + 1} inputs: the state and the time t, which ODEFunc appends" \
            if self.time_dependent else f"{self._state_width} inputs"
        raise ValueError(f"ODEFunc expects states of shape [..., {self._state_width}] (its net takes {inputs}), "
                         f"got {tuple(y.shape)}.")

    def extra_repr(self) -> str:
        return f"time_dependent={self.time_dependent}"
