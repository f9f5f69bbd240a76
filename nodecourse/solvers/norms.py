"""Error norms: how a step's scaled error estimate becomes one number per sample."""
from __future__ import annotations

import functools
import math
from typing import Callable, Union

import torch

from .problem import FlatProblem
from .rk_step import constant

NormSpec = Union[None, str, Callable]


def rms_norm(x: torch.Tensor) -> torch.Tensor:
    """Root-mean-square over dim 1: ``[B, N] -> [B]``."""
    if torch.compiler.is_compiling():
        return torch.linalg.vector_norm(x, dim=1) / math.sqrt(x.shape[1])
    # sqrt(N) as a cached 0-d tensor: the bits dividing by the Python number gives, without making a tensor
    # of that number on every call (about 2 us)
    return torch.linalg.vector_norm(x, dim=1).div(constant(math.sqrt(x.shape[1]), x))


def rms_of_all(x: torch.Tensor) -> torch.Tensor:
    """Root-mean-square over every entry, 0-d: :func:`rms_norm` of a shared step's one sample, without
    reshaping it to one row first (the same bits: the reduction runs over the same contiguous values)."""
    if torch.compiler.is_compiling():
        return torch.linalg.vector_norm(x) / math.sqrt(x.numel())
    return torch.linalg.vector_norm(x).div(constant(math.sqrt(x.numel()), x))


def max_norm(x: torch.Tensor) -> torch.Tensor:
    """Largest absolute entry over dim 1: ``[B, N] -> [B]``."""
    return x.abs().amax(dim=1)


@functools.lru_cache(maxsize=None)
def _mixed_norm(base: Callable, widths: tuple[int, ...]) -> Callable[[torch.Tensor], torch.Tensor]:
    """The largest of the parts' norms for a tuple state whose flat parts have these widths; cached,
    so solves of the same shapes share one function (a compiled step is reused, not retraced)."""
    bounds, start = [], 0
    for width in widths:
        bounds.append((start, start + width))
        start += width

    def mixed(x: torch.Tensor) -> torch.Tensor:
        return torch.stack([base(x[:, a:b]) for a, b in bounds], dim=1).amax(dim=1)

    return mixed


def make_norm(spec: NormSpec, problem: FlatProblem) -> Callable[[torch.Tensor], torch.Tensor]:
    """The norm ``[B, N] -> [B]`` named by ``spec``.

    ``None`` or ``"rms"``: root mean square (for a tuple state, the largest of the parts' RMS norms,
    as torchdiffeq does); ``"max"``: the max norm; a callable: in shared mode it receives the error
    shaped like the state (a tuple for a tuple state) and returns a scalar, in per-sample mode it
    receives ``[B, N]`` and returns ``[B]``.
    """
    if spec is None or spec == "rms" or spec == "max":
        base = max_norm if spec == "max" else rms_norm
        if len(problem.widths) == 1:
            return base
        return _mixed_norm(base, tuple(problem.widths))
    if isinstance(spec, str):
        hint = (" The seminorm belongs to the adjoint's backward solve: pass "
                "adjoint_options={'norm': 'seminorm'} to odeint_adjoint.") if spec == "seminorm" else ""
        raise ValueError(f"Unknown norm {spec!r}; use 'rms', 'max' or a callable.{hint}")
    if not callable(spec):
        raise TypeError(f"options['norm'] must be 'rms', 'max' or a callable, got {type(spec).__name__}.")
    if problem.per_sample:
        return spec
    return _StateShapedNorm(spec, problem)


def works_on_rows(norm: Callable) -> bool:
    """Whether ``norm`` takes any ``[R, N]`` and gives each row's norm (the built-in ones), so that two
    states can be measured in one call as two rows; a user's norm in shared mode sees one state."""
    return not isinstance(norm, _StateShapedNorm)


class _StateShapedNorm:
    """A user's norm in shared mode: the flat ``[1, N]`` error is handed over shaped like the state
    and the scalar answer comes back as ``[1]``. A plain object, so a compiled step can trace it and
    reuse its graph for the next solve."""

    def __init__(self, spec: Callable, problem: FlatProblem):
        self.spec, self.problem = spec, problem

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return torch.as_tensor(self.spec(self.problem.to_user(self.problem.unflatten(x)))).reshape(1)
