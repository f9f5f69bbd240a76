"""Small argument checks shared by the data, model, training, plotting and config modules.

What counts as an integer or a real number is decided here, once: Python and NumPy integers are
integers (``np.int64(16)`` is a fine layer width), ``True``/``False`` are not; Python and NumPy
floats and integers are real numbers. Each checker raises an error that names the argument, shows
the value and says what is allowed, so a learner sees what to fix rather than a traceback from
deep inside torch.
"""
from __future__ import annotations

import math
import numbers

import numpy as np
import torch

__all__ = [
    "is_int", "is_real", "check_count", "check_positive", "check_nonnegative", "check_real", "check_flag",
    "check_seed", "check_input", "check_batch",
]

SEED_MAX = 2**32 - 1
"""The largest seed every generator accepts (NumPy's legacy seeding stops here)."""


def is_int(value: object) -> bool:
    """True for Python and NumPy integers, False for bools (``True`` is no layer width) and all else."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def is_real(value: object) -> bool:
    """True for Python and NumPy real numbers (ints and floats), False for bools, strings and tensors."""
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def check_count(name: str, value: object, minimum: int = 1, kind: str | None = None) -> int:
    """``value`` as a Python int >= ``minimum``; else a ValueError that shows what was given.

    ``kind`` words the requirement in the message (default "a positive integer" for ``minimum=1``,
    else "an integer >= minimum").
    """
    if not is_int(value) or value < minimum:
        kind = kind or ("a positive integer" if minimum == 1 else f"an integer >= {minimum}")
        raise ValueError(f"{name} must be {kind}, got {name}={value!r}.")
    return int(value)


def check_positive(name: str, value: object, what: str = "number") -> float:
    """``value`` as a finite float > 0, else a ValueError: "{name} must be a finite positive {what}, got ..."."""
    if not (is_real(value) and math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite positive {what}, got {name}={value!r}.")
    return float(value)


def check_nonnegative(name: str, value: object) -> float:
    """``value`` as a finite float >= 0, else a ValueError: "{name} must be a finite number >= 0, got ..."."""
    if not (is_real(value) and math.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be a finite number >= 0, got {name}={value!r}.")
    return float(value)


def check_real(name: str, value: object, *, low: float | None = None, strict: bool = True) -> float:
    """``value`` as a finite float, ``> low`` (``>= low`` when not ``strict``); else a clear error.

    A non-number is a TypeError; a bad number a ValueError that reads e.g. "alpha must be > 0 and
    finite, got alpha=inf." (the wording of the data generators; the models use check_positive).
    """
    if not is_real(value):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}.")
    number = float(value)
    too_low = low is not None and (number <= low if strict else number < low)
    if too_low or not math.isfinite(number):
        bound = "" if low is None else f"{'>' if strict else '>='} {low:g} and "
        raise ValueError(f"{name} must be {bound}finite, got {name}={number!r}.")
    return number


def check_flag(name: str, value: object) -> bool:
    """``value`` as a bool; a string such as ``"False"`` or a number is an error, not a silent ``True``."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {type(value).__name__} {value!r}.")
    return bool(value)


def check_seed(seed: object, name: str = "seed") -> int:
    """``seed`` as an int in ``[0, 2**32 - 1]`` (Python or NumPy), else a TypeError/ValueError."""
    if not is_int(seed):
        raise TypeError(f"{name} must be an integer in [0, 2**32 - 1], got {type(seed).__name__} {seed!r}; "
                        f"pass e.g. {name}=0.")
    if not 0 <= seed <= SEED_MAX:
        raise ValueError(f"{name} must be an integer in [0, 2**32 - 1] = [0, {SEED_MAX}], got {name}={seed}; "
                         f"pass e.g. {name}=0.")
    return int(seed)


def check_input(owner: str, x: torch.Tensor, param: torch.Tensor | None) -> None:
    """Say clearly when ``x`` is on another device or has another dtype than ``owner``'s parameter.

    Two attribute comparisons, no synchronisation: cheap enough for every forward pass. Under
    autocast, mixed dtypes are intended and are not checked.
    """
    if param is None:
        return
    if x.device != param.device:
        raise ValueError(
            f"{owner} has its parameters on {param.device} but got an input on {x.device}; move the input "
            f"with x.to('{param.device}') (or the model with model.to(x.device))."
        )
    if x.dtype != param.dtype and not torch.is_autocast_enabled(x.device.type):
        other = f" (or the model with model.to({x.dtype}))" if x.is_floating_point() else ""
        raise TypeError(
            f"{owner} has {param.dtype} parameters but got a {x.dtype} input; convert the input with "
            f"x.to({param.dtype}){other}."
        )


def check_batch(owner: str, x: object, width: int | None, param: torch.Tensor | None, *, name: str = "inputs",
                any_leading: bool = False, hint: str = "") -> None:
    """The one input check of the models: ``x`` is a tensor ``[batch, width]`` on the model's device and dtype.

    ``width=None`` accepts any width; ``any_leading=True`` also accepts ``[..., width]`` (any leading
    shape, at least one dimension). ``hint`` is appended to the shape error (e.g. how to reshape). A non-tensor
    is a TypeError, a wrong shape a ValueError that shows what was expected and what came, and the
    device and dtype are checked by :func:`check_input`.
    """
    shape = f"[batch, {'D' if width is None else width}]"
    if not isinstance(x, torch.Tensor):
        what = "" if name == "inputs" else f" as {name}"
        raise TypeError(f"{owner} needs a tensor of shape {shape}{what}, got {type(x).__name__}; convert it "
                        "with torch.as_tensor(x, dtype=torch.float32).")
    rank_ok = x.dim() >= 1 if any_leading else x.dim() == 2
    if not rank_ok or (width is not None and x.shape[-1] != width):
        raise ValueError(f"{owner} expects {name} of shape {shape}, got {tuple(x.shape)}"
                         + (f"; {hint}" if hint else "."))
    check_input(owner, x, param)
