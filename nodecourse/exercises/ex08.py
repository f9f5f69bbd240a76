"""Checkers for 08_depth_variance_and_control: the Fourier basis, a Galerkin linear layer, the field of a
data-controlled Neural ODE, the augmented dynamics of an integral loss, and depth rescaling for
adaptive depth.

Each ``check_*`` runs the learner's function against the reference on several cases, prints a
report and returns the function to go on with (the learner's when it passes, else the reference).
"""
from __future__ import annotations

import math
from typing import Any, Callable, Optional

import torch
from torch import nn

from nodecourse.models import MLP, ODEFunc

from .checking import Case, answers_for, check_function, check_prediction, close, keep_random_state, prediction
from .checking import require_callable

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


# --- comparisons -------------------------------------------------------------------------------

def _dtype_first(expected: Any, got: Any) -> Optional[str]:
    """A dtype mismatch, said plainly, before the values are compared."""
    if torch.is_tensor(expected) and torch.is_tensor(got) and got.dtype != expected.dtype:
        return f"expected dtype {expected.dtype} (the input's), got {got.dtype}"
    return None


def _tensor(rtol: float = 1e-5, atol: float = 1e-6) -> Callable[[Any, Any], Optional[str]]:
    """Compare one tensor: type, shape, dtype, then values."""
    def compare(expected: torch.Tensor, got: Any) -> Optional[str]:
        if not torch.is_tensor(got):
            return f"expected a tensor, got {type(got).__name__}"
        if got.shape != expected.shape:
            return f"expected shape {list(expected.shape)}, got {list(got.shape)}"
        return _dtype_first(expected, got) or close(expected, got, rtol=rtol, atol=atol)
    return compare


def _pair(names: tuple[str, str], rtol: float = 1e-5, atol: float = 1e-6) -> Callable[[Any, Any], Optional[str]]:
    """Compare the pair a tuple-state field returns, naming the part that is wrong."""
    one = _tensor(rtol, atol)

    def compare(expected: tuple, got: Any) -> Optional[str]:
        if not isinstance(got, (tuple, list)) or len(got) != 2:
            what = type(got).__name__ if not isinstance(got, (tuple, list)) else f"{len(got)} items"
            return (f"return the pair ({names[0]}, {names[1]}), one derivative per part of the state; got {what}")
        for name, e, g in zip(names, expected, got):
            why = one(e.detach(), g.detach() if torch.is_tensor(g) else g)
            if why:
                return f"{name}: {why}"
        return None
    return compare


def _basis_compare(expected: torch.Tensor, got: Any) -> Optional[str]:
    """:func:`_tensor`, and when only the order of the basis functions is wrong, say so."""
    why = _tensor(1e-5, 1e-6)(expected, got)
    if why is None or not why.startswith("values differ"):
        return why
    e, g = expected.reshape(-1, expected.shape[-1]), got.to(expected.dtype).reshape(-1, expected.shape[-1])
    unused = list(range(e.shape[1]))
    for j in range(g.shape[1]):  # match every column of the answer to a column of the reference not yet used
        match = next((i for i in unused if torch.allclose(g[:, j], e[:, i], atol=1e-6)), None)
        if match is None:
            break
        unused.remove(match)
    if not unused:
        return (f"{why}: the right functions in the wrong order (the constant, then cos 1 .. cos n, then "
                f"sin 1 .. sin n)")
    return why


# --- checkers ----------------------------------------------------------------------------------

