"""Checkers for 08_depth_variance_and_control: the Fourier basis, a Galerkin linear layer, the field of a
data-controlled Neural ODE, the augmented dynamics of an integral loss, and depth rescaling for
adaptive depth.

Each ``check_*`` runs the learner's function against the reference on several cases, prints a
report and returns the function to go on with (the learner's when it passes, else the reference).
"""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

from nodecourse.models import MLP, ODEFunc

from .checking import Case, check_function, close, require_callable
from .checking import answers_for, check_function, check_prediction, keep_random_state, one_thread, prediction

__all__ = ["show_answer", "depth_weight", "buggy_depth_weight", "check_depth_weight", "check_galerkin_parameters_prediction", 
    "fourier_basis", "galerkin_linear", "controlled_dynamics", "integral_loss_dynamics", "rescaled_dynamics",
    "check_fourier_basis", "check_galerkin_linear", "check_controlled_dynamics",
    "check_integral_loss_dynamics", "check_rescaled_dynamics",
]


# --- references --------------------------------------------------------------------------------

def fourier_basis(s: torch.Tensor, n_harmonics: int, period: float = 1.0) -> torch.Tensor:
    """``[1, cos(w s), ..., cos(n w s), sin(w s), ..., sin(n w s)]``, ``w = 2 pi / period``: ``[*S] -> [*S, 2n + 1]``."""
    if not torch.is_tensor(s) or not torch.is_floating_point(s):
        raise TypeError(f"s must be a floating tensor of depths, got {type(s).__name__}; "
                        "use torch.tensor(0.3) or torch.linspace(...).")
    if isinstance(n_harmonics, bool) or not isinstance(n_harmonics, int) or n_harmonics < 0:
        raise ValueError(f"n_harmonics must be an integer >= 0, got {n_harmonics!r}.")
    k = torch.arange(1, n_harmonics + 1, dtype=s.dtype, device=s.device)
    angle = 2 * math.pi / period * s.unsqueeze(-1) * k
    return torch.cat([torch.ones_like(s).unsqueeze(-1), torch.cos(angle), torch.sin(angle)], dim=-1)


def galerkin_linear(x: torch.Tensor, s: torch.Tensor, weight_coeffs: torch.Tensor, bias_coeffs: torch.Tensor,
                    period: float = 1.0) -> torch.Tensor:
    """``W(s) x + b(s)`` with ``W(s) = sum_k phi_k(s) A_k``, ``b(s) = sum_k phi_k(s) c_k`` in the Fourier basis.

    ``x [B, in]``, one depth ``s`` (0-d), ``weight_coeffs [K, out, in]``, ``bias_coeffs [K, out]`` with
    ``K = 2 n + 1`` -> ``[B, out]``.
    """
    K = weight_coeffs.shape[0]
    if weight_coeffs.dim() != 3 or bias_coeffs.shape != (K, weight_coeffs.shape[1]) or K % 2 != 1:
        raise ValueError(
            f"weight_coeffs must be [K, out, in] and bias_coeffs [K, out] with an odd K = 2 n + 1, got "
            f"{tuple(weight_coeffs.shape)} and {tuple(bias_coeffs.shape)}."
        )
    phi = fourier_basis(torch.as_tensor(s, dtype=x.dtype, device=x.device), (K - 1) // 2, period)
    W = torch.einsum("k,koi->oi", phi, weight_coeffs)
    b = phi @ bias_coeffs
    return x @ W.T + b


def controlled_dynamics(net: nn.Module, s: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]):
    """The field of a data-controlled Neural ODE on the state ``(h, x)``: ``(net(cat([h, x])), 0)``.

    ``h [B, D]``, ``x [B, C]``; the input ``x`` is constant in depth, so its derivative is zeros like ``x``.
    """
    h, x = state
    return net(torch.cat([h, x], dim=-1)), torch.zeros_like(x)


def integral_loss_dynamics(func: Callable, running_cost: Callable, s: torch.Tensor,
                           state: tuple[torch.Tensor, torch.Tensor]):
    """The field of ``(h, L)`` for the integral loss ``L(S) = int_0^S l(s, h) ds``: ``(f(s, h), l(s, h))``.

    ``h [B, D]``, ``L [B]``; ``running_cost(s, h)`` returns ``[B]``.
    """
    h, _ = state
    return func(s, h), running_cost(s, h)


