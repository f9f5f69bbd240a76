"""Input checks for the solvers: each bad input gets an error that says what is wrong and what to do."""
from __future__ import annotations

import math
from typing import Any, Callable, Optional, Sequence, Union

import torch

from . import scipy_solver
from .tableaux import ADAPTIVE_METHODS, FIXED_METHODS, METHODS, TABLEAUX

State = Union[torch.Tensor, Sequence[torch.Tensor]]

class SolverError(ValueError):
    """A solve that cannot go on: step-size underflow, too many steps, or a non-finite state."""


FIXED_OPTIONS = {"step_size", "grid_constructor", "perturb", "interp", "max_num_steps", "per_sample", "compile"}
INTERPOLATIONS = ("linear", "cubic", "exact")  # options["interp"] of the fixed-step methods; "linear" by default
ADAPTIVE_OPTIONS = {"first_step", "max_num_steps", "safety", "ifactor", "dfactor", "norm", "per_sample", "compile",
                    "step_t", "jump_t", "min_step", "max_step"}


def check_method(method: str) -> None:
    if not isinstance(method, str) or (method not in TABLEAUX and method != scipy_solver.NAME):
        raise ValueError(
            f"Unknown method {method!r}. Known methods: fixed step {', '.join(FIXED_METHODS)} "
            f"(pass options={{'step_size': h}}); adaptive {', '.join(ADAPTIVE_METHODS)}; and "
            f"{scipy_solver.NAME} (SciPy's solve_ivp, options={{'solver': 'LSODA'}}, for stiff problems)."
        )


def check_options(method: str, options: Optional[dict]) -> dict:
    """Return a copy of ``options`` after checking its keys and values for ``method``."""
    if options is None:
        options = {}
    if not isinstance(options, dict):
        raise TypeError(f"options must be a dict, got {type(options).__name__}.")
    options = dict(options)
    if method == scipy_solver.NAME:
        unknown = sorted(set(options) - scipy_solver.OPTIONS - {"norm"})  # norm: passed on by the adjoint
        if unknown:
            raise ValueError(f"Unknown option(s) {unknown} for {method!r}. Allowed: {sorted(scipy_solver.OPTIONS)}.")
        scipy_solver.check_solver_options(options)
        return options
    adaptive = TABLEAUX[method].adaptive
    allowed = ADAPTIVE_OPTIONS if adaptive else FIXED_OPTIONS
    unknown = sorted(set(options) - allowed)
    if unknown:
        kind = "adaptive" if adaptive else "fixed-step"
        raise ValueError(
            f"Unknown option(s) {unknown} for the {kind} method {method!r}. "
            f"Allowed: {sorted(allowed)}."
        )
    for key in ("per_sample", "compile"):
        if key in options and not isinstance(options[key], bool):
            raise TypeError(f"options[{key!r}] must be True or False, got {options[key]!r}.")
    if "max_num_steps" in options:
        steps = options["max_num_steps"]
        if isinstance(steps, bool) or not isinstance(steps, (int, float)) or not 1 <= steps < float("inf") \
                or int(steps) != steps:
            raise ValueError(f"max_num_steps must be a positive integer, got {steps!r}.")
    if not adaptive:
        if options.get("step_size") is not None:
            h = options["step_size"]
            h = float(h) if isinstance(h, (int, float)) or (torch.is_tensor(h) and h.numel() == 1) else None
            if h is None or not 0 < h < float("inf"):
                raise ValueError(f"step_size must be a positive finite number, got {options['step_size']!r}.")
            if options.get("grid_constructor") is not None:
                raise ValueError("step_size and grid_constructor both set the grid: pass only one of them.")
        if options.get("grid_constructor") is not None and not callable(options["grid_constructor"]):
            raise TypeError("grid_constructor must be callable as grid_constructor(func, y0, t) -> 1-D tensor.")
        if options.get("interp", "linear") not in INTERPOLATIONS:
            raise ValueError(f"options['interp'] must be one of {', '.join(map(repr, INTERPOLATIONS))}, got "
                             f"{options['interp']!r}. It says how output times between grid points are served: "
                             f"'linear' (the default) or 'cubic' interpolation over the step that holds them, or "
                             f"'exact' (each output time becomes a grid point, at the cost of an extra step).")
        if "perturb" in options and not isinstance(options["perturb"], bool):
            raise TypeError(f"options['perturb'] must be True or False, got {options['perturb']!r}.")
    else:
        for key, low, high in (("safety", 0.0, 1.0), ("dfactor", 0.0, 1.0)):
            if key in options and not low < float(options[key]) <= high:
                raise ValueError(f"{key} must lie in ({low}, {high}], got {options[key]!r}.")
        if "ifactor" in options and not float(options["ifactor"]) >= 1.0:
            raise ValueError(f"ifactor must be >= 1, got {options['ifactor']!r}.")
        low, high = float(options.get("min_step", 0.0)), float(options.get("max_step", float("inf")))
        if not 0 <= low <= high or low == float("inf"):
            raise ValueError(f"min_step and max_step must satisfy 0 <= min_step <= max_step (min_step finite), got "
                             f"min_step={options.get('min_step', 0.0)!r}, max_step={options.get('max_step', 'inf')!r}.")
        if "first_step" in options and options["first_step"] is not None:
            first = options["first_step"]
            if torch.is_tensor(first) and first.numel() > 1:
                if not options.get("per_sample") or first.dim() != 1:
                    raise ValueError(f"first_step may be a tensor of shape [batch] (one first step per sample) only "
                                     f"with options={{'per_sample': True}}; got shape {tuple(first.shape)}"
                                     f"{'' if options.get('per_sample') else ' without per_sample'}.")
                if not bool(((first > 0) & torch.isfinite(first)).all()):
                    raise ValueError("first_step must hold positive finite numbers, one per sample.")
            elif not 0 < float(first) < float("inf"):
                raise ValueError(f"first_step must be a positive finite number, got {first!r}.")
    return options


