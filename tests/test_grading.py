"""`nodecourse-grade` marks a folder of sample submissions of exercise notebook 01, and every mark is right.

The samples are built from the real notebook: blank (as handed out), partial (one answer, in a renamed
copy whose cells lost their ids), complete (every answer from solutions/), wrong (plausible mistakes),
crashing (a cell that raises, a function that raises, a syntax error, a cell that kills the kernel),
looping (in the function, in the cell, and a loop that ignores the interrupt) and tampering (checkers
rebound, their code swapped, torch.allclose patched, the reference handed in, the checker call edited,
printed "passed" lines, an edited setup cell). One run grades them all, two notebooks at a time.
"""
from __future__ import annotations

import csv
import re
import time
from pathlib import Path

import nbformat
import pytest

pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

from nodecourse import grading  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
NAME = "01_dynamical_systems_exercises"
EXERCISES = ROOT / "exercises" / f"{NAME}.ipynb"
SOLUTIONS = ROOT / "solutions" / f"{NAME}.ipynb"


def _answer_cells() -> dict[int, int]:
    """Exercise number -> index of its answer cell in the exercise notebook (the cells with a solution region)."""
    handed_out = nbformat.read(EXERCISES, as_version=4)
    regions = {c.id for c in nbformat.read(SOLUTIONS, as_version=4).cells if "### BEGIN SOLUTION" in c.source}
    cells, number = {}, None
    for index, cell in enumerate(handed_out.cells):
        heading = re.findall(r"^#+\s*Exercise\s+(\d+)", cell.source, re.MULTILINE)
        if cell.cell_type == "markdown" and heading:
            number = int(heading[-1])
        elif cell.cell_type == "code" and cell.id in regions:
            cells[number] = index
    return cells


CELLS = _answer_cells()


def _handed_out(k: int) -> str:
    return nbformat.read(EXERCISES, as_version=4).cells[CELLS[k]].source


def _solved(k: int) -> str:
    """Exercise k's answer cell with the solution filled in (the markers and exercise versions dropped)."""
    cell_id = nbformat.read(EXERCISES, as_version=4).cells[CELLS[k]].id
    source = next(c.source for c in nbformat.read(SOLUTIONS, as_version=4).cells if c.id == cell_id)
    lines, inside, version = [], False, False
    for line in source.splitlines():
        marker = line.strip()
        if marker == "### BEGIN SOLUTION":
            inside, version = True, False
        elif marker == "### END SOLUTION":
            inside = False
        elif marker == "### EXERCISE" and inside:
            version = True
        elif not (inside and version):
            lines.append(line)
    return "\n".join(lines)


def _with_body(k: int, body: str) -> str:
    """Exercise k's answer cell with its ``raise NotImplementedError`` replaced by ``body`` (same indentation)."""
    source = _handed_out(k)
    line = next(ln for ln in source.splitlines() if f'NotImplementedError("Exercise {k}")' in ln)
    indent = line[: len(line) - len(line.lstrip())]
    return source.replace(line, "\n".join(indent + b for b in body.splitlines()))


def _with_top(k: int, extra: str, source: str | None = None) -> str:
    """Exercise k's answer cell (or ``source``) with ``extra`` lines at its top."""
    return extra.rstrip() + "\n" + (source if source is not None else _handed_out(k))


def _submission(answers: dict[int, str], edit=None) -> nbformat.NotebookNode:
    notebook = nbformat.read(EXERCISES, as_version=4)
    for k, source in answers.items():
        notebook.cells[CELLS[k]].source = source
    if edit:
        edit(notebook)
    return notebook


WRONG_PENDULUM = ("theta, omega = y[..., 0], y[..., 1]\n"
                  "return torch.stack([omega, -g_over_l * theta - damping * omega], dim=-1)  # small angles only")
INTERRUPT_PROOF_LOOP = ("import time\nwhile True:\n    try:\n        time.sleep(0.05)\n"
                        "    except KeyboardInterrupt:\n        pass")


