"""Markdown renders as written: no wrapped line of a paragraph is read as the start of a numbered list.

JupyterLab's renderer (marked) starts an ordered list at any line that begins with ``<number>.`` or
``<number>)``, even inside a paragraph or a list item: a reference wrapped before its year ("...,\\n
2018. arXiv...") then renders as a list numbered from 2018.
"""
from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(p for d in ("notebooks", "exercises", "solutions") for p in (ROOT / d).glob("*.ipynb"))
DOCUMENTS = [ROOT / "README.md", ROOT / "INSTRUCTORS.md", ROOT / "CONTRIBUTING.md"]
ORDERED_ITEM = re.compile(r"^\s*(\d{1,9})[.)](\s|$)")
FENCE = re.compile(r"^\s*(```|~~~|\$\$)")


def accidental_list_starts(markdown: str) -> list[str]:
    """Lines that a renderer would take as a numbered-list item although they continue a paragraph:
    a ``<number>.`` line right after a non-blank line, unless it starts a list at 1 or continues one."""
    found, previous_item, previous_blank, inside_block = [], None, True, False
    for line in markdown.splitlines():
        fence = FENCE.match(line)
        if fence or inside_block:
            inside_block = inside_block != bool(fence)
            previous_blank = False
            continue
        item = ORDERED_ITEM.match(line)
        if item:
            number = int(item.group(1))
            intended = number == 1 or (previous_item is not None and number == previous_item + 1)
            if not previous_blank and not intended:
                found.append(line.strip())
            previous_item = number
        elif line.strip() and not line.startswith((" ", "\t")):
            previous_item = None  # a paragraph at the margin ends any list
        previous_blank = not line.strip()
    return found


def test_the_check_finds_a_wrapped_year_and_accepts_real_lists():
    wrapped = "- E. Haber. *Stable Architectures*. Inverse Problems 34(1),\n  2018. arXiv:1705.03341."
    assert accidental_list_starts(wrapped) == ["2018. arXiv:1705.03341."]
    assert accidental_list_starts("A paragraph that ends\n1952. (a year)") == ["1952. (a year)"]
    real = "Steps:\n\n1. first,\n   wrapped\n2. second\n3. third\n\nText.\n\n1. a new list"
    assert accidental_list_starts(real) == []
    assert accidental_list_starts("```\ncode\n2018. not markdown\n```") == []
    assert accidental_list_starts("$$\nx\n2. \\quad y\n$$") == []


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_no_markdown_cell_starts_a_list_by_accident(path):
    for number, cell in enumerate(nbformat.read(path, as_version=4).cells):
        if cell.cell_type == "markdown":
            bad = accidental_list_starts(cell.source)
            assert not bad, f"cell {number} of {path.name}: {bad} would render as a numbered list; rewrap the line"


@pytest.mark.parametrize("path", [p for p in DOCUMENTS if p.exists()], ids=lambda p: p.name)
def test_no_document_starts_a_list_by_accident(path):
    bad = accidental_list_starts(path.read_text())
    assert not bad, f"{path.name}: {bad} would render as a numbered list; rewrap the line"
