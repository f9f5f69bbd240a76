"""The contract every exercise checker keeps, for every checker of every notebook: a right answer is
kept, an unattempted or crashing one hands back the reference with a report, a non-function is
refused with advice, and checking leaves the random state alone. (Each notebook's own tests add the
plausible wrong answers its checkers must catch.)

The exercise kinds extend it:
- ``check_<name>(fn)`` (not marked as a prediction): implement, find-the-bug and open-task checkers, all
  with the contract above;
- ``buggy_<name>``: the broken function a find-the-bug exercise ships; ``check_<name>`` fails it;
- ``check_<name>_prediction(guess)``, marked with ``checking.prediction``: a predict-then-check; it returns the measured value, says "not attempted"
  (without revealing the value) for ``None``, passes the measured value, refuses a guess of the wrong
  type with advice, and leaves the random state alone;
- hints are staged per exercise: the first failure shows stage 1, the next stage 2, ...; the answer
  appears only through ``exNN.show_answer(n)``; ``checking.who(fn)`` labels whose function runs."""
from __future__ import annotations

import functools
import importlib
import random

import numpy as np
import pytest
import torch

from nodecourse.exercises import checking

MODULES = [importlib.import_module(f"nodecourse.exercises.ex{n:02d}") for n in range(1, 12)]


def _own(m, prefix):
    """The module's own functions whose name starts with ``prefix`` (not helpers it imports)."""
    return [name for name in sorted(dir(m)) if name.startswith(prefix)
            and getattr(getattr(m, name), "__module__", None) == m.__name__]


def _is_prediction(fn):
    return getattr(fn, "is_prediction", False)


CHECKERS = [(getattr(m, name), getattr(m, name[len("check_"):])) for m in MODULES for name in _own(m, "check_")
            if not _is_prediction(getattr(m, name))]
IDS = [f"{checker.__module__.rsplit('.', 1)[-1]}.{checker.__name__}" for checker, _ in CHECKERS]
BUGS = [(getattr(m, "check_" + name[len("buggy_"):]), getattr(m, name), getattr(m, name[len("buggy_"):]))
        for m in MODULES for name in _own(m, "buggy_")]
BUG_IDS = [f"{bug.__module__.rsplit('.', 1)[-1]}.{bug.__name__}" for _, bug, _ in BUGS]
PREDICTIONS = [getattr(m, name) for m in MODULES for name in _own(m, "check_") if _is_prediction(getattr(m, name))]
PREDICTION_IDS = [f"{p.__module__.rsplit('.', 1)[-1]}.{p.__name__}" for p in PREDICTIONS]


@pytest.fixture(autouse=True)
def _fresh_hints():
    checking.reset_hints(already_failed=0)
    yield
    checking.reset_hints(already_failed=0)


def _learner_copy(reference):
    """A correct answer that is a different object from the reference."""
    @functools.wraps(reference)
    def learner(*args, **kwargs):
        return reference(*args, **kwargs)
    return learner


def _not_attempted(*args, **kwargs):
    raise NotImplementedError("Exercise 1")


def _broken(*args, **kwargs):
    raise RuntimeError("shape mismatch somewhere")


@pytest.mark.parametrize("checker, reference", CHECKERS, ids=IDS)
def test_a_correct_answer_passes_and_is_kept(checker, reference, capsys):
    learner = _learner_copy(reference)
    assert checker(learner) is learner
    out = capsys.readouterr().out
    assert "passed" in out and "FAILED" not in out


@pytest.mark.parametrize("checker, reference", CHECKERS, ids=IDS)
def test_an_unattempted_exercise_hands_back_the_reference(checker, reference, capsys):
    assert checker(_not_attempted) is reference
    assert "not attempted" in capsys.readouterr().out


@pytest.mark.parametrize("checker, reference", CHECKERS, ids=IDS)
def test_a_crashing_answer_is_reported_not_raised(checker, reference, capsys):
    assert checker(_broken) is reference
    out = capsys.readouterr().out
    assert "FAILED" in out and "RuntimeError: shape mismatch somewhere" in out


@pytest.mark.parametrize("checker, reference", CHECKERS, ids=IDS)
def test_a_result_instead_of_a_function_is_refused_with_advice(checker, reference):
    with pytest.raises(TypeError, match="expects your function"):
        checker(torch.zeros(3))


@pytest.mark.parametrize("checker, reference", CHECKERS, ids=IDS)
def test_checking_leaves_the_random_state_alone(checker, reference, capsys):
    random.seed(7), np.random.seed(7), torch.manual_seed(7)
    before = random.random(), np.random.rand(), torch.rand(1).item()
    random.seed(7), np.random.seed(7), torch.manual_seed(7)
    checker(_learner_copy(reference))
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == before


# --------------------------------------------------------------------------------------------------
# find-the-bug: the shipped bug fails its checker
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("checker, bug, reference", BUGS, ids=BUG_IDS)
def test_a_shipped_bug_fails_its_checker(checker, bug, reference, capsys):
    assert checker(bug) is reference
    out = capsys.readouterr().out
    assert "FAILED" in out and "wrong" in out


