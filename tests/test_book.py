"""The static site (tools/build_book.py), built in fast mode and opened offline in headless Chromium.

Runs in `make test-browser` (NODECOURSE_DECK_TESTS=1) after the slide tests, whose executed lectures
it reuses (build/executed/): only lectures 00-05 and the solutions of 02 are executed, the others are shown
as stored.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import build_book  # noqa: E402

EXECUTED = ("00_", "01_", "02_", "03_", "04_", "05_")
EXECUTED_SOLUTIONS = ("02_",)
pytestmark = pytest.mark.skipif(os.environ.get("NODECOURSE_DECK_TESTS") != "1",
                                reason="browser test: run by `make test-browser` (NODECOURSE_DECK_TESTS=1)")


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    pytest.importorskip("playwright")
    return build_book.build(fast=True, out=tmp_path_factory.mktemp("site"), jobs=2, execute=list(EXECUTED),
                            execute_solutions=list(EXECUTED_SOLUTIONS))


def test_the_site_has_the_syllabus_lectures_exercises_without_answers_and_solutions(site):
    index = (site / "index.html").read_text()
    assert "lectures/04_adjoint_method.html" in index and "exercises/04_adjoint_method_exercises.html" in index
    assert "solutions/04_adjoint_method_exercises.html" in index and 'id="search-box"' in index
    lectures = sorted((site / "lectures").glob("*.html"))
    assert len(lectures) == len(list((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")))
    for page in sorted((site / "exercises").glob("*.html")):
        text = page.read_text()
        assert "NotImplementedError" in text and "BEGIN SOLUTION" not in text, page.name
    assert "BEGIN SOLUTION" in (site / "solutions" / "04_adjoint_method_exercises.html").read_text()


def test_solution_pages_are_executed_with_their_checkers_reports(site):
    executed = (site / "solutions" / "02_euler_and_resnets_exercises.html").read_text()
    assert executed.count("passed") >= 3 and "<img" in executed  # each checker's report, and the figures
    assert "not attempted" not in executed
    stored = (site / "solutions" / "04_adjoint_method_exercises.html").read_text()
    assert "<img" not in stored  # not executed in this quick build


def test_every_page_works_offline_with_its_links_images_and_math(site):
    import deck_check

    reports = deck_check.check_book(site)
    problems = [f"{Path(r['path']).relative_to(site)}: {p}" for r in reports for p in r["problems"]]
    assert not problems, "\n".join(problems)
    by_name = {Path(r["path"]).relative_to(site).as_posix(): r for r in reports}
    assert by_name["lectures/04_adjoint_method.html"]["images"] >= 5
    assert by_name["lectures/04_adjoint_method.html"]["math"] > 50
    assert by_name["index.html"]["links"] >= 3 * 12