def check_tolerances(rtol: Any, atol: Any) -> None:
    for name, value in (("rtol", rtol), ("atol", atol)):
        if torch.is_tensor(value):
            bad = bool((value < 0).any()) or not bool(torch.isfinite(value).all())
        else:
            bad = not (isinstance(value, (int, float)) and 0 <= value < float("inf"))
        if bad:
            raise ValueError(f"{name} must be a finite number >= 0, got {value!r}.")


def all_finite(x: torch.Tensor) -> bool:
    """Whether every entry of ``x`` is finite, by one sum: a sum is finite only if every term is (a NaN or
    an infinity carries through), and only a sum that overflows needs the entry-by-entry test. About a
    fifth of the cost of ``isfinite(x).all()``, which runs several kernels (3.5 against 18 us on 256 values)."""
    x = x.detach()  # autograd would otherwise record the sum
    return x.numel() == 0 or math.isfinite(float(x.sum())) or bool(torch.isfinite(x).all())


def check_y0(y0: State) -> tuple[torch.Tensor, ...]:
    """Return ``y0`` as a tuple of tensors after checking they are floating, finite and alike."""
    is_tuple = isinstance(y0, (tuple, list))
    tensors = tuple(y0) if is_tuple else (y0,)
    if is_tuple and len(tensors) == 0:
        raise ValueError("y0 is an empty tuple; pass at least one tensor.")
    for i, y in enumerate(tensors):
        where = f"y0[{i}]" if is_tuple else "y0"
        if not torch.is_tensor(y):
            raise TypeError(
                f"{where} must be a torch.Tensor, got {type(y).__name__}. "
                f"Convert it with torch.tensor(..., dtype=torch.float32)."
            )
        if not torch.is_floating_point(y):
            raise TypeError(
                f"{where} has dtype {y.dtype}, but ODE states must be floating point. "
                f"Convert it with {where}.float() (or .double() for float64)."
            )
        if y.dtype in (torch.float16, torch.bfloat16):
            raise TypeError(
                f"{where} has dtype {y.dtype}, which keeps only 3-4 significant digits: no solver can meet "
                f"tolerances below that, and an adaptive one takes thousands of steps trying. Solve in "
                f"float32 and cast back: odeint(func, {where}.float(), t).to({y.dtype}) (a field with half-"
                f"precision weights: func.float())."
            )
    dtypes = {y.dtype for y in tensors}
    devices = {y.device for y in tensors}
    if len(dtypes) > 1 or len(devices) > 1:
        raise ValueError(
            f"All tensors of a tuple state must share dtype and device, got dtypes {sorted(map(str, dtypes))} "
            f"and devices {sorted(map(str, devices))}."
        )
    for i, y in enumerate(tensors):
        finite = all_finite(y)
        if not finite:
            where = f"y0[{i}]" if is_tuple else "y0"
            raise ValueError(f"{where} contains NaN or infinite values; the initial state must be finite.")
    return tensors


FEW_TIMES = 64  # output times up to this many are checked on the host