def check_fourier_basis(fn: Callable, verbose: bool = True) -> Callable:
    """Exercise 1: the truncated Fourier basis in depth."""
    require_callable("check_fourier_basis", fn)
    f64 = torch.float64
    grid = torch.rand(2, 3, dtype=f64, generator=torch.Generator().manual_seed(1))
    cases = [
        Case("one depth (a 0-d s) gives 2n + 1 numbers", (torch.tensor(0.3), 2, 1.0)),
        Case("the order: the constant, then cos 1..n, then sin 1..n (n = 3)", (torch.linspace(0, 1, 7), 3, 1.0)),
        Case("harmonics k = 1 .. n: n = 1 gives (1, cos w s, sin w s)", (torch.linspace(0, 1, 5), 1, 1.0)),
        Case("w = 2 pi / period (period 2)", (torch.linspace(0, 2, 7), 2, 2.0)),
        Case("a grid of depths [2, 3]: the basis on a new last dimension, [2, 3, 2n + 1]", (grid, 1, 2 * math.pi)),
        Case("float64 depths give a float64 basis (s's dtype)", (torch.linspace(0, 1, 4, dtype=f64), 2, 1.0)),
        Case("n = 0: only the constant", (torch.linspace(0, 1, 4), 0, 1.0)),
    ]
    hint = ["the first failed case names the property: the order of the functions, which harmonics appear, the "
            "angle's frequency, the shape (a new LAST dimension) or the dtype.",
            "there are 2n + 1 functions: first the constant 1, then n cosines, then n sines, for k = 1, 2, ..., n "
            "(k = 0 would repeat the constant); the angle of harmonic k is k times 2 pi / period times s. Build "
            "every column from s itself, so its shape, dtype and device carry over."]
    return check_function("Exercise 1 (Fourier basis)", fn, fourier_basis, cases, hint=hint, compare=_basis_compare,
                          verbose=verbose)[0]


def check_galerkin_linear(fn: Callable, verbose: bool = True) -> Callable:
    """Exercise 2: a Galerkin linear layer at one depth."""
    require_callable("check_galerkin_linear", fn)
    f64 = torch.float64
    depth = lambda s, dtype=f64: torch.tensor(s, dtype=dtype)  # noqa: E731
    constant_weight = torch.zeros(5, 2, 3, dtype=f64)
    constant_weight[0] = _randn(2, 3, seed=13)
    cases = [
        Case("a layer from 3 inputs to 2 outputs: A_k is [out, in], like nn.Linear's weight",
             (_randn(4, 3, seed=1), depth(0.25), _randn(5, 2, 3, seed=2), _randn(5, 2, seed=3))),
        Case("every basis term counts: W(s) sums phi_k(s) A_k over all K terms",
             (_randn(4, 2, seed=14), depth(0.4), _randn(5, 2, 2, seed=15), torch.zeros(5, 2, dtype=f64))),
        Case("the bias varies with depth too: b(s) sums phi_k(s) c_k",
             (_randn(4, 3, seed=16), depth(0.4), constant_weight, _randn(5, 2, seed=17))),
        Case("the given period (period 2), one input and one output",
             (_randn(6, 1, seed=4), depth(0.6), _randn(3, 1, 1, seed=5), _randn(3, 1, seed=6), 2.0)),
        Case("K = 1: a depth-invariant layer",
             (_randn(5, 2, seed=7), depth(0.9), _randn(1, 4, 2, seed=8), _randn(1, 4, seed=9))),
        Case("K = 7 (n = 3 harmonics), float32 in and out",
             (_randn(3, 2, dtype=torch.float32, seed=10), depth(1.7, torch.float32),
              _randn(7, 3, 2, dtype=torch.float32, seed=11), _randn(7, 3, dtype=torch.float32, seed=12))),
    ]
    hint = ["the first failed case names the part of the layer: the layout of A_k, the sum over the basis terms, "
            "the bias b(s), the period, or the dtype.",
            "evaluate the basis once at s, with (K - 1) / 2 harmonics and the given period; W(s) and b(s) are "
            "weighted sums of ALL their coefficients, with the same K weights; then map the batch the way "
            "nn.Linear does with a weight of shape [out, in] (which side of x does it go on, and is it transposed?)."]
    return check_function("Exercise 2 (Galerkin linear layer)", fn, galerkin_linear, cases, hint=hint,
                          compare=_tensor(1e-5, 1e-5), verbose=verbose)[0]


