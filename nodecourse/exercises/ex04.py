"""Checkers for 04_adjoint_method: the adjoint of a linear ODE, the augmented dynamics, the memory a
checkpointed adjoint keeps (predicted in closed form, checked against the lecture's meter ``saved_bytes``),
and a complete adjoint gradient by one reverse solve.

Each ``check_*`` runs the learner's function against the reference on several cases, prints a
report and returns the function to go on with (the learner's when it passes, else the reference).
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Callable, Optional

import torch
from torch import nn

from nodecourse.adjoint import odeint_adjoint
from nodecourse.benchmarking import saved_tensor_bytes as saved_bytes  # the lecture's meter (its section 1)
from nodecourse.models import MLP, ODEFunc
from nodecourse.solvers import odeint

from .checking import Case, check_function, check_prediction, prediction, close, keep_random_state, one_thread, require_callable
from .checking import answers_for

__all__ = ["show_answer", 
    "adjoint_linear", "augmented_dynamics", "saved_bytes", "checkpointed_bytes", "adjoint_gradients",
    "check_adjoint_linear", "check_augmented_dynamics", "check_checkpointed_bytes", "check_adjoint_gradients",
    "buggy_augmented_dynamics", "check_memory_ratio_prediction",
]


# --- references --------------------------------------------------------------------------------

def adjoint_linear(A: torch.Tensor, a1: torch.Tensor, t0: float, t1: float) -> torch.Tensor:
    """a(t0) = dL/dh(t0) for dh/dt = A h, given a(t1) = dL/dh(t1).

    ``A`` is ``[D, D]``; ``a1`` is ``[D]`` or a batch of row vectors ``[B, D]``; returns ``a1``'s shape.
    The adjoint ODE da/dt = -A^T a, solved from t1 back to t0, gives a(t0) = expm(A^T (t1 - t0)) a(t1)
    (for rows: a1 @ expm(A (t1 - t0))).
    """
    if not torch.is_tensor(A) or A.dim() != 2 or A.shape[0] != A.shape[1]:
        raise ValueError(f"A must be a square matrix [D, D], got {tuple(A.shape) if torch.is_tensor(A) else type(A).__name__}.")
    if not torch.is_tensor(a1) or a1.dim() not in (1, 2) or a1.shape[-1] != A.shape[0]:
        raise ValueError(
            f"a1 must be [D] or [B, D] with D = {A.shape[0]} (the size of A), got "
            f"{tuple(a1.shape) if torch.is_tensor(a1) else type(a1).__name__}."
        )
    return a1 @ torch.linalg.matrix_exp(A * (float(t1) - float(t0)))


def augmented_dynamics(func: nn.Module, t: torch.Tensor, h: torch.Tensor,
                       a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, ...]]:
    """The right-hand side of the augmented adjoint system at one time.

    Returns ``(f(t, h), -a^T df/dh, (-a^T df/dtheta_1, ...))``: the first two shaped like ``h``, the
    last a tuple shaped like ``tuple(func.parameters())`` (zeros for a parameter ``f`` does not use).
    One vector-Jacobian product (``torch.autograd.grad`` with ``grad_outputs=-a``) gives both.
    """
    params = tuple(func.parameters())
    with torch.enable_grad():
        h = h.detach().requires_grad_(True)
        f = func(t, h)
        vjps = torch.autograd.grad(f, (h, *params), grad_outputs=-a, allow_unused=True)
    vjps = tuple(torch.zeros_like(x) if v is None else v for x, v in zip((h, *params), vjps))
    return f.detach(), vjps[0], vjps[1:]


def buggy_augmented_dynamics(func: nn.Module, t: torch.Tensor, h: torch.Tensor,
                             a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, ...]]:
    """Exercise 2 ships this broken :func:`augmented_dynamics` for the learner to repair."""
    params = tuple(func.parameters())
    h = h.detach().requires_grad_(True)
    f = func(t, h)
    vjps = torch.autograd.grad(f, (h, *params), grad_outputs=-a, allow_unused=True)
    vjps = tuple(torch.zeros_like(x) if v is None else v for x, v in zip((h, *params), vjps))
    return f.detach(), vjps[0], vjps[1:]


def checkpointed_bytes(y0: torch.Tensor, n_checkpoints: int) -> int:
    """The bytes ``saved_bytes`` measures for ``odeint_adjoint(func, y0, t)`` with ``n_checkpoints`` output
    times between the two ends, ``t`` a 1-D tensor of ``y0``'s dtype, ``y0`` needing no gradient.

    The adjoint keeps for backward only the output times and the output states, whatever the step count
    and the vector field: ``n_checkpoints + 2`` of each, so ``(n_checkpoints + 2) (y0.numel() + 1)``
    numbers of ``y0.element_size()`` bytes.
    """
    if not torch.is_tensor(y0) or not y0.is_floating_point():
        raise TypeError(f"y0 must be a floating tensor, got {getattr(y0, 'dtype', type(y0).__name__)}.")
    if isinstance(n_checkpoints, bool) or not isinstance(n_checkpoints, numbers.Integral) or n_checkpoints < 0:
        raise ValueError(f"n_checkpoints must be a whole number >= 0, got {n_checkpoints!r}.")
    return (int(n_checkpoints) + 2) * (y0.numel() + 1) * y0.element_size()


def adjoint_gradients(func: nn.Module, h0: torch.Tensor, t0: float, t1: float, grad_h1: torch.Tensor,
                      rtol: float = 1e-9, atol: float = 1e-10) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """``(dL/dh0, (dL/dtheta_1, ...))`` for a loss with ``dL/dh(t1) = grad_h1``, by the adjoint method.

    Solves h forwards (no graph), then the augmented state [h, a, g] from t1 back to t0 with
    ``nodecourse.odeint`` (dopri5, the given tolerances): a(t0) = dL/dh0, g(t0) = dL/dtheta.
    """
    params = tuple(func.parameters())
    t = torch.tensor([float(t0), float(t1)], dtype=h0.dtype, device=h0.device)
    with torch.no_grad():
        h1 = odeint(func, h0, t, rtol=rtol, atol=atol)[-1]

    def dynamics(s, state):
        f, a_dot, g_dot = augmented_dynamics(func, s, state[0], state[1])
        return (f, a_dot, *g_dot)

    state = (h1, grad_h1, *[torch.zeros_like(p) for p in params])
    solution = odeint(dynamics, state, t.flip(0), rtol=rtol, atol=atol)
    return solution[1][-1], tuple(part[-1] for part in solution[2:])


# --- test problems -----------------------------------------------------------------------------

def _field(sizes: list[int], dtype: torch.dtype, seed: int, time_dependent: bool = False,
           activation: type[nn.Module] = nn.Tanh) -> ODEFunc:
    torch.manual_seed(seed)
    return ODEFunc(MLP(sizes, activation=activation), time_dependent=time_dependent).to(dtype)


class _WithUnusedParameter(nn.Module):
    """A vector field with a parameter it never uses: its gradient must be zeros, not None."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = _field([2, 8, 2], torch.float64, seed=7)
        self.unused = nn.Parameter(torch.ones(3, dtype=torch.float64))

    def forward(self, t, h):
        return self.inner(t, h)


