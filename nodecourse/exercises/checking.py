"""The exercise checker: run a learner's answer, report what passed and what failed, hint in stages.

Exercises come in four kinds, all checked here:

- **implement** and **find-the-bug**: the learner writes (or repairs) a function; its checker calls
  :func:`check_function`, which runs it against the reference on labelled cases. The notebook goes on
  with the learner's function when every case passed and with the reference otherwise, so an exercise
  notebook runs top to bottom whatever state its exercises are in. A find-the-bug exercise ships the
  broken function as ``exNN.buggy_<name>``; the checker ``exNN.check_<name>`` fails it.
- **open task with a measurable target**: :func:`check_target` measures the learner's function (an
  error, an NFE, a loss) and compares each measurement with its target, not with the reference's output.
- **predict-then-check**: the learner writes a number or a choice into a variable *before* a cell
  measures it; :func:`check_prediction` compares the two and says why they differ.

Hints are staged, per exercise and per process: the first failure names the property that failed and
gives the first hint; each later failure gives the next, more specific one; the answer is never printed
by a failure, only when the learner asks for it with :func:`show_answer` (``ex03.show_answer(2)``).
Every report says which hint stage it shows ("hint: [stage 1 of 2] ..."). :func:`who` says whose function a later
cell runs ("yours" or "the reference"), so no cell calls the reference's numbers "mine".
"""
from __future__ import annotations

import contextlib
import inspect
import math
import random
import re
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence, Union

import numpy as np
import torch

__all__ = ["Case", "Report", "Target", "as_number", "check_function", "check_prediction", "check_target", "close",
           "focused",
           "require_callable", "keep_random_state", "one_thread", "run_check", "show_answer", "answers_for",
           "hints_seen", "prediction", "reset_hints", "who"]


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
    key: str = ""          # the exercise's id for show_answer, e.g. "03.2"
    hint_stage: int = 0    # the hint stage this report showed (0: none), out of hint_stages
    hint_stages: int = 0

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


# --------------------------------------------------------------------------------------------------
# staged hints and answers on request
# --------------------------------------------------------------------------------------------------

_FAILURES: dict[str, int] = {}          # exercise key -> failed checks so far, in this process
_ANSWERS: dict[str, tuple[str, Any]] = {}  # exercise key -> (title, reference function or answer text)
_GUESSES: dict[str, list[Any]] = {}     # exercise key -> the predictions made so far
_ALREADY_FAILED = 0                     # failures every exercise starts with (see reset_hints)


def exercise_key(exercise: str, module: str = "") -> str:
    """``"03.2"`` from ``"Exercise 2 (...)"`` and a checker module ``nodecourse.exercises.ex03`` (or ``"03"``)."""
    number = re.search(r"Exercise\s+(\d+)", exercise)
    notebook = re.search(r"(\d\d)$", module or "")
    if number and notebook:
        return f"{notebook.group(1)}.{number.group(1)}"
    return exercise


def reset_hints(key: Optional[str] = None, already_failed: Optional[int] = None) -> None:
    """Forget the failures (and so the hint stage) of one exercise, or of every exercise.

    ``already_failed=n`` makes every exercise start as if it had failed ``n`` times: an instructor (or a
    test) previewing the later hint stages uses it; ``0`` restores the normal start."""
    global _ALREADY_FAILED
    if already_failed is not None:
        _ALREADY_FAILED = int(already_failed)
    for store in (_FAILURES, _GUESSES):
        if key is None:
            store.clear()
        else:
            store.pop(key, None)


def hints_seen(key: str) -> int:
    """How many failed checks exercise ``key`` has had in this process (its hint stage, before capping)."""
    return _FAILURES.get(key, 0)


def _stages(hint: Union[str, Sequence[str], None]) -> list[str]:
    """Hint stages: a list is taken as it is; a single string is the specific stage after a first, generic one."""
    if not hint:
        return []
    if isinstance(hint, str):
        return ["the first failed check above names the requirement that is not met; re-read the sentence of "
                "the statement that says it, and test your function on that case alone.", hint]
    return list(hint)


