"""A plain multilayer perceptron: the building block of every vector field in the course."""
from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

from torch import nn

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
    """Layer widths as a list of at least two positive integers, else a ValueError naming ``owner``."""
    sizes = list(sizes)
    if len(sizes) < 2:
        raise ValueError(
            f"{owner} needs at least an input and an output size, got sizes={sizes}; e.g. {owner}([2, 16, 2])."
        )
    if any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in sizes):
        raise ValueError(f"every {owner} size must be a positive integer, got sizes={sizes}.")
    return sizes


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