def rescaled_dynamics(func: Callable, sigma: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]):
    """Adaptive depth in rescaled depth: ``d/dsigma (h, T) = (T f(T sigma, h), 0)``.

    ``h [B, D]``, ``T [B, 1]`` (one depth per sample); ``func`` is called with the per-sample depths
    ``T sigma`` as a ``[B]`` tensor.
    """
    h, T = state
    return T * func(sigma * T.reshape(-1), h), torch.zeros_like(T)


# --- test problems -----------------------------------------------------------------------------

def _randn(*shape: int, dtype: torch.dtype = torch.float64, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, dtype=dtype, generator=torch.Generator().manual_seed(seed))


def _mlp(sizes: list[int], dtype: torch.dtype, seed: int) -> MLP:
    with torch.random.fork_rng(devices=[]):  # leave the learner's random stream alone
        torch.manual_seed(seed)
        return MLP(sizes).to(dtype)


def _field(sizes: list[int], dtype: torch.dtype, seed: int, time_dependent: bool = False) -> ODEFunc:
    return ODEFunc(_mlp(sizes, dtype, seed), time_dependent=time_dependent)


def _circle_cost(s, h):
    target = torch.stack([torch.cos(s), torch.sin(s)]).to(h)
    return (h - target).pow(2).sum(-1)


def _tol(rtol: float = 1e-5, atol: float = 1e-6) -> Callable:
    return lambda expected, got: close(expected, got, rtol=rtol, atol=atol)


# --- checkers ----------------------------------------------------------------------------------

def check_fourier_basis(fn: Callable, verbose: bool = True) -> Callable:
    """Exercise 1: the truncated Fourier basis in depth."""
    require_callable("check_fourier_basis", fn)
    cases = [
        Case("one depth s = 0.3, n = 2, period 1", (torch.tensor(0.3), 2, 1.0)),
        Case("a vector of depths [7], n = 3, period 2", (torch.linspace(0, 2, 7), 3, 2.0)),
        Case("a grid of depths [2, 3] in float64, n = 1, period 2 pi",
             (torch.rand(2, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1)), 1, 2 * math.pi)),
        Case("n = 0: only the constant", (torch.linspace(0, 1, 4), 0, 1.0)),
    ]
    hint = ("angle = 2 pi / period * s.unsqueeze(-1) * k for k = 1..n (torch.arange(1, n + 1)); then "
            "torch.cat([ones, cos(angle), sin(angle)], dim=-1): the constant first, then all cosines, then all "
            "sines, so the result is [*s.shape, 2 n + 1].")
    return check_function("Exercise 1 (Fourier basis)", fn, fourier_basis, cases, hint, compare=_tol(),
                          verbose=verbose)[0]


def check_galerkin_linear(fn: Callable, verbose: bool = True) -> Callable:
    """Exercise 2: a Galerkin linear layer at one depth."""
    require_callable("check_galerkin_linear", fn)
    cases = [
        Case("in 3, out 2, K = 5, s = 0.25, batch 4",
             (_randn(4, 3, seed=1), torch.tensor(0.25, dtype=torch.float64), _randn(5, 2, 3, seed=2), _randn(5, 2, seed=3))),
        Case("in 1, out 1, K = 3, s = 0.6, period 2",
             (_randn(6, 1, seed=4), torch.tensor(0.6, dtype=torch.float64), _randn(3, 1, 1, seed=5), _randn(3, 1, seed=6), 2.0)),
        Case("in 2, out 4, K = 1 (depth-invariant), s = 0.9",
             (_randn(5, 2, seed=7), torch.tensor(0.9, dtype=torch.float64), _randn(1, 4, 2, seed=8), _randn(1, 4, seed=9))),
        Case("float32, in 2, out 3, K = 7, s = 1.7",
             (_randn(3, 2, dtype=torch.float32, seed=10), torch.tensor(1.7), _randn(7, 3, 2, dtype=torch.float32, seed=11),
              _randn(7, 3, dtype=torch.float32, seed=12))),
    ]
    hint = ("phi = fourier_basis(s, (K - 1) // 2, period) has K entries; W = sum_k phi[k] * weight_coeffs[k] "
            "(torch.einsum('k,koi->oi', phi, weight_coeffs)) is [out, in], b = phi @ bias_coeffs is [out]; "
            "return x @ W.T + b, using every basis term, not only the constant one.")
    return check_function("Exercise 2 (Galerkin linear layer)", fn, galerkin_linear, cases, hint,
                          compare=_tol(1e-5, 1e-5), verbose=verbose)[0]