def _randn(*shape: int, dtype: torch.dtype = torch.float64, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, dtype=dtype, generator=torch.Generator().manual_seed(seed))


# --- checkers ----------------------------------------------------------------------------------

def check_adjoint_linear(fn: Callable, verbose: bool = True) -> Callable:
    """Exercise 1: a(t0) for dh/dt = A h from the matrix exponential."""
    require_callable("check_adjoint_linear", fn)
    rotation = torch.tensor([[0.0, -1.0], [1.0, 0.0]], dtype=torch.float64)
    cases = [
        Case("rotation A, a1 [2], [0, 1]", (rotation, torch.tensor([1.0, 0.0], dtype=torch.float64), 0.0, 1.0)),
        Case("non-symmetric 3x3 A, a1 [3], [0, 2]", (_randn(3, 3, seed=1), _randn(3, seed=2), 0.0, 2.0)),
        Case("batch of row vectors a1 [4, 3]", (_randn(3, 3, seed=3), _randn(4, 3, seed=4), 0.5, 1.5)),
        Case("float32, t0 > t1 (a backwards interval)", (_randn(2, 2, dtype=torch.float32, seed=5),
                                                        _randn(2, dtype=torch.float32, seed=6), 1.0, 0.0)),
    ]
    hint = ("a(t0) = expm(A^T (t1 - t0)) a(t1): mind the transpose (the adjoint equation is "
            "da/dt = -A^T a) and the sign of the time difference; for a batch [B, D] of row vectors "
            "that is a1 @ expm(A (t1 - t0)). torch.linalg.matrix_exp computes expm.")
    return check_function("Exercise 1 (adjoint of a linear ODE)", fn, adjoint_linear, cases, hint,
                          compare=lambda e, g: close(e, g, rtol=1e-5, atol=1e-6), verbose=verbose)[0]


