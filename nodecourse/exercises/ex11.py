"""Checkers for 11_regularisation_and_cost: the kinetic-energy integrand, the Frobenius norm from one
Gaussian probe, the augmented regularised dynamics, the explicit Euler step limit of a linear system
and the real stability limit of any explicit Runge-Kutta method.

Each ``check_*`` runs the learner's function against the reference below on several cases, prints a
report and returns the function to go on with (the learner's when every case passed, else the
reference). The references are public so a notebook can also call them directly.
"""
from __future__ import annotations

import functools
from fractions import Fraction
from typing import Any, Callable, Optional, Sequence

import torch
from torch import nn

from nodecourse.solvers import TABLEAUX, ButcherTableau

from .checking import Case, answers_for, check_function, check_prediction, close, keep_random_state, prediction
from .checking import require_callable

__all__ = ["show_answer", "stiffness_ratio", "buggy_stiffness_ratio", "check_stiffness_ratio", "check_euler_limit_prediction", 
    "kinetic_integrand", "frobenius_probe", "augmented_dynamics", "euler_step_limit", "stability_limit",
    "check_kinetic_integrand", "check_frobenius_probe", "check_augmented_dynamics", "check_euler_step_limit",
    "check_stability_limit",
]


# --------------------------------------------------------------------------------------------------
# references
# --------------------------------------------------------------------------------------------------


def kinetic_integrand(f: torch.Tensor) -> torch.Tensor:
    """``||f||^2`` for every sample: ``[B, ...] -> [B]``, the sum of squares over all dims but the first."""
    if not torch.is_tensor(f) or f.dim() < 1:
        raise TypeError(f"f must be a tensor [B, ...], got {getattr(f, 'shape', type(f).__name__)}.")
    return f.reshape(f.shape[0], -1).pow(2).sum(dim=1)