@pytest.mark.parametrize("checker, bug, reference", BUGS, ids=BUG_IDS)
def test_the_exercise_notebook_shows_the_shipped_bug(checker, bug, reference):
    """The function the learner repairs in exercises/ is the one the tests prove broken, line for line."""
    import ast
    import inspect
    from pathlib import Path

    source = inspect.getsource(bug)
    body = ast.parse(source).body[0].body
    first = body[1] if isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) else body[0]
    lines = [ln.strip() for ln in source.splitlines()[first.lineno - 1:] if ln.strip()]
    number = bug.__module__[-2:]
    (notebook,) = (Path(__file__).resolve().parents[1] / "exercises").glob(f"{number}_*_exercises.py")
    text = notebook.read_text()
    missing = [ln for ln in lines if ln not in text]
    assert not missing, f"{notebook.name} does not show these lines of {bug.__name__}: {missing}"


def test_every_notebook_has_exercises_of_two_new_kinds():
    """Besides implement: at least two of predict-then-check, find-the-bug, open task (``TASKS``)."""
    for m in MODULES:
        kinds = {"predict": any(_is_prediction(getattr(m, name)) for name in _own(m, "check_")), "find-the-bug": bool(_own(m, "buggy_")),
                 "open task": bool(getattr(m, "OPEN_TASKS", ()))}
        assert sum(kinds.values()) >= 2, f"{m.__name__}: {kinds}"
        for name in getattr(m, "OPEN_TASKS", ()):
            assert name in _own(m, "check_"), f"{m.__name__}.OPEN_TASKS names {name}, which is no checker"


# --------------------------------------------------------------------------------------------------
# predict-then-check
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("predict", PREDICTIONS, ids=PREDICTION_IDS)
def test_a_prediction_not_yet_made_is_reported_and_the_value_stays_hidden(predict, capsys):
    truth = predict(None)
    out = capsys.readouterr().out
    assert "not attempted" in out and "None" in out
    if isinstance(truth, (int, float)) and not isinstance(truth, bool):
        assert f"{truth:.4g}" not in out.split("not attempted", 1)[1]


@pytest.mark.parametrize("predict", PREDICTIONS, ids=PREDICTION_IDS)
def test_the_measured_value_as_prediction_passes_and_is_returned(predict, capsys):
    truth = predict(None, verbose=False)
    assert predict(truth) == truth
    out = capsys.readouterr().out
    assert "passed" in out and "FAILED" not in out and "why:" in out


@pytest.mark.parametrize("predict", PREDICTIONS, ids=PREDICTION_IDS)
def test_a_prediction_of_the_wrong_type_is_refused_with_advice(predict):
    with pytest.raises(TypeError, match="must be"):
        predict(lambda: 3)


@pytest.mark.parametrize("predict", PREDICTIONS, ids=PREDICTION_IDS)
def test_predicting_leaves_the_random_state_alone(predict, capsys):
    random.seed(7), np.random.seed(7), torch.manual_seed(7)
    before = random.random(), np.random.rand(), torch.rand(1).item()
    random.seed(7), np.random.seed(7), torch.manual_seed(7)
    predict(None)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == before


# --------------------------------------------------------------------------------------------------
# staged hints, the answer on request, honest labels
# --------------------------------------------------------------------------------------------------


def _double(x):
    return 2 * x


def test_hints_come_in_stages_and_the_answer_only_on_request(capsys):
    cases = [checking.Case("doubles 3", (3.0,)), checking.Case("doubles -1", (-1.0,))]
    hints = ["the output must be twice the input", "multiply by 2, not add 2"]

    def wrong(x):
        return x + 2

    for stage in (1, 2, 2):
        _, report = checking.check_function("Exercise 7 (double)", wrong, _double, cases, hint=hints)
        out = capsys.readouterr().out
        assert report.hint_stage == stage and f"[stage {stage} of 2] {hints[stage - 1]}" in out
        assert "return 2 * x" not in out and "show_answer('Exercise 7 (double)')" in out
    assert checking.hints_seen("Exercise 7 (double)") == 3
    text = checking.show_answer("Exercise 7 (double)")
    assert "return 2 * x" in text and "you asked for it" in capsys.readouterr().out
    checking.reset_hints("Exercise 7 (double)")
    _, report = checking.check_function("Exercise 7 (double)", wrong, _double, cases, hint=hints)
    assert report.hint_stage == 1


def test_a_single_string_hint_comes_after_a_generic_first_stage(capsys):
    cases = [checking.Case("doubles 3", (3.0,))]
    checking.check_function("Exercise 8 (double)", lambda x: x, _double, cases, hint="multiply by 2")
    first = capsys.readouterr().out
    checking.check_function("Exercise 8 (double)", lambda x: x, _double, cases, hint="multiply by 2")
    second = capsys.readouterr().out
    assert "[stage 1 of 2]" in first and "multiply by 2" not in first
    assert "[stage 2 of 2] multiply by 2" in second


@pytest.mark.parametrize("m", MODULES, ids=[m.__name__.rsplit(".", 1)[-1] for m in MODULES])
def test_show_answer_of_every_notebook_shows_the_reference_after_its_checker_ran(m, capsys):
    name = next(n for n in _own(m, "check_") if not _is_prediction(getattr(m, n)))
    getattr(m, name)(_not_attempted)
    capsys.readouterr()
    numbers = [int(k.split(".")[1]) for k in checking._ANSWERS if k.startswith(m.__name__[-2:] + ".")]
    assert numbers, f"{m.__name__}.{name} registered no answer"
    assert "reference answer" in m.show_answer(numbers[0])
    with pytest.raises(KeyError, match="checker cell first"):
        m.show_answer(99)


def test_who_labels_the_reference_and_the_learners_function():
    ex03 = MODULES[2]
    assert checking.who(ex03.rk_step) == "the reference"
    assert checking.who(lambda *a: None) == "yours" and checking.who(_double) == "yours"