@keep_random_state()
def check_augmented_dynamics(fn: Callable, verbose: bool = True) -> Callable:
    """Exercise 2: (f, -a^T df/dh, -a^T df/dtheta) by vector-Jacobian products."""
    require_callable("check_augmented_dynamics", fn)
    time_field = _field([3, 16, 2], torch.float64, seed=2, time_dependent=True)
    cases = [
        Case("MLP 2-16-2, float32, batch 5", (_field([2, 16, 2], torch.float32, seed=1), torch.tensor(0.0),
                                            _randn(5, 2, dtype=torch.float32, seed=1),
                                            _randn(5, 2, dtype=torch.float32, seed=2))),
        Case("MLP 3-8-8-3 with Softplus, float64, one state [3]",
             (_field([3, 8, 8, 3], torch.float64, seed=3, activation=nn.Softplus), torch.tensor(0.3, dtype=torch.float64),
              _randn(3, seed=3), _randn(3, seed=4))),
        Case("time-dependent field at t = 0.7, batch 4", (time_field, torch.tensor(0.7, dtype=torch.float64),
                                                        _randn(4, 2, seed=5), _randn(4, 2, seed=6))),
        Case("a field with an unused parameter (expects zeros for it)",
             (_WithUnusedParameter(), torch.tensor(0.0, dtype=torch.float64), _randn(3, 2, seed=7), _randn(3, 2, seed=8))),
        Case("called with autograd disabled, as in odeint_adjoint's backward pass",
             (_field([2, 16, 2], torch.float64, seed=9), torch.tensor(0.2, dtype=torch.float64),
              _randn(4, 2, seed=9), _randn(4, 2, seed=10)), {"_no_grad": True}),
        Case("f is returned detached (no graph kept alive between solver steps)",
             (_field([2, 8, 2], torch.float64, seed=10), torch.tensor(0.0, dtype=torch.float64),
              _randn(3, 2, seed=11), _randn(3, 2, seed=12)), {"_detached": True}),
    ]

    def guarded(func, t, h, a, _no_grad=False, _detached=False):
        for p in func.parameters():
            p.grad = None
        try:
            with torch.set_grad_enabled(not _no_grad):
                out = fn(func, t, h, a)
        except RuntimeError as exc:
            if _no_grad and "does not require grad" in str(exc):
                raise RuntimeError("under torch.no_grad() your function cannot differentiate f (autograd is off, so "
                                   "f has no graph): evaluate f and its vector-Jacobian product inside "
                                   "torch.enable_grad()") from None
            raise
        if any(p.grad is not None for p in func.parameters()):
            raise ValueError("the parameters' .grad was filled: use torch.autograd.grad(...) instead of "
                             ".backward(), which accumulates into .grad across calls")
        if _detached and isinstance(out, (tuple, list)) and out and torch.is_tensor(out[0]) and out[0].requires_grad:
            raise ValueError("f is still attached to the graph (f.requires_grad is True): the statement asks for "
                             "f detached, or every solver step keeps the field's graph alive")
        return out

    def reference(func, t, h, a, _no_grad=False, _detached=False):
        with torch.set_grad_enabled(not _no_grad):
            return augmented_dynamics(func, t, h, a)

    hint = ["the failed cases name the property: the values (signs, shapes, zeros for an unused parameter), the "
            "call with autograd switched off, or a result still attached to the graph.",
            "odeint_adjoint's backward pass runs with autograd off, yet this function must differentiate f: "
            "switch autograd back on locally around the evaluation and the vector-Jacobian product "
            "(a context manager or a decorator from torch does it); hand back f without its graph."]
    def compare(expected, got):
        why = close(expected, got, rtol=1e-5, atol=1e-6)
        if why and isinstance(got, (tuple, list)) and len(got) == 3 and torch.is_tensor(got[1]) \
                and got[1].shape == expected[1].shape and close(-expected[1], got[1], rtol=1e-5, atol=1e-6) is None:
            return "a_dot has the opposite sign: the adjoint runs da/dt = -a df/dh (and g likewise, -a df/dtheta)"
        return why

    _, report = check_function("Exercise 2 (find the bug: augmented dynamics)", guarded, reference, cases, hint,
                               compare=compare, verbose=verbose,
                               answer=augmented_dynamics)
    return fn if report.ok else augmented_dynamics


