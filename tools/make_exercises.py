"""Generate exercises/ from solutions/: every answer region becomes ``raise NotImplementedError``.

In a code cell of ``solutions/NN_topic_exercises.ipynb`` the answer sits between ``### BEGIN SOLUTION``
and ``### END SOLUTION``; it is replaced by ``raise NotImplementedError("Exercise N")`` at the
indentation of the BEGIN marker, where N is the number of the closest "Exercise N" heading above.
A region may end with an exercise version: the lines after a ``### EXERCISE`` line, commented out in the
solution (so they do not run there), replace the region uncommented instead of the ``raise``. A
find-the-bug exercise uses it to put the broken line back, a predict-then-check to leave ``guess = None``.
Outputs are stripped, a note at the top says the notebook is generated and where to edit, and each
generated notebook gets its py:percent pair. An exercise notebook that holds edits the generator did
not make (a learner's answers) is never overwritten without ``--force``.

    python tools/make_exercises.py          # write exercises/
    python tools/make_exercises.py --check  # exit 1 if exercises/ does not say what solutions/ generates
"""
from __future__ import annotations

import argparse
import hashlib
import re
import sys
from pathlib import Path

import nbformat

sys.path.insert(0, str(Path(__file__).resolve().parent))
import notebook_io as io  # noqa: E402

ROOT = io.ROOT
BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
EXERCISE_VERSION = "### EXERCISE"
EXERCISE_HEADING = re.compile(r"^#+\s*Exercise\s+(\d+)", re.MULTILINE)


def blank_out(source: str, exercise: str, where: str) -> str:
    """Replace every BEGIN/END SOLUTION region of one cell's source (by its exercise version, if it has one)."""
    out, inside, version = [], False, None
    for number, line in enumerate(source.splitlines(), 1):
        stripped = line.strip()
        if stripped == BEGIN:
            if inside:
                raise ValueError(f"{where}, line {number}: nested {BEGIN}")
            inside, version = True, None
            indent = line[: len(line) - len(line.lstrip())]
        elif stripped == EXERCISE_VERSION and inside:
            version = []
        elif stripped == END:
            if not inside:
                raise ValueError(f"{where}, line {number}: {END} without {BEGIN}")
            inside = False
            out.extend(version if version is not None else [f'{indent}raise NotImplementedError("{exercise}")'])
        elif inside and version is not None:
            body = line.lstrip()
            if body and not body.startswith("#"):
                raise ValueError(f"{where}, line {number}: the lines after {EXERCISE_VERSION} must be commented out")
            lead = line[: len(line) - len(body)]
            version.append(lead + (body[2:] if body.startswith("# ") else body[1:]))
        elif not inside:
            out.append(line)
    if inside:
        raise ValueError(f"{where}: {BEGIN} without {END}")
    return "\n".join(out)


GENERATED_TAG = "generated-note"


def fingerprint(notebook: nbformat.NotebookNode) -> str:
    """A short hash of what a notebook says, its generated note aside: an exercise notebook carries the
    fingerprint of what the generator wrote, so later edits (a learner's answers) are recognised."""
    cells = [c for c in notebook.cells if GENERATED_TAG not in c.metadata.get("tags", [])]
    return hashlib.sha256(repr(io.content(nbformat.v4.new_notebook(cells=cells))).encode()).hexdigest()[:16]


def recorded_fingerprint(notebook: nbformat.NotebookNode) -> str | None:
    """The fingerprint the generator stored in a notebook's note cell, or None."""
    for cell in notebook.cells:
        tags = cell.metadata.get("tags", [])
        if GENERATED_TAG in tags:
            return next((t.removeprefix("fingerprint-") for t in tags if t.startswith("fingerprint-")), None)
    return None


def generated_note(name: str) -> nbformat.NotebookNode:
    """The cell at the top of an exercise notebook that says where it comes from and where to work."""
    stem = name.removesuffix(".ipynb")
    cell = nbformat.v4.new_markdown_cell(
        f"> **This notebook is generated** from `solutions/{name}` by `tools/make_exercises.py` (`make sync`):\n"
        f"> course maintainers edit the solution notebook, never this one.\n>\n"
        f"> **Learners:** do the exercises in your own copy, `work/{stem}.ipynb` (`make work` makes it),\n"
        f"> where no course tool and no `git pull` touches your answers.")
    cell.metadata = {"slideshow": {"slide_type": "skip"}, "tags": [GENERATED_TAG]}
    return cell


