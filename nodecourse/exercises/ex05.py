"""Checkers for notebook 05 (regression, ResNet vs ODE-Net): building the ODE-Net of Chen et al. (2018),
one training step, interpolation vs extrapolation errors, training with another solver, a regression
loss to repair and a prediction of the cost of a fixed-step solve.

Each ``check_*`` runs the learner's function against the reference below on labelled cases, one per
requirement of the exercise's statement, prints a report with a staged hint and returns the function to
go on with (the learner's when every case passed, else the reference). The references are public so a
notebook can also call them directly. Checkers leave the global random state as they found it.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any, Callable, Optional

import torch
from torch import nn

from nodecourse.config import seed_everything
from nodecourse.data import cubic_regression
from nodecourse.models import MLP, ODEBlock, ODEFunc, ResNet
from nodecourse.solvers import FIXED_METHODS, METHODS, TABLEAUX
from nodecourse.train import train

from .checking import (Case, answers_for, as_number, check_function, check_prediction, close, focused,
                       keep_random_state, one_thread,
                       prediction, require_callable)

__all__ = [
    "show_answer",
    "build_odenet",
    "training_step",
    "extrapolation_errors",
    "train_with_solver",
    "regression_loss",
    "buggy_regression_loss",
    "check_build_odenet",
    "check_training_step",
    "check_extrapolation_errors",
    "check_train_with_solver",
    "check_regression_loss",
    "check_rk4_nfe_prediction",
    "LOSS_BAR",
]

LOSS_BAR = 0.1
"""The training MSE a `train_with_solver` run must get below in 300 iterations (from about 8 at the
start; the reference ends between 0.005 and 0.03 depending on the seed)."""


# --------------------------------------------------------------------------------------------------
# references
# --------------------------------------------------------------------------------------------------


def build_odenet(hidden: int = 25, method: str = "dopri5", step_size: Optional[float] = None) -> ODEBlock:
    """The ODE-Net of Chen et al.'s regression example: ``[N, 1] -> [N, 1]``.

    dy/dt = MLP([2, hidden, 1])([y, t]) (tanh, time concatenated to the state), y(0) = x, output y(1),
    solved with ``method`` at rtol = atol = 1e-3; fixed-step methods take ``step_size``.
    """
    if isinstance(hidden, bool) or not isinstance(hidden, int) or hidden < 1:
        raise ValueError(f"hidden must be a positive integer (the MLP's width), got hidden={hidden!r}.")
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}.")
    if method in FIXED_METHODS and step_size is None:
        raise ValueError(f"the fixed-step method {method!r} needs a step size, e.g. step_size=0.25.")
    options = None if step_size is None else {"step_size": float(step_size)}
    func = ODEFunc(MLP([2, hidden, 1]), time_dependent=True)
    return ODEBlock(func, t1=1.0, method=method, rtol=1e-3, atol=1e-3, options=options)


def training_step(model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor) -> float:
    """One full-batch optimizer step on the mean squared error; returns the loss before the update."""
    optimizer.zero_grad()
    loss = nn.functional.mse_loss(model(x), y)
    loss.backward()
    optimizer.step()
    return loss.item()


def extrapolation_errors(model: Callable[[torch.Tensor], torch.Tensor], lo: float = -3.0, hi: float = 3.0,
                         n: int = 100) -> tuple[float, float]:
    """(MSE on |x| <= 2, MSE on |x| > 2) of ``model`` against y = x^3 + 0.1 x on ``n`` points of [lo, hi].

    The grid ``torch.linspace(lo, hi, n)`` is shaped ``[n, 1]`` and made on the dtype and device of the
    model's first parameter (float32 on the CPU for a model without parameters).
    """
    squared, inside = _squared_errors(model, lo, hi, n, strict=False)
    return squared[inside].mean().item(), squared[~inside].mean().item()


def _squared_errors(model: Callable[[torch.Tensor], torch.Tensor], lo: float, hi: float, n: int,
                    strict: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Squared errors ``[n]`` on the grid and the mask of the inside points (``|x| < 2`` when ``strict``)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 2:
        raise ValueError(f"n must be an integer >= 2 (grid points), got n={n!r}.")
    if not lo < hi:
        raise ValueError(f"the range must satisfy lo < hi, got lo={lo}, hi={hi}.")
    param = next(model.parameters(), None) if isinstance(model, nn.Module) else None
    dtype, device = (param.dtype, param.device) if param is not None else (torch.float32, "cpu")
    grid = torch.linspace(lo, hi, n, dtype=dtype, device=device).unsqueeze(1)
    with torch.no_grad():
        squared = ((model(grid) - (grid**3 + 0.1 * grid)) ** 2).squeeze(1)
    x = grid.squeeze(1).abs()
    return squared, (x < 2) if strict else (x <= 2)


def train_with_solver(method: str, step_size: Optional[float] = None, n_iters: int = 300,
                      seed: int = 0) -> tuple[float, int]:
    """Train the ODE-Net of :func:`build_odenet` with ``method`` on the cubic data (Adam, lr 0.01).

    Returns ``(training MSE after the last step, NFE of that evaluation's forward pass)``.
    """
    seed_everything(seed)
    model = build_odenet(method=method, step_size=step_size)
    x, y = cubic_regression()
    train(model, nn.MSELoss(), (x, y), n_iters, lr=0.01, optimizer="adam", progress=False)
    with torch.no_grad():
        loss = nn.functional.mse_loss(model(x), y).item()
    return loss, model.nfe_forward


def regression_loss(pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The mean squared error between predictions ``pred`` ``[N, 1]`` and targets ``y`` (``[N]`` or ``[N, 1]``)."""
    return ((pred - y.reshape(pred.shape)) ** 2).mean()


def buggy_regression_loss(pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Exercise 5 ships this broken :func:`regression_loss` for the learner to repair."""
    return ((pred - y) ** 2).mean()


# --------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _randomise(model: nn.Module, seed: int, scale: float = 0.7) -> nn.Module:
    """Overwrite every parameter with ``scale * N(0, 1)`` draws from a private generator (in place)."""
    g = _generator(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return model


def _asas_number(value: Any, what: str) -> float:
    """``value`` as a float, or a TypeError saying what it was."""
    number = as_number(value)
    if number is None:
        shape = f" of shape {tuple(value.shape)}" if torch.is_tensor(value) else ""
        raise TypeError(f"{what} must be a number (e.g. loss.item()), got {type(value).__name__}{shape}")
    return number


# --------------------------------------------------------------------------------------------------
# exercise 1: build the ODE-Net
# --------------------------------------------------------------------------------------------------


def _shapes(model: nn.Module) -> list[tuple[int, ...]]:
    return [tuple(p.shape) for p in model.parameters()]


def _odenet_requirement(expected: tuple[str, ODEBlock], got: tuple[str, Any]) -> Optional[str]:
    """The one requirement the case names (``expected[0]``), checked on the learner's model."""
    focus, ref = expected
    model = got[1]
    if not isinstance(model, ODEBlock):
        return f"expected an ODEBlock (from nodecourse.models), got {type(model).__name__}"
    if focus == "t1" and model.t1 != ref.t1:
        return f"the end time t1 is {model.t1!r}, expected {ref.t1!r}: the block integrates over [0, t1]"
    if focus == "method" and model.method != ref.method:
        return f"the method is {model.method!r}, expected the one passed in, {ref.method!r}"
    if focus == "tol" and (model.rtol, model.atol) != (ref.rtol, ref.atol):
        return f"(rtol, atol) is {(model.rtol, model.atol)}, expected {(ref.rtol, ref.atol)}"
    if focus == "time":
        if not isinstance(model.func, ODEFunc):
            return f"the dynamics should be an ODEFunc wrapping the MLP, got {type(model.func).__name__}"
        if not model.func.time_dependent:
            return "the dynamics ignore the time: the ODEFunc does not append t to the state"
    if focus in ("sizes", "outputs", "whole") and _shapes(model) != _shapes(ref):
        n_want, n_have = (sum(math.prod(s) for s in _shapes(m)) for m in (ref, model))
        return (f"{n_have} parameters shaped {_shapes(model)}, expected {n_want} shaped {_shapes(ref)} "
                f"(an MLP [2, hidden, 1])")
    want_h, got_h = (ref.options or {}).get("step_size"), (model.options or {}).get("step_size")
    if focus == "fixed" and got_h != want_h:
        return f"options is {model.options!r}: a fixed-step method needs its step size, {want_h!r}, in the options"
    if focus == "adaptive" and model.options:
        return (f"options is {model.options!r}: an adaptive method chooses its own steps and rejects a step_size "
                f"option, so pass options=None")
    if focus in ("outputs", "whole"):
        _randomise(ref, seed=5)
        with torch.no_grad():
            for p_got, p_ref in zip(model.parameters(), ref.parameters()):
                p_got.copy_(p_ref)
            inputs = torch.linspace(-3.0, 3.0, 13).unsqueeze(1)
            why = close(ref(inputs), model(inputs), rtol=1e-5, atol=1e-5)
        if why:
            return f"with the reference's weights the outputs differ: {why}"
    if focus == "whole":
        for what in ("t1", "method", "tol", "time", "fixed"):
            why = _odenet_requirement((what, ref), got)
            if why:
                return why
    return None


def check_build_odenet(fn: Callable[..., nn.Module], verbose: bool = True) -> Callable[..., nn.Module]:
    """Exercise 1: the ODE-Net of the regression example, built from nodecourse parts."""
    require_callable("check_build_odenet", fn)
    cases = [
        Case("an ODEBlock that integrates from t = 0 to t1 = 1", ("t1",)),
        Case("solved with the method it is given (bosh3)", ("method", 25, "bosh3")),
        Case("at rtol = atol = 1e-3", ("tol",)),
        Case("the field is MLP([2, hidden, 1]): parameter shapes for hidden = 8", ("sizes", 8)),
        Case("the time is an input: the ODEFunc appends t to the state", ("time",)),
        Case("tanh units: the reference's weights give the reference's outputs (hidden = 12)", ("outputs", 12)),
        Case("a fixed-step method gets options={'step_size': step_size} (Euler, 0.25)",
             ("fixed", 25, "euler", 0.25)),
        Case("an adaptive method gets options=None (dopri5, no step size)", ("adaptive", 25, "dopri5", None)),
        Case("all together: RK4 with step_size = 0.5, hidden = 6", ("whole", 6), {"method": "rk4", "step_size": 0.5}),
    ]
    hint = ["each failed case names one sentence of the statement: the end time, the method, the tolerances, the "
            "MLP's sizes, the time input, the activation or the options. Print your model and compare it with "
            "that sentence.",
            "the MLP sees the state and the time, so it has two inputs, and ODEFunc passes the time on only when "
            "you ask it to; MLP's default activation is the one the example uses; only a fixed-step method takes "
            "a step size, an adaptive one refuses it."]
    with keep_random_state(), one_thread():
        _, report = check_function("Exercise 1 (build the ODE-Net)", focused(fn), focused(build_odenet), cases,
                                   hint=hint, compare=_odenet_requirement, verbose=verbose, answer=build_odenet)
    return fn if report.ok else build_odenet


# --------------------------------------------------------------------------------------------------
# exercise 2: one training step
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _StepSetup:
    """A small model, an optimizer and data, rebuilt identically for the reference and the learner;
    ``focus`` is the requirement the case checks."""

    focus: str
    model: str
    optimizer: str
    lr: float
    steps: int
    seed: int


@dataclass
class _StepResult:
    """What a step function did: its return values, the loss after each update and the parameters."""

    focus: str
    returned: list
    after: list
    params: list


def _build_setup(setup: _StepSetup) -> tuple[nn.Module, torch.optim.Optimizer, torch.Tensor, torch.Tensor]:
    if setup.model == "mlp":
        model: nn.Module = MLP([1, 4, 1])
    elif setup.model == "resnet":
        model = ResNet(MLP([1, 5, 1]), depth=2)
    else:
        model = build_odenet(hidden=4, method="euler", step_size=0.5)
    _randomise(model, setup.seed, scale=0.5)
    params = model.parameters()
    make = torch.optim.SGD if setup.optimizer == "sgd" else torch.optim.Adam
    optimizer = make(params, lr=setup.lr)
    x, y = cubic_regression()
    return model, optimizer, x, y


def _steps_runner(step: Callable[..., Any]) -> Callable[[_StepSetup], _StepResult]:
    """Wrap a step function: run it ``steps`` times on a fresh setup and record what it did."""

    def run(setup: _StepSetup) -> _StepResult:
        model, optimizer, x, y = _build_setup(setup)
        result = _StepResult(setup.focus, [], [], [])
        for _ in range(setup.steps):
            result.returned.append(step(model, optimizer, x, y))
            with torch.no_grad():
                result.after.append(nn.functional.mse_loss(model(x), y).item())
            result.params.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
        return result

    return run


def _losses_text(values: list) -> str:
    return str([round(v, 5) if isinstance(v, float) else v for v in values])


def _same_steps(expected: _StepResult, got: _StepResult) -> Optional[str]:
    """The requirement ``expected.focus`` on what the learner's step function did."""
    focus, n = expected.focus, len(expected.params)
    if focus == "float":
        wrong = [v for v in got.returned if type(v) is not float]
        if wrong:
            return (f"it returned a {type(wrong[0]).__name__}; return the loss as a Python float, a plain number "
                    f"that keeps no graph")
        return None
    if focus in ("before", "mean"):
        numbers = [as_number(v) for v in got.returned]
        if None in numbers:
            bad = got.returned[numbers.index(None)]
            return f"the returned loss must be a number, got {type(bad).__name__}"
        want = [as_number(v) for v in expected.returned]
        if close(want, numbers, rtol=1e-5, atol=1e-6) is None:
            return None if focus == "before" else _same_params(expected, got, n)
        if focus == "before" and close(got.after, numbers, rtol=1e-5, atol=1e-6) is None:
            return (f"it returned {_losses_text(numbers)}, the loss AFTER the update; the expected "
                    f"{_losses_text(want)} is the loss the gradient was computed from")
        ratio = numbers[0] / want[0] if want[0] else float("nan")
        if focus == "mean" and abs(ratio - 10) < 1e-3:
            return f"the returned loss is 10 times the mean squared error: that is the sum over the 10 points"
        return f"the returned losses {_losses_text(numbers)} differ from the expected {_losses_text(want)}"
    return _same_params(expected, got, n)


def _same_params(expected: _StepResult, got: _StepResult, n: int) -> Optional[str]:
    why = close(expected.params[-1], got.params[-1], rtol=1e-5, atol=1e-6)
    if not why:
        return None
    if n > 1 and close(expected.params[0], got.params[0], rtol=1e-5, atol=1e-6) is None:
        return (f"the first step matches, but after {n} steps the parameters differ: {why}; something carries "
                f"over from one step to the next")
    return f"the parameters after {n} step{'s' if n > 1 else ''} differ from the reference's: {why}"


def check_training_step(fn: Callable[..., float], verbose: bool = True) -> Callable[..., float]:
    """Exercise 2: one full-batch optimizer step on the MSE, returning the loss before the update."""
    require_callable("check_training_step", fn)
    cases = [
        Case("exactly one SGD step per call on an MLP [1, 4, 1]", (_StepSetup("params", "mlp", "sgd", 0.01, 1, 1),)),
        Case("returns the loss computed BEFORE the update", (_StepSetup("before", "mlp", "sgd", 0.05, 2, 5),)),
        Case("the loss is the MEAN squared error over the 10 points (not the sum)",
             (_StepSetup("mean", "mlp", "sgd", 0.01, 1, 6),)),
        Case("returns a Python float", (_StepSetup("float", "mlp", "sgd", 0.01, 2, 7),)),
        Case("three steps in a row: old gradients are cleared (zero_grad)",
             (_StepSetup("params", "mlp", "sgd", 0.01, 3, 2),)),
        Case("steps the optimizer it is given (two Adam steps on a ResNet)",
             (_StepSetup("params", "resnet", "adam", 0.05, 2, 3),)),
        Case("any model: two SGD steps on an ODE-Net (Euler, h = 0.5)",
             (_StepSetup("params", "odenet", "sgd", 0.01, 2, 4),)),
    ]
    hint = ["the failed case names the requirement: the parameters after one or several steps, the value of the "
            "returned loss, or its type. Run your step twice on a small model and print the loss and the "
            "gradients each time.",
            "PyTorch adds each backward pass's gradients to those already stored, so each step must start from "
            "clean gradients; the step must go through the optimizer object it receives (Adam is not plain "
            "gradient descent); the number returned is the loss the gradients came from, as a plain Python "
            "number."]
    with keep_random_state(), one_thread():
        _, report = check_function("Exercise 2 (a training step)", _steps_runner(fn), _steps_runner(training_step),
                                   cases, hint=hint, compare=_same_steps, verbose=verbose, answer=training_step)
    return fn if report.ok else training_step


# --------------------------------------------------------------------------------------------------
# exercise 3: interpolation vs extrapolation
# --------------------------------------------------------------------------------------------------


class _Float32Grid(nn.Module):
    """A model without parameters (the cubic plus a wiggle) that accepts only a float32 [n, 1] CPU grid."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype != torch.float32 or x.device.type != "cpu" or x.dim() != 2 or x.shape[1] != 1:
            raise TypeError(f"this model has no parameters, so it expects a float32 grid [n, 1] on the CPU; it got "
                            f"{x.dtype} {tuple(x.shape)} on {x.device}")
        return x**3 + 0.1 * x + torch.sin(3 * x)


class _NoGraph(nn.Module):
    """A scaled identity that refuses to be called with gradients on."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(0.8))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled():
            raise RuntimeError("the model was called with gradients on, so a graph is built for nothing; "
                               "predict with gradients off")
        return self.scale * x


def _errors_reference(focus: str, model: Any, lo: float = -3.0, hi: float = 3.0, n: int = 100) -> tuple:
    """``(focus, the errors, the mean absolute errors, the errors with x = +-2 outside)``."""
    squared, inside = _squared_errors(model, lo, hi, n, strict=False)
    absolute = squared.sqrt()
    strict_sq, strict_in = _squared_errors(model, lo, hi, n, strict=True)
    return (focus, (squared[inside].mean().item(), squared[~inside].mean().item()),
            (absolute[inside].mean().item(), absolute[~inside].mean().item()),
            (strict_sq[strict_in].mean().item(), strict_sq[~strict_in].mean().item()))


def _two_numbers(expected: tuple, got: tuple[str, Any]) -> Optional[str]:
    focus, want, absolute, strict = expected
    result = got[1]
    if not isinstance(result, (tuple, list)) or len(result) != 2:
        return f"expected a pair (mse_inside, mse_outside), got {type(result).__name__}"
    if focus == "floats":
        wrong = [v for v in result if type(v) is not float]
        return None if not wrong else f"got a {type(wrong[0]).__name__}; return two Python floats"
    try:
        values = tuple(_asas_number(v, "each error") for v in result)
    except TypeError as err:
        return str(err)

    def near(a: tuple, b: tuple) -> bool:
        return close(list(a), list(b), rtol=1e-4, atol=1e-6) is None

    if near(want, values):
        return None
    if near(want[::-1], values):
        return "the two errors are swapped: return (inside, outside)"
    if near(absolute, values):
        return "these are mean ABSOLUTE errors; the statement asks for mean squared errors"
    if near(strict, values):
        return "the points x = -2 and x = 2 were counted as outside; |x| <= 2 puts them inside"
    for name, e, g in (("inside (|x| <= 2)", want[0], values[0]), ("outside (|x| > 2)", want[1], values[1])):
        why = close(e, g, rtol=1e-4, atol=1e-6)
        if why:
            return f"the MSE {name}: {why}"
    return None


def check_extrapolation_errors(fn: Callable[..., tuple[float, float]], verbose: bool = True
                               ) -> Callable[..., tuple[float, float]]:
    """Exercise 3: the MSE against the true cubic inside and outside the training range."""
    require_callable("check_extrapolation_errors", fn)
    with keep_random_state():
        resnet = _randomise(ResNet(MLP([1, 25, 1]), depth=3), seed=11, scale=0.4)
        odenet = _randomise(build_odenet(hidden=10, method="rk4", step_size=0.25), seed=12, scale=0.6)
        double = _randomise(MLP([1, 8, 1]), seed=13).double()
    cases = [
        Case("returns (MSE inside, MSE outside) in that order (the identity map)", ("values", nn.Identity())),
        Case("mean SQUARED errors against x^3 + 0.1 x (a ResNet)", ("values", resnet)),
        Case("the grid is torch.linspace(lo, hi, n): 50 points on [-4, 4]", ("values", resnet),
             {"lo": -4.0, "hi": 4.0, "n": 50}),
        Case("an asymmetric range [-3, 2.5], 40 points (an ODE-Net, RK4)", ("values", odenet, -3.0, 2.5, 40)),
        Case("x = -2 and x = 2 count as inside (|x| <= 2): 9 points on [-4, 4]", ("values", double, -4.0, 4.0, 9)),
        Case("the grid takes the dtype of the model's first parameter (a float64 model)", ("values", double)),
        Case("a model without parameters gets a float32 grid [n, 1] on the CPU", ("values", _Float32Grid())),
        Case("predicts without building a graph", ("values", _NoGraph())),
        Case("returns two Python floats", ("floats", resnet, -3.0, 3.0, 20)),
    ]
    hint = ["the failed case names the requirement: the order of the pair, the kind of error, the grid (its range, "
            "size, shape and dtype), where x = +-2 belongs, gradients, or the types returned. Evaluate your "
            "function on the identity map by hand for three grid points.",
            "square the differences to the true curve before averaging, and average each group over its own "
            "points; the grid follows the model's first parameter (and is float32 when there is none); the "
            "prediction needs no gradients, and the two averages come back as plain Python numbers."]
    with keep_random_state(), one_thread():
        _, report = check_function("Exercise 3 (extrapolation errors)", focused(fn), _errors_reference, cases,
                                   hint=hint, compare=_two_numbers, verbose=verbose, answer=extrapolation_errors)
    return fn if report.ok else extrapolation_errors


# --------------------------------------------------------------------------------------------------
# exercise 4: train with another solver
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Trained:
    """The reference's result with what the comparison needs to know about the case."""

    focus: str
    loss: float
    nfe: int
    method: str
    step_size: Optional[float]
    n_iters: int


@functools.lru_cache(maxsize=None)  # deterministic (seeded, on the CPU): a re-run costs only the learner's runs
def _reference_run(focus: str, method: str, step_size: Optional[float] = None, n_iters: int = 300,
                   seed: int = 0) -> _Trained:
    if focus in ("seed", "types"):  # only the learner's runs matter
        return _Trained(focus, math.nan, 0, method, step_size, n_iters)
    loss, nfe = train_with_solver(method, step_size, n_iters, seed)
    return _Trained(focus, loss, nfe, method, step_size, n_iters)


def _learner_run(fn: Callable[..., Any]) -> Callable[..., tuple[str, Any]]:
    """Run the learner's function once, or (for the seeding case) with seed, seed again and seed + 1."""
    def run(focus: str, method: str, step_size: Optional[float] = None, n_iters: int = 300, seed: int = 0):
        if focus == "seed":
            return focus, [fn(method, step_size, n_iters, s) for s in (seed, seed, seed + 1)]
        return focus, fn(method, step_size, n_iters, seed)
    return run


def _fixed_nfe(method: str, step_size: float) -> int:
    """Evaluations of one forward pass on [0, 1]: stages times steps."""
    return TABLEAUX[method].n_stages * round(1.0 / step_size)


def _pair(got: Any) -> tuple[float, float]:
    if not isinstance(got, (tuple, list)) or len(got) != 2:
        raise TypeError(f"expected a pair (final_loss, nfe), got {type(got).__name__}")
    return _asas_number(got[0], "the final loss"), _asas_number(got[1], "the NFE")


def _trained_well(expected: _Trained, got: tuple[str, Any]) -> Optional[str]:
    result = got[1]
    try:
        runs = [_pair(r) for r in result] if expected.focus == "seed" else [_pair(result)]
    except TypeError as err:
        return str(err)
    loss, nfe = runs[0]
    if expected.focus == "seed":
        if runs[0] != runs[1]:
            return (f"the same seed gave two different results, {runs[0]} and {runs[1]}: seed everything with "
                    f"seed before anything random happens")
        if runs[0] == runs[2]:
            return "seed and seed + 1 gave the same result: the seed passed in is not the one used"
        return None
    if expected.focus == "types":
        if type(result[0]) is not float or type(result[1]) is not int:
            return (f"got ({type(result[0]).__name__}, {type(result[1]).__name__}); return the loss as a Python "
                    f"float and the NFE as a Python int")
        return None
    if expected.focus == "iters":
        if not (math.isfinite(loss) and expected.loss / 1.5 <= loss <= 1.5 * expected.loss):
            return (f"after {expected.n_iters} iterations the loss is {loss:.4g}, the reference's {expected.loss:.4g} "
                    f"(within a factor 1.5 passes): train for n_iters iterations with Adam at learning rate 0.01")
        return None
    if expected.focus == "bar":
        if not math.isfinite(loss) or loss >= LOSS_BAR:
            return (f"final loss {loss:.4g} is not below {LOSS_BAR} after {expected.n_iters} iterations (the "
                    f"reference reaches {expected.loss:.4g})")
        return None
    if expected.method in FIXED_METHODS:
        want = _fixed_nfe(expected.method, expected.step_size)
        if nfe != want:
            return (f"NFE {nfe:g}, but one forward pass of {expected.method} with h = {expected.step_size} costs "
                    f"{TABLEAUX[expected.method].n_stages} stages x {round(1 / expected.step_size)} steps = {want}")
    elif not expected.nfe / 2 <= nfe <= 2 * expected.nfe:
        return (f"NFE {nfe:g} is far from the reference's {expected.nfe} for one forward pass (not a sum over "
                f"training)")
    return None


def check_train_with_solver(fn: Callable[..., tuple[float, int]], verbose: bool = True
                            ) -> Callable[..., tuple[float, int]]:
    """Exercise 4: train the ODE-Net with a given solver; the loss must fall below LOSS_BAR, the NFE fit the method."""
    require_callable("check_train_with_solver", fn)
    cases = [
        Case(f"trained: the loss ends below LOSS_BAR = {LOSS_BAR} after 300 iterations (Euler, h = 0.25)",
             ("bar", "euler", 0.25, 300, 0)),
        Case("the NFE of ONE forward pass of the trained model, stages x steps: RK4, h = 0.5 costs 4 x 2 = 8",
             ("nfe", "rk4", 0.5, 30, 0)),
        Case("an adaptive method: Dopri5's NFE of one forward pass is near the reference's (seed 1)",
             ("nfe", "dopri5", None, 30, 1)),
        Case("Adam at learning rate 0.01 for n_iters iterations: after 150 the loss is near the reference's",
             ("iters", "euler", 0.5, 150, 0)),
        Case("seeded with seed_everything(seed): seed 2 twice gives the same result, seed 3 another",
             ("seed", "euler", 0.5, 20, 2)),
        Case("returns a Python float and an int", ("types", "euler", 0.5, 20, 0)),
    ]
    hint = ["the failed case names the requirement: the loss bar, the cost of one forward pass, the number of "
            "iterations with the right optimizer, the seeding, or the types returned. Print what your function "
            "returns for two seeds and two iteration counts.",
            "seed before the model is built, so its initial weights depend on the seed alone; after training, "
            "evaluate the model once more on the ten points without a graph, and read the block's forward counter "
            "right then: it counts one pass, not the whole training."]
    with keep_random_state(), one_thread():
        _, report = check_function("Exercise 4 (train with another solver)", _learner_run(fn), _reference_run, cases,
                                   hint=hint, compare=_trained_well, verbose=verbose, answer=train_with_solver)
    return fn if report.ok else train_with_solver


# --------------------------------------------------------------------------------------------------
# exercise 5 (find the bug): a regression loss
# --------------------------------------------------------------------------------------------------


def _loss_reference(focus: str, pred: torch.Tensor, y: torch.Tensor) -> tuple:
    """``(focus, the loss, the loss of pred - y as it broadcasts)``."""
    with torch.no_grad():
        broadcast = ((pred - y) ** 2).mean()
    return focus, regression_loss(pred, y), broadcast


def _same_loss(expected: tuple, got: tuple[str, Any]) -> Optional[str]:
    focus, want, broadcast = expected
    loss = got[1]
    if focus == "tensor":
        if not torch.is_tensor(loss) or loss.dim() != 0:
            return f"return a 0-d tensor (a scalar loss), got {getattr(loss, 'shape', type(loss).__name__)}"
        if not loss.requires_grad:
            return "the loss is cut off from the predictions' gradient: training could not use it"
    value = as_number(loss)
    if value is None:
        return f"return the loss as a scalar, got {getattr(loss, 'shape', type(loss).__name__)}"
    n = want.new_tensor(value)
    if close(want.detach(), n, rtol=1e-6, atol=1e-7) is None:
        return None
    if close(broadcast, n, rtol=1e-6, atol=1e-7) is None:
        return "this is the mean over every (prediction, target) PAIR: pred - y did not keep the predictions' shape"
    if focus == "mean" and abs(value / want.item() - 10) < 1e-4:
        return "the loss is 10 times the mean squared error: the sum over the 10 points"
    return close(want.detach(), n, rtol=1e-6, atol=1e-7)


def check_regression_loss(fn: Callable[..., torch.Tensor], verbose: bool = True) -> Callable[..., torch.Tensor]:
    """Exercise 5 (find the bug): the repaired :func:`buggy_regression_loss`."""
    require_callable("check_regression_loss", fn)
    g = torch.Generator().manual_seed(5)
    pred = torch.randn(10, 1, generator=g)
    y = torch.randn(10, 1, generator=g)
    cases = [
        Case("targets [N, 1], like the predictions (the author's test)", ("values", pred, y)),
        Case("targets [N], a plain vector of labels: the same loss", ("values", pred, y.reshape(-1))),
        Case("one point: targets [1]", ("values", pred[:1], y[:1].reshape(-1))),
        Case("float64 predictions and targets [N]", ("values", pred.double(), y.double().reshape(-1))),
        Case("the MEAN of the squared errors (not the sum)", ("mean", pred, y.reshape(-1))),
        Case("returns a scalar tensor the gradient flows through (a loss to train with)",
             ("tensor", pred.clone().requires_grad_(True), y.reshape(-1))),
    ]
    hint = ["the loss is right when the targets have the predictions' shape and wrong when they are a plain "
            "vector: print the shape of pred - y in both cases.",
            "an [N, 1] tensor minus an [N] tensor broadcasts to [N, N]: every prediction is compared with every "
            "target. Make the two shapes agree before subtracting."]
    with keep_random_state(), one_thread():
        _, report = check_function("Exercise 5 (find the bug: a regression loss)", focused(fn), _loss_reference,
                                   cases, hint=hint, compare=_same_loss, verbose=verbose, answer=regression_loss)
    return fn if report.ok else regression_loss


# --------------------------------------------------------------------------------------------------
# exercise 6 (predict, then check): the cost of a fixed-step forward pass
# --------------------------------------------------------------------------------------------------


@prediction
@keep_random_state()
def check_rk4_nfe_prediction(guess: Optional[float], verbose: bool = True) -> int:
    """Exercise 6 (predict, then check): evaluations of the vector field in one forward pass of an ODE-Net
    solved with fixed-step RK4, step size 0.1, on [0, 1]."""
    from nodecourse.solvers import solve

    torch.manual_seed(0)
    func = ODEFunc(MLP([1, 8, 1]))
    stats = solve(func, torch.zeros(5, 1), torch.tensor([0.0, 1.0]), method="rk4", options={"step_size": 0.1}).stats
    truth = int(stats.nfe)
    check_prediction("Exercise 6 (predict: the cost of a fixed-step forward pass)", guess, truth, notebook="05",
                     variable="predicted_nfe", atol=0.5,
                     explanation=f"{int(stats.n_steps)} steps of RK4, and every step evaluates the field once per "
                                 "stage: 4 stages, so the NFE is 4 x the steps, whatever the data or the weights.",
                     verbose=verbose)
    return truth


show_answer = answers_for("05")
