"""The course's home repository: written in one place, every Colab badge and install line generated from
it, and nothing that points at any GitHub account while it is unset (as the repository is committed).

Setting a home is tried on a copy of the course's files, with tools/update_links.py run the way
`make home` runs it. Setup cells are executed as on Colab with a stand-in `google.colab` module and a
`subprocess.run` that records the command instead of running it.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
import types
from pathlib import Path

import nbformat
import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import update_links  # noqa: E402

HOME = "https://github.com/example-org/course"
COPIED = ("tools", "notebooks", "solutions", "exercises", "jupytext.toml", "README.md", "pyproject.toml")
LECTURE = "notebooks/03_ode_solvers.ipynb"
HOME_UNSET = not tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["nodecourse"]["home"]
only_while_unset = pytest.mark.skipif(not HOME_UNSET, reason="the course's home is set in this checkout")


def tool(repo: Path, *args: str) -> subprocess.CompletedProcess:
    """Run tools/update_links.py of the course at ``repo`` as a user does."""
    return subprocess.run([sys.executable, str(repo / "tools" / "update_links.py"), *args], cwd=repo,
                          capture_output=True, text=True)


def notebooks(repo: Path, *folders: str) -> list[Path]:
    return [p for folder in folders for p in sorted((repo / folder).glob("*.ipynb"))]


def setup_source(path: Path) -> str:
    """The source of a notebook's setup cell: the code cell that looks for ``google.colab``."""
    cells = nbformat.read(path, as_version=4).cells
    return next(c.source for c in cells if c.cell_type == "code" and "google.colab" in c.source)


class StopCell(Exception):
    """Raised by the recording subprocess.run: the rest of the setup cell is what runs outside Colab."""