def _edit_setup_and_forge(notebook):
    """Edits outside the answer cells: the setup cell swaps the checkers for yes-men, a later cell prints "passed"."""
    setup = next(c for c in notebook.cells if c.cell_type == "code" and "from nodecourse.exercises import ex01" in c.source)
    setup.source += ("\nimport types\nex01 = types.SimpleNamespace(\n"
                     "    **{n: (lambda *a, **k: a[0]) for n in dir(ex01) if n.startswith('check_')})\n")
    notebook.cells.append(nbformat.v4.new_code_cell('print("Exercise 1-6: passed")'))


def _samples(root: Path) -> dict[str, dict[int, tuple[str, str]]]:
    """Write the submissions under ``root``; return the expected (status, detail pattern) by student and exercise."""
    exercises = sorted(CELLS)
    samples = {
        "blank": (_submission({}), {}),
        "complete": (_submission({k: _solved(k) for k in exercises}),
                     {k: ("passed", r"^\d+/\d+ checks$") for k in exercises}),
        "wrong": (_submission({
            1: _with_body(1, WRONG_PENDULUM),
            4: _with_body(4, "bound = 1.0\nfor layer in model:\n    if isinstance(layer, nn.Linear):\n"
                             "        bound *= torch.linalg.norm(layer.weight).item()  # Frobenius, not spectral\n"
                             "return bound"),
            6: _handed_out(6).replace("predicted_factor = None", "predicted_factor = 1.0"),
        }), {1: ("failed", r"checks passed; wrong: "), 4: ("failed", r"checks passed; wrong: "),
             6: ("failed", r"0/1 checks passed")}),
        "crashing": (_submission({
            1: _with_top(1, 'raise RuntimeError("my cell crashed")'),
            2: _with_body(2, 'raise ValueError("my function crashed")'),
            3: _with_body(3, "return (x1 - "),
            4: _solved(4),
            5: _with_top(5, "import os\nos._exit(1)"),
            6: _solved(6),
        }), {1: ("error", r"the answer cell raised RuntimeError: my cell crashed"),
             2: ("failed", r"ValueError: my function crashed"), 3: ("error", r"SyntaxError"),
             4: ("passed", ""), 5: ("error", r"stopped the kernel"), 6: ("passed", "")}),
        "looping": (_submission({
            1: _with_body(1, "while True:\n    pass"),
            2: _with_top(2, "while True:\n    pass"),
            3: _with_top(3, INTERRUPT_PROOF_LOOP),
            4: _solved(4),
        }), {1: ("timeout", r"checking the answer ran past"), 2: ("timeout", r"the answer cell ran past"),
             3: ("timeout", r"the answer cell ran past"), 4: ("passed", "")}),
        "tampering": (_submission({
            # a checker rebound, the checker call kept, a forged report printed
            1: _with_top(1, "ex01.check_damped_pendulum = lambda fn: fn", _with_body(1, WRONG_PENDULUM)) +
            '\nprint("Exercise 1 (damped pendulum field): passed 6/6 checks.")',
            # the checking machinery itself replaced, in the module and where ex01 imported it
            2: _with_top(2, "import nodecourse.exercises.checking as checking\n"
                                  "checking.check_function = ex01.check_function = (\n"
                                  "    lambda exercise, learner, reference, cases, **kw:\n"
                                  "    (learner, checking.Report(exercise, 'passed')))",
                               _with_body(2, "return y0.expand(len(t), *y0.shape).clone()")),
            # the comparison patched in torch and in the checkers
            3: _with_top(3, "import nodecourse.exercises.checking as checking\n"
                                  "torch.allclose = lambda *a, **k: True\n"
                                  "checking.close = ex01.close = lambda *a, **k: None",
                               _with_body(3, "return 1.0")),
            # the course's reference handed in as the answer
            4: _handed_out(4).replace(
                "\n\n\nlipschitz_upper_bound = ex01", "\n\nlipschitz_upper_bound = ex01.lipschitz_upper_bound\n"
                                                    "lipschitz_upper_bound = ex01"),
            # the checker's code swapped, the checker call replaced by a printed "passed", the bug left in
            5: _with_top(5, "ex01.check_autonomous_field.__code__ = (lambda fn, verbose=True: fn).__code__",
                               _handed_out(5)).replace("autonomous_field = ex01.check_autonomous_field(autonomous_field)",
                                                      'print("Exercise 5: passed 4/4 checks.")'),
            # a prediction checker rebound to one that agrees with anything
            6: _with_top(6, "ex01.check_area_factor_prediction = lambda guess, verbose=True: guess",
                               _handed_out(6).replace("predicted_factor = None", "predicted_factor = 5.0")),
        }, edit=_edit_setup_and_forge), {1: ("failed", r"wrong: .*review"), 2: ("failed", r"wrong: .*review"),
                                          3: ("failed", r"wrong: .*review"), 4: ("failed", r"course's reference"),
                                          5: ("failed", r"wrong: .*review"), 6: ("failed", r"0/1 checks passed.*review")}),
    }
    expected = {}
    for student, (notebook, marks) in samples.items():
        (root / student).mkdir(parents=True)
        nbformat.write(notebook, str(root / student / f"{NAME}.ipynb"))
        expected[student] = {k: marks.get(k, ("not attempted", "")) for k in exercises}
    # partial: one answer, in a renamed copy in a subfolder, its cells without ids (found by what they define)
    partial = _submission({1: _solved(1)})
    partial.nbformat_minor = 4
    for cell in partial.cells:
        cell.pop("id", None)
    (root / "partial" / "week1").mkdir(parents=True)
    nbformat.write(partial, str(root / "partial" / "week1" / f"Copy of {NAME} (1).ipynb"))
    expected["partial"] = {k: ("passed", "") if k == 1 else ("not attempted", "") for k in exercises}
    # a folder without notebooks, and a notebook that is none of the course's
    (root / "nobody").mkdir()
    (root / "stranger").mkdir()
    stranger = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1 + 1")])
    nbformat.write(stranger, str(root / "stranger" / "notes.ipynb"))
    return expected


