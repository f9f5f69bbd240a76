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

from .checking import Case, answers_for, check_function, check_prediction, close, keep_random_state, prediction
from .checking import require_callable

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


# --- comparisons -------------------------------------------------------------------------------

def _dtype_first(expected: Any, got: Any) -> Optional[str]:
    """A dtype mismatch, said plainly, before the values are compared."""
    if torch.is_tensor(expected) and torch.is_tensor(got) and got.dtype != expected.dtype:
        return f"expected dtype {expected.dtype} (the input's), got {got.dtype}"
    return None


def _per_sample(rtol: float, atol: float) -> Callable[[Any, Any], Optional[str]]:
    """One number per sample: a tensor [B] of the input's dtype, then the values."""
    def compare(expected: torch.Tensor, got: Any) -> Optional[str]:
        if not torch.is_tensor(got):
            return f"expected a tensor [B], got {type(got).__name__}"
        if got.shape != expected.shape:
            return f"expected shape {tuple(expected.shape)}, one value per sample, got {tuple(got.shape)}"
        return _dtype_first(expected, got) or close(expected, got, rtol=rtol, atol=atol)
    return compare


class _TraceResult:
    """A trace computed by some function: its value, the backward passes it took through ``f``, and (when the
    case asks) the gradient it passes to the field's parameters."""

    def __init__(self, value: Any, dim: int, passes: int, grads: Optional[tuple] = None, graph: bool = True) -> None:
        self.value, self.dim, self.passes, self.grads, self.graph = value, dim, passes, grads, graph


def _run_trace(fn: Callable, field: nn.Module, z: torch.Tensor, eps: Optional[torch.Tensor],
               differentiate: bool = False) -> _TraceResult:
    """Evaluate f = field(0.3, z) with autograd on z, call fn, count the backward passes through f and, with
    ``differentiate``, take the gradient of the result's sum with respect to the field's parameters."""
    z = z.detach().clone().requires_grad_(True)
    f = field(torch.tensor(0.3, dtype=z.dtype), z)
    passes = [0]
    f.register_hook(lambda grad: passes.__setitem__(0, passes[0] + 1))  # fires once per backward pass through f
    value = fn(f, z) if eps is None else fn(f, z, eps)
    counted = passes[0]
    dim = z.shape[1]
    if not torch.is_tensor(value):
        return _TraceResult(value, dim, counted)
    if not differentiate:
        return _TraceResult(value.detach(), dim, counted)
    if not value.requires_grad:
        return _TraceResult(value.detach(), dim, counted, graph=False)
    grads = torch.autograd.grad(value.sum(), tuple(field.parameters()), allow_unused=True, materialize_grads=True)
    return _TraceResult(value.detach(), dim, counted, grads)


def _trace_compare(max_passes: Callable[[_TraceResult], int], what: str) -> Callable[[Any, Any], Optional[str]]:
    values = _per_sample(1e-5, 1e-6)

    def compare(expected: _TraceResult, got: _TraceResult) -> Optional[str]:
        why = values(expected.value, got.value)
        if why:
            return why
        if got.passes > max_passes(expected):
            return f"right values, but {got.passes} backward passes through f where {what}"
        if expected.grads is None:
            return None
        if not got.graph:
            return ("the values are right but the result carries no graph: pass create_graph=True to "
                    "torch.autograd.grad, or training cannot backpropagate through the trace")
        why = close(expected.grads, got.grads, rtol=1e-5, atol=1e-6)
        return f"the gradient of the trace with respect to the field's parameters is wrong ({why})" if why else None
    return compare


# --- checkers ----------------------------------------------------------------------------------

