"""The contract every exercise checker keeps, for every checker of every notebook: a right answer is
kept, an unattempted or crashing one hands back the reference with a report, a non-function is
refused with advice, and checking leaves the random state alone. (Each notebook's own tests add the
plausible wrong answers its checkers must catch.)"""
from __future__ import annotations

import functools
import importlib
import random

import numpy as np
import pytest
import torch

MODULES = [importlib.import_module(f"nodecourse.exercises.ex{n:02d}") for n in range(1, 12)]
CHECKERS = [(getattr(m, name), getattr(m, name[len("check_"):]))
            for m in MODULES for name in sorted(dir(m))
            if name.startswith("check_") and name != "check_function"]
IDS = [f"{checker.__module__.rsplit('.', 1)[-1]}.{checker.__name__}" for checker, _ in CHECKERS]


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