def test_a_class_of_sample_submissions_gets_every_mark_right(tmp_path, capsys):
    expected = _samples(tmp_path / "submissions")
    marks = tmp_path / "marks.csv"
    started = time.monotonic()
    code = grading.main([str(tmp_path / "submissions"), "--out", str(marks), "--timeout", "240",
                         "--cell-timeout", "5", "--jobs", "2"])
    seconds = time.monotonic() - started
    assert code == 0, capsys.readouterr()
    with open(marks, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        assert tuple(reader.fieldnames) == grading.COLUMNS
        rows = list(reader)

    got = {(r["student"], r["exercise"]): (r["status"], r["detail"]) for r in rows}
    assert got.pop(("nobody", "")) == ("not attempted", "no exercise notebook in the folder")
    assert got.pop(("stranger", ""))[0] == "error"
    assert {r["notebook"] for r in rows if r["student"] in expected} == {NAME}
    wanted = {(student, str(k)): mark for student, marks in expected.items() for k, mark in marks.items()}
    assert sorted(got) == sorted(wanted), "one row per student and exercise"
    wrong = {key: (got[key], wanted[key]) for key in wanted
             if got[key][0] != wanted[key][0] or not re.search(wanted[key][1], got[key][1])}
    assert not wrong, "\n".join(f"{key}: got {g}, expected {w}" for key, (g, w) in sorted(wrong.items()))
    assert all(r["status"] in grading.STATUSES for r in rows)
    print(f"graded {len(expected) + 2} students in {seconds:.0f} s")


def test_answers_are_found_by_id_else_by_what_the_cell_defines_and_split_before_the_checker_call():
    official = grading.read_official(EXERCISES, SOLUTIONS)
    assert official.exercises == sorted(CELLS) and official.aliases == {"ex01": "nodecourse.exercises.ex01"}
    submitted = _submission({1: "def helper():\n    return 1\n" + _solved(1) + "\nprint('after the checker call')"})
    moved = nbformat.v4.new_code_cell(_submission({}).cells[CELLS[2]].source.replace("NotImplementedError", "KeyError"))
    submitted.cells.insert(3, moved)          # exercise 2's answer, without its id, early in the notebook
    del submitted.cells[CELLS[2] + 1]
    found = grading.learner_answers(submitted, official)
    mine = found[CELLS[1]]
    assert mine.startswith("def helper()") and "ex01.check_damped_pendulum" not in mine and "after the checker" not in mine
    assert "KeyError" in found[CELLS[2]]
    assert grading.identify(Path("alice/Copy of 01_dynamical_systems_exercises.ipynb"), submitted,
                            grading.read_course(ROOT)) == NAME