def show_answer(key: str) -> str:
    """Print (and return) the reference answer of exercise ``key`` (``"03.2"``): the one way to see it.

    The checker must have run once in this session (it registers the exercise)."""
    key = str(key)
    if key not in _ANSWERS:
        known = ", ".join(sorted(_ANSWERS)) or "none yet"
        raise KeyError(f"no exercise {key!r} has been checked in this session (checked so far: {known}); "
                       f"run the exercise's checker cell first, then ask again.")
    title, answer = _ANSWERS[key]
    if callable(answer):
        try:
            text = inspect.getsource(answer)
        except (OSError, TypeError):
            text = f"(the source of {getattr(answer, '__qualname__', answer)!r} is not available)"
    else:
        text = str(answer)
    text = f"{title}: the reference answer (you asked for it)\n{text}"
    print(text)
    return text


def answers_for(notebook: str) -> Callable[[int], str]:
    """``show_answer`` for one notebook's checker module: ``ex03.show_answer(2)`` shows exercise 03.2."""
    def show(number: int) -> str:
        return show_answer(f"{notebook}.{int(number)}")
    show.__doc__ = (f"Print the reference answer of exercise ``number`` of notebook {notebook} "
                    f"(after its checker has run once).")
    return show


def who(fn: Any) -> str:
    """Whose function a notebook goes on with: ``"the reference"`` when ``fn`` is one of the course's
    references (the checker handed it back), else ``"yours"``. Later cells label their numbers with it."""
    module = getattr(fn, "__module__", "") or ""
    return "the reference" if module.startswith("nodecourse") else "yours"


def _register(key: str, title: str, answer: Any) -> None:
    _ANSWERS[key] = (title, answer)


def _print(report: Report, hint: Union[str, Sequence[str], None], not_attempted: str = "") -> None:
    if report.status == "not attempted":
        print(not_attempted or (
            f"{report.exercise}: not attempted yet. Replace the `raise NotImplementedError` with your code "
            f"and run the cell again; meanwhile the notebook goes on with the reference solution."))
        return
    n = len(report.passed) + len(report.failed)
    mark = "passed" if report.ok else "FAILED"
    print(f"{report.exercise}: {mark} {len(report.passed)}/{n} checks.")
    for label in report.passed:
        print(f"  ok    {label}")
    for label in report.failed:
        print(f"  wrong {label}")
    if not report.ok:
        stages = _stages(hint)
        if stages:
            print(f"  hint: [stage {report.hint_stage} of {len(stages)}] {stages[report.hint_stage - 1]}")
            if report.hint_stage < len(stages):
                print("  (a failure after your next change shows the next hint)")
        print(f"  stuck? show_answer({report.key!r}) prints the reference answer (only when you ask).")
        print("  The notebook goes on with the reference solution until this passes.")


def _finish(report: Report, hint: Union[str, Sequence[str], None], answer: Any, verbose: bool,
            not_attempted: str = "") -> None:
    """Settle the status, count a failure (advancing the hint stage), register the answer, print."""
    if report.status != "not attempted" and report.failed:
        report.status = "failed"
    _register(report.key, report.exercise, answer)
    stages = _stages(hint)
    report.hint_stages = len(stages)
    if report.status == "failed":
        _FAILURES[report.key] = _FAILURES.get(report.key, _ALREADY_FAILED) + 1
        report.hint_stage = min(_FAILURES[report.key], len(stages))
    if verbose:
        _print(report, hint, not_attempted)


def check_function(exercise: str, learner: Callable, reference: Callable, cases: Sequence[Case],
                   hint: Union[str, Sequence[str]] = "", compare: Callable[[Any, Any], Optional[str]] = close,
                   verbose: bool = True, answer: Any = None) -> tuple[Callable, Report]:
    """Run ``learner`` and ``reference`` on every case and compare with ``compare``.

    ``hint`` is a list of stages (or one string: then a generic first stage comes before it); the
    answer (``answer``, by default the reference's source) is shown only by :func:`show_answer`.
    Returns ``(function to go on with, report)``: the learner's function when every case passed,
    otherwise the reference, so the rest of the notebook still works.
    """
    report = Report(exercise, "passed", key=exercise_key(exercise, getattr(reference, "__module__", "")))
    for case in cases:
        expected = reference(*case.args, **case.kwargs)
        try:
            got = learner(*case.args, **case.kwargs)
        except NotImplementedError:
            report.status = "not attempted"
            break
        except Exception as exc:  # noqa: BLE001 - the learner's bug, reported not raised
            report.failed.append(f"{case.label}: {_raised(exc)}")
            continue
        try:
            why = compare(expected, got)
        except Exception as exc:  # noqa: BLE001 - a result the comparison cannot read
            why = f"the result could not be compared: {type(exc).__name__}: {exc}"
        (report.failed if why else report.passed).append(case.label if not why else f"{case.label}: {why}")
    _finish(report, hint, reference if answer is None else answer, verbose)
    return (learner if report.ok else reference), report


