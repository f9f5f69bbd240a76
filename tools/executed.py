"""Executed copies of the lectures, cached by content: what `make slides` and `make book` render.

A lecture is executed with nbclient in the notebook's folder, in full mode (the real figures and
numbers an instructor presents) or in fast mode (``NODECOURSE_FAST=1``, what the tests use). The
executed notebook is stored under ``build/executed/<mode>/`` (git-ignored) with a key made of

- the notebook's content (what ``make sync`` stores: sources, slide metadata and tags),
- every file of the ``nodecourse`` package (a solver change changes the figures),
- the mode and the figure resolution,

so a re-run with nothing changed reads the cache and takes no time, and any change re-executes
exactly the lectures it can affect (a package change: all of them). ``--jobs`` lectures run at once,
each kernel on one thread (``OMP_NUM_THREADS=1``).
"""
from __future__ import annotations

import hashlib
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import nbformat

sys.path.insert(0, str(Path(__file__).resolve().parent))
import notebook_io as io  # noqa: E402

ROOT = io.ROOT
CACHE = ROOT / "build" / "executed"
# Figures are drawn at 150 dpi (matplotlib's default is 100): a slide is 1280 px wide, and a lecture's
# 4.5-inch figure at 100 dpi filled a third of it, too small to read from the back of a lecture hall.
FIGURE_DPI = 150
LECTURES = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def package_hash() -> str:
    digest = hashlib.sha256()
    for path in sorted((ROOT / "nodecourse").rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            digest.update(str(path.relative_to(ROOT)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def cache_key(path: Path, fast: bool, package: str) -> str:
    notebook = io.stored_form(nbformat.read(path, as_version=4))
    digest = hashlib.sha256()
    for part in (io.content_hash(notebook), package, "fast" if fast else "full", f"dpi{FIGURE_DPI}"):
        digest.update(part.encode())
    return digest.hexdigest()[:16]


def cached_path(path: Path, fast: bool, key: str) -> Path:
    return CACHE / ("fast" if fast else "full") / f"{path.stem}-{key}.ipynb"


def _execute(path: str, fast: bool, target: str, timeout: int) -> float:
    """Run one notebook (in a worker process) and write it, outputs included, to `target`."""
    from nbclient import NotebookClient

    os.environ["NODECOURSE_FAST"] = "1" if fast else "0"
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    rc_folder = Path(target).parent / ".matplotlib"
    rc_folder.mkdir(parents=True, exist_ok=True)
    (rc_folder / "matplotlibrc").write_text(f"figure.dpi: {FIGURE_DPI}\n")
    os.environ["MATPLOTLIBRC"] = str(rc_folder)  # read by the kernel's matplotlib
    started = time.monotonic()
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(Path(path).parent)}})
    client.execute()
    Path(target).parent.mkdir(parents=True, exist_ok=True)
    partial = Path(target).with_suffix(".partial")
    nbformat.write(notebook, partial)
    partial.replace(target)
    return time.monotonic() - started


def executed(paths: list[Path], fast: bool, jobs: int = 2, timeout: int = 3600) -> dict[Path, Path]:
    """The executed copy of each notebook in `paths`, running those not in the cache (`jobs` at once)."""
    package = package_hash()
    result, todo = {}, []
    for path in paths:
        target = cached_path(path, fast, cache_key(path, fast, package))
        result[path] = target
        if target.exists():
            print(f"  cached   {path.name} ({'fast' if fast else 'full'} mode)", flush=True)
        else:
            todo.append((path, target))
    if todo:
        with ProcessPoolExecutor(max_workers=max(1, min(jobs, len(todo)))) as pool:
            futures = {pool.submit(_execute, str(path), fast, str(target), timeout): (path, target)
                       for path, target in todo}
            for future, (path, target) in futures.items():
                seconds = future.result()  # an error in a cell stops the build, as it should
                print(f"  executed {path.name} ({'fast' if fast else 'full'} mode) in {seconds:.0f} s", flush=True)
                for stale in target.parent.glob(f"{path.stem}-*.ipynb"):
                    if stale != target:
                        stale.unlink()
    return result
