"""Visible claims: a lecture states what it expects, measures it, and shows both.

A bare ``assert`` prints nothing when it holds, so the reader never sees a claim checked. Here a
claim prints the claim and the measured value when it holds, and raises :class:`ClaimFailed` with
the same line when it does not::

    claim("rk4's global order", measured=4.01, expected=4, tol=0.1)
    # ✓ rk4's global order: 4.01 (expected 4 ± 0.1)
    claim("error at t = 1", measured=3.2e-7, at_most=1e-6)
    # ✓ error at t = 1: 3.2e-07 (at most 1e-06)
    check("one solve on the union = one solve per series", torch.allclose(a, b), detail="max diff 2e-9")
    # ✓ one solve on the union = one solve per series (max diff 2e-9)
    report("speed-up of the compiled step", 3.1, why="a wall-clock time: it depends on the machine")
    # · speed-up of the compiled step: 3.1 (not checked: a wall-clock time: it depends on the machine)

Values that depend on the machine, the device or the clock go through :func:`report`, never
:func:`claim`: a lecture must not stop mid-class on another computer. ``fast_note`` says why a
number reads as it does in fast mode (``NODECOURSE_FAST=1``), where training loops are shortened.
"""
from __future__ import annotations

import math
from typing import Optional, Union

import torch

__all__ = ["claim", "check", "report", "ClaimFailed"]

Number = Union[int, float, torch.Tensor]


class ClaimFailed(AssertionError):
    """A lecture's claim did not hold; the message is the claim with the measured value."""


def claim(text: str, measured: Number, expected: Optional[Number] = None, *, tol: Optional[Number] = None,
          rel: Optional[float] = None, at_most: Optional[Number] = None, at_least: Optional[Number] = None,
          fmt: str = ".3g", fast_note: Optional[str] = None) -> float:
    """Check a measured number against what the text says, print the line, return the number.

    Give ``expected`` with ``tol`` (absolute) or ``rel`` (relative), or a bound ``at_most`` /
    ``at_least`` (or both). Raises :class:`ClaimFailed` with the printed line when it does not hold.
    """
    value = _number("measured", measured)
    parts, holds = [], True
    if expected is not None:
        target = _number("expected", expected)
        if (tol is None) == (rel is None):
            raise ValueError("claim with expected= needs exactly one of tol= (absolute) or rel= (relative).")
        allowed = _number("tol", tol) if tol is not None else abs(target) * float(rel)
        holds = abs(value - target) <= allowed
        margin = f"± {allowed:{fmt}}" if tol is not None else f"± {100 * float(rel):g}%"
        parts.append(f"expected {target:{fmt}} {margin}")
    elif tol is not None or rel is not None:
        raise ValueError("tol= and rel= go with expected=.")
    if at_most is not None:
        bound = _number("at_most", at_most)
        holds = holds and value <= bound
        parts.append(f"at most {bound:{fmt}}")
    if at_least is not None:
        bound = _number("at_least", at_least)
        holds = holds and value >= bound
        parts.append(f"at least {bound:{fmt}}")
    if not parts:
        raise ValueError("claim needs expected= (with tol= or rel=), at_most= or at_least=; to show a number "
                         "without checking it, use report().")
    holds = holds and not math.isnan(value)
    _finish(text, f": {value:{fmt}} ({', '.join(parts)})", holds, fast_note)
    return value


def check(text: str, holds: Union[bool, torch.Tensor], detail: str = "", *, fast_note: Optional[str] = None) -> None:
    """A claim that is true or false (two results agree, a shape is right): print it, or raise."""
    if torch.is_tensor(holds):
        if holds.numel() != 1:
            raise ValueError(f"check needs one truth value, got a tensor of shape {tuple(holds.shape)}; "
                             f"reduce it with .all() or .any().")
        holds = bool(holds)
    if not isinstance(holds, bool):
        raise TypeError(f"check needs a bool (or a one-element tensor), got {type(holds).__name__}.")
    _finish(text, f" ({detail})" if detail else "", holds, fast_note)


def report(text: str, measured: Number, why: str, *, fmt: str = ".3g", fast_note: Optional[str] = None) -> float:
    """Show a number that is not checked (it depends on the clock, the machine or the seed), and why."""
    value = _number("measured", measured)
    line = f"· {text}: {value:{fmt}} (not checked: {why})"
    print(line + _fast_suffix(fast_note))
    return value


def _finish(text: str, rest: str, holds: bool, fast_note: Optional[str]) -> None:
    if holds:
        print(f"✓ {text}{rest}{_fast_suffix(fast_note)}")
        return
    raise ClaimFailed(f"✗ {text}{rest}{_fast_suffix(fast_note)}")


def _fast_suffix(fast_note: Optional[str]) -> str:
    from .config import FAST

    return f" [fast mode: {fast_note}]" if fast_note and FAST else ""


def _number(name: str, value: Number) -> float:
    if torch.is_tensor(value):
        if value.numel() != 1:
            raise ValueError(f"{name} must be one number, got a tensor of shape {tuple(value.shape)}.")
        return float(value.detach())
    if isinstance(value, bool) or not isinstance(value, (int, float)) and not hasattr(value, "__float__"):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}.")
    return float(value)