def focused(fn: Callable[..., Any]) -> Callable[..., tuple[str, Any]]:
    """Call ``fn`` on a case's arguments after the first, which names the requirement the case checks:
    returns ``(requirement, result)``, so the comparison checks that requirement."""
    def run(focus: str, *args: Any, **kwargs: Any) -> tuple[str, Any]:
        return focus, fn(*args, **kwargs)
    return run


def as_number(value: Any) -> Optional[float]:
    """``value`` (a float, an int or a one-element tensor) as a float, or None when it is none of these."""
    if torch.is_tensor(value):
        return float(value.detach()) if value.numel() == 1 else None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return None


def _raised(exc: BaseException) -> str:
    where = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
    detail = str(exc) or "(no message)"
    return f"raised {type(exc).__name__}: {detail}" + (f" (line {where.lineno})" if where else "")


# --------------------------------------------------------------------------------------------------
# open tasks with a measurable target
# --------------------------------------------------------------------------------------------------


@dataclass
class Target:
    """One measurable target of an open task: ``metric`` (a key of what ``measure`` returns) must be at
    most (``at_most=True``) or at least ``bound``; ``label`` says it in words for the report."""

    label: str
    metric: str
    bound: float
    at_most: bool = True

    def why_not(self, value: Any) -> Optional[str]:
        try:
            v = float(value)
        except (TypeError, ValueError):
            return f"{self.metric} must be a number, got {type(value).__name__}"
        if math.isnan(v):
            return f"{self.metric} is NaN"
        ok = v <= self.bound if self.at_most else v >= self.bound
        if ok:
            return None
        return f"{self.metric} = {v:.4g}, needs {'<=' if self.at_most else '>='} {self.bound:.4g}"


def check_target(exercise: str, learner: Callable, reference: Callable, measure: Callable[[Callable], dict],
                 targets: Sequence[Target], hint: Union[str, Sequence[str]] = "", verbose: bool = True,
                 answer: Any = None) -> tuple[Callable, Report]:
    """An open task: ``measure(fn)`` runs the learner's function and returns its metrics (a dict); each
    :class:`Target` is one labelled check. ``measure`` may also return ``"requirements"``: a list of
    ``(label, why_not_or_None)`` for what the statement requires besides the numbers. The measured values
    are printed, passed or not. Returns ``(function to go on with, report)`` like :func:`check_function`.
    """
    report = Report(exercise, "passed", key=exercise_key(exercise, getattr(reference, "__module__", "")))
    metrics: dict = {}
    try:
        metrics = dict(measure(learner))
    except NotImplementedError:
        report.status = "not attempted"
    except Exception as exc:  # noqa: BLE001 - the learner's bug, reported not raised
        report.failed.append(f"running your function: {_raised(exc)}")
    if report.status != "not attempted" and not report.failed:
        for label, why in metrics.pop("requirements", []):
            (report.failed if why else report.passed).append(label if not why else f"{label}: {why}")
        for target in targets:
            if target.metric not in metrics:
                report.failed.append(f"{target.label}: nothing measured for {target.metric}")
                continue
            why = target.why_not(metrics[target.metric])
            value = float(metrics[target.metric])
            (report.failed if why else report.passed).append(
                f"{target.label} ({target.metric} = {value:.4g})" if not why else f"{target.label}: {why}")
    _finish(report, hint, reference if answer is None else answer, verbose)
    return (learner if report.ok else reference), report


