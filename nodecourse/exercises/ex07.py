"""Checkers for notebook 07 (augmentation): zero augmentation of a batch, the first-order form of a
second-order field, the order-preservation test for 1-D flow maps, a linear field whose flow reflects the
line through an extra dimension, a function to repair that drops the augmented dimensions, and a
prediction of when a 2-D flow reflects.

Each ``check_*`` runs the learner's function against the reference below on labelled cases, one per
requirement of the exercise's statement, prints a report with a staged hint and returns the function to
go on with (the learner's when every case passed, else the reference). The references are public so a
notebook can also call them directly. Checkers leave the global random state as they found it.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Optional

import numpy as np
import torch

from .checking import (Case, answers_for, focused, check_function, check_prediction, keep_random_state, one_thread,
                       prediction, require_callable)

__all__ = [
    "show_answer",
    "augment",
    "second_order_field",
    "order_preserved",
    "reflection_matrix",
    "drop_augmentation",
    "buggy_drop_augmentation",
    "check_augment",
    "check_second_order_field",
    "check_order_preserved",
    "check_reflection_matrix",
    "check_drop_augmentation",
    "check_reflection_time_prediction",
]

Acceleration = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


# --------------------------------------------------------------------------------------------------
# references
# --------------------------------------------------------------------------------------------------


def augment(x: torch.Tensor, p: int) -> torch.Tensor:
    """``x [..., d]`` with ``p`` zeros appended along the last dimension: ``[..., d + p]``, on x's
    device and dtype, differentiable with respect to ``x``."""
    if not torch.is_tensor(x) or x.dim() == 0:
        raise TypeError(f"x must be a tensor of shape [..., d], got {type(x).__name__}.")
    if isinstance(p, bool) or not isinstance(p, int) or p < 0:
        raise ValueError(f"p must be an integer >= 0 (the number of zeros to append), got p={p!r}.")
    return torch.cat([x, x.new_zeros((*x.shape[:-1], p))], dim=-1)


def second_order_field(accel: Acceleration, z: torch.Tensor) -> torch.Tensor:
    """The first-order field of ``x'' = accel(x, v)`` at ``z = [x, v]``: returns ``[v, accel(x, v)]``.

    ``z`` is ``[..., 2d]`` (position first, then velocity, along the last dimension); ``accel`` takes
    ``x [..., d]`` and ``v [..., d]`` and returns ``[..., d]``.
    """
    if z.shape[-1] % 2:
        raise ValueError(f"z = [x, v] must have an even last dimension, got shape {tuple(z.shape)}.")
    d = z.shape[-1] // 2
    x, v = z[..., :d], z[..., d:]
    return torch.cat([v, accel(x, v)], dim=-1)


def order_preserved(x: torch.Tensor, y: torch.Tensor) -> bool:
    """Whether the samples ``y_i = phi(x_i)`` of a map of the line keep the order of distinct inputs:
    ``x_i < x_j  =>  y_i < y_j`` for every pair. ``x`` and ``y`` are ``[N]`` or ``[N, 1]``.

    The flow map of a 1-D ODE is strictly increasing, so ``False`` proves that no 1-D Neural ODE
    (of any width, trained for any time) maps these inputs to these outputs.
    """
    x, y = torch.as_tensor(x).reshape(-1), torch.as_tensor(y).reshape(-1)
    if x.shape != y.shape:
        raise ValueError(f"x and y must hold the same number of samples, got {x.numel()} and {y.numel()}.")
    ys = y[torch.argsort(x)]
    return bool((ys[1:] > ys[:-1]).all())


def reflection_matrix(T: float, d: int = 1) -> torch.Tensor:
    """A ``[2d, 2d]`` float64 matrix ``A`` whose flow ``exp(T A)`` maps ``[x, 0]`` to ``[-x, 0]``:
    a half turn in each plane ``(x_k, a_k)`` at angular speed ``pi / T``."""
    if not (isinstance(T, (int, float)) and not isinstance(T, bool) and math.isfinite(T) and T > 0):
        raise ValueError(f"T must be a finite positive time, got T={T!r}.")
    if isinstance(d, bool) or not isinstance(d, int) or d < 1:
        raise ValueError(f"d must be a positive integer (the input dimension), got d={d!r}.")
    eye = torch.eye(d, dtype=torch.float64)
    zero = torch.zeros(d, d, dtype=torch.float64)
    return (math.pi / T) * torch.cat([torch.cat([zero, -eye], 1), torch.cat([eye, zero], 1)], 0)


def drop_augmentation(z: torch.Tensor, d: int) -> torch.Tensor:
    """The first ``d`` entries of the last dimension of an augmented state ``z [..., d + p]``:
    ``[B, d + p]`` or a trajectory ``[T, B, d + p]`` -> ``[..., d]``."""
    return z[..., :d]


def buggy_drop_augmentation(z: torch.Tensor, d: int) -> torch.Tensor:
    """Exercise 5 ships this broken :func:`drop_augmentation` for the learner to repair."""
    return z[:, :d]


# --------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------


def _randn(*shape: int, seed: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def _same_tensor(expected: torch.Tensor, got: Any, rtol: float = 1e-6, atol: float = 1e-7) -> Optional[str]:
    """Same type, device, shape, dtype, values, and gradients kept when the reference keeps them."""
    if not torch.is_tensor(got):
        return f"expected a tensor, got {type(got).__name__}"
    if got.device != expected.device:
        return f"expected a tensor on x's device ({expected.device}), got one on {got.device}"
    if got.shape != expected.shape:
        return f"expected shape {tuple(expected.shape)}, got {tuple(got.shape)}"
    if got.dtype != expected.dtype:
        return f"expected dtype {expected.dtype} (the input's), got {got.dtype}"
    if expected.device.type == "meta":  # a meta tensor has a shape and a dtype but no values
        return None
    if not torch.allclose(got.detach(), expected.detach(), rtol=rtol, atol=atol):
        diff = (got.detach() - expected.detach()).abs().max().item()
        return f"values differ from the reference by up to {diff:.3g}"
    if expected.requires_grad and not got.requires_grad:
        return "the result is cut off from x's gradient (a copy that keeps no graph)"
    return None


# --------------------------------------------------------------------------------------------------
# exercise 1: zero augmentation
# --------------------------------------------------------------------------------------------------


def _augment_compare(expected: torch.Tensor, got: Any) -> Optional[str]:
    why = _same_tensor(expected, got)
    if why and torch.is_tensor(got) and got.shape == expected.shape and got.dtype == expected.dtype \
            and got.device == expected.device:
        for shift in range(1, expected.shape[-1]):
            if torch.equal(got.detach(), expected.detach().roll(shift, dims=-1)):
                return why + "; the zeros go after x, not before it"
    return why


def check_augment(fn: Callable[[torch.Tensor, int], torch.Tensor], verbose: bool = True
                  ) -> Callable[[torch.Tensor, int], torch.Tensor]:
    """Exercise 1: append ``p`` zeros to the last dimension of a batch."""
    require_callable("check_augment", fn)
    cases = [
        Case("p zeros appended to the last dimension: a batch [5, 2], p = 1", (_randn(5, 2, seed=1), 1)),
        Case("x unchanged in the first d entries, the zeros after it (1-D points [4, 1], p = 3, float64)",
             (_randn(4, 1, seed=2, dtype=torch.float64), 3)),
        Case("p = 0 returns x's values unchanged", (_randn(3, 2, seed=3), 0)),
        Case("any leading shape: [2, 3, 4], p = 2", (_randn(2, 3, 4, seed=4), 2)),
        Case("any leading shape: one point [3] without a batch dimension, p = 2", (_randn(3, seed=7), 2)),
        Case("gradients flow back to x", (_randn(6, 2, seed=5).requires_grad_(True), 2)),
        Case("the zeros take x's dtype (half precision [3, 2], p = 2)", (_randn(3, 2, seed=6).half(), 2)),
        Case("the zeros are made on x's device (x on the 'meta' device, which holds shapes but no values)",
             (torch.empty(4, 2, device="meta"), 3)),
    ]
    hint = ["the failed case names the requirement: where the zeros go, the shapes it must handle, the gradient, "
            "or the zeros' dtype and device. Try your function on a tensor of each kind and print the result's "
            "shape, dtype and device.",
            "build the zeros from x itself, so that they share its dtype and device (tensors have methods for "
            "that), with x's shape except p in the last dimension, and join them after x along the last "
            "dimension; avoid anything that copies x out of the graph."]
    with keep_random_state(), one_thread():
        _, report = check_function("Exercise 1 (zero augmentation)", fn, augment, cases, hint=hint,
                                   compare=_augment_compare, verbose=verbose)
    return fn if report.ok else augment


# --------------------------------------------------------------------------------------------------
# exercise 2: the second-order field
# --------------------------------------------------------------------------------------------------


def _spring(x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return -4.0 * x


def _damped_pendulum(x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return -torch.sin(x) - 0.3 * v


def _velocity_cubed(x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return 2.0 * x - v**3


def _coupled(x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return x.flip(-1) - 0.5 * v  # each coordinate pulled by the other one


def _field_compare(expected: torch.Tensor, got: Any) -> Optional[str]:
    why = _same_tensor(expected, got, rtol=1e-6, atol=1e-6)
    if why and torch.is_tensor(got) and got.shape == expected.shape:
        d = expected.shape[-1] // 2
        swapped = torch.cat([expected[..., d:], expected[..., :d]], dim=-1)
        if torch.allclose(got.detach().to(expected.dtype), swapped.detach(), atol=1e-6):
            return why + "; the halves are swapped: the first half of dz/dt is dx/dt = v, the second dv/dt"
        if torch.allclose(got.detach().to(expected.dtype)[..., :d], expected.detach()[..., :d], atol=1e-6):
            return why + " in the second half (dv/dt): accel takes the position first, then the velocity"
    return why


def check_second_order_field(fn: Callable[[Acceleration, torch.Tensor], torch.Tensor], verbose: bool = True
                             ) -> Callable[[Acceleration, torch.Tensor], torch.Tensor]:
    """Exercise 2: ``[v, accel(x, v)]`` from ``z = [x, v]``."""
    require_callable("check_second_order_field", fn)
    cases = [
        Case("the first half of dz/dt is the velocity v (a spring x'' = -4x, one point [1, 2])",
             (_spring, torch.tensor([[1.0, 0.5]]))),
        Case("the second half is accel(x, v), position first (a damped pendulum, a batch [6, 2])",
             (_damped_pendulum, _randn(6, 2, seed=6))),
        Case("halves of size d for d > 1: x'' = 2x - v^3 in 2-D, a batch [5, 4]",
             (_velocity_cubed, _randn(5, 4, seed=7))),
        Case("the same shape and dtype as z: coupled coordinates, float64 [3, 4]",
             (_coupled, _randn(3, 4, seed=8, dtype=torch.float64))),
        Case("any leading shape [2, 3, 6]", (_coupled, _randn(2, 3, 6, seed=9))),
        Case("one state [2d] without a batch dimension", (_velocity_cubed, _randn(4, seed=10))),
    ]
    hint = ["the failed case names the requirement: which half holds what, the order of accel's arguments, the "
            "size d of each half, or the shapes it must handle. Write z = [x, v] for d = 2 on paper and mark "
            "which entries are positions.",
            "split the LAST dimension of z in the middle (d = half its size), whatever comes before it; the "
            "derivative of the positions is the velocities, the derivative of the velocities is the "
            "acceleration, and the two go back together in that order along the last dimension."]
    with keep_random_state(), one_thread():
        _, report = check_function("Exercise 2 (the second-order field)", fn, second_order_field, cases, hint=hint,
                                   compare=_field_compare, verbose=verbose)
    return fn if report.ok else second_order_field


# --------------------------------------------------------------------------------------------------
# exercise 3: can a 1-D flow do it?
# --------------------------------------------------------------------------------------------------


def _as_bool(value: Any) -> Optional[bool]:
    """``value`` as a Python bool (a bool, or a one-element boolean tensor), or None if it is neither."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if torch.is_tensor(value) and value.numel() == 1 and value.dtype == torch.bool:
        return bool(value)
    return None