@dataclass
class _Measured:
    """What the meter measured for one checkpointed adjoint solve, and the sizes it depends on."""

    bytes: int
    n_checkpoints: int
    numel: int
    element_size: int


def _checkpointed_solve_bytes(y0: torch.Tensor, n_checkpoints: int) -> _Measured:
    """Measure with ``saved_bytes``: a small MLP field on ``y0``'s last dimension, dopri5, outputs at t0 = 0,
    ``n_checkpoints`` evenly spaced times and t1 = 1 (a tensor of ``y0``'s dtype)."""
    width = y0.shape[-1]
    func = _field([width, 8, width], y0.dtype, seed=20 + n_checkpoints)
    t = torch.linspace(0.0, 1.0, n_checkpoints + 2, dtype=y0.dtype)
    with one_thread():
        measured = saved_bytes(lambda: odeint_adjoint(func, y0, t, rtol=1e-5, atol=1e-6))
    return _Measured(measured, n_checkpoints, y0.numel(), y0.element_size())


def _compare_bytes(expected: _Measured, got: object) -> Optional[str]:
    """The measured bytes against the prediction, naming the usual miscount when there is one."""
    if isinstance(got, bool) or not isinstance(got, numbers.Integral):
        return f"return the number of bytes as an int, got {type(got).__name__} {got!r}"
    got = int(got)
    if got == expected.bytes:
        return None
    n, numel, size = expected.n_checkpoints, expected.numel, expected.element_size
    why = f"measured {expected.bytes} bytes, you predicted {got}"
    if got == (n + 2) * numel * size:
        return f"{why}: the output times are saved too"
    if size != 4 and got * size == expected.bytes * 4:
        return f"{why}: a number of this dtype takes {size} bytes, not 4"
    per_output = (numel + 1) * size
    if got % per_output == 0:
        return f"{why}, which is {got // per_output} outputs' worth; this solve returns {n + 2} outputs"
    return why


