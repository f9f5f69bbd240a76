"""Checkers for notebook 01 (dynamical systems): a vector field, Picard iteration, Lipschitz bounds.

Each ``check_*`` runs the learner's function against the reference below on several cases, prints a
report and returns the function to go on with (the learner's when every case passed, else the
reference). The references are public so a notebook can also call them directly.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Optional

import torch
from torch import nn

from nodecourse.data import pendulum_field

from .checking import Case, check_function, close, require_callable
from .checking import answers_for, check_prediction, keep_random_state, one_thread, prediction

__all__ = ["show_answer", "autonomous_field", "buggy_autonomous_field", "check_autonomous_field", "check_area_factor_prediction", 
    "damped_pendulum",
    "picard_iteration",
    "lipschitz_lower_bound",
    "lipschitz_upper_bound",
    "ACTIVATION_LIPSCHITZ",
    "check_damped_pendulum",
    "check_picard_iteration",
    "check_lipschitz_lower_bound",
    "check_lipschitz_upper_bound",
]

Field = Callable[[Any, torch.Tensor], torch.Tensor]


# --------------------------------------------------------------------------------------------------
# references
# --------------------------------------------------------------------------------------------------


def damped_pendulum(t: torch.Tensor | float, y: torch.Tensor, g_over_l: float = 1.0,
                    damping: float = 0.0) -> torch.Tensor:
    """The damped pendulum's field: [..., 2] states (theta, omega) -> [..., 2] velocities.

    dtheta/dt = omega, domega/dt = -(g/l) sin(theta) - damping * omega (as ``nodecourse.data``).
    """
    return pendulum_field(t, y, g_over_l=g_over_l, damping=damping)


def picard_iteration(f: Field, y0: torch.Tensor, t: torch.Tensor, n_iter: int) -> torch.Tensor:
    """``n_iter`` Picard iterations on the grid ``t`` [T]; returns the last iterate [T, *y0.shape].

    Iterate 0 is ``y0`` at every grid time; then ``y_{k+1}(t_i) = y0 + int_{t_0}^{t_i} f(s, y_k(s)) ds``
    with the integral by the cumulative trapezoid rule on the grid and ``f`` called as ``f(t[i], y_k[i])``.
    """
    if isinstance(n_iter, bool) or not isinstance(n_iter, int) or n_iter < 0:
        raise ValueError(f"n_iter must be an integer >= 0 (the number of Picard iterations), got {n_iter!r}.")
    if not torch.is_tensor(y0) or not y0.is_floating_point():
        raise TypeError(f"y0 must be a floating-point tensor, got {type(y0).__name__}; e.g. torch.tensor([[1.0]]).")
    t = torch.as_tensor(t, dtype=y0.dtype, device=y0.device)
    if t.ndim != 1 or t.numel() < 2:
        raise ValueError(f"t must be a 1-D grid of at least 2 times, got shape {tuple(t.shape)}.")
    y = y0.expand(t.numel(), *y0.shape).clone()
    for _ in range(n_iter):
        velocities = torch.stack([f(t[i], y[i]) for i in range(t.numel())])
        integral = torch.cumulative_trapezoid(velocities, x=t, dim=0)
        y = y0 + torch.cat([torch.zeros_like(integral[:1]), integral])
    return y


def lipschitz_lower_bound(f: Callable[[torch.Tensor], torch.Tensor], x1: torch.Tensor,
                          x2: torch.Tensor) -> float:
    """The largest ratio ``||f(x1_i) - f(x2_i)|| / ||x1_i - x2_i||`` over the pairs (rows) of ``x1, x2`` [N, d].

    Pairs with ``x1_i == x2_i`` are skipped. No pair can have a ratio above the Lipschitz constant,
    so this is a lower bound on it.
    """
    if not (torch.is_tensor(x1) and torch.is_tensor(x2)):
        raise TypeError("x1 and x2 must be tensors of shape [N, d] (one pair per row).")
    if x1.shape != x2.shape or x1.ndim < 2:
        raise ValueError(
            f"x1 and x2 must have the same shape [N, d], one pair per row; got {tuple(x1.shape)} and {tuple(x2.shape)}."
        )
    with torch.no_grad():
        d_in = (x1 - x2).flatten(1).norm(dim=1)
        d_out = (f(x1) - f(x2)).flatten(1).norm(dim=1)
    keep = d_in > 0
    if not bool(keep.any()):
        raise ValueError("every pair has x1 == x2, so no ratio is defined; sample pairs of distinct points.")
    return float((d_out[keep] / d_in[keep]).max())


def _leaky_constant(layer: nn.Module) -> float:
    return max(1.0, abs(float(layer.negative_slope)))


ACTIVATION_LIPSCHITZ: dict[type, Callable[[nn.Module], float]] = {
    nn.Identity: lambda layer: 1.0,
    nn.Tanh: lambda layer: 1.0,
    nn.ReLU: lambda layer: 1.0,
    nn.Softplus: lambda layer: 1.0,
    nn.Sigmoid: lambda layer: 0.25,
    nn.LeakyReLU: _leaky_constant,
    nn.ELU: lambda layer: max(1.0, float(layer.alpha)),
}
"""Lipschitz constant of each supported activation (the sup of the derivative's absolute value)."""


def lipschitz_upper_bound(model: nn.Sequential) -> float:
    """Product over the layers of an ``nn.Sequential`` of their Lipschitz constants: the spectral norm
    (largest singular value) of each ``nn.Linear`` weight and the constant of each activation."""
    if not isinstance(model, nn.Sequential):
        raise TypeError(f"model must be an nn.Sequential (e.g. nodecourse.models.MLP), got {type(model).__name__}.")
    bound = 1.0
    for layer in model:
        if isinstance(layer, nn.Linear):
            bound *= float(torch.linalg.matrix_norm(layer.weight.detach(), ord=2))
        elif type(layer) in ACTIVATION_LIPSCHITZ:
            bound *= ACTIVATION_LIPSCHITZ[type(layer)](layer)
        else:
            known = ", ".join(sorted(k.__name__ for k in ACTIVATION_LIPSCHITZ))
            raise ValueError(
                f"no Lipschitz constant known for layer {layer!r}; the bound handles nn.Linear and the "
                f"activations {known}."
            )
    return bound


# --------------------------------------------------------------------------------------------------
# comparisons with a hint that says which way the answer is off
# --------------------------------------------------------------------------------------------------


def _same_tensor(expected: torch.Tensor, got: Any) -> Optional[str]:
    """Like ``close`` but the dtype must match too (a field must not change the state's precision)."""
    if torch.is_tensor(got) and got.dtype != expected.dtype:
        return f"expected dtype {expected.dtype}, got {got.dtype} (build the output from y, not from new tensors)"
    why = close(expected, got, rtol=1e-6, atol=1e-9)
    if why is None and torch.is_tensor(got) and not torch.isfinite(got).all():
        return "the result contains NaN or inf"
    return why


def _bound_compare(rtol: float, above: str, below: str) -> Callable[[float, Any], Optional[str]]:
    """Compare a number with the reference; say whether it is too large (``above``) or too small."""

    def compare(expected: float, got: Any) -> Optional[str]:
        if torch.is_tensor(got) and got.numel() != 1:
            return f"expected one number, got a tensor of shape {tuple(got.shape)} (take the max over all pairs)"
        try:
            value = float(got.detach()) if torch.is_tensor(got) else float(got)
        except (TypeError, ValueError):
            return f"expected a number, got {type(got).__name__}"
        if not math.isfinite(value):
            return f"got {value}: a pair with x1 == x2 divides by zero; skip those pairs"
        if abs(value - expected) <= rtol * abs(expected) + 1e-12:
            return None
        side = above if value > expected else below
        return f"expected {expected:.6g}, got {value:.6g} ({side})"

    return compare


def _seeded_sequential(layers: Callable[[], list[nn.Module]], seed: int,
                       dtype: torch.dtype = torch.float32) -> nn.Sequential:
    """An ``nn.Sequential`` built under a fixed seed, leaving the notebook's random state untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return nn.Sequential(*layers()).to(dtype)


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --------------------------------------------------------------------------------------------------
# the checkers
# --------------------------------------------------------------------------------------------------


def check_damped_pendulum(fn: Field, verbose: bool = True) -> Field:
    """Exercise 1: the damped pendulum's vector field on batches of states [B, 2]."""
    require_callable("check_damped_pendulum", fn)
    g = _generator(1)
    small = 0.5 * torch.randn(8, 2, generator=g)
    large = torch.tensor([[3.0, 0.0], [-2.5, 1.0], [math.pi, -2.0]])
    cases = [
        Case("one state [1, 2], no damping", (0.0, torch.tensor([[0.5, -0.2]]))),
        Case("a batch of 8 states [8, 2]", (0.0, small)),
        Case("large angles (sin(theta) is not theta)", (0.0, large)),
        Case("damping=0.3", (0.0, small), {"damping": 0.3}),
        Case("g_over_l=9.81, damping=0.1, t as a tensor", (torch.tensor(2.0), large),
             {"g_over_l": 9.81, "damping": 0.1}),
        Case("float64 states stay float64", (0.0, small.double()), {"damping": 0.2}),
    ]
    hint = ("dtheta/dt = omega and domega/dt = -(g/l) sin(theta) - damping * omega, with theta = y[..., 0] and "
            "omega = y[..., 1]; put them together with torch.stack([...], dim=-1) so the output has y's shape.")
    result, _ = check_function("Exercise 1 (damped pendulum field)", fn, damped_pendulum, cases, hint=hint,
                               compare=_same_tensor, verbose=verbose)
    return result


def _exp_field(t: Any, y: torch.Tensor) -> torch.Tensor:
    return y


def _forced_decay(t: Any, y: torch.Tensor) -> torch.Tensor:
    return -y + torch.sin(3.0 * t)


def check_picard_iteration(fn: Callable[..., torch.Tensor], verbose: bool = True) -> Callable[..., torch.Tensor]:
    """Exercise 2: Picard iteration on a time grid with the cumulative trapezoid rule."""
    require_callable("check_picard_iteration", fn)
    f64 = torch.float64
    t01 = torch.linspace(0.0, 1.0, 21, dtype=f64)
    one = torch.ones(1, 1, dtype=f64)
    batch = torch.tensor([[1.0], [-0.5], [2.0]], dtype=f64)
    states = torch.tensor([[1.0, 0.0], [0.3, -0.4], [2.5, 0.5], [-1.0, 1.0]], dtype=f64)
    cases = [
        Case("0 iterations: the constant y0", (_exp_field, one, t01, 0)),
        Case("y' = y, 1 iteration", (_exp_field, one, t01, 1)),
        Case("y' = y, 6 iterations", (_exp_field, one, t01, 6)),
        Case("y' = -y + sin(3t), batch of 3, 5 iterations", (_forced_decay, batch, t01, 5)),
        Case("grid starting at t = 1 (non-uniform)", (_forced_decay, batch, torch.tensor([1.0, 1.1, 1.3, 1.6, 2.0],
                                                                                          dtype=f64), 4)),
        Case("pendulum [4, 2], 8 iterations on [0, 0.5]",
             (pendulum_field, states, torch.linspace(0.0, 0.5, 11, dtype=f64), 8)),
        Case("float32 pendulum [4, 2]", (pendulum_field, states.float(), torch.linspace(0.0, 0.5, 11), 3)),
    ]
    hint = ("iterate 0 is y0 at every grid time; each iteration evaluates F[i] = f(t[i], y_k[i]), integrates "
            "with the trapezoid rule from t[0] (torch.cumulative_trapezoid(F, x=t, dim=0), with a zero row "
            "in front for t[0]) and sets y_{k+1} = y0 + integral. Return only the last iterate [T, *y0.shape].")

    def compare(expected: torch.Tensor, got: Any) -> Optional[str]:
        return close(expected, got, rtol=1e-6 if expected.dtype == f64 else 1e-4, atol=1e-9)

    result, _ = check_function("Exercise 2 (Picard iteration)", fn, picard_iteration, cases, hint=hint,
                               compare=compare, verbose=verbose)
    return result


def check_lipschitz_lower_bound(fn: Callable[..., float], verbose: bool = True) -> Callable[..., float]:
    """Exercise 3: the largest distance ratio over sampled pairs, a lower bound on the Lipschitz constant."""
    require_callable("check_lipschitz_lower_bound", fn)
    g = _generator(3)
    a2 = torch.tensor([[2.0, 1.0], [0.0, 1.0]])  # spectral norm 1 + sqrt(2)
    a53 = torch.randn(3, 5, generator=g)
    mlp = _seeded_sequential(lambda: [nn.Linear(3, 16), nn.Tanh(), nn.Linear(16, 2)], seed=3)
    x2d, y2d = torch.randn(500, 2, generator=g), torch.randn(500, 2, generator=g)
    x5d, y5d = torch.randn(300, 5, generator=g), torch.randn(300, 5, generator=g)
    x3d = torch.randn(200, 3, generator=g)
    y3d = x3d + 0.1 * torch.randn(200, 3, generator=g)
    with_repeats = y2d[:50].clone()
    with_repeats[::5] = x2d[:50][::5]  # every fifth pair has x1 == x2
    cases = [
        Case("linear map in 2-D, 500 pairs (true constant 2.414)", (lambda x: x @ a2.T, x2d, y2d)),
        Case("linear map 5 -> 3, 300 pairs", (lambda x: x @ a53.T, x5d, y5d)),
        Case("elementwise tanh (true constant 1)", (torch.tanh, x3d, y3d)),
        Case("an MLP 3 -> 16 -> 2, nearby pairs", (mlp, x3d, y3d)),
        Case("pairs with x1 == x2 in some rows are skipped", (lambda x: x @ a2.T, x2d[:50], with_repeats)),
        Case("float64 pairs", (lambda x: x @ a53.double().T, x5d.double(), y5d.double())),
    ]
    hint = ("for each pair (row i) compute ||f(x1_i) - f(x2_i)|| / ||x1_i - x2_i|| with row norms "
            "(.norm(dim=1)), drop the pairs with zero distance, and return the max (not the mean) as a float.")
    compare = _bound_compare(
        1e-5,
        above="larger than every pair's ratio: did you square a norm, or divide by the wrong distance?",
        below="smaller than the largest ratio: take the max over pairs, not the mean or a ratio of batch norms",
    )
    result, _ = check_function("Exercise 3 (Lipschitz lower bound)", fn, lipschitz_lower_bound, cases, hint=hint,
                               compare=compare, verbose=verbose)
    return result


def check_lipschitz_upper_bound(fn: Callable[[nn.Sequential], float],
                                verbose: bool = True) -> Callable[[nn.Sequential], float]:
    """Exercise 4: the product of the layers' spectral norms and activation constants of an MLP."""
    require_callable("check_lipschitz_upper_bound", fn)
    cases = [
        Case("a single Linear(3, 2)", (_seeded_sequential(lambda: [nn.Linear(3, 2)], seed=10),)),
        Case("Linear(2, 16), Tanh, Linear(16, 2)",
             (_seeded_sequential(lambda: [nn.Linear(2, 16), nn.Tanh(), nn.Linear(16, 2)], seed=11),)),
        Case("a deeper ReLU MLP 4 -> 32 -> 32 -> 1",
             (_seeded_sequential(lambda: [nn.Linear(4, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(),
                                          nn.Linear(32, 1)], seed=12),)),
        Case("Sigmoid in the middle (its constant is 1/4)",
             (_seeded_sequential(lambda: [nn.Linear(2, 8), nn.Sigmoid(), nn.Linear(8, 2)], seed=13),)),
        Case("a square hidden layer (eigenvalues are not singular values)",
             (_seeded_sequential(lambda: [nn.Linear(2, 6), nn.Tanh(), nn.Linear(6, 6), nn.Tanh(), nn.Linear(6, 2)],
                                 seed=14),)),
        Case("a float64 model", (_seeded_sequential(lambda: [nn.Linear(5, 12), nn.Tanh(), nn.Linear(12, 3)],
                                                    seed=15, dtype=torch.float64),)),
    ]
    hint = ("multiply, over the layers of the nn.Sequential, the spectral norm of every nn.Linear weight "
            "(its largest singular value: torch.linalg.matrix_norm(W, ord=2)) and the constant of every "
            "activation (Tanh and ReLU: 1, Sigmoid: 1/4); the biases do not matter.")
    compare = _bound_compare(
        1e-5,
        above="too large: the Frobenius norm or a squared singular value overestimates; Sigmoid counts 1/4",
        below="too small: use singular values, not eigenvalues, and multiply every layer's factor",
    )
    result, _ = check_function("Exercise 4 (Lipschitz upper bound)", fn, lipschitz_upper_bound, cases, hint=hint,
                               compare=compare, verbose=verbose)
    return result


# --- exercise 5 (find the bug) and exercise 6 (predict, then check) ------------------------------

def autonomous_field(f: Field) -> Field:
    """Turn ``dy/dt = f(t, y)`` into an autonomous field on ``z = [y, s]`` (time as the last entry):
    ``g(t, z) = [f(s, y), 1]``; ``g`` ignores its own ``t``, which is what makes it autonomous."""
    def g(t, z):
        y, s = z[..., :-1], z[..., -1:]
        return torch.cat([f(s, y), torch.ones_like(s)], dim=-1)
    return g


def buggy_autonomous_field(f: Field) -> Field:
    """Exercise 5 ships this broken :func:`autonomous_field` for the learner to repair."""
    def g(t, z):
        y, s = z[..., :-1], z[..., -1:]
        return torch.cat([f(t, y), torch.ones_like(s)], dim=-1)
    return g


def _forced(s: Any, y: torch.Tensor) -> torch.Tensor:
    return -y + torch.sin(3 * torch.as_tensor(s, dtype=y.dtype))


def _spin(s: Any, y: torch.Tensor) -> torch.Tensor:
    return torch.stack([-y[..., 1], y[..., 0]], dim=-1)


def check_autonomous_field(fn: Callable[[Field], Field], verbose: bool = True) -> Callable[[Field], Field]:
    """Exercise 5 (find the bug): the repaired :func:`buggy_autonomous_field`."""
    require_callable("check_autonomous_field", fn)
    f64 = torch.float64
    z_batch = torch.tensor([[1.0, 0.0], [0.5, 2.0], [-1.0, 3.5]], dtype=f64)
    cases = [
        Case("the solver's t equals the state's time (a solve started at t0 = s0 = 0)",
             (_forced, torch.tensor(0.7, dtype=f64), torch.tensor([1.5, 0.7], dtype=f64))),
        Case("an autonomous f: the time entry's derivative is 1", (_spin, 0.0, torch.tensor([1.0, 2.0, 5.0], dtype=f64))),
        Case("g ignores the solver's t: time comes from the state (s0 = 2 while t = 0)",
             (_forced, torch.tensor(0.0, dtype=f64), torch.tensor([1.5, 2.0], dtype=f64))),
        Case("a batch [3, 2], each sample at its own time s", (_forced, torch.tensor(1.0, dtype=f64), z_batch)),
    ]
    hint = ["the field is right when the solver's t happens to equal the time stored in the state, and wrong "
            "otherwise: which of the two does the field read?",
            "an autonomous field may not depend on its t argument at all; the time the original f needs is the "
            "last entry of the state z."]

    def evaluate(make: Callable[[Field], Field]) -> Callable:
        def run(f: Field, t: Any, z: torch.Tensor) -> torch.Tensor:
            g = make(f)
            if not callable(g):
                raise TypeError(f"autonomous_field must return a function g(t, z), got {type(g).__name__}")
            return g(t, z)
        return run

    _, report = check_function("Exercise 5 (find the bug: time as a state)", evaluate(fn), evaluate(autonomous_field),
                               cases, hint=hint, compare=lambda e, g: close(e, g, rtol=1e-10, atol=1e-12),
                               verbose=verbose, answer=autonomous_field)
    return fn if report.ok else autonomous_field


@prediction
@keep_random_state()
def check_area_factor_prediction(guess: Optional[float], verbose: bool = True) -> float:
    """Exercise 6 (predict, then check): by what factor the damped pendulum's flow (c = 0.5) scales areas
    of the phase plane after t = 2, measured as the determinant of the flow map's Jacobian at one point."""
    from nodecourse.solvers import odeint

    with one_thread():
        y0 = torch.tensor([1.0, 0.3], dtype=torch.float64)
        span = torch.tensor([0.0, 2.0], dtype=torch.float64)

        def flow(y: torch.Tensor) -> torch.Tensor:
            return odeint(lambda t, x: damped_pendulum(t, x, 1.0, 0.5), y, span, rtol=1e-10, atol=1e-12)[-1]

        jac = torch.autograd.functional.jacobian(flow, y0)
    truth = round(float(torch.linalg.det(jac)), 4)
    check_prediction("Exercise 6 (predict: how areas shrink)", guess, truth, notebook="01", variable="predicted_factor",
                     rtol=0.05, explanation="the divergence of the damped pendulum's field is -c everywhere, so by "
                     "Liouville's formula every area shrinks by exp(-c t) = exp(-1), about 0.368, whatever the point.",
                     verbose=verbose)
    return truth


show_answer = answers_for("01")