def _bool_compare(expected: tuple[str, bool], got: tuple[str, Any]) -> Optional[str]:
    focus, want = expected
    result = got[1]
    if focus == "bool" and type(result) is not bool:
        return f"got {type(result).__name__} {result!r}; return a Python bool"
    value = _as_bool(result)
    if value is None:
        return f"expected True or False, got {type(result).__name__} {result!r}"
    return None if value == want else f"expected {want}, got {value}"


def _samples(seed: int, n: int, phi: Callable[[torch.Tensor], torch.Tensor], shuffle: bool = True,
             column: str = "") -> tuple[torch.Tensor, torch.Tensor]:
    """``(x, y = phi(x))`` for ``n`` distinct points of [-2, 2]; ``column`` says which of them is ``[N, 1]``."""
    x = 4 * torch.rand(n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) - 2
    if not shuffle:
        x = x.sort().values
    y = phi(x)
    return (x[:, None] if "x" in column else x), (y[:, None] if "y" in column else y)


def _bump_in_the_middle(x: torch.Tensor) -> torch.Tensor:
    """Increasing, except that the order of two neighbours near 0 is swapped."""
    y = x.clone()
    order = torch.argsort(x)
    mid = len(x) // 2
    i, j = order[mid], order[mid + 1]
    y[i], y[j] = x[j], x[i]
    return y