class _FirstInputs(nn.Module):
    """A network that reads only the first ``width`` of its inputs: it tells [h, x] from [x, h]."""

    def __init__(self, net: nn.Module, width: int, total: int) -> None:
        super().__init__()
        self.net, self.width, self.total = net, width, total

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        if u.shape[-1] != self.total:
            raise ValueError(f"the network expects {self.total} inputs (h and x together), got {u.shape[-1]}")
        return self.net(u[..., : self.width])


def check_controlled_dynamics(fn: Callable, verbose: bool = True) -> Callable:
    """Exercise 3: the field of the state (h, x) of a data-controlled Neural ODE."""
    require_callable("check_controlled_dynamics", fn)
    f32 = torch.float32
    reads_h = _FirstInputs(_mlp([2, 8, 2], torch.float64, 4), width=2, total=5)
    cases = [
        Case("returns the pair (dh/ds, dx/ds)", (_mlp([2, 16, 1], torch.float64, 1), torch.tensor(0.0),
                                                 (_randn(5, 1, seed=1), _randn(5, 1, seed=2)))),
        Case("the network sees [h, x]: the state first, then the input (a net that reads only h)",
             (reads_h, torch.tensor(0.2), (_randn(4, 2, seed=7), _randn(4, 3, seed=8)))),
        Case("dx/ds is zero and shaped like x: the input stays constant along depth",
             (_mlp([3, 8, 1], torch.float64, 5), torch.tensor(0.6), (_randn(3, 1, seed=9), 5 + _randn(3, 2, seed=10)))),
        Case("h [4, 2] and x [4, 3]: D and C differ", (_mlp([5, 8, 2], torch.float64, 2), torch.tensor(0.4),
                                                        (_randn(4, 2, seed=3), _randn(4, 3, seed=4)))),
        Case("float32 state and input", (_mlp([4, 8, 3], f32, 3), torch.tensor(0.9),
                                         (_randn(3, 3, dtype=f32, seed=5), _randn(3, 1, dtype=f32, seed=6)))),
    ]
    hint = ["the first failed case names the part: the pair the field returns, the order in which the network "
            "sees h and x, or the derivative of x.",
            "the solver carries the pair (h, x), so the field returns one derivative per part, in the same order; "
            "the network's input joins h and x along the feature dimension with h first; x does not move along "
            "depth, so its derivative is zero with x's own shape and dtype."]
    return check_function("Exercise 3 (data-controlled dynamics)", fn, controlled_dynamics, cases, hint=hint,
                          compare=_pair(("dh/ds", "dx/ds")), verbose=verbose)[0]


def check_integral_loss_dynamics(fn: Callable, verbose: bool = True) -> Callable:
    """Exercise 4: the field of (h, L) for an integral loss."""
    require_callable("check_integral_loss_dynamics", fn)
    f64 = torch.float64
    cases = [
        Case("returns the pair (f(s, h), l(s, h))",
             (_field([2, 16, 2], f64, 1), _circle_cost, torch.tensor(0.5, dtype=f64),
              (_randn(5, 2, seed=1), torch.zeros(5, dtype=f64)))),
        Case("dL/ds is the running cost whatever L is: L does not enter (L = 10 + noise)",
             (_field([2, 8, 2], f64, 4), _circle_cost, torch.tensor(1.0, dtype=f64),
              (_randn(4, 2, seed=6), 10 + _randn(4, seed=7)))),
        Case("one cost per sample: dL/ds is [B], not summed over the batch",
             (_field([2, 8, 2], f64, 3), lambda s, h: h.norm(dim=-1), torch.tensor(0.0, dtype=f64),
              (_randn(3, 2, seed=5), torch.zeros(3, dtype=f64)))),
        Case("a depth-variant field and cost, both at depth s = 2",
             (_field([3, 8, 2], f64, 2, time_dependent=True), _circle_cost,
              torch.tensor(2.0, dtype=f64), (_randn(4, 2, seed=3), _randn(4, seed=4)))),
    ]
    hint = ["the first failed case names the part: the derivative of h, the derivative of L (its value, or its "
            "shape, one number per sample), or the depth at which they are evaluated.",
            "L is the running integral of the cost, so its derivative is the integrand at the current (s, h), one "
            "value per sample; the current value of L never enters it, and h moves by the field, both at depth s."]
    return check_function("Exercise 4 (integral-loss dynamics)", fn, integral_loss_dynamics, cases, hint=hint,
                          compare=_pair(("dh/ds", "dL/ds")), verbose=verbose)[0]


