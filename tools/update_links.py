"""The course's home repository, and every Colab badge, install line and README link generated from it.

The home (``https://github.com/OWNER/REPO``) is written in one place, ``[tool.nodecourse] home`` in
pyproject.toml; empty means it is not set yet, and then nothing in the repository links to any GitHub
account. From the home this tool generates:

- the badge cell, the first cell of every lecture that has exercises and of every solution notebook:
  three Colab badges (lecture, exercises, solutions, opened from the home's ``main`` branch), or, while
  the home is unset, one line saying that the links appear once it is set;
- the ``COURSE_HOME = "..."`` line of every notebook's setup cell (the code cell that mentions
  ``google.colab``): on Colab that cell installs ``nodecourse`` from COURSE_HOME, and when it is empty it
  stops with a message and installs nothing;
- exercises/ and the README's syllabus table, by running tools/make_exercises.py and tools/syllabus.py.

Badge cells are written whole from a template and only the COURSE_HOME line of a setup cell is
replaced, so no link is patched by pattern. Notebooks are read and written through notebook_io, both
files of each pair from the same notebook, cell ids and metadata kept.

    python tools/update_links.py --set https://github.com/OWNER/REPO   # set the home, then rewrite
    python tools/update_links.py --set --from-git-remote               # the home from git's `origin`
    python tools/update_links.py           # rewrite everything from the current home
    python tools/update_links.py --check   # exit 1 if anything differs from what the current home gives

``make home URL=https://github.com/OWNER/REPO`` and ``make home`` (the git remote) run the first two.
"""
from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

import nbformat

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

sys.path.insert(0, str(Path(__file__).resolve().parent))
import notebook_io as io  # noqa: E402

ROOT = io.ROOT
PYPROJECT = ROOT / "pyproject.toml"
SOURCE_FOLDERS = ("notebooks", "solutions")
BRANCH = "main"
GITHUB = "https://github.com/"
COLAB = "https://colab.research.google.com/github/"
BADGE = "https://colab.research.google.com/assets/colab-badge.svg"
HOME = re.compile(r"https://github\.com/(?P<owner>(?=[A-Za-z0-9-]{1,39}/)[A-Za-z0-9](?:-?[A-Za-z0-9])*)/"
                  r"(?P<repo>[A-Za-z0-9._-]{1,100}?)(?:\.git)?/?")
REMOTE = re.compile(r"(?:https://github\.com/|git@github\.com:|ssh://git@github\.com/)"
                    r"(?P<owner>[^/\s]+)/(?P<repo>[^/\s]+?)(?:\.git)?/?")
HOME_LINE = re.compile(r"^COURSE_HOME = .*$", re.MULTILINE)
NO_HOME_NOTE = ("Colab links appear here once the course's home repository is set "
                "(`make home`, see CONTRIBUTING.md).")
PASS_URL = "pass the home yourself: `make home URL=https://github.com/OWNER/REPO`."


# The home: reading, validating, setting.

def validated_home(url: str) -> str:
    """``url`` as the canonical ``https://github.com/OWNER/REPO``; SystemExit with the reason otherwise."""
    match = HOME.fullmatch(url.strip())
    if not match or match["repo"] in (".", ".."):
        raise SystemExit(f"{url!r} is not the address of a GitHub repository: give it as "
                         f"https://github.com/OWNER/REPO, OWNER made of letters, digits and single hyphens, "
                         f"REPO of letters, digits, '.', '-' and '_'.")
    return f"{GITHUB}{match['owner']}/{match['repo']}"


def course_home() -> str:
    """The home written in pyproject.toml (validated), or "" while it is not set."""
    config = tomllib.loads(PYPROJECT.read_text())
    try:
        home = config["tool"]["nodecourse"]["home"]
    except KeyError:
        raise SystemExit('pyproject.toml lacks the course\'s home: add `[tool.nodecourse]` with `home = ""`.') from None
    try:
        return validated_home(home) if home else ""
    except SystemExit as error:
        raise SystemExit(f"pyproject.toml, [tool.nodecourse] home: {error}") from None


def home_from_remote(remote: str) -> str:
    """The home a git remote URL names (GitHub over https or ssh); SystemExit for any other remote."""
    match = REMOTE.fullmatch(remote.strip())
    if not match:
        raise SystemExit(f"The git remote origin, {remote.strip()!r}, is not a GitHub repository, so {PASS_URL}")
    return validated_home(f"{GITHUB}{match['owner']}/{match['repo']}")