def check_controlled_dynamics(fn: Callable, verbose: bool = True) -> Callable:
    """Exercise 3: the field of the state (h, x) of a data-controlled Neural ODE."""
    require_callable("check_controlled_dynamics", fn)
    cases = [
        Case("h [5, 1], x [5, 1], net 2-16-1", (_mlp([2, 16, 1], torch.float64, 1), torch.tensor(0.0),
                                              (_randn(5, 1, seed=1), _randn(5, 1, seed=2)))),
        Case("h [4, 2], x [4, 3], net 5-8-2", (_mlp([5, 8, 2], torch.float64, 2), torch.tensor(0.4),
                                             (_randn(4, 2, seed=3), _randn(4, 3, seed=4)))),
        Case("float32, h [3, 3], x [3, 1]", (_mlp([4, 8, 3], torch.float32, 3), torch.tensor(0.9),
                                            (_randn(3, 3, dtype=torch.float32, seed=5),
                                             _randn(3, 1, dtype=torch.float32, seed=6)))),
    ]
    hint = ("return a tuple (dh/ds, dx/ds): dh/ds = net(torch.cat([h, x], dim=-1)) with h first, and "
            "dx/ds = torch.zeros_like(x), since the input stays constant along depth.")
    return check_function("Exercise 3 (data-controlled dynamics)", fn, controlled_dynamics, cases, hint,
                          compare=_tol(), verbose=verbose)[0]


def check_integral_loss_dynamics(fn: Callable, verbose: bool = True) -> Callable:
    """Exercise 4: the field of (h, L) for an integral loss."""
    require_callable("check_integral_loss_dynamics", fn)
    cases = [
        Case("MLP field 2-16-2, circle cost, batch 5, s = 0.5",
             (_field([2, 16, 2], torch.float64, 1), _circle_cost, torch.tensor(0.5, dtype=torch.float64),
              (_randn(5, 2, seed=1), _randn(5, seed=2)))),
        Case("time-dependent field 3-8-2, s = 2.0, L not zero",
             (_field([3, 8, 2], torch.float64, 2, time_dependent=True), _circle_cost,
              torch.tensor(2.0, dtype=torch.float64), (_randn(4, 2, seed=3), 10 + _randn(4, seed=4)))),
        Case("a cost that depends only on |h|, batch 3",
             (_field([2, 8, 2], torch.float64, 3), lambda s, h: h.norm(dim=-1), torch.tensor(0.0, dtype=torch.float64),
              (_randn(3, 2, seed=5), torch.zeros(3, dtype=torch.float64)))),
    ]
    hint = ("return the tuple (func(s, h), running_cost(s, h)) where h = state[0]: the derivative of the running "
            "integral L is the running cost itself, one value per sample ([B]); L itself does not enter.")
    return check_function("Exercise 4 (integral-loss dynamics)", fn, integral_loss_dynamics, cases, hint,
                          compare=_tol(), verbose=verbose)[0]


def check_rescaled_dynamics(fn: Callable, verbose: bool = True) -> Callable:
    """Exercise 5: adaptive depth by rescaling depth to [0, 1]."""
    require_callable("check_rescaled_dynamics", fn)
    time_field = _field([2, 16, 1], torch.float64, 2, time_dependent=True)
    cases = [
        Case("autonomous field 1-16-1, batch 4, sigma = 0.5",
             (_field([1, 16, 1], torch.float64, 1), torch.tensor(0.5, dtype=torch.float64),
              (_randn(4, 1, seed=1), 0.5 + _randn(4, 1, seed=2).abs()))),
        Case("time-dependent field, sigma = 0.3", (time_field, torch.tensor(0.3, dtype=torch.float64),
                                                 (_randn(5, 1, seed=3), 1 + _randn(5, 1, seed=4).abs()))),
        Case("time-dependent field, sigma = 1", (time_field, torch.tensor(1.0, dtype=torch.float64),
                                               (_randn(3, 1, seed=5), 2 + _randn(3, 1, seed=6).abs()))),
        Case("2-D state, time-dependent field 3-8-2", (_field([3, 8, 2], torch.float64, 3, time_dependent=True),
                                                     torch.tensor(0.7, dtype=torch.float64),
                                                     (_randn(4, 2, seed=7), 0.2 + _randn(4, 1, seed=8).abs()))),
    ]
    hint = ("with s = T sigma the chain rule gives dh/dsigma = T * f(T sigma, h): call func(sigma * T.reshape(-1), h) "
            "(the per-sample depths as a [B] tensor), multiply by T ([B, 1]) and return it with "
            "torch.zeros_like(T) for the constant depths.")
    return check_function("Exercise 5 (rescaled dynamics)", fn, rescaled_dynamics, cases, hint, compare=_tol(),
                          verbose=verbose)[0]


