"""The course as a static HTML site: ``make book`` writes ``build/site/`` (open ``build/site/index.html``).

    python tools/build_book.py [--fast] [--out build/site] [--jobs 2]

- ``index.html``: the README's syllabus (the table between the syllabus markers), its links pointing at
  the pages below; a search box over every page (a small index in ``_static/search-index.js``).
- ``lectures/NN_topic.html``: each lecture executed (``tools/executed.py``, the same cache as the
  slides: full mode by default, ``--fast`` as the tests do) with its figures; progress bars left out.
- ``exercises/NN_topic_exercises.html``: the exercise notebooks as learners get them, without answers
  (generated from solutions/, the answers replaced by ``raise NotImplementedError``), not executed.
- ``solutions/NN_topic_exercises.html``: the solutions, on pages of their own, executed like the lectures
  (same cache), so a learner checking an answer sees its checker's report, figures and numbers.

Rendered with nbconvert (the Jupyter project's own converter, already installed with the course):
no new dependency, the same renderer and executed notebooks as the slides, and every asset
(MathJax 3, the page's CSS) is copied into ``_static/``, so the site works from ``file://`` offline
and on GitHub Pages alike (``.github/workflows/book.yml``).
"""
from __future__ import annotations

import argparse
import html
import json
import re
import shutil
import sys
import time
from pathlib import Path

import nbformat

sys.path.insert(0, str(Path(__file__).resolve().parent))
import executed as ex  # noqa: E402

ROOT = ex.ROOT
ASSETS = Path(__file__).resolve().parent / "assets"
TEMPLATE = Path(__file__).resolve().parent / "book_template"
WIDGET = "application/vnd.jupyter.widget-view+json"
SOLUTIONS = sorted((ROOT / "solutions").glob("[0-9][0-9]_*.ipynb"))
SYLLABUS = re.compile(r"<!-- syllabus:start -->(.*?)<!-- syllabus:end -->", re.S)

CSS = """
body.jp-Notebook { margin: 0; padding: 0; }
main { max-width: 1100px; margin: 0 auto; padding: 16px 24px 48px; }
.course-nav { position: sticky; top: 0; z-index: 10; background: #f5f5f5; border-bottom: 1px solid #ddd;
              padding: 8px 24px; font: 15px/1.4 -apple-system, "Segoe UI", Helvetica, Arial, sans-serif;
              display: flex; gap: 18px; align-items: center; flex-wrap: wrap; }
.course-nav a { color: #1a5fb4; text-decoration: none; }
.course-nav .spacer { flex: 1; }
.course-nav input { font-size: 15px; padding: 3px 8px; width: 240px; }
#search-results { position: absolute; right: 24px; top: 40px; background: white; border: 1px solid #ccc;
                  max-width: 520px; max-height: 60vh; overflow: auto; display: none; padding: 6px 10px;
                  box-shadow: 0 2px 8px rgba(0,0,0,.15); }
#search-results a { display: block; padding: 4px 0; }
#search-results small { color: #666; display: block; }
.course-footer { max-width: 1100px; margin: 0 auto; padding: 12px 24px 32px; color: #666;
                 font: 14px Helvetica, Arial, sans-serif; display: flex; justify-content: space-between; }
.course-index table { border-collapse: collapse; font-size: 14px; }
.course-index td, .course-index th { border: 1px solid #ddd; padding: 6px 8px; vertical-align: top; }
.course-index { font: 16px/1.5 -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; }
"""

SEARCH_JS = """
(function () {
  const box = document.getElementById('search-box'), out = document.getElementById('search-results');
  if (!box || !window.COURSE_SEARCH) return;
  const root = document.body.dataset.root || '';
  box.addEventListener('input', () => {
    const words = box.value.toLowerCase().split(/\\s+/).filter(w => w.length > 1);
    out.innerHTML = '';
    if (!words.length) { out.style.display = 'none'; return; }
    const hits = window.COURSE_SEARCH.filter(p => words.every(w => p.text.includes(w))).slice(0, 20);
    for (const p of hits) {
      const a = document.createElement('a'); a.href = root + p.url; a.textContent = p.title;
      const at = p.text.indexOf(words[0]);
      const small = document.createElement('small');
      small.textContent = '\u2026' + p.text.slice(Math.max(0, at - 40), at + 80) + '\u2026';
      a.appendChild(small); out.appendChild(a);
    }
    if (!hits.length) out.textContent = 'No page mentions ' + box.value;
    out.style.display = 'block';
  });
})();
window.coursePageReady = (window.MathJax && MathJax.startup ? MathJax.startup.promise : Promise.resolve()).then(() => true);
"""


def nav(root: str, title: str) -> str:
    return (f'<nav class="course-nav"><a href="{root}index.html"><b>Neural ODEs</b> · syllabus</a>'
            f'<span>{html.escape(title)}</span><span class="spacer"></span>'
            f'<input id="search-box" type="search" placeholder="Search the course" aria-label="Search the course">'
            f'<div id="search-results"></div></nav>')


def footer(root: str, previous: tuple[str, str] | None, following: tuple[str, str] | None) -> str:
    left = f'<a href="{root}{previous[0]}">← {html.escape(previous[1])}</a>' if previous else "<span></span>"
    right = f'<a href="{root}{following[0]}">{html.escape(following[1])} →</a>' if following else "<span></span>"
    return f'<footer class="course-footer">{left}{right}</footer>'


def title_of(notebook: nbformat.NotebookNode, fallback: str) -> str:
    for cell in notebook.cells:
        match = re.match(r"^#\s+(.*)", cell.source.lstrip()) if cell.cell_type == "markdown" else None
        if match:
            return match.group(1).strip()
    return fallback


