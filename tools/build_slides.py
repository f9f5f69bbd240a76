"""Every lecture as an offline reveal.js deck: ``make slides`` (full mode) writes ``slides/NN_topic.slides.html``.

    python tools/build_slides.py [--fast] [--out slides] [--jobs 2] [PREFIX ...]

1. Each lecture is executed (``tools/executed.py``: cached by content under ``build/``, so a re-run with
   nothing changed only re-renders).
2. The executed notebook is prepared for a screen (``prepare``), never changing the notebook itself:
   - hidden: the badge cell, the setup section (its heading and the install/import cell), cells that
     only import, cells that only state claims (``nodecourse.claims``), progress bars and stderr;
   - in the cells that stay, the ``claim(...)``/``check(...)``/``report(...)`` statements are left out
     of the code shown and their ✓/· lines out of the output: both go to the slide's speaker notes, so
     the instructor sees what was checked and the measured value while the room sees the result;
   - a cell that draws a figure shows the figure, not its plotting code; a code cell longer than
     ``MAX_CODE_LINES`` shows one line saying where the code is (the notebook), not a page of code;
   - a slide whose content would not fit the 1280x720 screen is continued on a sub-slide (below it,
     reveal.js's vertical navigation) at a paragraph or cell boundary, from estimated heights
     (``paginate``); the browser test (``tools/deck_check.py``) measures the real ones.
   Cells with ``slide_type: notes`` in the notebook are speaker notes (press ``s`` in the deck).
3. nbconvert's slides exporter renders the cells with the template in ``tools/slides_template/``,
   which loads reveal.js and MathJax from ``assets/`` beside the decks (copied from
   ``tools/assets/``: reveal.js 5 (MIT) and MathJax 3 (Apache-2.0), licences included), never from
   a CDN: the decks work from ``file://`` with the network off.
"""
from __future__ import annotations

import argparse
import ast
import base64
import copy
import json
import re
import shutil
import struct
import sys
import time
from pathlib import Path

import nbformat

sys.path.insert(0, str(Path(__file__).resolve().parent))
import executed as ex  # noqa: E402

ROOT = ex.ROOT
ASSETS = Path(__file__).resolve().parent / "assets"
TEMPLATE = Path(__file__).resolve().parent / "slides_template"

WIDTH, HEIGHT = 1280, 720          # the slide, 16:9; reveal.js scales it to the screen
BUDGET = 600                       # estimated content height a slide may hold (px; padding and margin aside)
MAX_CODE_LINES = 22                # longer code is not shown on a slide
CLAIM_FUNCTIONS = {"claim", "check", "report"}
CLAIM_LINE = re.compile(r"^\s*[✓·] ")
IMPORT_ONLY = (ast.Import, ast.ImportFrom)
WIDGET = "application/vnd.jupyter.widget-view+json"

# The estimate of rendered heights (px), matched to tools/slides_template/index.html.j2's CSS.
TEXT_LINE, TEXT_CHARS = 32, 96     # body text: 25px font
CODE_LINE, OUT_LINE = 21, 20       # code 16px, output 15px
HEADING = {1: 70, 2: 62, 3: 52, 4: 44}
DISPLAY_MATH, TALL_MATH = 50, 84  # a display equation; one with fractions, sums or integrals
TALL = re.compile(r"\\(frac|sum|int|prod|boxed|Big|big|begin|lim|tfrac|dfrac)")
BLOCK_GAP = 14
IMAGE_MAX_HEIGHT = 500             # CSS max-height of a figure on a slide


# ---------------------------------------------------------------- preparing cells for a screen


def claim_only(node: ast.stmt) -> bool:
    """A statement that only states claims: a claim/check/report call, or a loop/if/with of them."""
    if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
        func = node.value.func
        return isinstance(func, ast.Name) and func.id in CLAIM_FUNCTIONS
    if isinstance(node, (ast.For, ast.If, ast.With, ast.While)):
        body = list(node.body) + list(getattr(node, "orelse", []))
        return bool(body) and all(claim_only(child) for child in body)
    return False


def without_claims(source: str) -> tuple[str, bool]:
    """The source with its claim-only statements (at any depth) left out; whether anything else stays."""
    try:
        tree = ast.parse(source)
    except SyntaxError:  # IPython magics: shown as they are
        return source, True
    drop: set[int] = set()

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if claim_only(node):
                drop.update(range(node.lineno, node.end_lineno + 1))
            else:
                for field in ("body", "orelse", "finalbody"):
                    visit(getattr(node, field, []) or [])
                for handler in getattr(node, "handlers", []) or []:
                    visit(handler.body)

    visit(tree.body)
    lines = [line for number, line in enumerate(source.splitlines(), 1) if number not in drop]
    kept = "\n".join(lines).strip("\n")
    kept = re.sub(r"\n{3,}", "\n\n", kept)
    substantive = any(line.strip() and not line.strip().startswith("#") for line in kept.splitlines())
    return kept, substantive


