"""Generate exercises/ from solutions/: every answer region becomes ``raise NotImplementedError``.

In a code cell of ``solutions/NN_topic_exercises.ipynb`` the answer sits between ``### BEGIN SOLUTION``
and ``### END SOLUTION``; it is replaced by ``raise NotImplementedError("Exercise N")`` at the
indentation of the BEGIN marker, where N is the number of the closest "Exercise N" heading above.
Outputs are stripped and each generated notebook gets its py:percent pair.

    python tools/make_exercises.py          # write exercises/
    python tools/make_exercises.py --check  # exit 1 if exercises/ is not what solutions/ generates
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import jupytext
import nbformat

ROOT = Path(__file__).resolve().parents[1]
BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
EXERCISE_HEADING = re.compile(r"^#+\s*Exercise\s+(\d+)", re.MULTILINE)


def blank_out(source: str, exercise: str, where: str) -> str:
    """Replace every BEGIN/END SOLUTION region of one cell's source."""
    out, inside = [], False
    for number, line in enumerate(source.splitlines(), 1):
        stripped = line.strip()
        if stripped == BEGIN:
            if inside:
                raise ValueError(f"{where}, line {number}: nested {BEGIN}")
            inside = True
            indent = line[: len(line) - len(line.lstrip())]
            out.append(f'{indent}raise NotImplementedError("{exercise}")')
        elif stripped == END:
            if not inside:
                raise ValueError(f"{where}, line {number}: {END} without {BEGIN}")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise ValueError(f"{where}: {BEGIN} without {END}")
    return "\n".join(out)


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
    return notebook


def expected_files(prefix: str = "") -> dict[Path, str]:
    """Every file exercises/ should hold (of the notebooks whose name starts with ``prefix``), with its text."""
    files = {}
    for path in sorted((ROOT / "solutions").glob(f"{prefix}*_exercises.ipynb")):
        notebook = make_exercise_notebook(nbformat.read(path, as_version=4), path.name)
        target = ROOT / "exercises" / path.name
        files[target] = nbformat.writes(notebook) + "\n"
        files[target.with_suffix(".py")] = jupytext.writes(notebook, fmt="py:percent")
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check that exercises/ is up to date")
    parser.add_argument("--only", default="", help="only the notebooks whose name starts with this")
    args = parser.parse_args(argv)
    files = expected_files(args.only)
    stale = [p for p, text in files.items() if not p.exists() or p.read_text() != text]
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
    (ROOT / "exercises").mkdir(exist_ok=True)
    for p in stale:
        p.write_text(files[p])
        print(f"wrote {p.relative_to(ROOT)}")
    for p in extra:
        p.unlink()
        print(f"removed {p.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
