"""Checkers for 10_continuous_flows: the base log-density, the exact trace, Hutchinson's estimator,
the augmented CNF dynamics and a CNF's log-likelihood by one solve.

Each ``check_*`` runs the learner's function against the reference on several cases, prints a
report and returns the function to go on with (the learner's when it passes, else the reference).
"""
from __future__ import annotations

import math
from typing import Any, Callable, Optional

import torch
from torch import nn

from nodecourse.models.flows import CNFField
from nodecourse.solvers import odeint

from .checking import Case, check_function, close, keep_random_state, require_callable
from .checking import answers_for, check_function, check_prediction, keep_random_state, one_thread, prediction

__all__ = ["show_answer", "diag_gaussian_log_prob", "buggy_diag_gaussian_log_prob", "check_diag_gaussian_log_prob", "check_origin_log_density_prediction", 
    "standard_normal_log_prob", "exact_trace", "hutchinson_trace", "cnf_dynamics", "cnf_log_prob",
    "check_standard_normal_log_prob", "check_exact_trace", "check_hutchinson_trace",
    "check_cnf_dynamics", "check_cnf_log_prob",
]


# --- references --------------------------------------------------------------------------------

def standard_normal_log_prob(z: torch.Tensor) -> torch.Tensor:
    """log N(z; 0, I) per sample: ``[B, D] -> [B]``, ``-|z|^2/2 - (D/2) log(2 pi)``."""
    if not torch.is_tensor(z) or z.dim() != 2:
        raise ValueError(f"z must be a batch [B, D], got "
                         f"{tuple(z.shape) if torch.is_tensor(z) else type(z).__name__}.")
    return -0.5 * (z**2).sum(dim=1) - 0.5 * z.shape[1] * math.log(2 * math.pi)