def check_order_preserved(fn: Callable[[torch.Tensor, torch.Tensor], bool], verbose: bool = True
                          ) -> Callable[[torch.Tensor, torch.Tensor], bool]:
    """Exercise 3: do the samples of a map of the line keep the order of their inputs?"""
    require_callable("check_order_preserved", fn)
    cases = [
        Case("True for an increasing map: x -> x^3 + x, sorted inputs",
             ("value", *_samples(10, 50, lambda x: x**3 + x, shuffle=False))),
        Case("False for the reflection x -> -x", ("value", *_samples(11, 50, lambda x: -x))),
        Case("inputs in any order: x -> tanh(3x), shuffled", ("value", *_samples(12, 50, lambda x: torch.tanh(3 * x)))),
        Case("[N, 1] columns: x -> x^2 (increasing only for x > 0)",
             ("value", *_samples(13, 40, lambda x: x**2, column="xy"))),
        Case("every pair counts: increasing except one swapped pair of neighbours",
             ("value", *_samples(14, 60, _bump_in_the_middle))),
        Case("strictly: a constant map does not keep the order",
             ("value", *_samples(15, 20, lambda x: torch.zeros_like(x) + 0.5))),
        Case("x a column [N, 1], y a vector [N]: exp(x), shuffled",
             ("value", *_samples(16, 30, torch.exp, column="x"))),
        Case("a single sample keeps the order", ("value", torch.tensor([0.3]), torch.tensor([-0.7]))),
        Case("returns a Python bool", ("bool", *_samples(17, 10, lambda x: 2 * x))),
    ]
    hint = ["the failed case names the requirement: the order the inputs come in, their shapes, every pair rather "
            "than the two ends, strict order, or the type returned. Try your function on five points you sort "
            "by hand.",
            "put the outputs in the order of their inputs first (argsort the flattened inputs), then every "
            "neighbour must be strictly larger than the one before it; a tensor comparison gives a tensor, which "
            "needs turning into a Python bool."]
    with keep_random_state(), one_thread():
        _, report = check_function("Exercise 3 (order preservation)", focused(fn), focused(order_preserved), cases,
                                   hint=hint, compare=_bool_compare, verbose=verbose, answer=order_preserved)
    return fn if report.ok else order_preserved