def check_t(t: Any, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Return the output times as a 1-D floating tensor on ``device`` after checking monotonicity."""
    if not torch.is_tensor(t):
        try:
            t = torch.as_tensor(t)
        except Exception as exc:  # noqa: BLE001 - re-raised with advice
            raise TypeError(f"t must be a 1-D tensor of times, got {type(t).__name__}.") from exc
    if t.dim() != 1 and not (t.dim() == 2 and t.shape[0] > 0):
        raise ValueError(
            f"t must be a 1-D tensor of output times (or [batch, T], each sample's own, with "
            f"options={{'per_sample': True}}), got shape {tuple(t.shape)}. "
            f"For a single end time use torch.tensor([t0, t1])."
        )
    if t.shape[-1] == 0:
        raise ValueError("t is empty; pass at least the initial time, e.g. torch.tensor([0.0, 1.0]).")
    if not torch.is_floating_point(t):
        t = t.to(dtype)
    elif t.dtype != torch.float64 and dtype == torch.float64:
        t = t.to(torch.float64)
    if torch.device(device).type == "mps" and t.dtype == torch.float64:
        t = t.to(torch.float32)  # MPS has no float64; the state is float32 there anyway
    if t.device != torch.device(device):
        t = t.to(device)
    if t.dim() == 1 and len(t) <= FEW_TIMES:  # read once and checked on the host: fewer operations
        values = t.tolist()
        finite = all(math.isfinite(v) for v in values)
        steps = [b - a for a, b in zip(values, values[1:])]
        monotone = all(d > 0 for d in steps) or all(d < 0 for d in steps)
    else:
        finite = bool(torch.isfinite(t).all())
        diffs = t[..., 1:] - t[..., :-1]
        monotone = bool((diffs > 0).all()) or bool((diffs < 0).all())
    if not finite:
        raise ValueError("t contains NaN or infinite values.")
    if t.shape[-1] > 1:
        if not monotone:
            where = "" if t.dim() == 1 else " in every row (all rows in the same direction)"
            shown = t.tolist() if t.numel() <= 10 else t
            raise ValueError(
                f"t must be strictly increasing or strictly decreasing{where}, got {shown}. "
                f"Sort the times and remove duplicates."
            )
    return t


def check_sample_times(t: torch.Tensor, y0: tuple[torch.Tensor, ...], per_sample: bool, method: str) -> None:
    """Per-sample output times ``[B, T]`` need a per-sample adaptive solve of a batch of ``B``."""
    if not per_sample:
        raise ValueError(f"t of shape {tuple(t.shape)} gives each sample its own output times; that needs "
                         f"options={{'per_sample': True}} (or pass one 1-D t shared by the batch).")
    if method not in ADAPTIVE_METHODS:
        raise ValueError(f"Per-sample output times need an adaptive method ({', '.join(ADAPTIVE_METHODS)}), "
                         f"which serves each sample's times from its own steps; got {method!r}.")
    batch = y0[0].shape[0] if y0[0].dim() > 0 else None
    if batch != t.shape[0]:
        raise ValueError(f"t has {t.shape[0]} rows of output times but the batch (dim 0 of y0) has "
                         f"{batch if batch is not None else 'no'} samples: give one row per sample.")


def check_func_output(f: Any, y0: tuple[torch.Tensor, ...], is_tuple: bool) -> tuple[torch.Tensor, ...]:
    """Check the vector field's first output against the state: same structure, shapes and dtype."""
    outs = tuple(f) if isinstance(f, (tuple, list)) else (f,)
    if is_tuple != isinstance(f, (tuple, list)) or len(outs) != len(y0):
        want = f"a tuple of {len(y0)} tensors" if is_tuple else "a single tensor"
        got = f"a tuple of {len(outs)}" if isinstance(f, (tuple, list)) else type(f).__name__
        raise TypeError(f"func(t, y) must return {want} like the state, got {got}.")
    for i, (fi, yi) in enumerate(zip(outs, y0)):
        where = f"func(t, y)[{i}]" if is_tuple else "func(t, y)"
        if not torch.is_tensor(fi):
            raise TypeError(f"{where} returned {type(fi).__name__}; it must return a torch.Tensor.")
        if fi.shape != yi.shape:
            raise ValueError(
                f"{where} returned shape {tuple(fi.shape)} but the state has shape {tuple(yi.shape)}. "
                f"The vector field must return dy/dt with exactly the state's shape."
            )
        if fi.dtype != yi.dtype:
            raise TypeError(
                f"{where} returned dtype {fi.dtype} but the state has dtype {yi.dtype}. "
                f"Make the vector field compute in the state's dtype (e.g. cast its parameters with .to(y.dtype))."
            )
    return outs


def check_callable(func: Callable) -> None:
    if not callable(func):
        raise TypeError(f"func must be callable as func(t, y), got {type(func).__name__}.")


__all__ = [
    "SolverError",
    "check_method",
    "check_options",
    "check_tolerances",
    "check_y0",
    "check_t",
    "check_func_output",
    "check_callable",
    "METHODS",
]
