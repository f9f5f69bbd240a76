"""A plain multilayer perceptron: the building block of every vector field in the course."""
from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Sequence

import torch
from torch import nn

from nodecourse._validation import check_count, check_input, is_int

__all__ = ["MLP"]


def _activation_factory(activation: type[nn.Module] | nn.Module | Callable[[], nn.Module]) -> Callable[[], nn.Module]:
    """Turn ``activation`` (a module class, a zero-argument factory or a module instance) into a factory."""
    if isinstance(activation, nn.Module):
        return lambda: copy.deepcopy(activation)
    if not callable(activation):
        raise TypeError(
            f"activation must be an nn.Module class such as nn.Tanh, got {activation!r}; "
            "pass the class itself (activation=nn.Tanh), not a function like torch.tanh."
        )

    def make() -> nn.Module:
        try:
            module = activation()
        except TypeError as err:
            raise TypeError(
                f"activation {activation!r} cannot be built without arguments ({err}); pass an nn.Module "
                "class such as nn.Tanh or nn.ReLU, or a module instance such as nn.LeakyReLU(0.1)."
            ) from None
        if not isinstance(module, nn.Module):
            raise TypeError(
                f"activation() must return an nn.Module, got {type(module).__name__}; pass an nn.Module "
                "class such as nn.Tanh, not a function like torch.tanh."
            )
        return module

    return make


def check_sizes(sizes: Sequence[int], owner: str) -> list[int]:
    """Layer widths as a list of at least two positive ints (Python or NumPy), else an error naming ``owner``."""
    if isinstance(sizes, (str, bytes, torch.Tensor)) or not isinstance(sizes, Iterable):
        raise TypeError(f"{owner} takes a list of layer widths such as {owner}([2, 16, 2]), got {sizes!r}.")
    sizes = list(sizes)
    if len(sizes) < 2:
        raise ValueError(
            f"{owner} needs at least an input and an output size, got sizes={sizes}; e.g. {owner}([2, 16, 2])."
        )
    for position, n in enumerate(sizes):
        if not is_int(n) or n < 1:
            raise ValueError(f"every {owner} size must be a positive integer, got sizes={sizes}: {n!r} at "
                             f"position {position} is not.")
    return [int(n) for n in sizes]


def hidden_sizes(hidden: int | Sequence[int]) -> list[int]:
    """Hidden widths: an int (Python or NumPy) is one hidden layer, a non-empty sequence one per layer."""
    sizes = [hidden] if is_int(hidden) else hidden
    if isinstance(sizes, (str, bytes)) or not isinstance(sizes, Sequence) or len(sizes) == 0:
        raise ValueError(f"hidden must be a positive integer or a non-empty list of them, got hidden={hidden!r}.")
    return [check_count("every hidden width", h, 1) for h in sizes]


class MLP(nn.Sequential):
    """Linear layers of the given widths with an activation between them (none after the last).

    ``MLP([2, 16, 2])`` maps ``[..., 2] -> [..., 2]`` through Linear(2, 16), Tanh, Linear(16, 2).
    Being an ``nn.Sequential``, its layers can be indexed (``mlp[0]``) and counted (``len(mlp)``).
    """

    def __init__(
        self,
        sizes: Sequence[int],
        activation: type[nn.Module] | nn.Module | Callable[[], nn.Module] = nn.Tanh,
    ) -> None:
        sizes = check_sizes(sizes, "MLP")
        make_activation = _activation_factory(activation)
        layers: list[nn.Module] = []
        for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers.append(nn.Linear(n_in, n_out))
            if i < len(sizes) - 2:
                layers.append(make_activation())
        super().__init__(*layers)
        self.sizes: tuple[int, ...] = tuple(sizes)
        self.in_features: int = sizes[0]
        self.out_features: int = sizes[-1]
        self._name = f"MLP({list(sizes)})"  # for error messages

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[..., in_features] -> [..., out_features]``; the input's width, device and dtype are checked."""
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{self._name} needs a tensor [..., {self.in_features}], got {type(x).__name__}; "
                            "convert it with torch.as_tensor(x, dtype=torch.float32).")
        if x.dim() == 0 or x.shape[-1] != self.in_features:
            raise ValueError(f"{self._name} expects inputs of shape [..., {self.in_features}], got "
                             f"{tuple(x.shape)}; the last dimension must be the input width {self.in_features}.")
        check_input(self._name, x, self._modules["0"]._parameters["weight"])  # plain dict lookups: runs every call
        return super().forward(x)