@pytest.fixture
def on_colab(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """Pretend to be on Colab; returns the list into which subprocess.run records each command it is given."""
    calls: list[list[str]] = []

    def record(command, *args, **kwargs):
        calls.append([str(part) for part in command])
        raise StopCell

    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    monkeypatch.setattr(subprocess, "run", record)
    return calls


def run_cell(source: str) -> None:
    try:
        exec(compile(source, "<setup cell>", "exec"), {"__name__": "__main__"})
    except StopCell:
        pass


# The repository as committed.

def test_everything_generated_is_what_the_current_home_gives():
    result = tool(ROOT, "--check")
    assert result.returncode == 0, result.stdout + result.stderr


@only_while_unset
def test_nothing_points_at_a_github_account_while_the_home_is_unset():
    forbidden = [re.compile(re.escape("github.com/" "nodecourse")),
                 re.compile(r"colab\.research\.google\.com/github/[\w.-]+/[\w.-]+"),
                 re.compile(r"git\+https://github\.com/[\w.-]+/[\w.-]+")]
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    found = []
    for name in tracked.splitlines():
        if name.startswith("tests/") or not (ROOT / name).is_file():
            continue  # tests hold example homes on purpose
        try:
            text = (ROOT / name).read_text()
        except UnicodeDecodeError:
            continue
        found += [f"{name}: {m.group(0)}" for pattern in forbidden for m in pattern.finditer(text)]
    assert not found, "links to a GitHub account while the course's home is unset:\n" + "\n".join(found)


@only_while_unset
def test_badge_cells_say_how_their_links_appear_while_the_home_is_unset():
    for path in notebooks(ROOT, "solutions", "exercises"):
        badge = nbformat.read(path, as_version=4).cells[0]
        assert badge.cell_type == "markdown" and "](" not in badge.source, f"{path.name}: a link in the badge cell"
        assert "make home" in badge.source, f"{path.name}: the badge cell does not say how its links appear"


@only_while_unset
def test_on_colab_without_a_home_the_setup_cell_stops_and_installs_nothing(on_colab):
    with pytest.raises(RuntimeError) as error:
        run_cell(setup_source(ROOT / LECTURE))
    message = str(error.value)
    assert "make home" in message
    assert re.findall(r"[.!?](?=\s|$)", message) == ["."], f"not one sentence: {message}"
    assert on_colab == [], "nothing may be installed without a home"


def test_outside_colab_the_setup_cell_runs():
    result = subprocess.run([sys.executable, "-c", setup_source(ROOT / LECTURE)], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


# A home set, on a copy of the course.

@pytest.fixture(scope="module")
def homed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the course whose home was set to HOME with `update_links.py --set`."""
    repo = tmp_path_factory.mktemp("homed")
    for name in COPIED:
        source, target = ROOT / name, repo / name
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, target)
    before = (repo / "pyproject.toml").read_text()
    result = tool(repo, "--set", HOME)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (repo / "pyproject.toml").read_text() == re.sub(r'^home = ".*"$', f'home = "{HOME}"', before,
                                                           flags=re.MULTILINE), "only the home line changes"
    return repo


def test_a_set_home_is_written_once_into_pyproject(homed):
    project = tomllib.loads((homed / "pyproject.toml").read_text())
    assert project["tool"]["nodecourse"]["home"] == HOME
    assert "Repository" not in project["project"].get("urls", {})


def test_a_set_home_links_every_badge_cell_to_the_three_notebooks(homed):
    colab = "https://colab.research.google.com/github/example-org/course/blob/main/"
    lectures = [p for p in notebooks(homed, "notebooks")
                if (homed / "solutions" / f"{p.stem}_exercises.ipynb").exists()]
    assert lectures
    for path in lectures + notebooks(homed, "solutions", "exercises"):
        stem = path.stem.removesuffix("_exercises")
        badge = nbformat.read(path, as_version=4).cells[0]
        links = set(re.findall(r"\]\((https://colab\.research\.google\.com/github/[^)]+)\)", badge.source))
        assert links == {f"{colab}notebooks/{stem}.ipynb", f"{colab}exercises/{stem}_exercises.ipynb",
                         f"{colab}solutions/{stem}_exercises.ipynb"}, path.name
        assert badge.metadata.get("slideshow") == {"slide_type": "skip"}, path.name
    readme = (homed / "README.md").read_text()
    for path in lectures:
        assert f"{colab}notebooks/{path.name}" in readme and f"{colab}solutions/{path.stem}_exercises.ipynb" in readme


def test_a_set_home_is_where_every_setup_cell_installs_from_on_colab(homed, on_colab):
    paths = notebooks(homed, "notebooks", "solutions", "exercises")
    for path in paths:
        run_cell(setup_source(path))
    assert len(on_colab) == len(paths), "every setup cell installs on Colab"
    for command in on_colab:
        assert command[1:4] == ["-m", "pip", "install"] and f"nodecourse @ git+{HOME}" in command, command


def test_a_set_home_passes_the_check_and_rewriting_changes_nothing(homed):
    result = tool(homed, "--check")
    assert result.returncode == 0, result.stdout + result.stderr
    result = tool(homed)
    assert result.returncode == 0 and "wrote" not in result.stdout, result.stdout + result.stderr


def test_a_bad_home_is_refused_and_nothing_is_written(homed):
    before = (homed / "pyproject.toml").read_text()
    result = tool(homed, "--set", "https://gitlab.com/example-org/course")
    assert result.returncode != 0 and "https://github.com/OWNER/REPO" in result.stderr, result.stderr
    assert (homed / "pyproject.toml").read_text() == before


# Where a home comes from.

def git_repo(path: Path, remote: str | None) -> Path:
    subprocess.run(["git", "init", "-q", str(path)], check=True)
    if remote:
        subprocess.run(["git", "remote", "add", "origin", remote], cwd=path, check=True)
    return path


@pytest.mark.parametrize("remote", [
    "https://github.com/example-org/course", "https://github.com/example-org/course.git",
    "git@github.com:example-org/course.git", "git@github.com:example-org/course",
    "ssh://git@github.com/example-org/course.git", "ssh://git@github.com/example-org/course"])
def test_a_github_remote_gives_the_https_home(tmp_path, remote):
    assert update_links.home_from_git_remote(git_repo(tmp_path, remote)) == HOME


@pytest.mark.parametrize("remote", ["https://gitlab.com/example-org/course.git",
                                    "git@gitlab.com:example-org/course.git", "/srv/git/course.git", None])
def test_any_other_remote_or_none_is_refused_with_a_clear_message(tmp_path, remote):
    with pytest.raises(SystemExit) as error:
        update_links.home_from_git_remote(git_repo(tmp_path, remote))
    assert "make home URL=https://github.com/OWNER/REPO" in str(error.value)


@pytest.mark.parametrize("url", ["http://github.com/a/b", "https://gitlab.com/a/b", "https://github.com/a",
                                 "https://github.com/a/b/c", "https://github.com/-a/b", "https://github.com/a b/c", ""])
def test_a_bad_url_is_refused_with_a_message(url):
    with pytest.raises(SystemExit) as error:
        update_links.validated_home(url)
    assert repr(url) in str(error.value) and "https://github.com/OWNER/REPO" in str(error.value)