def make_exercise_notebook(solution: nbformat.NotebookNode, name: str) -> nbformat.NotebookNode:
    """The exercise version of a solution notebook (a new object; the input is not changed)."""
    notebook = nbformat.from_dict(solution)
    current, count = None, 0
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type == "markdown":
            headings = EXERCISE_HEADING.findall(cell.source)
            if headings:
                current = f"Exercise {headings[-1]}"
            cell.source = cell.source.replace(" (solutions)", "")
        elif cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
            if BEGIN in cell.source:
                count += 1
                cell.source = blank_out(cell.source, current or f"Exercise {count}", f"{name}, cell {index}")
    note = generated_note(name)
    note["id"] = GENERATED_TAG
    note.metadata["tags"].append(f"fingerprint-{fingerprint(notebook)}")
    notebook.cells.insert(1, note)
    return notebook


def expected_notebooks(prefix: str = "") -> dict[Path, nbformat.NotebookNode]:
    """Every exercise notebook (of the solutions whose name starts with ``prefix``), by its .ipynb path."""
    return {ROOT / "exercises" / path.name: make_exercise_notebook(nbformat.read(path, as_version=4), path.name)
            for path in sorted((ROOT / "solutions").glob(f"{prefix}*_exercises.ipynb"))}


def expected_files(prefix: str = "") -> dict[Path, nbformat.NotebookNode]:
    """Every file exercises/ should hold, .ipynb and .py, with the notebook it stores."""
    return {p: notebook for target, notebook in expected_notebooks(prefix).items()
            for p in (target, target.with_suffix(".py"))}


def says(path: Path, notebook: nbformat.NotebookNode) -> bool:
    """Whether the file at ``path`` says what ``notebook`` says (outputs and tool headers aside)."""
    return path.exists() and io.content(io.read(path)) == io.content(notebook)


def hand_edited(path: Path, notebook: nbformat.NotebookNode) -> bool:
    """Whether ``path`` holds edits the generator did not make (a learner's answers, typically): it says
    neither what the generator makes now nor what the generator wrote there (its fingerprint), nor, in a
    file without a fingerprint, what the last commit stored."""
    if not path.exists() or says(path, notebook):
        return False
    current = io.read(path)
    recorded = recorded_fingerprint(current)
    if recorded is not None:
        return recorded != fingerprint(current)
    old = io.committed(path)
    return old is None or io.content(current) != io.content(old)


REFUSAL = """{path} holds edits that tools/make_exercises.py did not make (your answers?), so it is not overwritten.
Do your exercises in work/ instead: `make work` copies fresh exercise notebooks there, where no course tool
and no `git pull` touches them; move your answers over, then drop the edits here with
`git checkout -- {path}`. To overwrite it anyway: `python tools/make_exercises.py --force`."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check that exercises/ is up to date")
    parser.add_argument("--only", default="", help="only the notebooks whose name starts with this")
    parser.add_argument("--force", action="store_true", help="overwrite exercise notebooks that hold edits")
    args = parser.parse_args(argv)
    files = expected_files(args.only)
    stale = [p for p, notebook in files.items() if not says(p, notebook)]
    extra = [p for p in (ROOT / "exercises").glob(f"{args.only}*_exercises.*") if p not in files]
    if args.check:
        for p in stale:
            print(f"out of date: {p.relative_to(ROOT)}")
        for p in extra:
            print(f"no solution notebook for: {p.relative_to(ROOT)}")
        if stale or extra:
            print("Run `python tools/make_exercises.py` (or `make sync`) to regenerate exercises/.")
            return 1
        return 0
    refused = [p for p in stale if not args.force and hand_edited(p, files[p])]
    for p in refused:
        print(REFUSAL.format(path=p.relative_to(ROOT)), file=sys.stderr)
    (ROOT / "exercises").mkdir(exist_ok=True)
    for p, notebook in files.items():
        if p not in refused and io.write_if_different(p, io.text_for(p, notebook)):
            print(f"wrote {p.relative_to(ROOT)}")
    for p in extra:
        if not args.force and hand_edited(p, nbformat.v4.new_notebook()):
            print(REFUSAL.format(path=p.relative_to(ROOT)), file=sys.stderr)
            refused.append(p)
            continue
        p.unlink()
        print(f"removed {p.relative_to(ROOT)}")
    return 1 if refused else 0


if __name__ == "__main__":
    sys.exit(main())
