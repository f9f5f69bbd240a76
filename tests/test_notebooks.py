"""Notebook structure: the skeleton of every lecture, exercises generated from solutions, the README's
syllabus in step with the notebooks, links from the course home, slides that export."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import make_exercises  # noqa: E402
import update_links  # noqa: E402

LECTURES = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
# appendices are optional reading: no exercises (so no solutions and no badges of their own)
APPENDICES = [p for p in LECTURES if "_appendix_" in p.name]
COURSE_LECTURES = [p for p in LECTURES if not p.name.startswith("00_") and p not in APPENDICES]
SOLUTIONS = sorted((ROOT / "solutions").glob("*_exercises.ipynb"))
EXERCISES = sorted((ROOT / "exercises").glob("*_exercises.ipynb"))


def _read(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=4)


def _text(cells) -> str:
    return "\n".join(cell.source for cell in cells)


def _ids(paths):
    return [p.name for p in paths]


@pytest.mark.parametrize("path", COURSE_LECTURES + APPENDICES + SOLUTIONS, ids=_ids(COURSE_LECTURES + APPENDICES + SOLUTIONS))
def test_skeleton(path):
    """Badge cell, title, objectives, time, one setup cell, hyperparameters, recap, further reading; a
    lecture shows its claims checked (nodecourse.claims), never as a bare assert."""
    cells = _read(path).cells
    stem = path.stem.removesuffix("_exercises")
    home = update_links.course_home()
    if path not in APPENDICES:
        badge = cells[0]
        assert badge.cell_type == "markdown", "the first cell holds the Colab badges"
        assert badge.source == update_links.badge_source(home, stem), "badge cell not generated (run tools/update_links.py)"
    markdown = _text(c for c in cells if c.cell_type == "markdown")
    number = stem[:2]
    assert re.search(rf"^# {number}\b", markdown, re.MULTILINE), f"no title starting '# {number}'"
    for part in ("Learning objectives", "Estimated time", "## Recap", "## Further reading"):
        assert part in markdown, f"{path.name} lacks '{part}'"
    setup = [c for c in cells if c.cell_type == "code" and "google.colab" in c.source]
    assert len(setup) == 1, "exactly one setup cell with the Colab install"
    for name in ("seed_everything", "FAST", "device()"):
        assert name in setup[0].source, f"the setup cell lacks {name}"
    assert update_links.home_line(home) in setup[0].source.splitlines(), "the setup cell lacks its COURSE_HOME line"
    assert update_links.with_home_line(setup[0].source, home, path.name) == setup[0].source
    code = _text(c for c in cells if c.cell_type == "code")
    assert re.search(r"=\s*\S+\s+if FAST else\s+\S+", code), "no visible fast-mode hyperparameter cell"
    if path.parent.name == "notebooks":
        asserts = re.findall(r"^\s*assert\b.*$", code, re.MULTILINE)
        assert not asserts, f"bare asserts print nothing when they hold; use nodecourse.claims: {asserts[:3]}"
        assert "claim(" in code or "check(" in code, "a lecture shows its claims checked (nodecourse.claims)"
    assert "import nodecourse" in code or "from nodecourse" in code


@pytest.mark.parametrize("path", COURSE_LECTURES, ids=_ids(COURSE_LECTURES))
def test_lecture_has_slides_and_a_solution_notebook(path):
    cells = _read(path).cells
    slides = [c for c in cells if c.metadata.get("slideshow", {}).get("slide_type") == "slide"]
    assert len(slides) >= 4, "lectures carry slide metadata (run `make sync`)"
    assert (ROOT / "solutions" / f"{path.stem}_exercises.ipynb").exists()


@pytest.mark.parametrize("path", SOLUTIONS, ids=_ids(SOLUTIONS))
def test_solution_notebook_has_at_least_three_checked_exercises(path):
    cells = _read(path).cells
    headings = {int(n) for c in cells if c.cell_type == "markdown" for n in make_exercises.EXERCISE_HEADING.findall(c.source)}
    assert len(headings) >= 3, "at least three exercises"
    regions = sum(c.source.count(make_exercises.BEGIN) for c in cells if c.cell_type == "code")
    assert regions >= len(headings)
    checks = sum(len(re.findall(r"\bex\d\d\.check_\w+\(", c.source)) for c in cells if c.cell_type == "code")
    assert checks >= len(headings), "every exercise ends with a checker call"


@pytest.mark.parametrize("path", LECTURES + SOLUTIONS + EXERCISES, ids=_ids(LECTURES + SOLUTIONS + EXERCISES))
def test_cells_hold_no_control_characters(path):
    """A control character in a cell (tab, form feed, backspace, bell...) is almost always a LaTeX command
    (\\text, \\frac, \\beta, \\alpha) whose backslash was eaten as a string escape: the formula then
    renders as garbage."""
    for number, cell in enumerate(_read(path).cells):
        bad = sorted({repr(ch) for ch in cell.source if ord(ch) < 32 and ch != "\n"})
        assert not bad, f"cell {number} of {path.name} contains {bad}: write the backslash twice or use a raw string"


def test_exercises_are_generated_from_solutions():
    result = subprocess.run([sys.executable, str(ROOT / "tools" / "make_exercises.py"), "--check"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert _ids(EXERCISES) == _ids(SOLUTIONS)


@pytest.mark.parametrize("path", EXERCISES, ids=_ids(EXERCISES))
def test_exercise_notebook_contains_no_answer(path):
    exercise = _text(c for c in _read(path).cells if c.cell_type == "code")
    assert "BEGIN SOLUTION" not in exercise and "END SOLUTION" not in exercise
    solution_cells = _read(ROOT / "solutions" / path.name).cells
    for cell in solution_cells:
        for region in re.findall(r"### BEGIN SOLUTION\n(.*?)### END SOLUTION", cell.source, re.DOTALL):
            for line in region.splitlines():
                if len(line.strip()) > 25:  # a real line of an answer, not a lone `return y`
                    assert line.strip() not in exercise, f"answer line leaked into {path.name}: {line.strip()}"


def test_make_exercises_blanks_regions_with_indentation():
    source = "def f(x):\n    ### BEGIN SOLUTION\n    return 2 * x\n    ### END SOLUTION\n\ny = f(1)"
    assert make_exercises.blank_out(source, "Exercise 4", "cell") == (
        'def f(x):\n    raise NotImplementedError("Exercise 4")\n\ny = f(1)'
    )
    with pytest.raises(ValueError, match="without"):
        make_exercises.blank_out("### BEGIN SOLUTION\nx = 1", "Exercise 1", "cell")


def test_readme_syllabus_matches_the_notebooks():
    result = subprocess.run([sys.executable, str(ROOT / "tools" / "syllabus.py"), "--check"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    readme = (ROOT / "README.md").read_text()
    rows = re.findall(r"^\|\s*(\d\d)\s*\|\s*\[[^\]]+\]\((notebooks/[^)]+\.ipynb)\)", readme, re.MULTILINE)
    assert [Path(p).name for _, p in rows] == _ids(LECTURES), "README syllabus rows != notebooks/"


def test_readme_links_every_exercise_and_solution_notebook():
    readme = (ROOT / "README.md").read_text()
    for path in SOLUTIONS:
        assert f"solutions/{path.name}" in readme and f"exercises/{path.name}" in readme


def test_all_links_come_from_the_course_home():
    result = subprocess.run([sys.executable, str(ROOT / "tools" / "update_links.py"), "--check"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Repository =" not in (ROOT / "pyproject.toml").read_text(), "the home is written once, in [tool.nodecourse]"
    home = "https://github.com/example-org/course"
    cell = 'import sys\nCOURSE_HOME = "https://github.com/someone/else"  # old\nprint(COURSE_HOME)'
    assert update_links.with_home_line(cell, home, "cell") == (
        f"import sys\n{update_links.home_line(home)}\nprint(COURSE_HOME)"), "only the COURSE_HOME line is rewritten"


def test_instructor_guide_covers_every_lecture():
    guide = (ROOT / "INSTRUCTORS.md").read_text()
    for path in COURSE_LECTURES:
        assert path.stem in guide, f"INSTRUCTORS.md has no section for {path.stem}"


def test_a_lecture_exports_to_slides():
    nbconvert = pytest.importorskip("nbconvert")
    body, _ = nbconvert.SlidesExporter().from_notebook_node(_read(LECTURES[-1]))
    assert "reveal" in body.lower() and body.count("<section") >= 2