def is_setup(cell, index_in_section: int, section_title: str) -> bool:
    if cell.cell_type != "code":
        return False
    if "COURSE_HOME" in cell.source or section_title.lower().startswith("setup"):
        return True
    try:
        tree = ast.parse(cell.source)
    except SyntaxError:
        return False
    return bool(tree.body) and all(isinstance(node, IMPORT_ONLY) for node in tree.body)


def has_image(cell) -> bool:
    return any("image/png" in out.get("data", {}) or "image/svg+xml" in out.get("data", {})
               for out in cell.get("outputs", []))


def slide_type(cell) -> str | None:
    return cell.metadata.get("slideshow", {}).get("slide_type")


def set_slide_type(cell, kind: str | None) -> None:
    if kind in (None, "-"):
        cell.metadata.pop("slideshow", None)
    else:
        cell.metadata["slideshow"] = {"slide_type": kind}


def heading(cell) -> tuple[int, str] | None:
    if cell.cell_type != "markdown":
        return None
    match = re.match(r"^(#{1,4})\s+(.*)", cell.source.lstrip())
    return (len(match.group(1)), match.group(2).strip()) if match else None


def notes_cell(lines: list[str]) -> nbformat.NotebookNode:
    text = "Checked in this cell (measured when the deck was built):\n\n" + "\n".join(
        f"- {line.strip()}" for line in lines)
    cell = nbformat.v4.new_markdown_cell(text)
    set_slide_type(cell, "notes")
    return cell