def check_standard_normal_log_prob(fn: Callable, verbose: bool = True) -> Callable:
    """Exercise 1: the log-density of the standard Gaussian, per sample."""
    require_callable("check_standard_normal_log_prob", fn)
    cases = [
        Case("one value per sample: [5, 2] -> [5]", (_randn(5, 2, seed=1),)),
        Case("the origin: only the normaliser -(D/2) log(2 pi) is left (D = 3)",
             (torch.zeros(1, 3, dtype=torch.float64),)),
        Case("D = 7: the normaliser counts every dimension", (_randn(4, 7, seed=2),)),
        Case("D = 1", (_randn(6, 1, seed=4),)),
        Case("float32 in, float32 out (z's dtype)", (_randn(6, 2, dtype=torch.float32, seed=3),)),
    ]
    hint = ["the first failed case names the property: one value per sample, the normalising constant (it grows "
            "with D), or the dtype.",
            "the squared norm is a sum over the D entries of one sample (dim 1), never over the batch; the constant "
            "is log(2 pi) / 2 once per dimension; a Python number mixed into a tensor expression keeps z's dtype."]
    return check_function("Exercise 1 (standard normal log-density)", fn, standard_normal_log_prob, cases, hint=hint,
                          compare=_per_sample(1e-5, 1e-5), verbose=verbose)[0]


def _trace_problems() -> list[tuple[str, nn.Module, torch.Tensor]]:
    A = torch.tensor([[0.5, -2.0, 0.3], [1.0, -1.5, 0.0], [0.2, 0.7, 2.5]], dtype=torch.float64)
    return [
        ("a linear field z A^T: the trace is tr A = 1.5", _Linear(A), _randn(4, 3, seed=4)),
        ("MLP field, D = 2", _field(2, seed=5), _randn(5, 2, seed=6)),
        ("MLP field, D = 5", _field(5, seed=7), _randn(3, 5, seed=8)),
        ("MLP field, D = 2, float32", _field(2, dtype=torch.float32, seed=9), _randn(6, 2, dtype=torch.float32,
                                                                                      seed=10)),
    ]


@keep_random_state()
def check_exact_trace(fn: Callable, verbose: bool = True) -> Callable:
    """Exercise 2: the exact trace of df/dz per sample, by one autograd pass per dimension."""
    require_callable("check_exact_trace", fn)
    cases = [Case(label, (field, z, None)) for label, field, z in _trace_problems()]
    cases.append(Case("D = 4, batch 8: D backward passes, one per dimension (not one per sample)",
                      (_field(4, seed=11), _randn(8, 4, seed=12), None)))
    cases.append(Case("differentiable: the trace's gradient reaches the field's parameters (create_graph=True)",
                      (_field(3, seed=13), _randn(4, 3, seed=14), None), {"differentiate": True}))
    hint = ["the first failed case names the property: the values (only the Jacobian's diagonal, one trace per "
            "sample), the number of backward passes, or the graph that training needs.",
            "the gradient of the sum over the batch of output i gives, in row b, row i of sample b's Jacobian, so D "
            "calls of torch.autograd.grad serve the whole batch; keep entry i of each and add them up. Every call "
            "needs create_graph=True: for the next call and for training."]
    run = lambda f: (lambda *args, **kwargs: _run_trace(f, *args, **kwargs))  # noqa: E731
    _, report = check_function("Exercise 2 (exact trace)", run(fn), run(exact_trace), cases, hint=hint,
                               compare=_trace_compare(lambda e: e.dim, "one per dimension serves the whole batch"),
                               verbose=verbose, answer=exact_trace)
    return fn if report.ok else exact_trace