def home_from_git_remote(repo: Path = ROOT) -> str:
    """The home that the git remote ``origin`` of the clone at ``repo`` names; SystemExit without one."""
    try:
        result = subprocess.run(["git", "remote", "get-url", "origin"], cwd=repo, capture_output=True, text=True)
    except OSError:
        result = None
    if result is None or result.returncode != 0 or not result.stdout.strip():
        raise SystemExit(f"This clone has no git remote origin to take the course's home from, so {PASS_URL}")
    return home_from_remote(result.stdout)


def write_home(home: str) -> None:
    """Write ``home`` into pyproject.toml's ``[tool.nodecourse] home`` line, leaving the rest as it is."""
    text = PYPROJECT.read_text()
    new, count = re.subn(r'^home = ".*"$', lambda _: f'home = "{home}"', text, flags=re.MULTILINE)
    if count != 1 or tomllib.loads(new).get("tool", {}).get("nodecourse", {}).get("home") != home:
        raise SystemExit('pyproject.toml must hold one line `home = "..."`, under `[tool.nodecourse]`.')
    io.write_if_different(PYPROJECT, new)


# What the home generates.

def notebook_links(stem: str) -> list[tuple[str, str]]:
    """A lecture's three notebooks, as (label, path in the repository)."""
    return [("Lecture", f"notebooks/{stem}.ipynb"),
            ("Exercises", f"exercises/{stem}_exercises.ipynb"),
            ("Solutions", f"solutions/{stem}_exercises.ipynb")]


def colab_url(home: str, target: str) -> str:
    """The address that opens the notebook at ``target`` (a path in the repository) of ``home`` in Colab."""
    return f"{COLAB}{home.removeprefix(GITHUB)}/blob/{BRANCH}/{target}"


def badge_source(home: str, stem: str) -> str:
    """The badge cell of lecture ``stem``'s notebooks: three Colab badges, or the note while there is no home."""
    if not home:
        return NO_HOME_NOTE
    badges = [f"[![{label} in Colab]({BADGE})]({colab_url(home, target)})" for label, target in notebook_links(stem)]
    return "\n".join(badges) + "\n\n" + " · ".join(label for label, _ in notebook_links(stem))


def home_line(home: str) -> str:
    """The setup cell's line that tells it where to install nodecourse from on Colab."""
    return f'COURSE_HOME = "{home}"  # the course\'s GitHub repository; `make home` writes it'


def with_home_line(source: str, home: str, where: str) -> str:
    """A setup cell's source with its COURSE_HOME line written for ``home``, everything else unchanged."""
    new, count = HOME_LINE.subn(lambda _: home_line(home), source)
    if count != 1:
        raise SystemExit(f"{where}: the setup cell must hold exactly one line `COURSE_HOME = ...`, it holds {count}.")
    return new


# Notebooks.

def lecture_stem(path: Path) -> str:
    """The lecture a notebook belongs to: ``03_ode_solvers`` for the lecture and its exercise notebooks."""
    return path.stem.removesuffix("_exercises")


def has_badges(path: Path) -> bool:
    """Solution notebooks and the lectures with exercises open with a badge cell (the welcome has none)."""
    return path.parent.name == "solutions" or (ROOT / "solutions" / f"{path.stem}_exercises.ipynb").exists()


def is_badge_cell(cell: nbformat.NotebookNode) -> bool:
    """Whether a first cell is a badge cell: markdown about Colab, not a heading."""
    return cell.cell_type == "markdown" and "colab" in cell.source.lower() and not cell.source.startswith("#")


def set_badge_cell(notebook: nbformat.NotebookNode, source: str) -> None:
    """Give the notebook's badge cell ``source`` (its id and metadata kept), or insert one at the top."""
    if notebook.cells and is_badge_cell(notebook.cells[0]):
        notebook.cells[0].source = source
    else:
        notebook.cells.insert(0, nbformat.v4.new_markdown_cell(source, metadata={"slideshow": {"slide_type": "skip"}}))


def setup_cell(notebook: nbformat.NotebookNode, where: str) -> nbformat.NotebookNode:
    """The notebook's setup cell: the first code cell that mentions ``google.colab``."""
    for cell in notebook.cells:
        if cell.cell_type == "code" and "google.colab" in cell.source:
            return cell
    raise SystemExit(f"{where}: no setup cell (a code cell that installs nodecourse when `google.colab` is loaded).")