# --------------------------------------------------------------------------------------------------
# exercise 4: a reflection by a linear flow in one more dimension
# --------------------------------------------------------------------------------------------------


def _matrix_runner(fn: Callable[..., torch.Tensor]) -> Callable[[str, float, int], tuple[str, float, int, Any]]:
    def run(focus: str, T: float, d: int) -> tuple[str, float, int, Any]:
        return focus, T, d, fn(T, d)
    return run


def _reflects(expected: tuple[str, float, int, Any], got: tuple[str, float, int, Any]) -> Optional[str]:
    """``exp(T A)`` must send ``[x, 0]`` to ``[-x, *]``: its top-left ``d x d`` block is ``-I``."""
    focus, T, d, A = got
    if not torch.is_tensor(A):
        return f"expected a [{2 * d}, {2 * d}] tensor, got {type(A).__name__}"
    if A.shape != (2 * d, 2 * d):
        return (f"expected shape ({2 * d}, {2 * d}) (the state [x, a] has d = {d} inputs and {d} extra "
                f"dimensions), got {tuple(A.shape)}")
    if focus == "dtype" and A.dtype != torch.float64:
        return f"expected a float64 matrix, got {A.dtype}"
    A = A.detach().to("cpu", torch.float64)
    if not torch.isfinite(A).all():
        return "the matrix has non-finite entries"
    flow = torch.linalg.matrix_exp(T * A)
    block = flow[:d, :d]
    err = (block + torch.eye(d, dtype=torch.float64)).abs().max().item()
    if err > 1e-6:
        diag = ", ".join(f"{v:.3g}" for v in block.diagonal().tolist()[:3])
        return (f"exp(T A) maps [x, 0] to [M x, ...] with M off -I by {err:.3g} (diagonal of M: {diag}); "
                "the first d outputs must be exactly -x at time T")
    return None