def frobenius_probe(f: torch.Tensor, z: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """``||eps^T df/dz||^2`` per sample by one vector-Jacobian product: ``[B]``.

    ``f = func(z)`` ``[B, D]`` was computed from ``z`` ``[B, D]`` (which requires grad); ``eps`` is a
    probe shaped like ``f``. ``create_graph=True`` keeps the result differentiable, for training. For a
    standard Gaussian ``eps`` the expectation is ``||df/dz||_F^2``.
    """
    (vjp,) = torch.autograd.grad(f, z, eps, create_graph=True)
    return kinetic_integrand(vjp)


def augmented_dynamics(func: Callable, t: Any, state: Sequence[torch.Tensor],
                       eps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The regularised dynamics ``d/dt (z, E_K, E_J) = (f, ||f||^2, ||eps^T df/dz||^2)``.

    ``state = (z [B, D], E_K [B], E_J [B])``; ``func(t, z)`` is the vector field. ``z`` need not
    require grad (at the start of a solve, or in evaluation), so a leaf copy that does is made.
    """
    z = state[0]
    with torch.enable_grad():
        z = z if z.requires_grad else z.detach().requires_grad_(True)
        f = func(t, z)
        return f, kinetic_integrand(f), frobenius_probe(f, z, eps)


def euler_step_limit(A: torch.Tensor) -> float:
    """The largest step ``h`` for which explicit Euler is stable on ``dy/dt = A y``.

    An eigenvalue ``lam`` is damped when ``|1 + h lam| <= 1``, i.e. ``h <= -2 Re(lam) / |lam|^2``; the
    limit is the smallest of these over the eigenvalues, which must all have negative real part.
    """
    if not torch.is_tensor(A) or A.dim() != 2 or A.shape[0] != A.shape[1]:
        raise ValueError(f"A must be a square matrix, got {getattr(A, 'shape', type(A).__name__)}.")
    lam = torch.linalg.eigvals(A.to(torch.float64))
    if bool((lam.real >= 0).any()):
        raise ValueError("every eigenvalue of A needs a negative real part; otherwise no step is stable "
                         f"(eigenvalues {lam.tolist()}).")
    return float((-2 * lam.real / lam.abs() ** 2).min())


def _stability_coefficients(tableau: ButcherTableau) -> torch.Tensor:
    """``gamma_k = b^T A^(k-1) 1`` for ``k = 1..s`` and ``gamma_0 = 1``: ``R(z) = sum_k gamma_k z^k``."""
    s = tableau.n_stages
    A = torch.zeros(s, s, dtype=torch.float64)
    for i, row in enumerate(tableau.a):
        for j, a_ij in enumerate(row):
            A[i, j] = float(a_ij)
    b = torch.tensor([float(b_i) for b_i in tableau.b], dtype=torch.float64)
    gamma, v = [1.0], torch.ones(s, dtype=torch.float64)
    for _ in range(s):
        gamma.append(float(b @ v))
        v = A @ v
    return torch.tensor(gamma, dtype=torch.float64)


def stability_limit(tableau: ButcherTableau) -> float:
    """The real stability limit ``x*`` of an explicit Runge-Kutta method: the largest ``x`` with
    ``|R(-s)| <= 1`` for every ``s`` in ``[0, x]``, where ``R(z) = 1 + z b^T (I - zA)^-1 1``.

    ``R`` is a polynomial with coefficients ``b^T A^(k-1) 1``; scan ``s`` on a grid of 0.01 up to 100 for
    the first ``|R(-s)| > 1``, then bisect between the last stable and the first unstable point.
    """
    if not isinstance(tableau, ButcherTableau):
        raise TypeError(f"tableau must be a ButcherTableau (e.g. TABLEAUX['rk4']), got {type(tableau).__name__}.")
    gamma = _stability_coefficients(tableau)

    def amplification(s: torch.Tensor) -> torch.Tensor:
        return sum(g * (-s) ** k for k, g in enumerate(gamma.tolist())).abs()

    grid = torch.arange(1, 10001, dtype=torch.float64) * 0.01
    first = int((amplification(grid) > 1).nonzero()[0])
    lo, hi = (0.0 if first == 0 else float(grid[first - 1])), float(grid[first])
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if float(amplification(torch.tensor(mid, dtype=torch.float64))) <= 1:
            lo = mid
        else:
            hi = mid
    return lo


# --------------------------------------------------------------------------------------------------
# test problems
# --------------------------------------------------------------------------------------------------


def _mlp(sizes: Sequence[int], seed: int, dtype: torch.dtype = torch.float64) -> nn.Module:
    gen = torch.Generator().manual_seed(seed)
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layer = nn.Linear(n_in, n_out).to(dtype)
        with torch.no_grad():
            layer.weight.copy_(torch.randn(n_out, n_in, generator=gen, dtype=dtype) / n_in**0.5)
            layer.bias.copy_(0.1 * torch.randn(n_out, generator=gen, dtype=dtype))
        layers.append(layer)
        if i < len(sizes) - 2:
            layers.append(nn.Tanh())
    return nn.Sequential(*layers)


class _Linear(nn.Module):
    """``f(z) = z W^T``: Jacobian ``W``, not symmetric, so ``eps^T W`` and ``W eps`` differ."""

    def __init__(self, W: torch.Tensor) -> None:
        super().__init__()
        self.W = nn.Parameter(W)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return z @ self.W.T


class _Field(nn.Module):
    """``func(t, z) = net(z) * (1 + t)``: a time-dependent vector field for the augmented dynamics."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, t: Any, z: torch.Tensor) -> torch.Tensor:
        return self.net(z) * (1 + torch.as_tensor(t, dtype=z.dtype, device=z.device))


def _dtype_first(expected: Any, got: Any) -> Optional[str]:
    if torch.is_tensor(expected) and torch.is_tensor(got) and got.dtype != expected.dtype:
        return f"expected dtype {expected.dtype}, got {got.dtype}"
    return None


def _tensor_compare(expected: Any, got: Any) -> Optional[str]:
    if torch.is_tensor(expected) and torch.is_tensor(got) and got.shape != expected.shape:
        return f"expected shape {tuple(expected.shape)} (one number per sample), got {tuple(got.shape)}"
    rtol = 1e-9 if torch.is_tensor(expected) and expected.dtype == torch.float64 else 1e-5
    return _dtype_first(expected, got) or close(expected, got, rtol=rtol, atol=1e-10)


# --------------------------------------------------------------------------------------------------
# checkers
# --------------------------------------------------------------------------------------------------


def check_kinetic_integrand(fn: Callable[[torch.Tensor], torch.Tensor], verbose: bool = True) -> Callable:
    """Exercise 1: ``||f||^2`` per sample."""
    require_callable("check_kinetic_integrand", fn)
    gen = torch.Generator().manual_seed(11)
    cases = [
        Case("the squared norm: a sum of squares, no square root ([3, 4] gives 25)",
             (torch.tensor([[3.0, 4.0], [1.0, 0.0], [0.0, 0.0], [-1.0, 2.0]], dtype=torch.float64),)),
        Case("a sum over the state, not a mean ([6, 5])", (torch.randn(6, 5, generator=gen, dtype=torch.float64),)),
        Case("one sample [1, 3] still gives [1]", (torch.randn(1, 3, generator=gen, dtype=torch.float64),)),
        Case("image-shaped velocities [3, 2, 4, 4]: sum over every dim but the batch",
             (torch.randn(3, 2, 4, 4, generator=gen, dtype=torch.float64),)),
        Case("float32 in, float32 out (f's dtype)", (torch.randn(6, 5, generator=gen),)),
    ]
    hint = ["the first failed case names the property: squared (no root), summed (not averaged), over which dims, "
            "or the dtype.",
            "one number per sample: square every entry of a sample and add them all, whatever the shape of one "
            "sample is (every dim except dim 0); flattening each sample first makes any shape look like [B, N]."]
    result, _ = check_function("Exercise 1 (kinetic-energy integrand)", fn, kinetic_integrand, cases, hint=hint,
                               compare=_tensor_compare, verbose=verbose)
    return result


class _Estimate:
    """A probe estimate computed by some function, with the backward passes it took through ``f`` and, when the
    case asks, its gradient with respect to the parameters."""

    def __init__(self, value: Any, passes: int, grads: Optional[tuple] = None, graph: bool = True) -> None:
        self.value, self.passes, self.grads, self.graph = value, passes, grads, graph


def _probe_runner(fn: Callable) -> Callable:
    """Call ``fn(f, z, eps)`` on a fresh graph ``f = net(z)``, counting the backward passes through ``f``; with
    ``grad_of`` also differentiate the summed result with respect to those parameters (training does)."""

    def run(net: nn.Module, z: torch.Tensor, eps: torch.Tensor, grad_of: Optional[tuple] = None) -> _Estimate:
        z = z.detach().clone().requires_grad_(True)
        f = net(z)
        passes = [0]
        f.register_hook(lambda grad: passes.__setitem__(0, passes[0] + 1))  # once per backward pass through f
        out = fn(f, z, eps)
        counted = passes[0]
        if grad_of is None or not torch.is_tensor(out):
            return _Estimate(out.detach() if torch.is_tensor(out) else out, counted)
        if not out.requires_grad:
            return _Estimate(out.detach(), counted, graph=False)
        grads = torch.autograd.grad(out.sum(), grad_of, allow_unused=True, materialize_grads=True)
        return _Estimate(out.detach(), counted, grads)

    return run


def _same_estimate(expected: _Estimate, got: _Estimate) -> Optional[str]:
    why = _tensor_compare(expected.value, got.value)
    if why:
        return why
    if got.passes > 1:
        return (f"right values, but {got.passes} backward passes through f: one vector-Jacobian product gives "
                "eps^T df/dz for the whole batch")
    if expected.grads is None:
        return None
    if not got.graph:
        return ("the estimate does not depend on the parameters: pass create_graph=True to torch.autograd.grad so "
                "that training can differentiate it")
    for e, g in zip(expected.grads, got.grads):
        why = close(e, g, rtol=1e-8, atol=1e-10)
        if why:
            return f"gradient of the estimate: {why}"
    return None


@keep_random_state()
def check_frobenius_probe(fn: Callable[..., torch.Tensor], verbose: bool = True) -> Callable:
    """Exercise 2: ``||eps^T df/dz||^2`` per sample, by one vector-Jacobian product."""
    require_callable("check_frobenius_probe", fn)
    f64 = torch.float64
    gen = torch.Generator().manual_seed(12)
    W = torch.tensor([[1.0, 2.0, 0.0], [0.0, 1.0, 3.0], [-1.0, 0.0, 1.0]], dtype=f64)
    linear = _Linear(W.clone())
    mlp = _mlp([3, 16, 3], seed=1)
    mlp32 = _mlp([4, 8, 4], seed=2, dtype=torch.float32)
    eps3 = torch.randn(5, 3, generator=gen, dtype=f64)
    z3 = torch.randn(5, 3, generator=gen, dtype=f64)
    cases = [
        Case("eps^T J, not J eps: a linear f = z W^T (Jacobian W, not symmetric)", (linear, z3, eps3)),
        Case("tanh MLP 3-16-3, batch of 5: one number per sample", (mlp, z3, eps3)),
        Case("the probe e_1: the squared norm of the Jacobian's first row",
             (mlp, z3[:2], torch.eye(3, dtype=f64)[[0, 0]])),
        Case("float32 MLP 4-8-4", (mlp32, torch.randn(6, 4, generator=gen), torch.randn(6, 4, generator=gen))),
        Case("ONE vector-Jacobian product: one backward pass through f for the whole batch",
             (_mlp([5, 8, 5], seed=5), torch.randn(4, 5, generator=gen, dtype=f64),
              torch.randn(4, 5, generator=gen, dtype=f64))),
        Case("differentiable in the parameters (training needs create_graph=True)",
             (mlp, z3, eps3), {"grad_of": tuple(mlp.parameters())}),
    ]
    hint = ["the first failed case names the property: which product of eps and the Jacobian (eps^T J is a row "
            "vector), one number per sample, the number of backward passes, or the graph that training needs.",
            "torch.autograd.grad with grad_outputs=eps returns eps^T df/dz for every sample at once, in one call "
            "(a vector-Jacobian product, not a Jacobian-vector product); its squared norm per sample is the "
            "estimate. Pass create_graph=True."]
    _, report = check_function("Exercise 2 (Frobenius norm from one probe)", _probe_runner(fn),
                               _probe_runner(frobenius_probe), cases, hint=hint, compare=_same_estimate,
                               verbose=verbose, answer=frobenius_probe)
    return fn if report.ok else frobenius_probe


class _CountingField(nn.Module):
    """The case's vector field, counting its evaluations."""

    def __init__(self, func: nn.Module) -> None:
        super().__init__()
        self.func, self.calls = func, 0

    def forward(self, t: Any, z: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.func(t, z)


def _dynamics_runner(fn: Callable) -> Callable:
    """Call ``fn(func, t, state, eps)`` with a fresh counting copy of the field; ``no_grad`` runs it with autograd
    off; the result is ``(derivatives, evaluations of func)``, the count only where the case asks (``count``)."""

    def run(func: nn.Module, t: Any, state: tuple, eps: torch.Tensor, no_grad: bool = False,
            count: bool = False) -> tuple:
        counting = _CountingField(func)
        with torch.set_grad_enabled(not no_grad):
            out = fn(counting, t, state, eps)
        return out, (counting.calls if count else None)

    return run


@keep_random_state()
def check_augmented_dynamics(fn: Callable[..., tuple], verbose: bool = True) -> Callable:
    """Exercise 3: the augmented regularised dynamics ``(f, ||f||^2, ||eps^T df/dz||^2)``."""
    require_callable("check_augmented_dynamics", fn)
    f64 = torch.float64
    gen = torch.Generator().manual_seed(13)
    field = _Field(_mlp([3, 12, 3], seed=3))
    field32 = _Field(_mlp([2, 8, 2], seed=4, dtype=torch.float32))
    z = torch.randn(4, 3, generator=gen, dtype=f64)
    eps = torch.randn(4, 3, generator=gen, dtype=f64)
    zeros = torch.zeros(4, dtype=f64)
    z_grad = (z * 1.0).requires_grad_(True)
    t = lambda v: torch.tensor(v, dtype=f64)  # noqa: E731
    cases = [
        Case("the triple (f, ||f||^2, ||eps^T df/dz||^2), z without grad at t = 0",
             (field, t(0.0), (z, zeros, zeros), eps)),
        Case("the field at time t (t = 0.7; the field depends on t)", (field, t(0.7), (z, zeros, zeros), eps)),
        Case("the integrals' current values do not enter their derivatives",
             (field, t(0.3), (z, zeros + 5.0, zeros - 2.0), eps)),
        Case("z that already requires grad (inside a training solve)", (field, t(0.2), (z_grad, zeros, zeros), eps)),
        Case("called inside torch.no_grad() (a solve without gradients)",
             (field, t(0.4), (z, zeros, zeros), eps), {"no_grad": True}),
        Case("func is evaluated once per call", (field, t(0.5), (z, zeros, zeros), eps), {"count": True}),
        Case("float32 [6, 2]", (field32, torch.tensor(0.5), (torch.randn(6, 2, generator=gen), torch.zeros(6),
                                                              torch.zeros(6)), torch.randn(6, 2, generator=gen))),
    ]
    hint = ["the first failed case names the property: the field's time, the two integrands (the kinetic one and "
            "the probe one), the integrals' own values, or how often func is evaluated.",
            "inside the given `with torch.enable_grad():` block, evaluate func once at (t, z) and reuse that one "
            "output for all three parts: the velocity itself, its squared norm per sample, and the probe estimate "
            "of exercise 2 (which needs that same output and z). The current E_K and E_J play no part."]

    def compare(expected: tuple, got: tuple) -> Optional[str]:
        (e_out, _), (g_out, calls) = expected, got
        if not isinstance(g_out, (tuple, list)) or len(g_out) != 3:
            return f"return a triple (f, dE_K/dt, dE_J/dt), got {type(g_out).__name__}"
        for what, e, g in zip(("f", "dE_K/dt", "dE_J/dt"), e_out, g_out):
            why = _tensor_compare(e.detach(), g.detach() if torch.is_tensor(g) else g)
            if why:
                return f"{what}: {why}"
        if calls is not None and calls > 1:
            return f"right values, but func was evaluated {calls} times: evaluate it once and reuse f"
        return None

    _, report = check_function("Exercise 3 (augmented regularised dynamics)", _dynamics_runner(fn),
                               _dynamics_runner(augmented_dynamics), cases, hint=hint, compare=compare,
                               verbose=verbose, answer=augmented_dynamics)
    return fn if report.ok else augmented_dynamics


def _python_float(expected: float, got: Any) -> Optional[str]:
    if not isinstance(got, float):
        return f"return a Python float (float(...) of the result), got {type(got).__name__}"
    return close(expected, got, rtol=1e-8, atol=1e-12)


def check_euler_step_limit(fn: Callable[[torch.Tensor], float], verbose: bool = True) -> Callable:
    """Exercise 4: the largest stable explicit Euler step on ``dy/dt = A y``."""
    require_callable("check_euler_step_limit", fn)
    f64 = torch.float64
    gen = torch.Generator().manual_seed(14)
    Q, _ = torch.linalg.qr(torch.randn(3, 3, generator=gen, dtype=f64))
    cases = [
        Case("the most restrictive eigenvalue sets the limit: diag(-1, -100)",
             (torch.diag(torch.tensor([-1.0, -100.0], dtype=f64)),)),
        Case("a complex pair: eigenvalues -0.1 +- i (not 2 / |lam|)",
             (torch.tensor([[-0.1, -1.0], [1.0, -0.1]], dtype=f64),)),
        Case("a complex pair beside a real eigenvalue: -4 +- 3i and -0.5",
             (torch.tensor([[-4.0, -3.0, 0.0], [3.0, -4.0, 0.0], [0.0, 0.0, -0.5]], dtype=f64),)),
        Case("a Jordan block [[-2, 1], [0, -2]] (a repeated eigenvalue)",
             (torch.tensor([[-2.0, 1.0], [0.0, -2.0]], dtype=f64),)),
        Case("non-symmetric 3 x 3 with eigenvalues -1, -10, -1000: the eigenvalues, not the entries",
             (Q @ torch.diag(torch.tensor([-1.0, -10.0, -1000.0], dtype=f64)) @ torch.linalg.inv(Q),)),
        Case("float32 input, a Python float out", (torch.tensor([[-3.0, 1.0], [0.0, -20.0]]),)),
    ]
    hint = ["the first failed case names the property: a complex eigenvalue, the most restrictive eigenvalue, or "
            "the type of the result.",
            "write |1 + h lam|^2 with lam = a + ib and solve '<= 1' for h > 0: the bound involves the real part and "
            "the modulus, and it is 2 / |lam| only for a real lam. Take it for every eigenvalue (torch.linalg.eigvals "
            "gives them, complex) and keep the smallest, as a Python float."]
    result, _ = check_function("Exercise 4 (explicit Euler step limit)", fn, euler_step_limit, cases, hint=hint,
                               compare=_python_float, verbose=verbose)
    return result


def _dip_tableau() -> ButcherTableau:
    """A made-up two-stage method with ``R(-s) = 1 - s + s^2 / 10``: it leaves [-1, 1] at 2.764, comes back at
    7.236 and leaves for good at 10, so the stability limit is the FIRST crossing."""
    return ButcherTableau("dip", c=(Fraction(0), Fraction(1, 5)), a=((), (Fraction(1, 5),)),
                          b=(Fraction(1, 2), Fraction(1, 2)), order=1)


def check_stability_limit(fn: Callable[[ButcherTableau], float], verbose: bool = True) -> Callable:
    """Exercise 5: the real stability limit ``x*`` of an explicit Runge-Kutta method from its tableau."""
    require_callable("check_stability_limit", fn)
    cases = [
        Case("euler: x* = 2", (TABLEAUX["euler"],)),
        Case("midpoint (two stages)", (TABLEAUX["midpoint"],)),
        Case("rk4 (four stages), to within 1e-6", (TABLEAUX["rk4"],)),
        Case("bosh3", (TABLEAUX["bosh3"],)),
        Case("fehlberg2", (TABLEAUX["fehlberg2"],)),
        Case("rkf45 (six stages)", (TABLEAUX["rkf45"],)),
        Case("dopri5 (seven stages): the propagated weights b, not b_embedded", (TABLEAUX["dopri5"],)),
        Case("the FIRST crossing: a made-up method whose |R(-s)| exceeds 1 and comes back", (_dip_tableau(),)),
    ]
    hint = ["the first failed case names the tableau: look at what it has that the passing ones lack (more stages, "
            "an embedded pair, an |R(-s)| that leaves [-1, 1] and comes back) or at how far off the number is.",
            "the coefficients are gamma_k = b^T A^(k-1) 1 for k = 1 .. s, in float64, from the propagated weights b; "
            "x* is where |R(-s)| FIRST exceeds 1 as s grows from 0, not the last such point; a scan with a small "
            "step brackets it and bisection narrows the bracket below 1e-6."]
    result, _ = check_function("Exercise 5 (stability limit from the tableau)", fn, stability_limit, cases, hint=hint,
                               compare=functools.partial(close, rtol=0.0, atol=1e-6), verbose=verbose)
    return result


# --- exercise 6 (find the bug) and exercise 7 (predict, then check) ------------------------------

def stiffness_ratio(A: torch.Tensor) -> float:
    """The stiffness ratio of ``dy/dt = A y`` (all eigenvalues with negative real part): the fastest decay
    rate over the slowest, ``max |Re lam| / min |Re lam|``."""
    rates = torch.linalg.eigvals(A.to(torch.float64)).real.abs()
    return float(rates.max() / rates.min())


def buggy_stiffness_ratio(A: torch.Tensor) -> float:
    """Exercise 6 ships this broken :func:`stiffness_ratio` for the learner to repair."""
    rates = torch.linalg.eigvals(A.to(torch.float64)).abs()
    return float(rates.max() / rates.min())


def check_stiffness_ratio(fn: Callable[..., float], verbose: bool = True) -> Callable[..., float]:
    """Exercise 6 (find the bug): the repaired :func:`buggy_stiffness_ratio`."""
    require_callable("check_stiffness_ratio", fn)
    f64 = torch.float64
    cases = [
        Case("diagonal A = diag(-1, -100)", (torch.diag(torch.tensor([-1.0, -100.0], dtype=f64)),)),
        Case("a symmetric A with real eigenvalues", (torch.tensor([[-3.0, 1.0], [1.0, -3.0]], dtype=f64),)),
        Case("a lightly damped fast rotation beside a slow decay: decay rates, not frequencies",
             (torch.tensor([[-0.5, -50.0, 0.0], [50.0, -0.5, 0.0], [0.0, 0.0, -0.05]], dtype=f64),)),
        Case("float32 input", (torch.tensor([[-0.1, -2.0], [2.0, -0.1]]).float(),)),
    ]
    hint = ["it is right for matrices with real eigenvalues and wrong when some are complex: what does it take "
            "from a complex eigenvalue?",
            "stiffness is about decay rates: the real parts of the eigenvalues. The modulus |lam| mixes in the "
            "imaginary part, which only sets how fast the solution oscillates."]
    return check_function("Exercise 6 (find the bug: a stiffness ratio)", fn, stiffness_ratio, cases, hint=hint,
                          compare=lambda e, g: close(e, g, rtol=1e-6, atol=1e-9), verbose=verbose)[0]


@prediction
def check_euler_limit_prediction(guess: Optional[float], verbose: bool = True) -> float:
    """Exercise 7 (predict, then check): the largest stable Euler step for dy/dt = -50 y, found by running
    200 steps with each h on a grid and keeping the largest for which |y| does not grow."""
    y0 = torch.ones(1, dtype=torch.float64)
    stable = 0.0
    for h in torch.arange(1, 1001, dtype=torch.float64) / 10000:
        y = y0
        for _ in range(200):
            y = y + float(h) * (-50.0) * y
        if float(y.abs()) <= 1.0 + 1e-9:
            stable = float(h)
    truth = round(stable, 4)
    check_prediction("Exercise 7 (predict: Euler's step limit)", guess, truth, notebook="11",
                     variable="predicted_limit", atol=0.002,
                     explanation="each Euler step multiplies y by 1 - 50 h, which stays within [-1, 1] for "
                                 "h <= 2 / 50 = 0.04; beyond it the iterates grow and alternate in sign.",
                     verbose=verbose)
    return truth


show_answer = answers_for("11")