def for_the_page(notebook: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Outputs a static page cannot show (progress-bar widgets) left out; slide metadata is irrelevant here."""
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs = [out for out in cell.get("outputs", []) if WIDGET not in out.get("data", {})]
    return notebook


def exporter():
    from nbconvert import HTMLExporter
    from traitlets.config import Config

    config = Config()
    config.TemplateExporter.extra_template_basedirs = [str(TEMPLATE.parent)]
    config.TemplateExporter.template_name = TEMPLATE.name
    return HTMLExporter(config=config)


def page_text(notebook: nbformat.NotebookNode) -> str:
    text = " ".join(cell.source for cell in notebook.cells if cell.cell_type == "markdown")
    return re.sub(r"\s+", " ", text).lower()[:20000]


def rewrite_links(markdown: str) -> str:
    """The README's links to notebooks, as links to the site's pages."""
    return re.sub(r"\((notebooks|exercises|solutions)/([\w.-]+)\.ipynb\)",
                  lambda m: f"({'lectures' if m.group(1) == 'notebooks' else m.group(1)}/{m.group(2)}.html)", markdown)


def build(fast: bool, out: Path, jobs: int, execute: list[str] | None = None,
          execute_solutions: list[str] | None = None) -> Path:
    """Write the site to `out`; with `execute`, only the lectures and solutions starting with those prefixes
    are executed (the others are shown as stored, without outputs: what the quick test of the site uses);
    `execute_solutions` picks the solutions apart, when given."""
    started = time.monotonic()
    solution_prefixes = execute if execute_solutions is None else execute_solutions
    chosen = [path for path in ex.LECTURES if execute is None or path.name.startswith(tuple(execute))]
    chosen += [path for path in SOLUTIONS if solution_prefixes is None or path.name.startswith(tuple(solution_prefixes))]
    print(f"executing {len(chosen)} lecture(s) and solution notebook(s) in {'fast' if fast else 'full'} mode "
          f"(cache: build/executed/)")
    runs = ex.executed(chosen, fast=fast, jobs=jobs)
    if out.exists():
        shutil.rmtree(out)
    (out / "_static").mkdir(parents=True)
    shutil.copytree(ASSETS / "mathjax", out / "_static" / "mathjax")
    (out / "_static" / "book.css").write_text(CSS)
    (out / "_static" / "book.js").write_text(SEARCH_JS)

    pages = []  # (url, title, notebook, kind)
    for path in ex.LECTURES:
        notebook = for_the_page(nbformat.read(runs.get(path, path), as_version=4))
        pages.append((f"lectures/{path.stem}.html", title_of(notebook, path.stem), notebook))
    for folder, label in (("exercises", "Exercises"), ("solutions", "Solutions")):
        for path in sorted((ROOT / folder).glob("[0-9][0-9]_*.ipynb")):
            notebook = for_the_page(nbformat.read(runs.get(path, path), as_version=4))
            pages.append((f"{folder}/{path.stem}.html", f"{label} · {title_of(notebook, path.stem)}", notebook))

    search = [{"url": "index.html", "title": "Syllabus", "text": ""}]
    search += [{"url": url, "title": title, "text": page_text(nb)} for url, title, nb in pages]
    (out / "_static" / "search-index.js").write_text("window.COURSE_SEARCH = " + json.dumps(search) + ";\n")

    html_exporter = exporter()
    lectures = [(url, title) for url, title, _ in pages if url.startswith("lectures/")]
    for url, title, notebook in pages:
        root = "../"
        sequence = lectures if url.startswith("lectures/") else [(u, t) for u, t, _ in pages if u.split("/")[0] == url.split("/")[0]]
        where = [u for u, _ in sequence].index(url)
        previous = sequence[where - 1] if where > 0 else None
        following = sequence[where + 1] if where + 1 < len(sequence) else None
        resources = {"metadata": {"name": title},
                     "book": {"root": root, "nav": nav(root, title), "footer": footer(root, previous, following)}}
        body, _ = html_exporter.from_notebook_node(notebook, resources=resources)
        body = body.replace("<body ", f'<body data-root="{root}" ', 1)
        target = out / url
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(body, encoding="utf-8")

    readme = (ROOT / "README.md").read_text()
    match = SYLLABUS.search(readme)
    syllabus = match.group(1) if match else "The syllabus markers are missing from README.md."
    intro = readme.split("\n## ", 1)[0]
    index = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(rewrite_links(intro)),
                                            nbformat.v4.new_markdown_cell("## Syllabus\n" + rewrite_links(syllabus))])
    resources = {"metadata": {"name": "Neural ODEs: the course"},
                 "book": {"root": "", "nav": nav("", "Syllabus"), "footer": footer("", None, lectures[0] if lectures else None)}}
    body, _ = html_exporter.from_notebook_node(index, resources=resources)
    body = body.replace("<main>", '<main class="course-index">', 1).replace("<body ", '<body data-root="" ', 1)
    (out / "index.html").write_text(body, encoding="utf-8")
    print(f"site: {out} ({len(pages) + 1} pages) in {time.monotonic() - started:.1f} s")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true", help="execute in fast mode (NODECOURSE_FAST=1), as the tests do")
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "site")
    parser.add_argument("--jobs", type=int, default=2, help="lectures executed at once")
    parser.add_argument("--execute", nargs="+", metavar="PREFIX",
                        help="execute only these lectures and solutions (the others are shown without outputs)")
    args = parser.parse_args(argv)
    build(args.fast, args.out.resolve(), args.jobs, args.execute)
    return 0


if __name__ == "__main__":
    sys.exit(main())
