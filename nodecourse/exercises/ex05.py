"""Checkers for notebook 05 (regression, ResNet vs ODE-Net): building the ODE-Net of Chen et al. (2018),
one training step, interpolation vs extrapolation errors, and training with another solver.

Each ``check_*`` runs the learner's function against the reference below on several cases, prints a
report and returns the function to go on with (the learner's when every case passed, else the
reference). The references are public so a notebook can also call them directly. Checkers leave the
global random state as they found it.
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

from .checking import Case, close, keep_random_state, require_callable, run_check
from .checking import answers_for, check_function, check_prediction, keep_random_state, one_thread, prediction

__all__ = ["show_answer", "regression_loss", "buggy_regression_loss", "check_regression_loss", "check_rk4_nfe_prediction", 
    "build_odenet",
    "training_step",
    "extrapolation_errors",
    "train_with_solver",
    "check_build_odenet",
    "check_training_step",
    "check_extrapolation_errors",
    "check_train_with_solver",
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
    if isinstance(n, bool) or not isinstance(n, int) or n < 2:
        raise ValueError(f"n must be an integer >= 2 (grid points), got n={n!r}.")
    if not lo < hi:
        raise ValueError(f"the range must satisfy lo < hi, got lo={lo}, hi={hi}.")
    param = next(model.parameters(), None) if isinstance(model, nn.Module) else None
    dtype, device = (param.dtype, param.device) if param is not None else (torch.get_default_dtype(), "cpu")
    grid = torch.linspace(lo, hi, n, dtype=dtype, device=device).unsqueeze(1)
    with torch.no_grad():
        squared = ((model(grid) - (grid**3 + 0.1 * grid)) ** 2).squeeze(1)
    inside = grid.squeeze(1).abs() <= 2
    return squared[inside].mean().item(), squared[~inside].mean().item()


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


def _as_number(value: Any, what: str) -> float:
    """``value`` (a float, an int or a one-element tensor) as a float, or a TypeError saying what it was."""
    if torch.is_tensor(value):
        if value.numel() != 1:
            raise TypeError(f"{what} must be one number, got a tensor of shape {tuple(value.shape)}")
        return float(value.detach())
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    raise TypeError(f"{what} must be a number (e.g. loss.item()), got {type(value).__name__}")


# --------------------------------------------------------------------------------------------------
# exercise 1: build the ODE-Net
# --------------------------------------------------------------------------------------------------


def _same_odenet(expected: ODEBlock, got: Any) -> Optional[str]:
    """Same structure and settings as the reference, and the same outputs once given the same weights."""
    if not isinstance(got, ODEBlock):
        return f"expected an ODEBlock (from nodecourse.models), got {type(got).__name__}"
    for attr, what in (("t1", "the end time t1"), ("method", "the method"), ("rtol", "rtol"), ("atol", "atol")):
        if getattr(got, attr) != getattr(expected, attr):
            return f"{what} is {getattr(got, attr)!r}, expected {getattr(expected, attr)!r}"
    want_h = (expected.options or {}).get("step_size")
    got_h = (got.options or {}).get("step_size")
    if got_h != want_h:
        return f"options step_size is {got_h!r}, expected {want_h!r}"
    if got.adjoint:
        return "adjoint=True; this ODE-Net backpropagates through the solver (adjoint=False, the default)"
    if not isinstance(got.func, ODEFunc):
        return f"the dynamics should be an ODEFunc wrapping the MLP, got {type(got.func).__name__}"
    if not got.func.time_dependent:
        return "the dynamics ignore the time: build ODEFunc(mlp, time_dependent=True)"
    want = [tuple(p.shape) for p in expected.parameters()]
    have = [tuple(p.shape) for p in got.parameters()]
    if have != want:
        n_want, n_have = sum(math.prod(s) for s in want), sum(math.prod(s) for s in have)
        return f"{n_have} parameters shaped {have}, expected {n_want} shaped {want} (an MLP [2, hidden, 1])"
    _randomise(expected, seed=5)
    with torch.no_grad():
        for p_got, p_ref in zip(got.parameters(), expected.parameters()):
            p_got.copy_(p_ref)
        inputs = torch.linspace(-3.0, 3.0, 13).unsqueeze(1)
        why = close(expected(inputs), got(inputs), rtol=1e-5, atol=1e-5)
    if why:
        return f"with the reference's weights the outputs differ: {why}"
    return None


def check_build_odenet(fn: Callable[..., nn.Module], verbose: bool = True) -> Callable[..., nn.Module]:
    """Exercise 1: the ODE-Net of the regression example, built from nodecourse parts."""
    require_callable("check_build_odenet", fn)
    cases = [
        Case("the original: hidden = 25, dopri5", ()),
        Case("hidden = 8", (8,)),
        Case("Euler with step_size = 0.25", (25, "euler", 0.25)),
        Case("RK4 with step_size = 0.5, hidden = 6", (6,), {"method": "rk4", "step_size": 0.5}),
    ]
    hint = ("ODEBlock(ODEFunc(MLP([2, hidden, 1]), time_dependent=True), t1=1.0, method=method, rtol=1e-3, "
            "atol=1e-3, options=None if step_size is None else {'step_size': step_size}).")
    ok = run_check("Exercise 1 (build the ODE-Net)", fn, build_odenet, cases, hint, _same_odenet, verbose)
    return fn if ok else build_odenet


# --------------------------------------------------------------------------------------------------
# exercise 2: one training step
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _StepSetup:
    """A small model, an optimizer and data, rebuilt identically for the reference and the learner."""

    model: str
    optimizer: str
    lr: float
    steps: int
    seed: int


def _build_setup(setup: _StepSetup) -> tuple[nn.Module, torch.optim.Optimizer, torch.Tensor, torch.Tensor]:
    if setup.model == "mlp":
        model = MLP([1, 4, 1])
    elif setup.model == "resnet":
        model = ResNet(MLP([1, 5, 1]), depth=2)
    else:
        model = build_odenet(hidden=4, method="euler", step_size=0.5)
    _randomise(model, setup.seed, scale=0.5)
    params = model.parameters()
    optimizer = torch.optim.SGD(params, lr=setup.lr) if setup.optimizer == "sgd" else torch.optim.Adam(params, lr=setup.lr)
    x, y = cubic_regression()
    return model, optimizer, x, y


def _steps_runner(step: Callable[..., Any]) -> Callable[[_StepSetup], tuple[torch.Tensor, torch.Tensor]]:
    """Wrap a step function: run it ``steps`` times on a fresh setup, return (losses, final parameters)."""

    def run(setup: _StepSetup) -> tuple[torch.Tensor, torch.Tensor]:
        model, optimizer, x, y = _build_setup(setup)
        losses = [_as_number(step(model, optimizer, x, y), "the returned loss") for _ in range(setup.steps)]
        params = torch.cat([p.detach().flatten() for p in model.parameters()])
        return torch.tensor(losses, dtype=torch.float64), params

    return run


def _same_steps(expected: tuple[torch.Tensor, torch.Tensor], got: tuple[torch.Tensor, torch.Tensor]) -> Optional[str]:
    why = close(expected[1], got[1], rtol=1e-5, atol=1e-6)
    if why:
        return (f"the parameters after the step(s) differ: {why} (clear the old gradients, then backward, then "
                "step the optimizer you were given)")
    why = close(expected[0], got[0], rtol=1e-5, atol=1e-6)
    if why:
        return (f"the returned losses {[round(v, 5) for v in got[0].tolist()]} differ from the expected "
                f"{[round(v, 5) for v in expected[0].tolist()]} (return the mean squared error before the update)")
    return None


def check_training_step(fn: Callable[..., float], verbose: bool = True) -> Callable[..., float]:
    """Exercise 2: one full-batch optimizer step on the MSE, returning the loss before the update."""
    require_callable("check_training_step", fn)
    cases = [
        Case("one SGD step on an MLP [1, 4, 1]", (_StepSetup("mlp", "sgd", 0.01, 1, 1),)),
        Case("three SGD steps in a row (gradients must not pile up)", (_StepSetup("mlp", "sgd", 0.01, 3, 2),)),
        Case("two Adam steps on a ResNet (use the optimizer you are given)", (_StepSetup("resnet", "adam", 0.05, 2, 3),)),
        Case("two SGD steps on an ODE-Net (Euler, h = 0.5)", (_StepSetup("odenet", "sgd", 0.01, 2, 4),)),
    ]
    hint = ("optimizer.zero_grad(); loss = torch.nn.functional.mse_loss(model(x), y); loss.backward(); "
            "optimizer.step(); return loss.item().")
    ok = run_check("Exercise 2 (a training step)", _steps_runner(fn), _steps_runner(training_step), cases, hint,
                    _same_steps, verbose)
    return fn if ok else training_step


# --------------------------------------------------------------------------------------------------
# exercise 3: interpolation vs extrapolation
# --------------------------------------------------------------------------------------------------


def _two_numbers(expected: tuple[float, float], got: Any) -> Optional[str]:
    if not isinstance(got, (tuple, list)) or len(got) != 2:
        return f"expected a pair (mse_inside, mse_outside), got {type(got).__name__}"
    try:
        values = tuple(_as_number(v, "each error") for v in got)
    except TypeError as err:
        return str(err)
    if close(expected[0], values[1], rtol=1e-4, atol=1e-6) is None and close(expected[1], values[0], rtol=1e-4, atol=1e-6) is None:
        return "the two errors are swapped: return (inside, outside)"
    for name, e, g in (("inside (|x| <= 2)", expected[0], values[0]), ("outside (|x| > 2)", expected[1], values[1])):
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
        Case("the identity map, 100 points on [-3, 3]", (nn.Identity(),)),
        Case("a ResNet", (resnet,)),
        Case("an ODE-Net (RK4)", (odenet, -3.0, 3.0, 100)),
        Case("50 points on [-4, 4]", (resnet,), {"lo": -4.0, "hi": 4.0, "n": 50}),
        Case("an asymmetric range [-3, 2.5], 40 points", (odenet, -3.0, 2.5, 40)),
        Case("a float64 model", (double,)),
    ]
    hint = ("grid = torch.linspace(lo, hi, n).unsqueeze(1) (on the model's dtype and device); squared errors "
            "(model(grid) - (grid**3 + 0.1 * grid))**2 under torch.no_grad(); inside = grid.abs() <= 2; return "
            "(mean over inside, mean over the rest) as floats.")
    ok = run_check("Exercise 3 (extrapolation errors)", fn, extrapolation_errors, cases, hint, _two_numbers, verbose)
    return fn if ok else extrapolation_errors


# --------------------------------------------------------------------------------------------------
# exercise 4: train with another solver
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Trained:
    """The reference's result with what the comparison needs to know about the case."""

    loss: float
    nfe: int
    method: str
    step_size: Optional[float]
    n_iters: int


