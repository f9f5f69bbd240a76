"""The exercise checker: run a learner's function against the reference on several cases and report.

Every exercise in the course is a function the learner completes. Its checker calls
``check_function``; the learner gets a short report (what passed, what failed, a hint), and the
notebook goes on with the learner's function when it passes and with the reference otherwise, so an
exercise notebook runs top to bottom whatever state its exercises are in.
"""
from __future__ import annotations

import contextlib
import random
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch

__all__ = ["Case", "Report", "check_function", "close", "require_callable", "keep_random_state", "one_thread",
           "run_check"]


@dataclass
class Case:
    """One call to check: positional ``args``, keyword ``kwargs`` and a label for the report."""

    label: str
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)


@dataclass
class Report:
    """What a check found: ``status`` is "passed", "failed" or "not attempted"."""

    exercise: str
    status: str
    passed: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == "passed"


def close(expected: Any, got: Any, rtol: float = 1e-5, atol: float = 1e-6) -> Optional[str]:
    """``None`` when ``got`` matches ``expected`` (tensors, numbers, tuples of them), else why not."""
    if isinstance(expected, (tuple, list)):
        if not isinstance(got, (tuple, list)) or len(got) != len(expected):
            return f"expected a sequence of {len(expected)} items, got {type(got).__name__}"
        for i, (e, g) in enumerate(zip(expected, got)):
            why = close(e, g, rtol, atol)
            if why:
                return f"item {i}: {why}"
        return None
    if torch.is_tensor(expected):
        if not torch.is_tensor(got):
            return f"expected a tensor, got {type(got).__name__}"
        if got.shape != expected.shape:
            return f"expected shape {tuple(expected.shape)}, got {tuple(got.shape)}"
        if not torch.allclose(got.to(expected.dtype), expected, rtol=rtol, atol=atol, equal_nan=True):
            diff = (got.to(expected.dtype) - expected).abs().max().item()
            return f"values differ from the reference by up to {diff:.3g}"
        return None
    if isinstance(expected, (int, float)):
        try:
            value = float(got)
        except (TypeError, ValueError):
            return f"expected a number, got {type(got).__name__}"
        if abs(value - expected) > atol + rtol * abs(expected):
            return f"expected {expected:.6g}, got {value:.6g}"
        return None
    return None if got == expected else f"expected {expected!r}, got {got!r}"


def check_function(exercise: str, learner: Callable, reference: Callable, cases: Sequence[Case],
                   hint: str = "", compare: Callable[[Any, Any], Optional[str]] = close,
                   verbose: bool = True) -> tuple[Callable, Report]:
    """Run ``learner`` and ``reference`` on every case and compare with ``compare``.

    Returns ``(function to go on with, report)``: the learner's function when every case passed,
    otherwise the reference, so the rest of the notebook still works.
    """
    report = Report(exercise, "passed")
    for case in cases:
        expected = reference(*case.args, **case.kwargs)
        try:
            got = learner(*case.args, **case.kwargs)
        except NotImplementedError:
            report.status = "not attempted"
            break
        except Exception as exc:  # noqa: BLE001 - the learner's bug, reported not raised
            where = traceback.extract_tb(exc.__traceback__)[-1]
            report.failed.append(f"{case.label}: raised {type(exc).__name__}: {exc} (line {where.lineno})")
            continue
        why = compare(expected, got)
        (report.failed if why else report.passed).append(case.label if not why else f"{case.label}: {why}")
    if report.status != "not attempted" and report.failed:
        report.status = "failed"
    if verbose:
        _print(report, hint)
    return (learner if report.ok else reference), report


def _print(report: Report, hint: str) -> None:
    if report.status == "not attempted":
        print(f"{report.exercise}: not attempted yet. Replace the `raise NotImplementedError` with your code "
              f"and run the cell again; meanwhile the notebook goes on with the reference solution.")
        return
    n = len(report.passed) + len(report.failed)
    mark = "passed" if report.ok else "FAILED"
    print(f"{report.exercise}: {mark} {len(report.passed)}/{n} checks.")
    for label in report.passed:
        print(f"  ok    {label}")
    for label in report.failed:
        print(f"  wrong {label}")
    if not report.ok:
        if hint:
            print(f"  hint: {hint}")
        print("  The notebook goes on with the reference solution until this passes.")


def require_callable(name: str, fn: Any) -> None:
    """The learner passed the function itself, not the result of calling it."""
    if not callable(fn):
        raise TypeError(
            f"{name} expects your function itself, got {type(fn).__name__}; pass the function without "
            f"calling it, e.g. {name}(my_function), not {name}(my_function(...))."
        )


@contextlib.contextmanager
def keep_random_state() -> Iterator[None]:
    """Restore Python's, NumPy's and torch's (CPU) random state afterwards: checking changes nothing.
    A context manager, or a decorator: ``@keep_random_state()``."""
    states = random.getstate(), np.random.get_state(), torch.get_rng_state()
    try:
        yield
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.set_rng_state(states[2])


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Run on one CPU thread, then restore: for models this small, more threads only add overhead."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def run_check(exercise: str, learner: Callable, reference: Callable, cases: Sequence[Case], hint: str = "",
              compare: Callable[[Any, Any], Optional[str]] = close, verbose: bool = True) -> bool:
    """:func:`check_function` on one thread and without touching the random state; True when every case passed."""
    with keep_random_state(), one_thread():
        _, report = check_function(exercise, learner, reference, cases, hint=hint, compare=compare, verbose=verbose)
    return report.ok