# --------------------------------------------------------------------------------------------------
# predict-then-check
# --------------------------------------------------------------------------------------------------


def check_prediction(exercise: str, guess: Any, truth: Any, *, notebook: str, variable: str = "your prediction",
                     rtol: float = 0.0, atol: float = 0.0, choices: Optional[Sequence[str]] = None,
                     explanation: str = "", unit: str = "", verbose: bool = True) -> Report:
    """Compare a prediction the learner committed to (``guess``) with the measured ``truth``.

    A number passes when ``|guess - truth| <= atol + rtol |truth|``; a choice (``choices`` given) when it
    is the measured one (case and spaces aside). ``guess`` None means not attempted: the measured value is
    then not revealed. ``explanation`` (why the value is what it is) is printed once a prediction has been
    made; it is also what :func:`show_answer` shows. Every prediction is remembered, so a report after a
    wrong first guess says so.
    """
    key = exercise_key(exercise, notebook)
    report = Report(exercise, "passed", key=key)
    shown_truth = truth if choices is None else str(truth)
    answer = f"measured: {_fmt(shown_truth)}{unit}\n{explanation}".rstrip()
    if guess is None or guess is Ellipsis:
        report.status = "not attempted"
        _finish(report, None, answer, verbose, not_attempted=(
            f"{exercise}: not attempted yet. Write your prediction into `{variable}` (replace the None) before "
            f"you run this cell; the measured value stays hidden until you have committed to one."))
        return report
    if choices is not None:
        options = [str(c) for c in choices]
        if not isinstance(guess, str) or _norm(guess) not in {_norm(c) for c in options}:
            raise TypeError(f"{variable} must be one of {options}, got {guess!r}.")
        why = None if _norm(guess) == _norm(str(truth)) else f"you chose {guess!r}, measured {str(truth)!r}"
        label = f"prediction {guess!r} (measured {str(truth)!r})" if not why else "prediction"
    else:
        if isinstance(guess, bool) or not isinstance(guess, (int, float)) and not (
                torch.is_tensor(guess) and guess.numel() == 1):
            raise TypeError(f"{variable} must be a number (int or float), got {type(guess).__name__}: {guess!r}.")
        g = float(guess)
        allowed = atol + rtol * abs(float(truth))
        why = None if abs(g - float(truth)) <= allowed else (
            f"you predicted {_fmt(g)}{unit}, measured {_fmt(float(truth))}{unit} (within {_fmt(allowed)}{unit} passes)")
        label = f"prediction {_fmt(g)}{unit} (measured {_fmt(float(truth))}{unit})" if not why else "prediction"
    earlier = _GUESSES.setdefault(key, [])
    earlier.append(guess)
    (report.failed if why else report.passed).append(label if not why else f"{label}: {why}")
    _finish(report, None, answer, verbose=False)
    if verbose:
        mark = "passed" if report.ok else "FAILED"
        print(f"{exercise}: {mark}, {report.passed[0] if report.ok else 'wrong ' + report.failed[0]}.")
        if len(earlier) > 1:
            print(f"  (prediction {len(earlier)}; your first was {_fmt(earlier[0])})")
        if explanation:
            print(f"  why: {explanation}")
        if not report.ok:
            print("  The notebook goes on with the measured value.")
    return report


def prediction(fn: Callable) -> Callable:
    """Mark a notebook's predict-then-check function (``exNN.check_<name>_prediction(guess, verbose=True)``, which
    measures, calls :func:`check_prediction` and returns the measured value), so tools can find it."""
    fn.is_prediction = True
    return fn


def _norm(text: str) -> str:
    return " ".join(str(text).lower().split())


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value) if not isinstance(value, str) else repr(value)


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


def run_check(exercise: str, learner: Callable, reference: Callable, cases: Sequence[Case],
              hint: Union[str, Sequence[str]] = "",
              compare: Callable[[Any, Any], Optional[str]] = close, verbose: bool = True) -> bool:
    """:func:`check_function` on one thread and without touching the random state; True when every case passed."""
    with keep_random_state(), one_thread():
        _, report = check_function(exercise, learner, reference, cases, hint=hint, compare=compare, verbose=verbose)
    return report.ok