def check_reflection_matrix(fn: Callable[[float, int], torch.Tensor], verbose: bool = True
                            ) -> Callable[[float, int], torch.Tensor]:
    """Exercise 4: a linear field ``dz/dt = A z`` on ``[x, a]`` whose time-``T`` flow sends ``x`` to ``-x``."""
    require_callable("check_reflection_matrix", fn)
    cases = [
        Case("exp(T A) sends [x, 0] to [-x, *] for every x: T = 1, d = 1", ("flow", 1.0, 1)),
        Case("at time T, not at time 1: T = 2, d = 1", ("flow", 2.0, 1)),
        Case("a [2d, 2d] matrix for d inputs: T = 0.5, d = 2", ("flow", 0.5, 2)),
        Case("T = 3, d = 3", ("flow", 3.0, 3)),
        Case("a float64 matrix (T = 1.5, d = 1)", ("dtype", 1.5, 1)),
    ]
    hint = ["the failed case names the requirement: the flow at time T, the size 2d x 2d, or the dtype. Compute "
            "exp(T A) for your matrix with torch.linalg.matrix_exp and look at its top-left d x d block.",
            "in each plane (x_k, a_k) a rotation by half a turn sends (x_k, 0) to (-x_k, 0); a linear field "
            "that rotates the plane at angular speed w turns it by the angle w T in time T, so choose w from "
            "T; the d planes do not interact."]
    with keep_random_state(), one_thread():
        _, report = check_function("Exercise 4 (a reflection by a flow)", _matrix_runner(fn),
                                   _matrix_runner(reflection_matrix), cases, hint=hint, compare=_reflects,
                                   verbose=verbose, answer=reflection_matrix)
    return fn if report.ok else reflection_matrix


# --------------------------------------------------------------------------------------------------
# exercise 5 (find the bug): dropping the augmented dimensions
# --------------------------------------------------------------------------------------------------


def _drop_reference(z: torch.Tensor, d: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(the first d entries of the last dimension, the last d entries)``."""
    return drop_augmentation(z, d), z[..., -d:]


def _drop_compare(expected: tuple[torch.Tensor, torch.Tensor], got: Any) -> Optional[str]:
    want, last = expected
    why = _same_tensor(want, got)
    if why and torch.is_tensor(got) and got.shape == last.shape and torch.equal(got, last):
        return why + ": these are the LAST d entries, the augmented ones"
    return why


def check_drop_augmentation(fn: Callable[..., torch.Tensor], verbose: bool = True) -> Callable[..., torch.Tensor]:
    """Exercise 5 (find the bug): the repaired :func:`buggy_drop_augmentation`."""
    require_callable("check_drop_augmentation", fn)
    g = torch.Generator().manual_seed(7)
    cases = [
        Case("a batch of states [B, d + p] -> [B, d] (the author's test)", (torch.randn(6, 3, generator=g), 1)),
        Case("a trajectory [T, B, d + p] -> [T, B, d] (the solver's output)", (torch.randn(5, 6, 3, generator=g), 1)),
        Case("a trajectory with d = 2, p = 3", (torch.randn(4, 2, 5, generator=g), 2)),
        Case("one state [d + p] -> [d]", (torch.randn(4, generator=g), 2)),
        Case("the FIRST d entries, the state, not the augmented ones (d = 2, p = 2)",
             (torch.randn(3, 4, generator=g), 2)),
    ]
    hint = ["it is right for a batch of states and wrong for a trajectory: which dimension holds the augmented "
            "entries in each?",
            "the augmented entries are always in the LAST dimension, whatever comes before it (time, batch or "
            "nothing); index that dimension however many come before it, not dimension 1."]
    with keep_random_state(), one_thread():
        _, report = check_function("Exercise 5 (find the bug: dropping the augmented dimensions)", fn,
                                   _drop_reference, cases, hint=hint, compare=_drop_compare, verbose=verbose,
                                   answer=drop_augmentation)
    return fn if report.ok else drop_augmentation


# --------------------------------------------------------------------------------------------------
# exercise 6 (predict, then check): when a 2-D flow reflects
# --------------------------------------------------------------------------------------------------


@prediction
def check_reflection_time_prediction(guess: Optional[float], verbose: bool = True) -> float:
    """Exercise 6 (predict, then check): the smallest T > 0 for which the linear flow of
    A = pi [[0, -1], [1, 0]] maps (x, 0) to (-x, 0), found by scanning T."""
    A = math.pi * torch.tensor([[0.0, -1.0], [1.0, 0.0]], dtype=torch.float64)
    e1 = torch.tensor([1.0, 0.0], dtype=torch.float64)
    for T in torch.arange(1, 3001, dtype=torch.float64) / 1000:
        if float((torch.linalg.matrix_exp(T * A) @ e1 + e1).norm()) < 2e-3:
            break
    truth = round(float(T), 3)
    check_prediction("Exercise 6 (predict: when a 2-D flow reflects)", guess, truth, notebook="07",
                     variable="predicted_time", atol=0.02,
                     explanation="e^{TA} is a rotation by the angle pi T; (x, 0) lands on (-x, 0) after half a turn, "
                                 "at T = 1. The extra dimension gives the flow room to go around; the 1-D flow "
                                 "cannot, because x = 0 is a fixed point it cannot cross.", verbose=verbose)
    return truth


show_answer = answers_for("07")