def prepare(notebook: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """A copy of the executed notebook as the slides show it (see the module docstring)."""
    notebook = copy.deepcopy(notebook)
    cells, pending = [], None  # pending: the slide type of a hidden cell, passed on to the next shown one
    section = ""
    for cell in notebook.cells:
        kind = slide_type(cell)
        title = heading(cell)
        if title and title[0] <= 2:
            section = title[1]
        hide = kind == "skip"
        if title and title[0] <= 2 and section.lower().startswith("setup"):
            hide = True
        if not hide and cell.cell_type == "code":
            if is_setup(cell, 0, section):
                hide = True
            else:
                hide = not prepare_code(cell, cells)
        if not hide and cell.cell_type == "markdown" and section.lower().startswith("setup") and kind != "notes":
            hide = True
        if hide:
            if kind in ("slide", "subslide") and pending != "slide":
                pending = kind
            continue
        if pending and kind not in ("slide", "notes"):
            set_slide_type(cell, pending if kind != "subslide" else ("slide" if pending == "slide" else kind))
        if kind != "notes":
            pending = None
        cells.append(cell)
    notebook.cells = cells
    return notebook


def prepare_code(cell, cells: list) -> bool:
    """Trim a code cell for a slide in place; False when nothing is left to show. Claim lines go to notes."""
    source, substantive = without_claims(cell.source)
    claim_lines, outputs = [], []
    for out in cell.get("outputs", []):
        if out.output_type == "stream":
            if out.name == "stderr":
                continue
            text = out.text if isinstance(out.text, str) else "".join(out.text)
            kept = []
            for line in text.splitlines():
                (claim_lines if CLAIM_LINE.match(line) else kept).append(line)
            if any(line.strip() for line in kept):
                out.text = "\n".join(kept) + "\n"
                outputs.append(out)
        elif out.output_type in ("display_data", "execute_result"):
            if WIDGET in out.get("data", {}):
                continue
            outputs.append(out)
        else:
            outputs.append(out)
    cell.outputs = outputs
    if claim_lines:
        cells_after = notes_cell(claim_lines)
    else:
        cells_after = None
    shows_output = bool(outputs)
    if not substantive and not shows_output:
        if cells_after is not None:
            cells.append(cells_after)
        return False
    cell.source = source
    transient = cell.metadata.setdefault("transient", {})
    if has_image(cell) or not substantive:
        transient["remove_source"] = True
    elif len(source.splitlines()) > MAX_CODE_LINES:
        names = [node.name for node in ast.parse(source).body
                 if isinstance(node, (ast.FunctionDef, ast.ClassDef))] if _parses(source) else []
        what = f" ({', '.join(names)})" if names else ""
        cell.source = f"# {len(source.splitlines())} lines of code{what}: in the notebook"
    if cells_after is not None:
        cell.metadata["_notes_after"] = cells_after
    return True


def _parses(source: str) -> bool:
    try:
        ast.parse(source)
        return True
    except SyntaxError:
        return False


# ---------------------------------------------------------------- fitting slides to the screen


def png_size(data: str) -> tuple[int, int]:
    raw = base64.b64decode(data[:64])
    width, height = struct.unpack(">II", raw[16:24])
    return width, height


def markdown_height(text: str) -> int:
    height = 0
    in_math = tall_counted = False
    for block in re.split(r"\n\s*\n", text.strip()):
        height += BLOCK_GAP
        for line in block.splitlines():
            stripped = line.strip()
            match = re.match(r"^(#{1,4})\s", stripped)
            if match:
                level = len(match.group(1))
                per_line = {1: 44, 2: 52, 3: 64, 4: 80}[level]
                height += HEADING[level] * max(1, -(-len(stripped) // per_line))
            elif stripped.startswith("$$") or in_math:
                if not in_math:
                    height += DISPLAY_MATH
                if TALL.search(stripped) and not tall_counted:
                    height += TALL_MATH - DISPLAY_MATH
                    tall_counted = True
                if stripped.count("$$") % 2 == 1:
                    in_math = not in_math
                if not in_math:
                    tall_counted = False
            elif stripped.startswith("|"):
                height += TEXT_LINE + 4
            elif stripped:
                if re.match(r"^([-*+]|\d+\.)\s", stripped):
                    height += 8
                visible = re.sub(r"\$[^$]*\$", "xxxxxx", stripped)
                height += TEXT_LINE * max(1, -(-len(visible) // TEXT_CHARS))
    return height


def code_height(cell) -> int:
    height = 0
    if not cell.metadata.get("transient", {}).get("remove_source"):
        height += CODE_LINE * len(cell.source.splitlines()) + 24
    for out in cell.get("outputs", []):
        data = out.get("data", {})
        if "image/png" in data:
            width, natural = png_size(data["image/png"])
            scale = min(1.0, (WIDTH - 80) / width) if width else 1.0
            height += min(IMAGE_MAX_HEIGHT, int(natural * scale)) + 12
        elif out.output_type == "stream":
            height += OUT_LINE * len(out.text.splitlines()) + 16
        elif "text/html" in data:
            text = data["text/html"] if isinstance(data["text/html"], str) else "".join(data["text/html"])
            height += 30 * max(1, text.count("<tr")) + 16
        elif "text/plain" in data:
            text = data["text/plain"] if isinstance(data["text/plain"], str) else "".join(data["text/plain"])
            height += OUT_LINE * len(text.splitlines()) + 16
    return height


def cell_height(cell) -> int:
    if slide_type(cell) == "notes":
        return 0
    return markdown_height(cell.source) if cell.cell_type == "markdown" else code_height(cell) + BLOCK_GAP


def split_markdown(cell) -> list:
    """A markdown cell as one cell per paragraph block (math blocks kept whole), for pagination."""
    blocks, current, in_math = [], [], False
    for line in cell.source.splitlines():
        if not line.strip() and not in_math and current:
            blocks.append("\n".join(current))
            current = []
            continue
        current.append(line)
        if line.count("$$") % 2 == 1:
            in_math = not in_math
    if current:
        blocks.append("\n".join(current))
    blocks = [part for block in blocks for part in split_list(block)]
    if len(blocks) <= 1:
        return [cell]
    parts = []
    for number, block in enumerate(blocks):
        part = nbformat.v4.new_markdown_cell(block)
        if number == 0 and "slideshow" in cell.metadata:
            part.metadata["slideshow"] = dict(cell.metadata["slideshow"])
        parts.append(part)
    return parts


def split_code(cell) -> list:
    """A code cell taller than a slide, as its code and then its outputs, each in chunks that fit."""
    if cell.cell_type != "code" or code_height(cell) <= BUDGET:
        return [cell]
    parts = []
    if not cell.metadata.get("transient", {}).get("remove_source"):
        code = copy.deepcopy(cell)
        code.outputs = []
        parts.append(code)
    chunk = None
    for out in cell.get("outputs", []):
        pieces = [out]
        if out.output_type == "stream":
            lines = out.text.splitlines()
            per = max(1, (BUDGET - 40) // OUT_LINE)
            pieces = [nbformat.v4.new_output("stream", name=out.name, text="\n".join(lines[i:i + per]) + "\n")
                      for i in range(0, len(lines), per)]
        for piece in pieces:
            if chunk is None or code_height(chunk) + code_height_of([piece]) > BUDGET:
                chunk = copy.deepcopy(cell)
                chunk.metadata.pop("slideshow", None) if parts else None
                chunk.metadata.setdefault("transient", {})["remove_source"] = True
                chunk.outputs = []
                parts.append(chunk)
            chunk.outputs.append(piece)
    return parts


def code_height_of(outputs: list) -> int:
    probe = nbformat.v4.new_code_cell("")
    probe.metadata["transient"] = {"remove_source": True}
    probe.outputs = outputs
    return code_height(probe)


def split_list(block: str) -> list[str]:
    """A tall block that holds a list, as its lead-in and groups of items (each item whole)."""
    if markdown_height(block) <= BUDGET / 2:
        return [block]
    parts, current = [], []
    for line in block.splitlines():
        if re.match(r"^\s{0,1}([-*+]|\d+\.)\s", line) and current:
            parts.append("\n".join(current))
            current = []
        current.append(line)
    parts.append("\n".join(current))
    return parts


def paginate(notebook: nbformat.NotebookNode) -> tuple[nbformat.NotebookNode, int]:
    """Start a sub-slide wherever the estimated content would run past the screen; how many were added."""
    cells = []
    for cell in notebook.cells:
        if cell.cell_type == "markdown" and slide_type(cell) != "notes" and markdown_height(cell.source) > BUDGET / 3:
            cells.extend(split_markdown(cell))
        elif cell.cell_type == "code":
            parts = split_code(cell)
            if len(parts) > 1 and "_notes_after" in cell.metadata:
                parts[-1].metadata["_notes_after"] = cell.metadata["_notes_after"]
                for part in parts[:-1]:
                    part.metadata.pop("_notes_after", None)
            cells.extend(parts)
        else:
            cells.append(cell)
    out, used, title, added = [], 0, "", 0
    for cell in cells:
        kind = slide_type(cell)
        head = heading(cell)
        if kind in ("slide", "subslide"):
            used = 0
            if head:
                title = head[1]
        height = cell_height(cell)
        if kind not in ("slide", "subslide", "notes") and used and used + height > BUDGET:
            if head:  # a heading of its own starts the sub-slide
                set_slide_type(cell, "subslide")
            else:
                cont = nbformat.v4.new_markdown_cell(f"#### {title} (continued)" if title else "")
                set_slide_type(cont, "subslide")
                out.append(cont)
                height += markdown_height(cont.source)
            used = 0
            added += 1
        used += height
        out.append(cell)
        notes = cell.metadata.pop("_notes_after", None)
        if notes is not None:
            out.append(notes)
    for number, cell in enumerate(out):  # cells split in two share an id otherwise
        cell["id"] = f"slide-cell-{number}"
    notebook.cells = out
    return notebook, added


# ---------------------------------------------------------------- rendering


def exporter():
    from nbconvert import SlidesExporter
    from traitlets.config import Config

    config = Config()
    config.TemplateExporter.extra_template_basedirs = [str(TEMPLATE.parent)]
    config.TemplateExporter.template_name = TEMPLATE.name
    config.TemplateExporter.exclude_input_prompt = True
    config.TemplateExporter.exclude_output_prompt = True
    return SlidesExporter(config=config)


def render(notebook: nbformat.NotebookNode, name: str) -> str:
    resources = {"metadata": {"name": name}}
    body, _ = exporter().from_notebook_node(notebook, resources=resources)
    return body


def copy_assets(out: Path) -> None:
    target = out / "assets"
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(ASSETS, target)


def build(prefixes: list[str], fast: bool, out: Path, jobs: int) -> list[Path]:
    lectures = [path for path in ex.LECTURES if not prefixes or path.name.startswith(tuple(prefixes))]
    if not lectures:
        sys.exit(f"no lecture starts with {' or '.join(prefixes)}")
    started = time.monotonic()
    print(f"executing {len(lectures)} lecture(s) in {'fast' if fast else 'full'} mode (cache: build/executed/)")
    runs = ex.executed(lectures, fast=fast, jobs=jobs)
    out.mkdir(parents=True, exist_ok=True)
    copy_assets(out)
    decks = []
    manifest_path = out / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    for path in lectures:
        notebook = nbformat.read(runs[path], as_version=4)
        notebook, added = paginate(prepare(notebook))
        deck = out / f"{path.stem}.slides.html"
        deck.write_text(render(notebook, path.stem), encoding="utf-8")
        decks.append(deck)
        figures = sum(1 for cell in notebook.cells for output in cell.get("outputs", [])
                      if "image/png" in output.get("data", {}) or "image/svg+xml" in output.get("data", {}))
        manifest[deck.name] = {"figures": figures, "mode": "fast" if fast else "full"}
        print(f"  wrote {deck.relative_to(ROOT) if deck.is_relative_to(ROOT) else deck}"
              f" ({added} continuation sub-slide(s))")
    manifest_path.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    print(f"{len(decks)} deck(s) in {time.monotonic() - started:.1f} s")
    return decks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("prefixes", nargs="*", help="lectures whose names start with these (default: all)")
    parser.add_argument("--fast", action="store_true", help="execute in fast mode (NODECOURSE_FAST=1), as the tests do")
    parser.add_argument("--out", type=Path, default=ROOT / "slides")
    parser.add_argument("--jobs", type=int, default=2, help="lectures executed at once")
    args = parser.parse_args(argv)
    build(args.prefixes, args.fast, args.out.resolve(), args.jobs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
