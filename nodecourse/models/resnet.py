"""A residual network x <- x + h * mlp(x): one Euler step per layer."""
from __future__ import annotations

import copy
import math

import torch
from torch import nn

from nodecourse._validation import check_count, is_real

__all__ = ["ResNet"]


class ResNet(nn.Module):
    """``depth`` residual blocks ``x <- x + step_size * mlp(x)``; shapes ``[batch, D] -> [batch, D]``.

    With ``shared=True`` (the default) the same ``mlp`` is applied at every layer, which is exactly
    Euler's method with step ``step_size`` for ``dx/dt = mlp(x)`` over ``[0, depth * step_size]``.
    With ``shared=False`` each layer gets its own copy (starting from the same weights), giving a
    depth-variant vector field. The default ``step_size=1`` is the usual ResNet.
    """

    def __init__(self, mlp: nn.Module, depth: int, shared: bool = True, step_size: float = 1.0) -> None:
        super().__init__()
        if not isinstance(mlp, nn.Module):
            raise TypeError(f"ResNet needs an nn.Module as its residual block, got {type(mlp).__name__}.")
        depth = check_count("depth", depth)
        if not (is_real(step_size) and math.isfinite(step_size) and step_size > 0):
            raise ValueError(f"step_size must be a finite positive number, got step_size={step_size!r}.")
        step_size = float(step_size)
        self.depth = depth
        self.shared = bool(shared)
        self.step_size = step_size
        blocks = [mlp] if self.shared else [copy.deepcopy(mlp) for _ in range(depth)]
        self.blocks = nn.ModuleList(blocks)

    def block(self, layer: int) -> nn.Module:
        """The residual function used at ``layer`` (0-based)."""
        return self.blocks[0] if self.shared else self.blocks[layer]

    def trajectory(self, x: torch.Tensor) -> torch.Tensor:
        """The input and every hidden state: ``[depth + 1, *x.shape]`` (for plots and PCA)."""
        states = [x]
        for layer in range(self.depth):
            x = x + self.step_size * self.block(layer)(x)
            states.append(x)
        return torch.stack(states)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in range(self.depth):
            x = x + self.step_size * self.block(layer)(x)
        return x

    def extra_repr(self) -> str:
        return f"depth={self.depth}, shared={self.shared}, step_size={self.step_size}"
