"""Keep every notebook paired, clean and ready for slides, then regenerate exercises/.

For each lecture in notebooks/ and each solution notebook in solutions/, the newer of the .ipynb
and its py:percent .py is taken as the truth; outputs are stripped, headings get slide metadata
(``#``/``##`` start a slide, ``###`` a sub-slide, the badge cell is skipped), and both files are
written. Then tools/make_exercises.py writes exercises/ and tools/syllabus.py the README's syllabus.

    python tools/sync_notebooks.py                 # every notebook
    python tools/sync_notebooks.py 03_ode_solvers  # only the notebooks whose name starts with this
"""
from __future__ import annotations

import sys
from pathlib import Path

import jupytext
import nbformat

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_exercises  # noqa: E402
import syllabus  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SOURCE_FOLDERS = ("notebooks", "solutions")


def slide_type(cell: nbformat.NotebookNode, index: int) -> str | None:
    """The reveal.js slide type a cell should have, or None to leave it continuing the current slide."""
    if cell.cell_type != "markdown":
        return None
    first = cell.source.lstrip().splitlines()[0] if cell.source.strip() else ""
    if index == 0 and "colab" in cell.source.lower():
        return "skip"
    if first.startswith("# ") or first.startswith("## "):
        return "slide"
    if first.startswith("### "):
        return "subslide"
    return None


def clean(notebook: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Strip outputs and set slide metadata in place."""
    notebook.metadata = {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
                         "language_info": {"name": "python"}}
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
        kind = slide_type(cell, index)
        cell.metadata.pop("slideshow", None)
        if kind:
            cell.metadata["slideshow"] = {"slide_type": kind}
        for key in list(cell.metadata):
            if key not in ("slideshow", "tags"):
                del cell.metadata[key]
    return notebook


def sync_folder(folder: Path, prefix: str = "") -> None:
    stems = sorted({p.stem for p in folder.glob("*.py")} | {p.stem for p in folder.glob("*.ipynb")})
    stems = [s for s in stems if s.startswith(prefix)]
    for stem in stems:
        ipynb, py = folder / f"{stem}.ipynb", folder / f"{stem}.py"
        sources = [p for p in (ipynb, py) if p.exists()]
        newest = max(sources, key=lambda p: p.stat().st_mtime)
        notebook = clean(jupytext.read(newest))
        if ipynb.exists() and newest == py:  # keep the stored cell ids: no churn in the .ipynb diff
            stored = nbformat.read(ipynb, as_version=4).cells
            for cell, old in zip(notebook.cells, stored):
                if "id" in old:
                    cell["id"] = old["id"]
        jupytext.write(notebook, ipynb)
        jupytext.write(notebook, py, fmt="py:percent")
        print(f"synced {folder.name}/{stem} from {newest.suffix}")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    prefix = args[0] if args else ""
    for name in SOURCE_FOLDERS:
        sync_folder(ROOT / name, prefix)
    status = make_exercises.main(["--only", prefix] if prefix else [])
    return status or syllabus.main([])


if __name__ == "__main__":
    sys.exit(main())
