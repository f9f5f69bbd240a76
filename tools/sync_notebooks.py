"""Keep every notebook pair stored clean, then regenerate exercises/ and the README's syllabus.

For each lecture in notebooks/ and each solution notebook in solutions/, the ``.ipynb`` and its
``py:percent`` ``.py`` must say the same thing. Which file wins is decided, never guessed from
modification times:

- the two say the same (JupyterLab saves both at once): the pair is just stored clean;
- they differ and only one of them was edited since the tools last wrote the pair (recorded in the
  git-ignored ``.notebook-sync.json``; in a fresh clone, since the last commit): that one wins;
- both were edited (or the pair is new): nothing is written and the tool asks for ``--from ipynb``
  or ``--from py``.

Stored clean means: outputs stripped, slide metadata set from the headings (``#``/``##`` start a
slide, ``###`` a sub-slide, the badge cell is skipped; a cell an author marked as speaker notes,
a fragment or a sub-slide keeps that), only slide metadata and tags kept.

    python tools/sync_notebooks.py                  # every notebook
    python tools/sync_notebooks.py 03_ 04_          # the notebooks whose names start with these
    python tools/sync_notebooks.py --from py        # an edited .py wins over its .ipynb
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_exercises  # noqa: E402
import notebook_io as io  # noqa: E402
import syllabus  # noqa: E402

ROOT = io.ROOT
SOURCE_FOLDERS = ("notebooks", "solutions")


# Slide types an author sets by hand (JupyterLab's property inspector, or the .py's cell header) and the
# headings never decide: speaker notes, a fragment, a sub-slide that splits a long section.
AUTHORED_SLIDE_TYPES = ("notes", "fragment", "subslide")


class PairConflict(Exception):
    """Both files of a pair hold edits that differ; the user must say which one wins."""


def slide_type(cell: nbformat.NotebookNode, index: int) -> str | None:
    """The reveal.js slide type a cell should have, or None to leave it continuing the current slide."""
    kept = cell.metadata.get("slideshow", {}).get("slide_type")
    kept = kept if kept in AUTHORED_SLIDE_TYPES else None
    if cell.cell_type != "markdown":
        return kept
    first = cell.source.lstrip().splitlines()[0] if cell.source.strip() else ""
    if index == 0 and "colab" in cell.source.lower():
        return "skip"
    if first.startswith("# ") or first.startswith("## "):
        return "slide"
    if first.startswith("### "):
        return "subslide"
    return kept


def clean(notebook: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Strip outputs and set slide metadata in place."""
    io.stored_form(notebook)
    for index, cell in enumerate(notebook.cells):
        kind = slide_type(cell, index)
        cell.metadata.pop("slideshow", None)
        if kind:
            cell.metadata["slideshow"] = {"slide_type": kind}
    return notebook


def edited(path: Path, notebook: nbformat.NotebookNode) -> bool:
    """Whether ``notebook`` (read from ``path``) says something else than the tools last wrote there
    (or, where they have not written it in this checkout, than the last commit)."""
    base = io.last_written(path)
    if base is None:
        old = io.committed(path)
        base = io.content_hash(clean(old)) if old is not None else None
    return base != io.content_hash(notebook)


def choose_source(ipynb: Path, py: Path, prefer: str | None) -> Path:
    """The file of a pair whose content wins (see the module docstring); raises PairConflict."""
    if not py.exists():
        return ipynb
    if not ipynb.exists():
        return py
    from_ipynb, from_py = clean(io.read(ipynb)), clean(io.read(py))
    if io.content(from_ipynb) == io.content(from_py):
        return ipynb
    if prefer:
        return ipynb if prefer == "ipynb" else py
    ipynb_edited, py_edited = edited(ipynb, from_ipynb), edited(py, from_py)
    if ipynb_edited != py_edited:
        return ipynb if ipynb_edited else py
    name = ipynb.relative_to(ROOT).with_suffix("")
    raise PairConflict(
        f"{name}.ipynb and {name}.py were both edited and now differ, so neither can be taken as the truth. "
        f"Keep the notebook's version with `make sync FROM=ipynb` (the .py's edits are dropped), or the "
        f".py's with `make sync FROM=py`.")


def keep_cell_ids(notebook: nbformat.NotebookNode, ipynb: Path) -> None:
    """Give cells the ids the stored .ipynb has for cells with the same source (no churn in its diff)."""
    if not ipynb.exists():
        return
    stored = {}
    for cell in nbformat.read(ipynb, as_version=4).cells:
        if "id" in cell:
            stored.setdefault((cell.cell_type, cell.source), cell["id"])
    used = set()
    for cell in notebook.cells:
        old = stored.get((cell.cell_type, cell.source))
        if old and old not in used:
            cell["id"] = old
            used.add(old)


def sync_pair(ipynb: Path, prefer: str | None = None) -> str | None:
    """Store one pair clean; returns which file won when anything was written, else None."""
    py = ipynb.with_suffix(".py")
    source = choose_source(ipynb, py, prefer)
    notebook = clean(io.read(source))
    if source == py:
        keep_cell_ids(notebook, ipynb)
    wrote = [io.write_if_different(path, io.text_for(path, notebook)) for path in (ipynb, py)]
    io.remember([ipynb, py], notebook)
    return source.suffix if any(wrote) else None


def sync_folder(folder: Path, prefixes: tuple[str, ...] = ("",), prefer: str | None = None) -> list[str]:
    """Sync every pair in ``folder`` whose name starts with one of ``prefixes``; returns the conflicts."""
    conflicts = []
    stems = sorted({p.stem for p in folder.glob("*.py")} | {p.stem for p in folder.glob("*.ipynb")})
    for stem in (s for s in stems if s.startswith(prefixes)):
        try:
            won = sync_pair(folder / f"{stem}.ipynb", prefer)
        except PairConflict as conflict:
            conflicts.append(str(conflict))
            continue
        if won:
            print(f"synced {folder.name}/{stem} from its {won}")
    return conflicts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("prefixes", nargs="*", default=[""], metavar="prefix",
                        help="only the notebooks whose name starts with one of these")
    parser.add_argument("--from", dest="prefer", choices=("ipynb", "py"),
                        help="when both files of a pair were edited, the one that wins")
    args = parser.parse_args(argv)
    prefixes = tuple(args.prefixes)
    conflicts = [c for name in SOURCE_FOLDERS for c in sync_folder(ROOT / name, prefixes, args.prefer)]
    for conflict in conflicts:
        print(conflict, file=sys.stderr)
    status = max(make_exercises.main(["--only", prefix]) for prefix in prefixes)
    return 1 if conflicts else (status or syllabus.main([]))


if __name__ == "__main__":
    sys.exit(main())
