"""The edit loop keeps the repository clean and never loses anyone's work.

Each test works in a throwaway git repository holding a copy of the course's notebooks and tools, and
runs the tools as a user does (by subprocess). JupyterLab's save is reproduced with the contents
manager JupyterLab itself uses (jupytext's), on a notebook really executed by a kernel.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
COPIED = ("tools", "notebooks", "solutions", "exercises", "jupytext.toml", "README.md", "pyproject.toml",
          ".gitignore", "conftest.py")
LECTURE = "notebooks/00_welcome"
SOLUTION = "solutions/01_dynamical_systems_exercises"
EXERCISE = "exercises/01_dynamical_systems_exercises"
PREFIX = ("00_", "01_")  # the tools work on these notebooks only, to keep the tests quick


def git(repo: Path, *args: str) -> str:
    result = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True)
    return result.stdout


def tool(repo: Path, name: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(repo / "tools" / name), *args], cwd=repo, capture_output=True, text=True)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A git repository with the course's notebooks and tools, everything committed."""
    repo = tmp_path / "course"
    repo.mkdir()
    for name in COPIED:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, repo / name, ignore=shutil.ignore_patterns("__pycache__", ".ipynb_checkpoints"))
        else:
            shutil.copy2(source, repo / name)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "-c", "user.name=course", "-c", "user.email=course@example.org", "commit", "-q", "-m", "course")
    return repo


def status(repo: Path) -> str:
    return git(repo, "status", "--porcelain")


def replace_in(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path.name}"
    path.write_text(text.replace(old, new, 1))


def test_the_tools_leave_a_clean_checkout_as_it_is(repo):
    result = tool(repo, "sync_notebooks.py")
    assert result.returncode == 0, result.stdout + result.stderr
    assert status(repo) == ""


def test_run_and_save_in_jupyterlab_then_sync_leaves_git_status_clean(repo):
    """Open a lecture through JupyterLab's contents manager, execute it in a kernel, save (outputs, the
    kernel's metadata, the paired .py rewritten by jupytext), then `make sync`: nothing left to commit."""
    import jupytext
    import nbclient

    manager = jupytext.TextFileContentsManager(root_dir=str(repo))
    model = manager.get(f"{LECTURE}.ipynb")
    notebook = nbformat.from_dict(model["content"])
    nbclient.NotebookClient(notebook, timeout=120, kernel_name="python3",
                            resources={"metadata": {"path": str(repo / "notebooks")}}).execute()
    assert any(cell.get("outputs") for cell in notebook.cells), "the lecture ran and has outputs"
    manager.save({"type": "notebook", "format": "json", "content": notebook}, f"{LECTURE}.ipynb")
    assert f"{LECTURE}.ipynb" in status(repo), "saving wrote the outputs into the notebook"

    result = tool(repo, "sync_notebooks.py", *PREFIX)
    assert result.returncode == 0, result.stdout + result.stderr
    assert status(repo) == "", f"sync left changes:\n{status(repo)}"


def test_an_edit_to_the_py_file_wins_and_reaches_the_notebook(repo):
    replace_in(repo / f"{SOLUTION}.py", "**Estimated time", "A sentence added in the .py.\n#\n# **Estimated time")
    result = tool(repo, "sync_notebooks.py", *PREFIX)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "A sentence added in the .py." in (repo / f"{SOLUTION}.ipynb").read_text()
    assert "A sentence added in the .py." in (repo / f"{EXERCISE}.ipynb").read_text(), "exercises regenerated"


def test_an_edit_to_the_notebook_wins_and_reaches_the_py_file(repo):
    path = repo / f"{LECTURE}.ipynb"
    notebook = nbformat.read(path, as_version=4)
    notebook.cells[-1].source += "\n\nA sentence added in the notebook."
    nbformat.write(notebook, path)
    result = tool(repo, "sync_notebooks.py", *PREFIX)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "A sentence added in the notebook." in (repo / f"{LECTURE}.py").read_text()


def test_two_different_edits_of_a_pair_are_refused_until_the_user_says_which_wins(repo):
    replace_in(repo / f"{LECTURE}.py", "00 · Welcome", "00 · Welcome, edited in the .py")
    notebook_path = repo / f"{LECTURE}.ipynb"
    notebook = nbformat.read(notebook_path, as_version=4)
    notebook.cells[-1].source += "\n\nEdited in the notebook."
    nbformat.write(notebook, notebook_path)
    before = {p: p.read_text() for p in (notebook_path, repo / f"{LECTURE}.py")}

    result = tool(repo, "sync_notebooks.py", *PREFIX)
    assert result.returncode == 1
    assert "were both edited" in result.stderr and "make sync FROM=ipynb" in result.stderr
    assert {p: p.read_text() for p in before} == before, "nothing written while the pair is in conflict"

    result = tool(repo, "sync_notebooks.py", *PREFIX, "--from", "py")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Welcome, edited in the .py" in notebook_path.read_text()
    assert "Edited in the notebook." not in notebook_path.read_text()


