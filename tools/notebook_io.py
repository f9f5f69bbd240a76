"""Read, compare and write the course's notebook pairs the same way JupyterLab does.

Every tool reads and writes through this module, with the project's ``jupytext.toml``, so a ``.py`` file
written here is the file JupyterLab's jupytext writes on save. Comparisons look at what a notebook
says (cell types, sources, slide metadata and tags), never at the bytes a tool release happens to
write, so a new jupytext or nbformat release cannot make two equal notebooks look different.
"""
from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import jupytext
import nbformat
from jupytext.config import load_jupytext_config

ROOT = Path(__file__).resolve().parents[1]
CONFIG = load_jupytext_config(str(ROOT))
PY_FORMAT = "py:percent"
KEPT_CELL_METADATA = ("slideshow", "tags")
SYNC_STATE = ROOT / ".notebook-sync.json"  # git-ignored: what each file said when the tools last wrote it
KERNELSPEC = {"display_name": "Python 3", "language": "python", "name": "python3"}


def read(path: Path) -> nbformat.NotebookNode:
    """A notebook from its ``.ipynb`` or its ``py:percent`` file."""
    return jupytext.read(path, config=CONFIG)


def reads(text: str, suffix: str) -> nbformat.NotebookNode:
    """A notebook from the text of an ``.ipynb`` (suffix ".ipynb") or ``py:percent`` file (".py")."""
    fmt = "ipynb" if suffix == ".ipynb" else PY_FORMAT
    return jupytext.reads(text, fmt=fmt, config=CONFIG)


def ipynb_text(notebook: nbformat.NotebookNode) -> str:
    return nbformat.writes(notebook) + "\n"


def py_text(notebook: nbformat.NotebookNode) -> str:
    return jupytext.writes(notebook, fmt=PY_FORMAT, config=CONFIG)


def text_for(path: Path, notebook: nbformat.NotebookNode) -> str:
    """What ``path`` (an .ipynb or its .py pair) holds when it stores ``notebook``."""
    return ipynb_text(notebook) if path.suffix == ".ipynb" else py_text(notebook)


def content(notebook: nbformat.NotebookNode) -> list[tuple]:
    """What a notebook says, for comparisons: each cell's type, source and kept metadata.

    Outputs, execution counts, cell ids and the headers tools write are left out.
    """
    cells = []
    for cell in notebook.cells:
        metadata = {k: cell.metadata[k] for k in KEPT_CELL_METADATA if k in cell.metadata}
        cells.append((cell.cell_type, cell.source.strip("\n"), repr(sorted(metadata.items()))))
    return cells


def stored_form(notebook: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The notebook as the repository stores it, in place: no outputs, one kernelspec, only kept metadata."""
    notebook.metadata = {"kernelspec": dict(KERNELSPEC), "language_info": {"name": "python"}}
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
        for key in list(cell.metadata):
            if key not in KEPT_CELL_METADATA:
                del cell.metadata[key]
    return notebook


def committed(path: Path) -> nbformat.NotebookNode | None:
    """The version of ``path`` in git's HEAD, or None (not in git, not committed, no git)."""
    try:
        result = subprocess.run(["git", "show", f"HEAD:{_relative(path)}"], cwd=ROOT, capture_output=True, text=True)
    except OSError:
        return None
    if result.returncode != 0:
        return None
    return reads(result.stdout, path.suffix)


def write_if_different(path: Path, text: str) -> bool:
    """Write ``text`` to ``path`` unless it already holds exactly that; say whether it wrote."""
    if path.exists() and path.read_text() == text:
        return False
    path.write_text(text)
    return True


def content_hash(notebook: nbformat.NotebookNode) -> str:
    return hashlib.sha256(repr(content(notebook)).encode()).hexdigest()


def _relative(path: Path) -> str:
    return path.resolve().relative_to(ROOT).as_posix()


def last_written(path: Path) -> str | None:
    """The content hash of ``path`` when the tools last wrote it here (see ``remember``), or None."""
    try:
        return json.loads(SYNC_STATE.read_text()).get(_relative(path))
    except (OSError, ValueError):
        return None


def remember(paths: list[Path], notebook: nbformat.NotebookNode) -> None:
    """Note that the tools just wrote ``notebook`` to ``paths``: the base against which later edits are seen."""
    try:
        state = json.loads(SYNC_STATE.read_text())
    except (OSError, ValueError):
        state = {}
    state.update({_relative(p): content_hash(notebook) for p in paths})
    SYNC_STATE.write_text(json.dumps(state, indent=1, sort_keys=True) + "\n")