class _FlatDepths(nn.Module):
    """A depth-variant field that insists on one depth per sample, as a flat ``[B]`` tensor."""

    def __init__(self, func: nn.Module) -> None:
        super().__init__()
        self.func = func

    def forward(self, s: Any, h: torch.Tensor) -> torch.Tensor:
        shape = tuple(s.shape) if torch.is_tensor(s) else type(s).__name__
        if shape != (h.shape[0],):
            raise ValueError(f"func got depths of shape {shape}; it needs one depth per sample, a [B] = "
                             f"[{h.shape[0]}] tensor")
        return self.func(s, h)


def check_rescaled_dynamics(fn: Callable, verbose: bool = True) -> Callable:
    """Exercise 5: adaptive depth by rescaling depth to [0, 1]."""
    require_callable("check_rescaled_dynamics", fn)
    f64 = torch.float64
    time_field = _field([2, 16, 1], f64, 2, time_dependent=True)
    sigma = lambda v: torch.tensor(v, dtype=f64)  # noqa: E731
    cases = [
        Case("the factor T: dh/dsigma = T f (an autonomous field)",
             (_field([1, 16, 1], f64, 1), sigma(0.5), (_randn(4, 1, seed=1), 0.5 + _randn(4, 1, seed=2).abs()))),
        Case("func is called at the depths T sigma (a depth-variant field, sigma = 0.3)",
             (time_field, sigma(0.3), (_randn(5, 1, seed=3), 1 + _randn(5, 1, seed=4).abs()))),
        Case("sigma = 1: every sample at its own end depth T",
             (time_field, sigma(1.0), (_randn(3, 1, seed=5), 2 + _randn(3, 1, seed=6).abs()))),
        Case("func receives the depths as a [B] tensor, one per sample",
             (_FlatDepths(time_field), sigma(0.8), (_randn(4, 1, seed=9), 1 + _randn(4, 1, seed=10).abs()))),
        Case("dT/dsigma is zero and shaped like T [B, 1]",
             (_field([1, 8, 1], f64, 4), sigma(0.1), (_randn(3, 1, seed=11), 1.5 + _randn(3, 1, seed=12).abs()))),
        Case("a 2-D state: T [B, 1] scales every component",
             (_field([3, 8, 2], f64, 3, time_dependent=True), sigma(0.7),
              (_randn(4, 2, seed=7), 0.2 + _randn(4, 1, seed=8).abs()))),
    ]
    hint = ["the first failed case names the part of the chain rule: the factor T, the depth at which func is "
            "called (its value or its shape), or the derivative of T.",
            "with s = T sigma, dh/dsigma = (ds/dsigma) dh/ds; every sample has its own T, so func needs one depth "
            "per sample as a flat [B] tensor and its output is scaled sample by sample; T itself does not change "
            "with sigma."]
    return check_function("Exercise 5 (rescaled dynamics)", fn, rescaled_dynamics, cases, hint=hint,
                          compare=_pair(("dh/dsigma", "dT/dsigma")), verbose=verbose)[0]


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
        Case("symmetric coefficient matrices [5, 3, 3] (the author's test)", (torch.tensor(0.3), sym)),
        Case("non-symmetric square coefficients [5, 2, 2]: A_k, not its transpose",
             (torch.tensor(0.7), torch.randn(5, 2, 2, generator=g))),
        Case("a layer from 3 to 2 features: W(s) is [out, in] = [2, 3]",
             (torch.tensor(0.1), torch.randn(3, 2, 3, generator=g))),
        Case("the given period (period 2)", (torch.tensor(1.4), torch.randn(5, 2, 4, generator=g), 2.0)),
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