def exact_trace(f: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """tr(df/dz) per sample, one autograd pass per dimension, differentiable: ``[B, D] -> [B]``.

    ``f`` was computed from ``z`` (which requires grad), each row from its own row of ``z``; the
    gradient of ``f[:, i].sum()`` is then every sample's row i of the Jacobian.
    """
    diagonal = [torch.autograd.grad(f[:, i].sum(), z, create_graph=True)[0][:, i] for i in range(z.shape[1])]
    return torch.stack(diagonal, dim=1).sum(dim=1)


def hutchinson_trace(f: torch.Tensor, z: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """Hutchinson's estimate eps^T (df/dz) eps per sample by ONE vector-Jacobian product: ``[B]``."""
    (eps_jac,) = torch.autograd.grad(f, z, grad_outputs=eps, create_graph=True)
    return (eps_jac * eps).sum(dim=1)


def cnf_dynamics(field: Callable, t: torch.Tensor,
                 state: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """d/dt (z, delta) = (f(t, z), -tr(df/dz)) with the exact trace: ``([B, D], [B])`` both ways.

    Works when autograd is off (it switches it on for the trace).
    """
    z = state[0]
    with torch.enable_grad():
        if not z.requires_grad:
            z = z.detach().requires_grad_(True)
        f = field(t, z)
        return f, -exact_trace(f, z)


def cnf_log_prob(field: Callable, x: torch.Tensor, t1: float = 1.0, n_steps: int = 8) -> torch.Tensor:
    """log p(x) ``[B]`` of the CNF with vector field ``field`` and base N(0, I) at ``t1``.

    Solves (z, delta) from (x, 0) at t = 0 to t1 with RK4 (``n_steps`` equal steps) and returns
    ``log N(z(t1)) - delta(t1)``.
    """
    t = torch.tensor([0.0, float(t1)], dtype=x.dtype, device=x.device)
    delta0 = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
    zs, deltas = odeint(lambda s, state: cnf_dynamics(field, s, state), (x, delta0), t,
                        method="rk4", options={"step_size": float(t1) / n_steps})
    return standard_normal_log_prob(zs[-1]) - deltas[-1]


# --- test problems -----------------------------------------------------------------------------

def _randn(*shape: int, dtype: torch.dtype = torch.float64, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, dtype=dtype, generator=torch.Generator().manual_seed(seed))


def _field(dim: int, dtype: torch.dtype = torch.float64, seed: int = 0, hidden: int = 16,
           activation: type[nn.Module] = nn.Tanh) -> CNFField:
    torch.manual_seed(seed)
    field = CNFField(dim, hidden, activation=activation).to(dtype)
    with torch.no_grad():  # larger weights: Jacobians far from zero, so mistakes show
        for p in field.parameters():
            p.mul_(2.0)
    return field


class _Linear(nn.Module):
    """f(t, z) = z A^T with a trainable A: Jacobian A everywhere, trace tr(A)."""

    def __init__(self, A: torch.Tensor) -> None:
        super().__init__()
        self.A = nn.Parameter(A.clone())

    def forward(self, t, z):
        return z @ self.A.T


def _rademacher(*shape: int, dtype: torch.dtype = torch.float64, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return (torch.randint(0, 2, shape, generator=gen) * 2 - 1).to(dtype)


class _TraceResult:
    """A trace computed by some function, with the gradient it passes to the field's parameters."""

    def __init__(self, value: Any, grads: Optional[tuple]) -> None:
        self.value, self.grads = value, grads


def _run_trace(fn: Callable, field: nn.Module, z: torch.Tensor, eps: Optional[torch.Tensor]) -> _TraceResult:
    """Evaluate f = field(0.3, z) with autograd on z, call fn, and differentiate its result's sum."""
    z = z.detach().clone().requires_grad_(True)
    f = field(torch.tensor(0.3, dtype=z.dtype), z)
    value = fn(f, z) if eps is None else fn(f, z, eps)
    if not torch.is_tensor(value):
        return _TraceResult(value, None)
    grads = None
    if value.requires_grad:
        grads = torch.autograd.grad(value.sum(), tuple(field.parameters()), allow_unused=True)
        grads = tuple(torch.zeros_like(p) if g is None else g for p, g in zip(field.parameters(), grads))
    return _TraceResult(value.detach(), grads)


def _compare_trace(expected: _TraceResult, got: _TraceResult) -> Optional[str]:
    why = close(expected.value, got.value, rtol=1e-5, atol=1e-6)
    if why:
        return why
    if got.grads is None:
        return ("the values are right but the result carries no graph: pass create_graph=True to "
                "torch.autograd.grad, or training cannot backpropagate through the trace")
    why = close(expected.grads, got.grads, rtol=1e-5, atol=1e-6)
    return f"the gradient of the trace with respect to the field's parameters is wrong ({why})" if why else None


# --- checkers ----------------------------------------------------------------------------------

def check_standard_normal_log_prob(fn: Callable, verbose: bool = True) -> Callable:
    """Exercise 1: the log-density of the standard Gaussian, per sample."""
    require_callable("check_standard_normal_log_prob", fn)
    cases = [
        Case("batch [5, 2], float64", (_randn(5, 2, seed=1),)),
        Case("batch [4, 7] (D = 7), float64", (_randn(4, 7, seed=2),)),
        Case("one point at the origin [1, 3]", (torch.zeros(1, 3, dtype=torch.float64),)),
        Case("batch [6, 1], float32", (_randn(6, 1, dtype=torch.float32, seed=3),)),
    ]
    hint = ("log N(z; 0, I) = -0.5 * (z**2).sum(dim=1) - 0.5 * D * log(2 pi) with D = z.shape[1]: sum over "
            "the dimensions (dim=1), not over the batch, and do not forget the normalising constant.")
    return check_function("Exercise 1 (standard normal log-density)", fn, standard_normal_log_prob, cases, hint,
                          compare=lambda e, g: close(e, g, rtol=1e-5, atol=1e-5), verbose=verbose)[0]


def _trace_cases(with_eps: bool) -> list[Case]:
    A = torch.tensor([[0.5, -2.0, 0.3], [1.0, -1.5, 0.0], [0.2, 0.7, 2.5]], dtype=torch.float64)
    problems = [
        ("linear field z A^T, D = 3", _Linear(A), _randn(4, 3, seed=4)),
        ("MLP field, D = 2", _field(2, seed=5), _randn(5, 2, seed=6)),
        ("MLP field, D = 5", _field(5, seed=7), _randn(3, 5, seed=8)),
        ("MLP field, D = 2, float32", _field(2, dtype=torch.float32, seed=9), _randn(6, 2, dtype=torch.float32,
                                                                                       seed=10)),
    ]
    cases = []
    for k, (label, field, z) in enumerate(problems):
        eps = _rademacher(*z.shape, dtype=z.dtype, seed=20 + k) if with_eps else None
        cases.append(Case(label, (field, z, eps)))
    if with_eps:  # a Gaussian probe too
        cases.append(Case("MLP field, D = 4, Gaussian probe", (_field(4, seed=11), _randn(5, 4, seed=12),
                                                               _randn(5, 4, seed=13))))
    return cases


def _check_trace(exercise: str, fn: Callable, reference: Callable, with_eps: bool, hint: str,
                 verbose: bool) -> Callable:
    run = lambda f: (lambda field, z, eps: _run_trace(f, field, z, eps))  # noqa: E731
    _, report = check_function(exercise, run(fn), run(reference), _trace_cases(with_eps), hint,
                               compare=_compare_trace, verbose=verbose)
    return fn if report.ok else reference


@keep_random_state()
def check_exact_trace(fn: Callable, verbose: bool = True) -> Callable:
    """Exercise 2: the exact trace of df/dz per sample, by one autograd pass per dimension."""
    require_callable("check_exact_trace", fn)
    hint = ("for i in range(D): row_i = torch.autograd.grad(f[:, i].sum(), z, create_graph=True)[0] is row i "
            "of every sample's Jacobian; keep row_i[:, i] and add them up. create_graph=True also keeps the "
            "graph for the next pass and for training.")
    return _check_trace("Exercise 2 (exact trace)", fn, exact_trace, False, hint, verbose)


@keep_random_state()
def check_hutchinson_trace(fn: Callable, verbose: bool = True) -> Callable:
    """Exercise 3: Hutchinson's estimate eps^T (df/dz) eps with one vector-Jacobian product."""
    require_callable("check_hutchinson_trace", fn)
    hint = ("v = torch.autograd.grad(f, z, grad_outputs=eps, create_graph=True)[0] is eps^T df/dz for every "
            "sample at once; the estimate is (v * eps).sum(dim=1), one number per sample (do not sum over "
            "the batch, and do not forget the second eps).")
    return _check_trace("Exercise 3 (Hutchinson's estimator)", fn, hutchinson_trace, True, hint, verbose)


def _run_dynamics(fn: Callable, field: nn.Module, t: torch.Tensor, z: torch.Tensor, grad_enabled: bool,
                  z_requires_grad: bool) -> Any:
    z = z.detach().clone().requires_grad_(z_requires_grad)
    state = (z, torch.zeros(z.shape[0], dtype=z.dtype))
    with torch.set_grad_enabled(grad_enabled):
        out = fn(field, t, state)
    if isinstance(out, (tuple, list)):
        return tuple(o.detach() if torch.is_tensor(o) else o for o in out)
    return out


@keep_random_state()
def check_cnf_dynamics(fn: Callable, verbose: bool = True) -> Callable:
    """Exercise 4: the augmented CNF dynamics d/dt (z, delta) = (f, -tr df/dz)."""
    require_callable("check_cnf_dynamics", fn)
    A = torch.tensor([[-0.3, -1.0], [1.2, -0.5]], dtype=torch.float64)
    cases = [
        Case("linear field z A^T (trace -0.8), z without requires_grad",
             (_Linear(A), torch.tensor(0.0, dtype=torch.float64), _randn(4, 2, seed=14), True, False)),
        Case("MLP field, D = 2, z already requiring grad",
             (_field(2, seed=15), torch.tensor(0.4, dtype=torch.float64), _randn(5, 2, seed=16), True, True)),
        Case("MLP field, D = 3, called inside torch.no_grad() (as a solver may)",
             (_field(3, seed=17), torch.tensor(0.9, dtype=torch.float64), _randn(3, 3, seed=18), False, False)),
        Case("MLP field, D = 2, float32",
             (_field(2, dtype=torch.float32, seed=19), torch.tensor(0.1), _randn(4, 2, dtype=torch.float32,
                                                                               seed=20), True, False)),
    ]
    hint = ("z = state[0]; inside `with torch.enable_grad():` make z require grad if it does not "
            "(z = z.detach().requires_grad_(True)), compute f = field(t, z) and the exact trace (your "
            "exact_trace), and return (f, -trace): the log-density falls where the flow spreads points out.")
    run = lambda f: (lambda *args: _run_dynamics(f, *args))  # noqa: E731
    _, report = check_function("Exercise 4 (CNF dynamics)", run(fn), run(cnf_dynamics), cases, hint,
                               compare=lambda e, g: close(e, g, rtol=1e-5, atol=1e-6), verbose=verbose)
    return fn if report.ok else cnf_dynamics


def _run_log_prob(fn: Callable, field: nn.Module, x: torch.Tensor, t1: float, n_steps: int) -> Any:
    out = fn(field, x, t1, n_steps)
    return out.detach() if torch.is_tensor(out) else out


@keep_random_state()
def check_cnf_log_prob(fn: Callable, verbose: bool = True) -> Callable:
    """Exercise 5: log p(x) of a CNF by one RK4 solve of (z, delta)."""
    require_callable("check_cnf_log_prob", fn)
    A = torch.tensor([[-0.3, -1.0], [1.2, -0.5]], dtype=torch.float64)
    cases = [
        Case("linear field z A^T on [0, 1], 8 steps", (_Linear(A), _randn(5, 2, seed=21), 1.0, 8)),
        Case("MLP field, D = 2, [0, 1], 8 steps", (_field(2, seed=22), _randn(6, 2, seed=23), 1.0, 8)),
        Case("MLP field, D = 3, [0, 0.5], 4 steps", (_field(3, seed=24), _randn(4, 3, seed=25), 0.5, 4)),
        Case("MLP field, D = 2, float32, [0, 2], 10 steps",
             (_field(2, dtype=torch.float32, seed=26), _randn(5, 2, dtype=torch.float32, seed=27), 2.0, 10)),
    ]
    hint = ("solve the tuple state (x, zeros [B]) with odeint(lambda t, s: cnf_dynamics(field, t, s), ..., "
            "torch.tensor([0.0, t1]), method='rk4', options={'step_size': t1 / n_steps}); then "
            "log p(x) = standard_normal_log_prob(z(t1)) - delta(t1) (minus: delta is the change of log p "
            "from x to z(t1)). Make the times on x's dtype and device.")
    run = lambda f: (lambda *args: _run_log_prob(f, *args))  # noqa: E731
    _, report = check_function("Exercise 5 (CNF log-likelihood)", run(fn), run(cnf_log_prob), cases, hint,
                               compare=lambda e, g: close(e, g, rtol=1e-5, atol=1e-5), verbose=verbose)
    return fn if report.ok else cnf_log_prob


# --- exercise 6 (find the bug) and exercise 7 (predict, then check) ------------------------------

def diag_gaussian_log_prob(z: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """``log N(z; mean, diag(std^2))`` summed over the last dimension: ``[B, D] -> [B]``."""
    per_dim = -0.5 * ((z - mean) / std) ** 2 - torch.log(std) - 0.5 * math.log(2 * math.pi)
    return per_dim.sum(dim=-1)


def buggy_diag_gaussian_log_prob(z: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """Exercise 6 ships this broken :func:`diag_gaussian_log_prob` for the learner to repair."""
    per_dim = -0.5 * ((z - mean) / std) ** 2 - torch.log(std ** 2) - 0.5 * math.log(2 * math.pi)
    return per_dim.sum(dim=-1)


def check_diag_gaussian_log_prob(fn: Callable[..., torch.Tensor], verbose: bool = True) -> Callable[..., torch.Tensor]:
    """Exercise 6 (find the bug): the repaired :func:`buggy_diag_gaussian_log_prob`."""
    require_callable("check_diag_gaussian_log_prob", fn)
    g = torch.Generator().manual_seed(10)
    z = torch.randn(5, 2, generator=g)
    cases = [
        Case("standard normal (mean 0, std 1)", (z, torch.zeros(2), torch.ones(2))),
        Case("shifted mean, std 1", (z, torch.tensor([1.0, -2.0]), torch.ones(2))),
        Case("std 0.5 and 3: the normaliser", (z, torch.zeros(2), torch.tensor([0.5, 3.0]))),
        Case("std 4 in 1-D, on a grid from -30 to 30", (torch.linspace(-30, 30, 6001)[:, None],
                                                               torch.zeros(1), torch.full((1,), 4.0))),
    ]
    hint = ["it is right whenever std = 1 and wrong otherwise, so the trouble is a term that vanishes at std = 1.",
            "the density's normaliser is 1 / (sqrt(2 pi) std) per dimension; its logarithm has log std once, "
            "not log of the variance."]
    return check_function("Exercise 6 (find the bug: a Gaussian log-density)", fn, diag_gaussian_log_prob, cases,
                          hint=hint, compare=lambda e, g: close(e, g, rtol=1e-5, atol=1e-5), verbose=verbose)[0]


@prediction
def check_origin_log_density_prediction(guess: Optional[float], verbose: bool = True) -> float:
    """Exercise 7 (predict, then check): the log-density of the 2-D standard normal at the origin."""
    truth = round(float(standard_normal_log_prob(torch.zeros(1, 2, dtype=torch.float64))[0]), 4)
    check_prediction("Exercise 7 (predict: the base density at its peak)", guess, truth, notebook="10",
                     variable="predicted_log_density", atol=0.01,
                     explanation="at z = 0 the quadratic term vanishes and what is left is the normaliser, "
                                 "-(D/2) log(2 pi) = -log(2 pi), about -1.838 for D = 2.", verbose=verbose)
    return truth


show_answer = answers_for("10")
