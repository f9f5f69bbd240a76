"""nodecourse.claims: a claim prints what it checked when it holds and raises the same line when not."""
from __future__ import annotations

import pytest
import torch

from nodecourse.claims import ClaimFailed, check, claim, report


def test_a_claim_that_holds_prints_the_claim_and_the_value(capsys):
    assert claim("rk4's global order", measured=4.013, expected=4, tol=0.1) == pytest.approx(4.013)
    assert capsys.readouterr().out.strip() == "✓ rk4's global order: 4.01 (expected 4 ± 0.1)"


def test_a_claim_that_fails_raises_with_the_same_line(capsys):
    with pytest.raises(ClaimFailed, match=r"✗ error at t = 1: 0.002 \(at most 0.001\)"):
        claim("error at t = 1", measured=torch.tensor(2e-3), at_most=1e-3)
    assert capsys.readouterr().out == ""
    with pytest.raises(AssertionError):  # a ClaimFailed is an AssertionError: nbval and pytest see a failure
        claim("ratio", measured=0.5, expected=1.0, rel=0.1)


@pytest.mark.parametrize("kwargs,holds", [
    (dict(measured=1.05, expected=1.0, rel=0.1), True),
    (dict(measured=1.2, expected=1.0, rel=0.1), False),
    (dict(measured=5, at_least=3, at_most=6), True),
    (dict(measured=2, at_least=3), False),
    (dict(measured=float("nan"), at_most=1.0), False),
])
def test_bounds_and_relative_tolerances(kwargs, holds):
    if holds:
        claim("x", **kwargs)
    else:
        with pytest.raises(ClaimFailed):
            claim("x", **kwargs)


def test_check_and_report(capsys):
    check("the two solves agree", torch.tensor(True), detail="max diff 1e-9")
    report("compiled speed-up", 3.14159, why="a wall-clock time")
    out = capsys.readouterr().out.splitlines()
    assert out == ["✓ the two solves agree (max diff 1e-9)", "· compiled speed-up: 3.14 (not checked: a wall-clock time)"]
    with pytest.raises(ClaimFailed, match="✗ the two solves agree"):
        check("the two solves agree", False)


def test_fast_note_appears_only_in_fast_mode(monkeypatch, capsys):
    import nodecourse.config as config
    monkeypatch.setattr(config, "FAST", True)
    claim("learned frequency", measured=3.76, at_least=3.0, fast_note="trained for 20 steps only")
    monkeypatch.setattr(config, "FAST", False)
    claim("learned frequency", measured=6.2, at_least=3.0, fast_note="trained for 20 steps only")
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].endswith("[fast mode: trained for 20 steps only]") and "fast mode" not in lines[1]


@pytest.mark.parametrize("call,error", [
    (lambda: claim("x", measured=1.0), "report()"),
    (lambda: claim("x", measured=1.0, expected=1.0), "exactly one of tol"),
    (lambda: claim("x", measured=torch.ones(3), at_most=2), "one number"),
    (lambda: claim("x", measured="1", at_most=2), "must be a number"),
    (lambda: check("x", torch.ones(2, dtype=torch.bool)), r"\.all\(\)"),
])
def test_misuse_is_explained(call, error):
    with pytest.raises((ValueError, TypeError), match=error):
        call()