@keep_random_state()
def check_hutchinson_trace(fn: Callable, verbose: bool = True) -> Callable:
    """Exercise 3: Hutchinson's estimate eps^T (df/dz) eps with one vector-Jacobian product."""
    require_callable("check_hutchinson_trace", fn)
    cases = [Case(f"{label}, Rademacher probe", (field, z, _rademacher(*z.shape, dtype=z.dtype, seed=20 + k)))
             for k, (label, field, z) in enumerate(_trace_problems())]
    basis = torch.eye(3, dtype=torch.float64)[[0, 1, 2, 0]]
    cases += [
        Case("a Gaussian probe, D = 4", (_field(4, seed=11), _randn(5, 4, seed=12), _randn(5, 4, seed=13))),
        Case("the probe e_i picks the diagonal entry J_ii (a quadratic form, not a sum)",
             (_field(3, seed=15), _randn(4, 3, seed=16), basis)),
        Case("ONE vector-Jacobian product: one backward pass through f for the whole batch",
             (_field(5, seed=17), _randn(6, 5, seed=18), _rademacher(6, 5, seed=19))),
        Case("differentiable: the estimate's gradient reaches the field's parameters (create_graph=True)",
             (_field(3, seed=13), _randn(4, 3, seed=14), _rademacher(4, 3, seed=24)), {"differentiate": True}),
    ]
    hint = ["the first failed case names the property: the values (a quadratic form in eps, one per sample), the "
            "number of backward passes, or the graph that training needs.",
            "torch.autograd.grad with grad_outputs=eps gives every sample's row vector eps^T (df/dz) in one call; the "
            "estimate multiplies that row by eps once more and sums over the D entries of each sample. Pass "
            "create_graph=True."]
    run = lambda f: (lambda *args, **kwargs: _run_trace(f, *args, **kwargs))  # noqa: E731
    _, report = check_function("Exercise 3 (Hutchinson's estimator)", run(fn), run(hutchinson_trace), cases,
                               hint=hint, compare=_trace_compare(lambda e: 1, "one vector-Jacobian product is enough"),
                               verbose=verbose, answer=hutchinson_trace)
    return fn if report.ok else hutchinson_trace


def _run_dynamics(fn: Callable, field: nn.Module, t: torch.Tensor, z: torch.Tensor, grad_enabled: bool,
                  z_requires_grad: bool, delta: float = 0.0, upstream: bool = False) -> Any:
    """Call ``fn(field, t, (z, delta))``; with ``upstream`` z is computed from a leaf and the result is the
    gradient that flows back to that leaf (a solver's earlier steps), not the derivatives."""
    leaf = z.detach().clone().requires_grad_(z_requires_grad or upstream)
    z = 2.0 * leaf if upstream else leaf
    state = (z, torch.full((z.shape[0],), delta, dtype=z.dtype))
    with torch.set_grad_enabled(grad_enabled):
        out = fn(field, t, state)
    if upstream:
        if not isinstance(out, (tuple, list)) or not torch.is_tensor(out[0]) or not out[0].requires_grad:
            return ("no graph", out)
        (grad,) = torch.autograd.grad(out[0].sum(), leaf, allow_unused=True)
        return ("upstream", grad)
    if isinstance(out, (tuple, list)):
        return tuple(o.detach() if torch.is_tensor(o) else o for o in out)
    return out


def _dynamics_compare(expected: Any, got: Any) -> Optional[str]:
    if isinstance(expected, tuple) and expected and expected[0] == "upstream":
        if got[0] != "upstream" or got[1] is None:
            return ("f has no graph back to the z it was given: use z as it is when it already requires grad "
                    "(detach only a z that does not), or the solver's earlier steps get no gradient")
        why = close(expected[1], got[1], rtol=1e-5, atol=1e-6)
        return f"the gradient through z: {why}" if why else None
    if not isinstance(got, (tuple, list)) or len(got) != 2:
        return f"return the pair (f, d delta/dt), got {type(got).__name__}"
    for name, e, g in (("f", expected[0], got[0]), ("d delta/dt", expected[1], got[1])):
        why = _per_sample(1e-5, 1e-6)(e, g) if name != "f" else (
            _dtype_first(e, g) or close(e, g, rtol=1e-5, atol=1e-6))
        if why:
            return f"{name}: {why}"
    return None


