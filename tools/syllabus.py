"""Write the README's syllabus table from the lectures themselves (title, objectives, time, links).

The table sits between ``<!-- syllabus:start -->`` and ``<!-- syllabus:end -->`` in README.md. Its last
column opens each lecture's notebooks in Colab from the course's home repository (tools/update_links.py);
while the home is unset it links the exercise and solution notebooks in this repository instead, and a
line under the table says where the Colab links come from.

    python tools/syllabus.py          # rewrite the table
    python tools/syllabus.py --check  # exit 1 if the README's table is not what the notebooks say
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import nbformat

sys.path.insert(0, str(Path(__file__).resolve().parent))
from update_links import colab_url, course_home, notebook_links  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
START, END = "<!-- syllabus:start -->", "<!-- syllabus:end -->"
NO_HOME_NOTE = ("Colab links appear in this table once the course's home repository is set "
                "(`make home`, see CONTRIBUTING.md).")


def lecture_facts(path: Path) -> dict:
    """Title, learning objectives and estimated time, read from a lecture's markdown."""
    cells = nbformat.read(path, as_version=4).cells
    text = "\n".join(c.source for c in cells if c.cell_type == "markdown")
    title = re.search(r"^# (\d\d)\s*·\s*(.+)$", text, re.MULTILINE)
    if not title:
        raise SystemExit(f"{path.name}: no title line '# NN · Title'")
    bullets: list[str] = []
    lines = text.split("**Learning objectives**", 1)[1].splitlines()[1:] if "**Learning objectives**" in text else []
    for line in lines:
        if line.strip().startswith("- "):
            bullets.append(line.strip()[2:].strip())
        elif line.strip() and bullets and line.startswith((" ", "\t")):  # a wrapped bullet
            bullets[-1] += " " + line.strip()
        elif line.strip() or bullets:
            break
    time = re.search(r"\*\*Estimated time:?\*\*:?\s*(.+)", text)
    return {"number": title.group(1), "title": title.group(2).strip(), "objectives": bullets,
            "time": time.group(1).strip().rstrip('.') if time else ""}


def links(stem: str, home: str) -> str:
    """A lecture's last column: its notebooks in Colab, or, with no home, its exercise notebooks here."""
    targets = notebook_links(stem)
    if not (ROOT / "solutions" / f"{stem}_exercises.ipynb").exists():
        targets = targets[:1]
    if home:
        return " · ".join(f"[{label.lower()}]({colab_url(home, target)})" for label, target in targets)
    return " · ".join(f"[{label.lower()}]({target})" for label, target in targets[1:])


def table() -> str:
    """The syllabus table, one row per lecture, with the note on Colab links while the home is unset."""
    home = course_home()
    column = "open in Colab" if home else "exercises"
    rows = [f"| # | notebook | you will learn to | time | {column} |", "|---|---|---|---|---|"]
    for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        facts = lecture_facts(path)
        stem = path.stem
        objectives = "; ".join(o.rstrip(".;") for o in facts["objectives"]).replace("|", "\\|")
        rows.append(f"| {facts['number']} | [{facts['title']}](notebooks/{stem}.ipynb) | {objectives} | "
                    f"{facts['time']} | {links(stem, home)} |")
    note = "" if home else "\n\n" + NO_HOME_NOTE
    return "\n".join(rows) + note


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args(argv)
    readme = (ROOT / "README.md").read_text()
    if START not in readme or END not in readme:
        raise SystemExit(f"README.md lacks the {START} ... {END} markers")
    head, rest = readme.split(START, 1)
    _, tail = rest.split(END, 1)
    new = f"{head}{START}\n{table()}\n{END}{tail}"
    if args.check:
        if new != readme:
            print("README.md's syllabus differs from the notebooks; run `python tools/syllabus.py` (or `make sync`).")
            return 1
        return 0
    if new != readme:
        (ROOT / "README.md").write_text(new)
        print("wrote the syllabus table in README.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