@functools.lru_cache(maxsize=None)  # deterministic (seeded, on the CPU): re-running a check costs only the learner's runs
def _reference_run(method: str, step_size: Optional[float] = None, n_iters: int = 300, seed: int = 0) -> _Trained:
    loss, nfe = train_with_solver(method, step_size, n_iters, seed)
    return _Trained(loss, nfe, method, step_size, n_iters)


def _fixed_nfe(method: str, step_size: float) -> int:
    """Evaluations of one forward pass on [0, 1]: stages times steps."""
    return TABLEAUX[method].n_stages * round(1.0 / step_size)


def _trained_well(expected: _Trained, got: Any) -> Optional[str]:
    if not isinstance(got, (tuple, list)) or len(got) != 2:
        return f"expected a pair (final_loss, nfe), got {type(got).__name__}"
    try:
        loss, nfe = _as_number(got[0], "the final loss"), _as_number(got[1], "the NFE")
    except TypeError as err:
        return str(err)
    if not math.isfinite(loss) or loss >= LOSS_BAR:
        return (f"final loss {loss:.4g} is not below {LOSS_BAR} after {expected.n_iters} iterations (the reference "
                f"reaches {expected.loss:.4g}): train with Adam at lr 0.01 and return the MSE after training")
    if expected.method in FIXED_METHODS:
        want = _fixed_nfe(expected.method, expected.step_size)
        if nfe != want:
            return (f"NFE {nfe:g}, but one forward pass of {expected.method} with h = {expected.step_size} costs "
                    f"{TABLEAUX[expected.method].n_stages} stages x {round(1 / expected.step_size)} steps = {want}")
    elif not expected.nfe / 2 <= nfe <= 2 * expected.nfe:
        return (f"NFE {nfe:g} is far from the reference's {expected.nfe} for one forward pass: return "
                "model.nfe_forward after evaluating the trained model once (not a sum over training)")
    return None


