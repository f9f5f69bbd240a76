"""Give a learner their own copies of the exercise notebooks, in work/, where nothing overwrites them.

work/ is ignored by git, so a `git pull` of course updates never conflicts with the answers in it,
and no course tool writes there except this one, which only adds notebooks that are not there yet.

    python tools/make_work.py         # copy every exercise notebook you do not have yet (`make work`)
    python tools/make_work.py 03      # only those whose name starts with this
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_exercises  # noqa: E402
import notebook_io as io  # noqa: E402

ROOT = io.ROOT
WORK = ROOT / "work"


def own_copy(exercise: nbformat.NotebookNode, name: str) -> nbformat.NotebookNode:
    """The learner's copy of an exercise notebook: its note says the copy is theirs, outputs stripped."""
    copy = io.stored_form(nbformat.from_dict(exercise))
    for cell in copy.cells:
        if make_exercises.GENERATED_TAG in cell.metadata.get("tags", []):
            cell.source = (f"> **Your copy** of `exercises/{name}`: work here. `work/` is yours: `git pull` "
                           f"and the course's tools never change it.\n>\n> To start an exercise afresh, "
                           f"compare with `exercises/{name}`; to get a new copy, delete this one and run `make work`.")
            cell.metadata["tags"] = ["own-copy"]
    return copy


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("prefix", nargs="?", default="", help="only the notebooks whose name starts with this")
    args = parser.parse_args(argv)
    WORK.mkdir(exist_ok=True)
    for source in sorted((ROOT / "exercises").glob(f"{args.prefix}*_exercises.ipynb")):
        target = WORK / source.name
        if target.exists():
            print(f"kept   work/{source.name} (yours; delete it to get a fresh copy)")
            continue
        target.write_text(io.ipynb_text(own_copy(io.read(source), source.name)))
        print(f"copied work/{source.name}")
    print("Open the notebooks in work/ in JupyterLab (`make lab`) and do the exercises there.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