# --- exercise 6 (find the bug) and exercise 7 (predict, then check) ------------------------------

def depth_weight(s: torch.Tensor, weight_coeffs: torch.Tensor, period: float = 1.0) -> torch.Tensor:
    """``W(s) = sum_k A_k phi_k(s)`` for a 0-d depth ``s`` and ``weight_coeffs [K, out, in]`` (K = 2n + 1
    Fourier terms of ``period``): the weight ``[out, in]`` of a Galerkin layer at depth ``s``."""
    phi = fourier_basis(s, (weight_coeffs.shape[0] - 1) // 2, period)
    return torch.einsum("k,koi->oi", phi, weight_coeffs)


def buggy_depth_weight(s: torch.Tensor, weight_coeffs: torch.Tensor, period: float = 1.0) -> torch.Tensor:
    """Exercise 6 ships this broken :func:`depth_weight` for the learner to repair."""
    phi = fourier_basis(s, (weight_coeffs.shape[0] - 1) // 2, period)
    return torch.einsum("k,kio->oi", phi, weight_coeffs)


def check_depth_weight(fn: Callable[..., torch.Tensor], verbose: bool = True) -> Callable[..., torch.Tensor]:
    """Exercise 6 (find the bug): the repaired :func:`buggy_depth_weight`."""
    require_callable("check_depth_weight", fn)
    g = torch.Generator().manual_seed(8)
    sym = torch.randn(5, 3, 3, generator=g)
    sym = sym + sym.transpose(1, 2)
    cases = [
        Case("symmetric coefficient matrices [5, 3, 3]", (torch.tensor(0.3), sym)),
        Case("non-symmetric square coefficients [5, 2, 2]", (torch.tensor(0.7), torch.randn(5, 2, 2, generator=g))),
        Case("a layer from 3 to 2 features: W(s) is [out, in] = [2, 3]", (torch.tensor(0.1), torch.randn(3, 2, 3, generator=g))),
        Case("period 2", (torch.tensor(1.4), torch.randn(5, 2, 4, generator=g), 2.0)),
    ]
    hint = ["it is right for symmetric coefficient matrices only: compare the shape and the layout of what it "
            "returns with those of one coefficient matrix A_k.",
            "weight_coeffs[k] is [out, in], like nn.Linear's weight; the sum over k must keep that order of the "
            "two remaining indices (read the einsum subscripts letter by letter)."]

    def compare(expected: torch.Tensor, got: Any) -> Optional[str]:
        if torch.is_tensor(got) and got.shape != expected.shape:
            return f"expected W(s) of shape [out, in] = {list(expected.shape)}, got {list(got.shape)}"
        return close(expected, got, rtol=1e-5, atol=1e-6)

    return check_function("Exercise 6 (find the bug: a Galerkin weight)", fn, depth_weight, cases, hint=hint,
                          compare=compare, verbose=verbose)[0]


@prediction
@keep_random_state()
def check_galerkin_parameters_prediction(guess: Optional[float], verbose: bool = True) -> int:
    """Exercise 7 (predict, then check): the parameters of ``GalerkinLinear(2, 2)`` with 2 Fourier harmonics."""
    from nodecourse.models import GalerkinLinear

    truth = sum(p.numel() for p in GalerkinLinear(2, 2, basis="fourier", order=2).parameters())
    check_prediction("Exercise 7 (predict: what depth variance costs)", guess, truth, notebook="08",
                     variable="predicted_parameters", atol=0.5,
                     explanation="2 harmonics give K = 2 * 2 + 1 = 5 basis functions, and every weight (2 x 2) and "
                                 "bias (2) gets one coefficient per basis function: (4 + 2) x 5 = 30, five times "
                                 "nn.Linear(2, 2).", verbose=verbose)
    return truth


show_answer = answers_for("08")