def check_train_with_solver(fn: Callable[..., tuple[float, int]], verbose: bool = True
                            ) -> Callable[..., tuple[float, int]]:
    """Exercise 4: train the ODE-Net with a given solver; the loss must fall below LOSS_BAR and the NFE fit the method."""
    require_callable("check_train_with_solver", fn)
    cases = [
        Case("Euler, h = 0.25, 300 iterations", ("euler", 0.25, 300)),
        Case("RK4, h = 0.5, 300 iterations", ("rk4", 0.5), {"n_iters": 300}),
        Case("Dopri5 (adaptive), 300 iterations, seed 1", ("dopri5",), {"n_iters": 300, "seed": 1}),
    ]
    hint = ("seed_everything(seed); model = build_odenet(method=method, step_size=step_size); train(model, "
            "torch.nn.MSELoss(), (x, y), n_iters, lr=0.01, optimizer='adam'); then evaluate the MSE once under "
            "torch.no_grad() and return (loss.item(), model.nfe_forward).")
    ok = run_check("Exercise 4 (train with another solver)", fn, _reference_run, cases, hint, _trained_well, verbose)
    return fn if ok else train_with_solver



# --- exercise 5 (find the bug) and exercise 6 (predict, then check) ------------------------------

def regression_loss(pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The mean squared error between predictions ``pred`` ``[N, 1]`` and targets ``y`` (``[N]`` or ``[N, 1]``)."""
    return ((pred - y.reshape(pred.shape)) ** 2).mean()


def buggy_regression_loss(pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Exercise 5 ships this broken :func:`regression_loss` for the learner to repair."""
    return ((pred - y) ** 2).mean()


def check_regression_loss(fn: Callable[..., torch.Tensor], verbose: bool = True) -> Callable[..., torch.Tensor]:
    """Exercise 5 (find the bug): the repaired :func:`buggy_regression_loss`."""
    require_callable("check_regression_loss", fn)
    g = torch.Generator().manual_seed(5)
    pred = torch.randn(10, 1, generator=g)
    y = torch.randn(10, 1, generator=g)
    cases = [
        Case("targets [N, 1], like the predictions", (pred, y)),
        Case("targets [N] (a plain vector of labels)", (pred, y.reshape(-1))),
        Case("one point: targets [1]", (pred[:1], y[:1].reshape(-1))),
        Case("float64 targets [N]", (pred.double(), y.double().reshape(-1))),
    ]
    hint = ["the loss is right when the targets have the predictions' shape and wrong when they are a plain "
            "vector: what shape does pred - y have then?",
            "[N, 1] minus [N] broadcasts to [N, N]: every prediction is compared with every target. Give the "
            "targets the predictions' shape before subtracting."]

    def compare(expected: Any, got: Any) -> Optional[str]:
        if not torch.is_tensor(got) or got.dim() != 0:
            return f"return a 0-d tensor (a scalar loss), got {getattr(got, 'shape', type(got).__name__)}"
        return close(expected, got, rtol=1e-6, atol=1e-7)

    return check_function("Exercise 5 (find the bug: a regression loss)", fn, regression_loss, cases, hint=hint,
                          compare=compare, verbose=verbose)[0]


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
                     explanation=f"{int(stats.n_steps)} steps of RK4, and every step evaluates the field once per stage: "
                                 "4 stages, so the NFE is 4 x the steps, whatever the data or the weights.",
                     verbose=verbose)
    return truth


show_answer = answers_for("05")
