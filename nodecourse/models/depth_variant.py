"""Depth-variant vector fields: time concatenated at every layer, Galerkin weights, stacked ODE blocks.

A Neural ODE with shared weights has an autonomous field f(h, theta). These models let the field
change with depth s (Massaroli et al. 2020, "Dissecting Neural ODEs", Sec. 3):

- ``ConcatMLP``: every layer sees ``[h, s]`` (time concatenation, as in FFJORD's ConcatLinear);
- ``GalerkinLinear`` / ``GalerkinMLP``: each weight is a truncated series in depth,
  ``theta(s) = sum_k alpha_k phi_k(s)``, in a Fourier or Legendre basis (``fourier_basis``,
  ``legendre_basis``); the coefficients ``alpha_k`` are what is trained;
- ``StackedODE``: several blocks with their own weights on consecutive depth intervals.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from nodecourse._validation import check_count, check_input, check_positive

from .gradients import Adjoint, check_adjoint, solve_model
from .mlp import _activation_factory, check_sizes
from .ode_block import DEFAULT_ATOL, DEFAULT_METHOD, DEFAULT_RTOL
from .odefunc import time_column

__all__ = [
    "fourier_basis", "legendre_basis", "BASES", "ConcatMLP", "GalerkinLinear", "GalerkinMLP", "StackedODE",
]

Activation = type[nn.Module] | nn.Module | Callable[[], nn.Module]


# --------------------------------------------------------------------------------------------------
# bases in depth
# --------------------------------------------------------------------------------------------------


def _depth_tensor(s: torch.Tensor | float, like: torch.Tensor | None = None) -> torch.Tensor:
    if torch.is_tensor(s):
        if not torch.is_floating_point(s):
            s = s.to(torch.get_default_dtype() if like is None else like.dtype)
        return s
    if isinstance(s, bool) or not isinstance(s, (int, float)):
        raise TypeError(f"the depth s must be a number or a floating tensor, got {type(s).__name__}.")
    kwargs = {} if like is None else {"dtype": like.dtype, "device": like.device}
    return torch.tensor(float(s), **kwargs)


def _check_order(name: str, value: object, minimum: int) -> int:
    return check_count(name, value, minimum, kind=f"an integer >= {minimum}")


def fourier_basis(s: torch.Tensor | float, n_harmonics: int, period: float = 1.0) -> torch.Tensor:
    """``[1, cos(w s), ..., cos(n w s), sin(w s), ..., sin(n w s)]`` with ``w = 2 pi / period``.

    ``s`` of any shape ``[*S]`` -> ``[*S, 2 n + 1]``. Every function is ``period``-periodic, so a
    Galerkin layer in this basis repeats itself in depth.
    """
    n_harmonics = _check_order("n_harmonics", n_harmonics, 0)
    period = check_positive("period", period)
    s = _depth_tensor(s)
    k = torch.arange(1, n_harmonics + 1, dtype=s.dtype, device=s.device)
    angle = (2 * math.pi / period) * s.unsqueeze(-1) * k
    return torch.cat([torch.ones_like(s).unsqueeze(-1), torch.cos(angle), torch.sin(angle)], dim=-1)


def legendre_basis(s: torch.Tensor | float, degree: int, interval: Sequence[float] = (0.0, 1.0)) -> torch.Tensor:
    """Legendre polynomials ``[P_0, ..., P_degree]`` of ``z = 2 (s - a) / (b - a) - 1``, ``[a, b] = interval``.

    ``s`` of any shape ``[*S]`` -> ``[*S, degree + 1]``; orthogonal on ``[a, b]``, ``P_0 = 1``. Built by
    Bonnet's recursion ``(k + 1) P_{k+1} = (2 k + 1) z P_k - k P_{k-1}``.
    """
    degree = _check_order("degree", degree, 0)
    a, b = _check_interval(interval)
    s = _depth_tensor(s)
    z = 2 * (s - a) / (b - a) - 1
    polys = [torch.ones_like(z)]
    if degree >= 1:
        polys.append(z)
    for k in range(1, degree):
        polys.append(((2 * k + 1) * z * polys[k] - k * polys[k - 1]) / (k + 1))
    return torch.stack(polys, dim=-1)


def _check_interval(interval: Sequence[float]) -> tuple[float, float]:
    try:
        a, b = (float(v) for v in interval)
    except (TypeError, ValueError):
        raise ValueError(f"interval must be a pair (a, b) of numbers, got {interval!r}.") from None
    if not (math.isfinite(a) and math.isfinite(b) and a < b):
        raise ValueError(f"interval must be (a, b) with finite a < b, got {tuple(interval)}.")
    return a, b


BASES = ("fourier", "legendre")


# --------------------------------------------------------------------------------------------------
# time concatenation at every layer
# --------------------------------------------------------------------------------------------------


class ConcatMLP(nn.Module):
    """An MLP whose every linear layer sees the depth: ``layer(cat([h, s]))``. Shapes ``[..., D] -> [..., D_out]``.

    ``forward(t, y)`` makes it a vector field (``t`` 0-d, or ``[batch]`` in per-sample solves). With the
    weights on the depth column set to zero it is the plain ``MLP(sizes)``; ``ODEFunc(net,
    time_dependent=True)`` concatenates the depth to the input layer only.
    """

    def __init__(self, sizes: Sequence[int], activation: Activation = nn.Tanh) -> None:
        super().__init__()
        sizes = check_sizes(sizes, "ConcatMLP")
        make_activation = _activation_factory(activation)
        self.sizes = tuple(sizes)
        self.layers = nn.ModuleList(nn.Linear(n_in + 1, n_out) for n_in, n_out in zip(sizes[:-1], sizes[1:]))
        self.activations = nn.ModuleList(make_activation() for _ in range(len(sizes) - 2))
        self.nfe: int = 0

    def forward(self, t: torch.Tensor | float, y: torch.Tensor) -> torch.Tensor:
        if y.shape[-1] != self.sizes[0]:
            raise ValueError(f"ConcatMLP expects states [..., {self.sizes[0]}], got {tuple(y.shape)}.")
        check_input("ConcatMLP", y, self.layers._modules["0"]._parameters["weight"])  # dict lookups: runs every call
        self.nfe += 1
        h = y
        for i, layer in enumerate(self.layers):
            h = layer(torch.cat([h, time_column(t, h)], dim=-1))
            if i < len(self.activations):
                h = self.activations[i](h)
        return h

    def extra_repr(self) -> str:
        return f"sizes={list(self.sizes)}"


# --------------------------------------------------------------------------------------------------
# Galerkin layers
# --------------------------------------------------------------------------------------------------


class GalerkinLinear(nn.Module):
    """``y = W(s) x + b(s)`` with ``W(s) = sum_k A_k phi_k(s)``, ``b(s) = sum_k c_k phi_k(s)``.

    ``basis="fourier"``: ``order`` harmonics of ``period`` (``2 order + 1`` terms);
    ``basis="legendre"``: polynomials of degree ``<= order`` on ``interval`` (``order + 1`` terms). The
    coefficients ``weight_coeffs [K, out, in]`` and ``bias_coeffs [K, out]`` are the parameters; the
    first basis function is the constant 1, so with only ``k = 0`` nonzero the layer is an
    ``nn.Linear`` with ``weight = weight_coeffs[0]``. At initialisation the constant term is that of
    ``nn.Linear`` and the others are zero: training starts from a depth-invariant layer.

    ``forward(s, x)``: ``s`` is 0-d (one depth for the batch) or ``[batch]`` (one per sample, along dim 0
    of ``x [batch, ..., in]``); returns ``[..., out]``.
    """

    def __init__(self, in_features: int, out_features: int, basis: str = "fourier", order: int = 2,
                 period: float = 1.0, interval: Sequence[float] = (0.0, 1.0), bias: bool = True) -> None:
        super().__init__()
        in_features = _check_order("in_features", in_features, 1)
        out_features = _check_order("out_features", out_features, 1)
        if basis not in BASES:
            raise ValueError(f"unknown basis {basis!r}; choose one of {', '.join(map(repr, BASES))}.")
        order = _check_order("order", order, 0)
        self.in_features, self.out_features = in_features, out_features
        self.basis_name, self.order = basis, order
        self.period = check_positive("period", period)
        self.interval = _check_interval(interval)
        self.n_terms = 2 * order + 1 if basis == "fourier" else order + 1
        template = nn.Linear(in_features, out_features, bias=bias)
        weight = torch.zeros(self.n_terms, out_features, in_features)
        weight[0] = template.weight.detach()
        self.weight_coeffs = nn.Parameter(weight)
        if bias:
            coeffs = torch.zeros(self.n_terms, out_features)
            coeffs[0] = template.bias.detach()
            self.bias_coeffs = nn.Parameter(coeffs)
        else:
            self.register_parameter("bias_coeffs", None)

    def basis(self, s: torch.Tensor | float) -> torch.Tensor:
        """The basis functions at depth ``s``: ``[*s.shape, n_terms]`` on the coefficients' device and dtype."""
        s = _depth_tensor(s, self.weight_coeffs).to(self.weight_coeffs)
        if self.basis_name == "fourier":  # fourier_basis without its checks: this runs at every evaluation
            k = torch.arange(1, self.order + 1, dtype=s.dtype, device=s.device)
            angle = s.unsqueeze(-1) * k * (2 * math.pi / self.period)
            return torch.cat([torch.ones_like(s).unsqueeze(-1), torch.cos(angle), torch.sin(angle)], dim=-1)
        return legendre_basis(s, self.order, self.interval)

    def weight(self, s: torch.Tensor | float) -> torch.Tensor:
        """``W(s)``: ``[out, in]`` for a scalar ``s``, ``[*s.shape, out, in]`` otherwise."""
        phi = self.basis(s)
        return (phi @ self.weight_coeffs.flatten(1)).reshape(*phi.shape[:-1], self.out_features, self.in_features)

    def bias(self, s: torch.Tensor | float) -> torch.Tensor | None:
        """``b(s)``: ``[out]`` for a scalar ``s``, ``[*s.shape, out]`` otherwise (None without bias)."""
        if self.bias_coeffs is None:
            return None
        return self.basis(s) @ self.bias_coeffs

    def at_basis(self, phi: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The layer with the basis already evaluated: ``phi [n_terms]`` (one depth) or ``[batch, n_terms]``."""
        if phi.dim() == 1:
            W = (phi @ self.weight_coeffs.flatten(1)).view(self.out_features, self.in_features)
            b = None if self.bias_coeffs is None else phi @ self.bias_coeffs
            return nn.functional.linear(x, W, b)
        middle = (1,) * (x.dim() - 2)
        W = (phi @ self.weight_coeffs.flatten(1)).view(phi.shape[0], *middle, self.out_features, self.in_features)
        y = (W @ x.unsqueeze(-1)).squeeze(-1)
        if self.bias_coeffs is not None:
            y = y + (phi @ self.bias_coeffs).view(phi.shape[0], *middle, self.out_features)
        return y

    def depth_basis(self, s: torch.Tensor | float, x: torch.Tensor) -> torch.Tensor:
        """The basis at ``s`` for inputs ``x``: ``[n_terms]`` for one depth, ``[batch, n_terms]`` per sample."""
        if x.dim() == 0 or x.shape[-1] != self.in_features:
            raise ValueError(f"GalerkinLinear expects inputs [..., {self.in_features}], got {tuple(x.shape)}.")
        check_input("GalerkinLinear", x, self.weight_coeffs)
        s = _depth_tensor(s, x)
        if s.numel() == 1:
            return self.basis(s.reshape(()))
        if s.dim() != 1 or x.dim() < 2 or s.shape[0] != x.shape[0]:
            raise ValueError(f"depth s must be a scalar or hold one depth per sample ([{x.shape[0]}]), got "
                             f"s of shape {tuple(s.shape)} for inputs of shape {tuple(x.shape)}.")
        return self.basis(s)

    def forward(self, s: torch.Tensor | float, x: torch.Tensor) -> torch.Tensor:
        return self.at_basis(self.depth_basis(s, x), x)

    def extra_repr(self) -> str:
        where = f"period={self.period}" if self.basis_name == "fourier" else f"interval={self.interval}"
        return (f"in_features={self.in_features}, out_features={self.out_features}, basis={self.basis_name!r}, "
                f"order={self.order}, {where}, bias={self.bias_coeffs is not None}")


class GalerkinMLP(nn.Module):
    """A vector field ``f(s, h)`` made of ``GalerkinLinear`` layers with an activation between them.

    ``GalerkinMLP([2, 32, 2], basis="fourier", order=3, period=T)``: ``forward(t, y)`` maps ``[..., 2]``
    to ``[..., 2]`` with weights that are ``T``-periodic functions of depth. The options go to every layer.
    """

    def __init__(self, sizes: Sequence[int], activation: Activation = nn.Tanh, **layer_options: Any) -> None:
        super().__init__()
        sizes = check_sizes(sizes, "GalerkinMLP")
        make_activation = _activation_factory(activation)
        self.sizes = tuple(sizes)
        self.layers = nn.ModuleList(GalerkinLinear(n_in, n_out, **layer_options)
                                    for n_in, n_out in zip(sizes[:-1], sizes[1:]))
        self.activations = nn.ModuleList(make_activation() for _ in range(len(sizes) - 2))
        self.nfe: int = 0

    def forward(self, t: torch.Tensor | float, y: torch.Tensor) -> torch.Tensor:
        self.nfe += 1
        phi = self.layers[0].depth_basis(t, y)  # every layer has the same basis: evaluate it once
        h = y
        for i, layer in enumerate(self.layers):
            h = layer.at_basis(phi, h)
            if i < len(self.activations):
                h = self.activations[i](h)
        return h


# --------------------------------------------------------------------------------------------------
# stacked blocks
# --------------------------------------------------------------------------------------------------


class StackedODE(nn.Module):
    """Block ``k`` integrates ``dh/ds = funcs[k](s, h)`` on ``[t[k], t[k+1]]``; the blocks run one after another.

    ``breakpoints`` are the ``len(funcs) + 1`` interval ends (default: equal intervals of ``[0, t1]``).
    The field is piecewise in depth with its own weights per piece: the continuous analogue of a
    ResNet with a few groups of shared layers. Shapes ``[batch, ...] -> [batch, ...]``. Fixed-step
    methods need ``options={"step_size": h}``; ``adjoint=True`` (or ``"checkpoint"``) differentiates each block
    that way (:mod:`nodecourse.models.gradients`).
    """

    def __init__(self, funcs: Sequence[nn.Module], t1: float = 1.0, breakpoints: Sequence[float] | None = None,
                 method: str = DEFAULT_METHOD, rtol: float = DEFAULT_RTOL, atol: float = DEFAULT_ATOL,
                 options: dict[str, Any] | None = None, adjoint: Adjoint = False) -> None:
        super().__init__()
        funcs = list(funcs)
        if not funcs or not all(isinstance(f, nn.Module) for f in funcs):
            raise TypeError("funcs must be a non-empty sequence of nn.Modules called as f(t, h), one per block; "
                            "wrap networks in ODEFunc(net).")
        if breakpoints is None:
            t1 = check_positive("t1", t1, "end depth")
            breakpoints = [t1 * k / len(funcs) for k in range(len(funcs) + 1)]
        breakpoints = [float(b) for b in breakpoints]
        if len(breakpoints) != len(funcs) + 1:
            raise ValueError(f"{len(funcs)} blocks need {len(funcs) + 1} breakpoints (the interval ends), "
                             f"got {len(breakpoints)}.")
        if any(b <= a for a, b in zip(breakpoints[:-1], breakpoints[1:])) or not all(map(math.isfinite, breakpoints)):
            raise ValueError(f"breakpoints must be finite and strictly increasing, got {breakpoints}.")
        self.funcs = nn.ModuleList(funcs)
        self.breakpoints = tuple(breakpoints)
        self.method, self.rtol, self.atol = method, rtol, atol
        self.options = dict(options) if options is not None else None
        self.adjoint = check_adjoint(adjoint, method)

    def _solve(self, func: nn.Module, h: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        kwargs = dict(rtol=self.rtol, atol=self.atol, method=self.method, options=self.options)
        return solve_model(func, h, t, self.adjoint, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            got = f"a {x.dtype} tensor" if isinstance(x, torch.Tensor) else type(x).__name__
            raise TypeError(f"StackedODE needs the initial state as a floating-point tensor, got {got}.")
        h = x
        for func, a, b in zip(self.funcs, self.breakpoints[:-1], self.breakpoints[1:]):
            h = self._solve(func, h, torch.tensor([a, b], dtype=x.dtype, device=x.device))[-1]
        return h

    def trajectory(self, x: torch.Tensor, t: torch.Tensor | Sequence[float]) -> torch.Tensor:
        """The states at the increasing depths ``t`` (in ``[t[0], t[-1]]`` of the blocks): ``[len(t), *x.shape]``."""
        t = torch.as_tensor(t, dtype=x.dtype, device=x.device)
        start, end = self.breakpoints[0], self.breakpoints[-1]
        if t.dim() != 1 or len(t) < 1 or bool((t[1:] <= t[:-1]).any()):
            raise ValueError("t must be a 1-D tensor of strictly increasing depths.")
        if float(t[0]) < start or float(t[-1]) > end:
            raise ValueError(f"the depths t must lie in [{start}, {end}], the span of the blocks; "
                             f"got [{float(t[0])}, {float(t[-1])}].")
        out: list[torch.Tensor] = []
        if float(t[0]) == start:
            out.append(x)
        h = x
        for func, a, b in zip(self.funcs, self.breakpoints[:-1], self.breakpoints[1:]):
            inside = [float(v) for v in t if a < float(v) < b]
            grid = torch.tensor([a, *inside, b], dtype=x.dtype, device=x.device)
            states = self._solve(func, h, grid)
            out.extend(states[1:1 + len(inside)])
            h = states[-1]
            if any(float(v) == b for v in t):
                out.append(h)
        return torch.stack(out)

    def extra_repr(self) -> str:
        return f"blocks={len(self.funcs)}, breakpoints={self.breakpoints}, method={self.method!r}"