def linked(notebook: nbformat.NotebookNode, path: Path, home: str) -> nbformat.NotebookNode:
    """The notebook at ``path`` with its badge cell and COURSE_HOME line generated for ``home``, in place."""
    where = str(path.relative_to(ROOT))
    if has_badges(path):
        set_badge_cell(notebook, badge_source(home, lecture_stem(path)))
    cell = setup_cell(notebook, where)
    cell.source = with_home_line(cell.source, home, where)
    return notebook


def source_notebooks() -> list[Path]:
    """The notebooks maintainers edit (exercises/ is generated from solutions/)."""
    return [p for folder in SOURCE_FOLDERS for p in sorted((ROOT / folder).glob("*.ipynb"))]


def pair_in_sync(ipynb: Path) -> bool:
    """Whether the .ipynb and its .py say the same, so that writing both from the .ipynb loses no edit."""
    py = ipynb.with_suffix(".py")
    return not py.exists() or io.content(io.read(ipynb)) == io.content(io.read(py))


def write_pair(ipynb: Path, notebook: nbformat.NotebookNode) -> None:
    """Write both files of a pair from ``notebook`` and record it as the tools' last write, the base
    against which `make sync` tells which file of a pair was edited afterwards."""
    pair = [ipynb, ipynb.with_suffix(".py")]
    for path in pair:
        if io.write_if_different(path, io.text_for(path, notebook)):
            print(f"wrote {path.relative_to(ROOT)}")
    io.remember(pair, notebook)


def differing(ipynb: Path, notebook: nbformat.NotebookNode) -> list[Path]:
    """The files of a pair that do not say what ``notebook`` says."""
    return [path for path in (ipynb, ipynb.with_suffix(".py"))
            if not path.exists() or io.content(io.read(path)) != io.content(notebook)]


def update_notebooks(home: str, check: bool) -> int:
    """Write (or with ``check``, compare) every source notebook pair as ``home`` gives it; 1 on any problem."""
    status = 0
    for ipynb in source_notebooks():
        name = ipynb.relative_to(ROOT).with_suffix("")
        if not pair_in_sync(ipynb):
            print(f"{name}.ipynb and {name}.py differ: run `make sync` first, then this again.", file=sys.stderr)
            status = 1
            continue
        notebook = linked(io.read(ipynb), ipynb, home)
        if not check:
            write_pair(ipynb, notebook)
            continue
        for path in differing(ipynb, notebook):
            print(f"differs from what the course's home gives: {path.relative_to(ROOT)}")
            status = 1
    return status


def regenerate(check: bool) -> int:
    """Regenerate (or check) exercises/ and the README's syllabus, which carry the same links."""
    import make_exercises  # here, not at the top: syllabus imports this module
    import syllabus

    option = ["--check"] if check else []
    return max(make_exercises.main(option), syllabus.main(option))


# The command.

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line, refused with a usage message when its options do not go together."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", nargs="?", const="", metavar="URL",
                        help="write this home (https://github.com/OWNER/REPO) into pyproject.toml, then rewrite")
    parser.add_argument("--from-git-remote", action="store_true",
                        help="with --set: take the home from the clone's git remote origin")
    parser.add_argument("--check", action="store_true", help="exit 1 if anything differs from the current home")
    args = parser.parse_args(argv)
    if args.set is not None and args.check:
        parser.error("--set writes, --check only compares: give one of them")
    if args.from_git_remote and (args.set is None or args.set):
        parser.error("--from-git-remote goes with --set and no URL")
    if args.set == "" and not args.from_git_remote:
        parser.error("--set needs a URL (https://github.com/OWNER/REPO) or --from-git-remote")
    return args


def main(argv: list[str] | None = None) -> int:
    """Set the home if asked, then rewrite (or check) everything generated from it; 1 on any problem."""
    args = parse_args(argv)
    if args.set is not None:
        home = home_from_git_remote() if args.from_git_remote else validated_home(args.set)
        write_home(home)
        print(f"the course's home is now {home}")
    home = course_home()
    return max(update_notebooks(home, args.check), regenerate(args.check))


if __name__ == "__main__":
    sys.exit(main())