@keep_random_state()
def check_cnf_dynamics(fn: Callable, verbose: bool = True) -> Callable:
    """Exercise 4: the augmented CNF dynamics d/dt (z, delta) = (f, -tr df/dz)."""
    require_callable("check_cnf_dynamics", fn)
    A = torch.tensor([[-0.3, -1.0], [1.2, -0.5]], dtype=torch.float64)
    t = lambda v, dtype=torch.float64: torch.tensor(v, dtype=dtype)  # noqa: E731
    cases = [
        Case("minus the trace: a linear field z A^T gives d delta/dt = -tr A = 0.8",
             (_Linear(A), t(0.0), _randn(4, 2, seed=14), True, False)),
        Case("MLP field, D = 2, z already requiring grad",
             (_field(2, seed=15), t(0.4), _randn(5, 2, seed=16), True, True)),
        Case("z without requires_grad (the first step of a solve)",
             (_field(3, seed=21), t(0.2), _randn(3, 3, seed=22), True, False)),
        Case("called inside torch.no_grad() (as a solver may): the trace needs enable_grad",
             (_field(3, seed=17), t(0.9), _randn(3, 3, seed=18), False, False)),
        Case("the current delta does not enter its derivative (delta = 5)",
             (_field(2, seed=23), t(0.5), _randn(4, 2, seed=24), True, False), {"delta": 5.0}),
        Case("a z that requires grad is used as it is: gradients flow back through it",
             (_field(2, seed=25), t(0.3), _randn(4, 2, seed=26), True, True), {"upstream": True}),
        Case("float32, D = 2", (_field(2, dtype=torch.float32, seed=19), t(0.1, torch.float32),
                                _randn(4, 2, dtype=torch.float32, seed=20), True, False)),
    ]
    hint = ["the first failed case names the property: the sign of the trace term, autograd switched off, a z "
            "that does or does not require grad, or the pair returned.",
            "the trace needs a graph from z to f even when the solver switched autograd off: compute f and the trace "
            "inside torch.enable_grad(), from a z that requires grad (a detached copy only when the given z does "
            "not); the log-density falls where the flow spreads points out, so delta moves by MINUS the trace."]
    run = lambda f: (lambda *args, **kwargs: _run_dynamics(f, *args, **kwargs))  # noqa: E731
    _, report = check_function("Exercise 4 (CNF dynamics)", run(fn), run(cnf_dynamics), cases, hint=hint,
                               compare=_dynamics_compare, verbose=verbose, answer=cnf_dynamics)
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
        Case("log N(z(t1)) MINUS delta(t1): a linear field, [0, 1], 8 steps",
             (_Linear(A), _randn(5, 2, seed=21), 1.0, 8)),
        Case("the base density at z(t1), not at x (MLP field, D = 2)",
             (_field(2, seed=22), _randn(6, 2, seed=23), 1.0, 8)),
        Case("step t1 / n_steps: [0, 0.5] in 4 steps, D = 3", (_field(3, seed=24), _randn(4, 3, seed=25), 0.5, 4)),
        Case("float32 x gives a float32 log p(x): [0, 2] in 10 steps",
             (_field(2, dtype=torch.float32, seed=26), _randn(5, 2, dtype=torch.float32, seed=27), 2.0, 10)),
    ]
    hint = ["the first failed case names the property: the sign of delta, where the base density is evaluated, "
            "the step size, or the dtype.",
            "solve the pair (x, a zero per sample) from 0 to t1 with fixed RK4 steps of t1 / n_steps, then evaluate "
            "the base log-density at the END state z(t1) and subtract delta(t1), the change of log p along the "
            "path. Make the time tensor with x's dtype and device."]
    run = lambda f: (lambda *args: _run_log_prob(f, *args))  # noqa: E731
    _, report = check_function("Exercise 5 (CNF log-likelihood)", run(fn), run(cnf_log_prob), cases, hint=hint,
                               compare=_per_sample(1e-5, 1e-5), verbose=verbose, answer=cnf_log_prob)
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
