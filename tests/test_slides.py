"""Slide decks (tools/build_slides.py): what a lecture shows on a screen, and that it presents offline.

The first tests need no browser and no execution: they run in `make test`. The deck tests build the
core lectures' decks in fast mode and walk every slide in headless Chromium with the network blocked
(tools/deck_check.py); they need the system's Chromium and run in `make test-browser`
(NODECOURSE_DECK_TESTS=1), after `make test`.
"""
from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import build_slides  # noqa: E402

DECK_LECTURES = ("00_", "01_", "02_", "03_", "04_", "05_")  # the core sequence: about a minute in fast mode
deck_tests = pytest.mark.skipif(os.environ.get("NODECOURSE_DECK_TESTS") != "1",
                                reason="browser test: run by `make test-browser` (NODECOURSE_DECK_TESTS=1)")


def _stream(text: str) -> nbformat.NotebookNode:
    return nbformat.v4.new_output("stream", name="stdout", text=text)


def _lecture() -> nbformat.NotebookNode:
    cells = [
        nbformat.v4.new_markdown_cell("Colab links"),
        nbformat.v4.new_markdown_cell("# 99 · A lecture\n\nWhat it teaches, with $x^2$."),
        nbformat.v4.new_markdown_cell("## Setup\nOn Colab the first cell installs `nodecourse`."),
        nbformat.v4.new_code_cell('COURSE_HOME = ""\nimport torch'),
        nbformat.v4.new_markdown_cell("## 1. A section"),
        nbformat.v4.new_code_cell("import math"),
        nbformat.v4.new_code_cell("x = 2\nprint(x)\nfor k in range(2):\n    claim('k is small', measured=k, at_most=3)"),
        nbformat.v4.new_code_cell("check('x is two', x == 2)"),
    ]
    for cell, kind in zip(cells[:3], ("skip", "slide", "slide")):
        cell.metadata["slideshow"] = {"slide_type": kind}
    cells[4].metadata["slideshow"] = {"slide_type": "slide"}
    cells[6].outputs = [_stream("2\n✓ k is small: 0 (at most 3)\n✓ k is small: 1 (at most 3)\n")]
    cells[7].outputs = [_stream("✓ x is two\n")]
    return nbformat.v4.new_notebook(cells=cells)


def test_setup_imports_and_claims_are_hidden_and_claims_go_to_the_notes():
    shown = build_slides.prepare(_lecture())
    sources = [cell.source for cell in shown.cells]
    assert not any("COURSE_HOME" in s or s.startswith("## Setup") or s == "import math" for s in sources)
    assert not any("Colab links" in s for s in sources)
    code = [cell for cell in shown.cells if cell.cell_type == "code"]
    assert [cell.source for cell in code] == ["x = 2\nprint(x)"]
    assert code[0].outputs[0].text == "2\n"
    notes = [cell.metadata.pop("_notes_after") for cell in code] + [
        cell for cell in shown.cells if cell.metadata.get("slideshow", {}).get("slide_type") == "notes"]
    text = " ".join(note.source for note in notes)
    assert "✓ k is small: 1" in text and "✓ x is two" in text
    assert shown.cells[0].metadata["slideshow"]["slide_type"] == "slide"  # the title slide starts the deck


def test_a_long_section_is_continued_on_sub_slides_and_the_deck_loads_nothing_remote():
    notebook = build_slides.prepare(_lecture())
    notebook.cells.append(nbformat.v4.new_markdown_cell("\n\n".join(f"Paragraph {i}. " + "word " * 60
                                                                  for i in range(12))))
    notebook, added = build_slides.paginate(notebook)
    assert added >= 2
    html = build_slides.render(notebook, "99_lecture")
    assert "(continued)" in html and html.count("<section") >= 2 + added
    urls = re.findall(r"""(?:src|href)=["']([^"']+)""", html)
    assert urls and not [url for url in urls if re.match(r"(https?:)?//", url)], urls
    assert "assets/reveal.js/reveal.js" in html and "assets/mathjax/tex-svg-full.js" in html


def test_every_numbered_section_of_every_lecture_has_speaker_notes():
    """The instructor's points for a section sit in its speaker notes (a cell of slide type "notes")."""
    missing = []
    for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        section, has_notes = None, True
        for cell in nbformat.read(path, as_version=4).cells + [nbformat.v4.new_markdown_cell("## end")]:
            if cell.cell_type == "markdown" and re.match(r"^## ", cell.source.lstrip()):
                if section and not has_notes:
                    missing.append(f"{path.stem}: {section}")
                heading = cell.source.lstrip().splitlines()[0]
                section, has_notes = (heading, False) if re.match(r"^## \d+\.", heading) else (None, True)
            elif cell.metadata.get("slideshow", {}).get("slide_type") == "notes":
                has_notes = True
    assert not missing, "sections without speaker notes:\n" + "\n".join(missing)


def test_the_vendored_assets_carry_their_licences():
    assets = ROOT / "tools" / "assets"
    assert "MIT" in (assets / "reveal.js" / "LICENSE").read_text() or "Permission is hereby granted" in (
        assets / "reveal.js" / "LICENSE").read_text()
    assert "Apache License" in (assets / "mathjax" / "LICENSE").read_text()


@pytest.fixture(scope="module")
def decks(tmp_path_factory):
    pytest.importorskip("playwright")
    out = tmp_path_factory.mktemp("slides")
    return build_slides.build(list(DECK_LECTURES), fast=True, out=out, jobs=2)


@deck_tests
def test_every_deck_presents_offline_and_every_slide_fits(decks):
    import deck_check

    reports = deck_check.check_decks(decks)
    assert len(reports) == len(DECK_LECTURES)
    problems = [f"{Path(r['path']).name}: {p}" for r in reports for p in r["problems"]]
    assert not problems, "\n".join(problems)
    for report in reports:
        assert report["slides"] >= 4 and report["math"] > 0, report
    assert sum(report["figures"] for report in reports) >= 20