def test_the_older_file_of_a_pair_wins_when_it_holds_the_edit(repo):
    """Modification times do not decide: an edited .py that is older than its notebook still wins."""
    replace_in(repo / f"{LECTURE}.py", "00 · Welcome", "00 · Welcome, edited")
    (repo / f"{LECTURE}.ipynb").touch()
    assert tool(repo, "sync_notebooks.py", *PREFIX).returncode == 0
    assert "Welcome, edited" in (repo / f"{LECTURE}.ipynb").read_text()


def test_an_exercise_notebook_says_it_is_generated_and_where_to_edit():
    text = (ROOT / f"{EXERCISE}.ipynb").read_text()
    assert "This notebook is generated" in text and f"`{SOLUTION}.ipynb`" in text and "make work" in text


def learner_answers(repo: Path) -> Path:
    """Type an answer into the first exercise of an exercise notebook, as a learner would."""
    path = repo / f"{EXERCISE}.ipynb"
    notebook = nbformat.read(path, as_version=4)
    cell = next(c for c in notebook.cells if c.cell_type == "code" and "NotImplementedError" in c.source)
    cell.source = cell.source.replace('raise NotImplementedError("Exercise 1")', "return 'my answer'  # learner", 1)
    nbformat.write(notebook, path)
    return path


def test_sync_refuses_to_overwrite_an_exercise_notebook_that_holds_a_learners_answers(repo):
    answered = learner_answers(repo)
    replace_in(repo / f"{SOLUTION}.py", "**Estimated time", "A course update.\n#\n# **Estimated time")
    result = tool(repo, "sync_notebooks.py", *PREFIX)
    assert result.returncode == 1
    assert f"{EXERCISE}.ipynb holds edits" in result.stderr and "make work" in result.stderr
    assert "my answer" in answered.read_text(), "the learner's answer survives"
    assert "A course update." in (repo / f"{SOLUTION}.ipynb").read_text(), "the rest of the sync went on"


def test_a_maintainer_may_edit_a_solution_twice_before_committing(repo):
    for sentence in ("First edit.", "Second edit."):
        replace_in(repo / f"{SOLUTION}.py", "**Estimated time", f"{sentence}\n#\n# **Estimated time")
        result = tool(repo, "sync_notebooks.py", *PREFIX)
        assert result.returncode == 0, result.stdout + result.stderr
    assert "Second edit." in (repo / f"{EXERCISE}.ipynb").read_text()


def test_work_copies_survive_make_work_sync_and_a_course_update(repo, tmp_path):
    learner = tmp_path / "learner"
    git(tmp_path, "clone", "-q", str(repo), str(learner))
    assert tool(learner, "make_work.py").returncode == 0
    work = learner / "work" / Path(EXERCISE).with_suffix(".ipynb").name
    assert "Your copy" in work.read_text() and "This notebook is generated" not in work.read_text()
    notebook = nbformat.read(work, as_version=4)
    notebook.cells[-1].source += "\n\nMy own notes."
    nbformat.write(notebook, work)
    assert status(learner) == "", "work/ is ignored by git"

    replace_in(repo / f"{SOLUTION}.py", "**Estimated time", "A course update.\n#\n# **Estimated time")
    assert tool(repo, "sync_notebooks.py", *PREFIX).returncode == 0
    git(repo, "add", "-A")
    git(repo, "-c", "user.name=course", "-c", "user.email=course@example.org", "commit", "-q", "-m", "update")

    git(learner, "pull", "-q", "--ff-only")
    assert "A course update." in (learner / f"{EXERCISE}.ipynb").read_text()
    assert tool(learner, "make_work.py").returncode == 0
    assert tool(learner, "sync_notebooks.py", *PREFIX).returncode == 0
    assert "My own notes." in work.read_text(), "neither make work, sync nor the pull touched the copy"


def test_a_notebook_cell_that_prints_a_warning_fails_the_notebook_run(tmp_path):
    """The root conftest.py makes nbval fail a cell whose stderr is a warning; other stderr passes."""
    cells = [nbformat.v4.new_code_cell("import warnings\nwarnings.warn('careful')"),
             nbformat.v4.new_code_cell("import sys\nprint('progress', file=sys.stderr)")]
    nbformat.write(nbformat.v4.new_notebook(cells=cells, metadata={"kernelspec": {
        "name": "python3", "display_name": "Python 3", "language": "python"}}), tmp_path / "warns.ipynb")
    shutil.copy2(ROOT / "conftest.py", tmp_path / "conftest.py")
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval-lax",
                             "warns.ipynb"], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 1, result.stdout
    assert "Cell 0 printed a warning" in result.stdout and "UserWarning: careful" in result.stdout
    assert "1 failed, 1 passed" in result.stdout
