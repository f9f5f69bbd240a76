"""Open slide decks and book pages in headless Chromium with the network blocked; report what a viewer would see go wrong.

For a deck (``slides/NN_topic.slides.html``, from ``tools/build_slides.py``) it walks every slide and
sub-slide and fails on:

- a slide whose content is taller or wider than the 1280x720 slide (scroll size past the slide box);
- a figure that did not load, lies outside the slide box, is shown too small to read (narrower than
  560 px and shorter than 380 px of the slide), or a deck that shows fewer figures than the build put
  in it (``manifest.json`` beside the decks);
- math left unrendered (``$$``, ``\\(`` or ``\\begin`` in the text outside code, or a MathJax error);
- any request that is not a local file (the network is blocked, and a deck must not need it), any
  ``http(s)`` URL in a ``src``/``href`` of the page's scripts, styles and images, and any console error.

For a page of the book (``tools/build_book.py``) it checks the same for images, math, requests and
console errors, plus that every local link leads to a file that exists.

    .venv/bin/python tools/deck_check.py slides/*.slides.html [--screenshots DIR]
    .venv/bin/python tools/deck_check.py --book site/ [--screenshots DIR]

Uses the system's Chromium (``$CHROMIUM``, else ``chromium`` on the PATH) through Playwright; never a
downloaded browser. Exit status 0 when everything is clean.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path
from urllib.parse import unquote, urlparse

from playwright.sync_api import sync_playwright

WIDTH, HEIGHT = 1280, 720
MIN_FIGURE = (560, 380)  # a figure narrower and shorter than this is unreadable from the back of a room
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--allow-file-access-from-files"]

# What one slide shows, measured in the slide's own coordinates (reveal.js scales the slide).
JS_SLIDE = """([width, height]) => {
  const slide = Reveal.getCurrentSlide();
  const scale = Reveal.getScale();
  const box = slide.getBoundingClientRect();
  const images = [...slide.querySelectorAll('img')].map(img => {
    const r = img.getBoundingClientRect();
    return {loaded: img.complete && img.naturalWidth > 0,
            inside: (r.top - box.top) / scale >= -1 && (r.bottom - box.top) / scale <= height + 1
                    && (r.left - box.left) / scale >= -1 && (r.right - box.left) / scale <= width + 1,
            bottom: Math.round((r.bottom - box.top) / scale),
            width: Math.round(r.width / scale), height: Math.round(r.height / scale)};
  });
  const clone = slide.cloneNode(true);
  clone.querySelectorAll('.jp-CodeCell .jp-InputArea, pre, code, aside.notes, mjx-container, script').forEach(n => n.remove());
  return {indices: Reveal.getIndices(), scrollHeight: slide.scrollHeight, scrollWidth: slide.scrollWidth,
          title: (slide.querySelector('h1, h2, h3, h4') || {}).textContent || '',
          images, math: slide.querySelectorAll('mjx-container').length,
          mathErrors: slide.querySelectorAll('mjx-merror, [data-mjx-error]').length,
          rawMath: (clone.textContent.match(/\\$\\$|\\\\\\(|\\\\\\[|\\\\begin\\{/g) || []).length,
          notes: (slide.querySelector('aside.notes') || {}).textContent?.trim().length || 0};
}"""

JS_PAGE = """() => {
  const clone = document.body.cloneNode(true);
  clone.querySelectorAll('pre, code, script, .jp-InputArea, mjx-container, #search-results').forEach(n => n.remove());
  return {images: [...document.images].map(img => ({src: img.getAttribute('src').slice(0, 60),
                                                   loaded: img.complete && img.naturalWidth > 0})),
          links: [...document.querySelectorAll('a[href]')].map(a => a.getAttribute('href')),
          math: document.querySelectorAll('mjx-container').length,
          mathErrors: document.querySelectorAll('mjx-merror, [data-mjx-error]').length,
          rawMath: (clone.textContent.match(/\\$\\$|\\\\\\(|\\\\\\[|\\\\begin\\{/g) || []).length,
          remote: [...document.querySelectorAll('script[src], link[href], img[src]')]
                  .map(n => n.getAttribute('src') || n.getAttribute('href')).filter(u => /^(https?:)?\\/\\//.test(u))};
}"""


def find_chromium() -> str:
    chromium = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        sys.exit("No Chromium found: install your system's package (Debian: apt-get install chromium) "
                 "or set CHROMIUM=/path/to/chromium. This check never downloads a browser.")
    return chromium


class Session:
    """One offline browser context; `open` returns a page with its console errors and blocked requests recorded."""

    def __init__(self, playwright, viewport=(WIDTH, HEIGHT)):
        self.browser = playwright.chromium.launch(executable_path=find_chromium(), headless=True, args=CHROMIUM_ARGS)
        self.context = self.browser.new_context(viewport={"width": viewport[0], "height": viewport[1]})
        self.blocked: list[str] = []

        def route(route):
            if route.request.url.startswith("file://"):
                route.continue_()
            else:
                self.blocked.append(route.request.url)
                route.abort()

        self.context.route("**/*", route)

    def open(self, path: Path):
        page = self.context.new_page()
        errors: list[str] = []
        page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
        page.on("pageerror", lambda error: errors.append(f"uncaught exception: {error}"))
        self.blocked.clear()
        page.goto(path.resolve().as_uri())
        return page, errors

    def close(self):
        self.context.close()
        self.browser.close()


def check_deck(session: Session, deck: Path, expected_figures: int | None, screenshots: Path | None = None) -> dict:
    """Walk every slide of one deck; a report with the problems found."""
    started = time.monotonic()
    page, errors = session.open(deck)
    problems: list[str] = []
    page.wait_for_function("() => window.courseDeckReady !== undefined", timeout=60_000)
    page.evaluate("() => window.courseDeckReady")
    slides = page.evaluate("() => Reveal.getSlides().map(s => [Reveal.getIndices(s).h, Reveal.getIndices(s).v || 0])")
    shown_figures = math = notes = 0
    for number, (h, v) in enumerate(slides, 1):
        page.evaluate(f"() => Reveal.slide({h}, {v})")
        page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
        state = page.evaluate(JS_SLIDE, [WIDTH, HEIGHT])
        where = f"slide {number} ({h}.{v} {state['title'][:50]!r})"
        if state["scrollHeight"] > HEIGHT + 1:
            problems.append(f"{where}: content {state['scrollHeight']} px tall, the slide is {HEIGHT}")
        if state["scrollWidth"] > WIDTH + 1:
            problems.append(f"{where}: content {state['scrollWidth']} px wide, the slide is {WIDTH}")
        for image in state["images"]:
            if not image["loaded"]:
                problems.append(f"{where}: a figure did not load")
            elif not image["inside"]:
                problems.append(f"{where}: a figure ends at {image['bottom']} px, outside the slide")
            elif image["width"] < MIN_FIGURE[0] and image["height"] < MIN_FIGURE[1]:
                problems.append(f"{where}: a figure shown at {image['width']}x{image['height']} px, too small to "
                                f"read on a {WIDTH}x{HEIGHT} slide (at least {MIN_FIGURE[0]} wide or {MIN_FIGURE[1]} tall)")
            else:
                shown_figures += 1
        if state["mathErrors"]:
            problems.append(f"{where}: {state['mathErrors']} MathJax error(s)")
        if state["rawMath"]:
            problems.append(f"{where}: unrendered math ({state['rawMath']} raw delimiter(s))")
        math += state["math"]
        notes += bool(state["notes"])
        if screenshots is not None and number <= 3:
            page.screenshot(path=str(screenshots / f"{deck.stem}-{number}.png"))
    if expected_figures is not None and shown_figures < expected_figures:
        problems.append(f"{shown_figures} figures shown, the build put {expected_figures} in the deck")
    remote = page.evaluate(JS_PAGE)["remote"]
    problems += [f"remote asset referenced: {url}" for url in remote]
    problems += [f"request to the network: {url}" for url in session.blocked]
    problems += [f"console error: {text}" for text in errors]
    page.close()
    return {"path": str(deck), "slides": len(slides), "figures": shown_figures, "math": math,
            "slides_with_notes": notes, "problems": problems, "seconds": time.monotonic() - started}


def check_page(session: Session, path: Path, root: Path, screenshot: Path | None = None) -> dict:
    """One page of the book: images, math, local links, requests and console errors."""
    page, errors = session.open(path)
    page.wait_for_function("() => window.coursePageReady !== undefined", timeout=60_000)
    page.evaluate("() => window.coursePageReady")
    state = page.evaluate(JS_PAGE)
    problems = [f"image not loaded: {image['src']}" for image in state["images"] if not image["loaded"]]
    if state["mathErrors"]:
        problems.append(f"{state['mathErrors']} MathJax error(s)")
    if state["rawMath"]:
        problems.append(f"unrendered math ({state['rawMath']} raw delimiter(s))")
    for href in state["links"]:
        url = urlparse(href)
        if url.scheme or href.startswith("#") or href.startswith("//"):
            continue
        target = (path.parent / unquote(url.path)).resolve()
        if not target.exists():
            problems.append(f"broken link: {href}")
        elif not target.is_relative_to(root.resolve()):
            problems.append(f"link leaves the site: {href}")
    problems += [f"remote asset referenced: {url}" for url in state["remote"]]
    problems += [f"request to the network: {url}" for url in session.blocked]
    problems += [f"console error: {text}" for text in errors]
    if screenshot is not None:
        page.screenshot(path=str(screenshot))
    page.close()
    return {"path": str(path), "images": len(state["images"]), "math": state["math"],
            "links": len(state["links"]), "problems": problems}


def check_decks(decks: list[Path], screenshots: Path | None = None) -> list[dict]:
    manifest = {}
    if decks and (decks[0].parent / "manifest.json").exists():
        manifest = json.loads((decks[0].parent / "manifest.json").read_text())
    with sync_playwright() as playwright:
        session = Session(playwright)
        try:
            return [check_deck(session, deck, manifest.get(deck.name, {}).get("figures"), screenshots)
                    for deck in decks]
        finally:
            session.close()


def check_book(root: Path, screenshots: Path | None = None) -> list[dict]:
    pages = sorted(root.rglob("*.html"))
    with sync_playwright() as playwright:
        session = Session(playwright, viewport=(1280, 900))
        try:
            return [check_page(session, page, root,
                               screenshots / (page.stem + ".png") if screenshots and page.parent == root else None)
                    for page in pages]
        finally:
            session.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("decks", nargs="*", type=Path)
    parser.add_argument("--book", type=Path, help="check every page of the built site in this folder")
    parser.add_argument("--screenshots", type=Path)
    args = parser.parse_args(argv)
    if args.screenshots:
        args.screenshots.mkdir(parents=True, exist_ok=True)
    reports = check_decks(args.decks, args.screenshots) if args.decks else []
    if args.book:
        reports += check_book(args.book, args.screenshots)
    for report in reports:
        verdict = "OK  " if not report["problems"] else "FAIL"
        counts = ", ".join(f"{report[key]} {key}" for key in ("slides", "figures", "images", "math", "links",
                                                               "slides_with_notes") if key in report)
        print(f"{verdict} {report['path']}: {counts}")
        for problem in report["problems"]:
            print(f"       {problem}")
    failed = sum(bool(report["problems"]) for report in reports)
    print(f"deck check: {len(reports) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