@keep_random_state()
def check_checkpointed_bytes(fn: Callable, verbose: bool = True) -> Callable:
    """Exercise 3: the memory a checkpointed adjoint keeps, predicted in closed form, against the meter."""
    require_callable("check_checkpointed_bytes", fn)
    cases = [
        Case("a batch [16, 2] of float32 states, no checkpoints (the two ends only)",
             (_randn(16, 2, dtype=torch.float32, seed=21), 0)),
        Case("the same batch with 10 checkpoints", (_randn(16, 2, dtype=torch.float32, seed=22), 10)),
        Case("float64 states [8, 3], 3 checkpoints", (_randn(8, 3, seed=23), 3)),
        Case("one state [5] without a batch dimension, 4 checkpoints", (_randn(5, dtype=torch.float32, seed=24), 4)),
        Case("a batch of images [4, 1, 6, 6], 2 checkpoints", (_randn(4, 1, 6, 6, dtype=torch.float32, seed=25), 2)),
    ]
    hint = ["the failed case names what your count misses: how many outputs the solve returns, what else it "
            "saves besides the states, the bytes of one number of the dtype, or a state that is not [B, D].",
            "Section 6 of the lecture: the adjoint keeps the output states and the output times for backward, "
            "nothing per step. Count every output time (the two ends as well), every number of every state, and "
            "y0.element_size() bytes per number."]
    _, report = check_function("Exercise 3 (the memory of a checkpointed adjoint)", fn, _checkpointed_solve_bytes,
                               cases, hint, compare=_compare_bytes, verbose=verbose, answer=checkpointed_bytes)
    return fn if report.ok else checkpointed_bytes


@keep_random_state()
def check_adjoint_gradients(fn: Callable, verbose: bool = True) -> Callable:
    """Exercise 5: dL/dh0 and dL/dtheta by one reverse solve of the augmented state."""
    require_callable("check_adjoint_gradients", fn)
    cases = [
        Case("MLP 2-16-2, batch 4, [0, 1]", (_field([2, 16, 2], torch.float64, seed=11), _randn(4, 2, seed=11),
                                           0.0, 1.0, _randn(4, 2, seed=12))),
        Case("time-dependent field, [0.5, 1.5]", (_field([3, 16, 2], torch.float64, seed=12, time_dependent=True),
                                                 _randn(3, 2, seed=13), 0.5, 1.5, _randn(3, 2, seed=14))),
        Case("one state [3], MLP 3-8-3", (_field([3, 8, 3], torch.float64, seed=13), _randn(3, seed=15),
                                         0.0, 2.0, _randn(3, seed=16))),
        Case("a backwards interval [1, 0]", (_field([2, 16, 2], torch.float64, seed=14), _randn(4, 2, seed=17),
                                            1.0, 0.0, _randn(4, 2, seed=18))),
    ]
    hint = ["compare the failed cases: a time-dependent field, one state without a batch, an interval run "
            "backwards; the gradient must hold for each.",
            "the reverse solve starts at t1 from (h(t1), dL/dh(t1), zeros for the parameters) and runs to t0; "
            "h(t1) comes from a forward solve that keeps no graph; your augmented_dynamics is its vector field."]
    return check_function("Exercise 5 (adjoint gradients)", fn, adjoint_gradients, cases, hint,
                          compare=lambda e, g: close(e, g, rtol=1e-5, atol=1e-7), verbose=verbose)[0]


@prediction
@keep_random_state()
def check_memory_ratio_prediction(guess: Optional[float], verbose: bool = True) -> float:
    """Exercise 4 (predict, then check): saved bytes of backprop through rk4 with 100 steps over 10 steps."""
    with one_thread():
        torch.manual_seed(0)
        func = ODEFunc(MLP([2, 32, 2]))
        y0 = torch.randn(16, 2, requires_grad=True)
        span = torch.tensor([0.0, 1.0])
        kept = [saved_bytes(lambda n=n: odeint(func, y0, span, method="rk4", options={"step_size": 1 / n}))
                for n in (10, 100)]
    truth = round(kept[1] / kept[0], 2)
    check_prediction("Exercise 4 (predict: memory of backprop)", guess, truth, notebook="04",
                     variable="predicted_ratio", rtol=0.15,
                     explanation="backpropagation keeps every stage's activations of every step until backward, "
                                 "so the saved memory grows in proportion to the number of steps (10x the steps, "
                                 "about 10x the bytes); the adjoint keeps a constant amount.", verbose=verbose)
    return truth


show_answer = answers_for("04")
