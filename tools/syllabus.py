"""Write the README's syllabus table from the lectures themselves (title, objectives, time, badges).

The table sits between ``<!-- syllabus:start -->`` and ``<!-- syllabus:end -->`` in README.md.

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
from update_links import colab_prefix, repository_url  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
START, END = "<!-- syllabus:start -->", "<!-- syllabus:end -->"
BADGE = "https://colab.research.google.com/assets/colab-badge.svg"


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


def table() -> str:
    prefix = colab_prefix(repository_url())
    rows = ["| # | notebook | you will learn to | time | open in Colab |", "|---|---|---|---|---|"]
    for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        facts = lecture_facts(path)
        stem = path.stem
        links = [f"[lecture]({prefix}notebooks/{stem}.ipynb)"]
        if (ROOT / "solutions" / f"{stem}_exercises.ipynb").exists():
            links += [f"[exercises]({prefix}exercises/{stem}_exercises.ipynb)",
                      f"[solutions]({prefix}solutions/{stem}_exercises.ipynb)"]
        objectives = "; ".join(o.rstrip(".;") for o in facts["objectives"]).replace("|", "\\|")
        rows.append(f"| {facts['number']} | [{facts['title']}](notebooks/{stem}.ipynb) | {objectives} | "
                    f"{facts['time']} | {' · '.join(links)} |")
    return "\n".join(rows)


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
