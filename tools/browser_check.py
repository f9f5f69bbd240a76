"""Run course notebooks in JupyterLab in a real browser and fail on anything a student would see go wrong.

For each notebook (by default the welcome and lecture 02) the check:

1. executes it headlessly with nbclient, as a reference of which cells produce a figure or a widget;
2. opens it in JupyterLab, served from a temporary folder holding a copy of it (nothing is ever
   saved in the repository), driven by the system's Chromium through Playwright; runs Run > Run All
   Cells and waits until the kernel is idle and no cell shows ``[*]``;
3. fails on an error output, a cell left unrun, stderr output that is a warning (all stderr output is
   printed), a figure that the reference run or a ``plt.show()`` in the source promises but the page
   does not show, a tqdm progress bar that is not rendered as a widget, and a browser console error;
4. saves a screenshot of the run notebook in a temporary folder and prints a short report;
5. opens it as RISE slides (JupyterLab's "Render as slides", jupyterlab-rise), offline, and fails unless
   every slide its metadata asks for is shown, its math is typeset and the console is clean.

Run it with ``make test-browser`` (which installs Playwright into .venv first), or directly:

    NODECOURSE_FAST=1 OMP_NUM_THREADS=1 .venv/bin/python tools/browser_check.py [--notebook PATH ...]

It never downloads a browser: it uses ``$CHROMIUM``, else ``chromium`` on the PATH (Debian:
``apt-get install chromium``). JupyterLab is the one next to the Python that runs this script.
Exit status: 0 when every notebook is clean, 1 otherwise.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
from nbclient import NotebookClient

try:
    from playwright.sync_api import Browser, Page, Playwright, sync_playwright
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
except ImportError:  # main() says how to install it
    sync_playwright = None

REPO = Path(__file__).resolve().parents[1]
DEFAULT_NOTEBOOKS = ("notebooks/00_welcome.ipynb", "notebooks/02_euler_and_resnets.ipynb")
JUPYTER = Path(sys.executable).parent / "jupyter"

CHROMIUM_ARGS = [
    "--no-sandbox",  # Chromium refuses to start as root (containers, CI) with its sandbox on
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

# JupyterLab settings for the check, in a temporary user-settings folder (the user's own are not read).
LAB_SETTINGS = {
    # every cell attached to the page, so that every output can be inspected and photographed
    "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none", "scrollPastEnd": False},
    # never write the notebook, not even the temporary copy
    "@jupyterlab/docmanager-extension/plugin": {"autosave": False},
    # no request to the Jupyter news feed, no pop-up asking about it
    "@jupyterlab/apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
}

WARNING = re.compile(r"\w*warning\b", re.IGNORECASE)
SHOWS_FIGURE = re.compile(r"\bplt\.show\(")
POLL_S = 0.5

# Finds the notebook panel of the JupyterLab app (exposed as window.jupyterapp) open on `path`.
FIND_PANEL = "const panel = [...window.jupyterapp.shell.widgets('main')].find(w => w.context?.path === path);"

JS_KERNEL_READY = f"""path => {{
  if (!window.jupyterapp) return false;
  {FIND_PANEL}
  return !!panel && panel.context.isReady && !!panel.sessionContext.session?.kernel
         && panel.sessionContext.kernelDisplayStatus === 'idle';
}}"""

# What the page shows: the kernel status and, per cell, its model (source, outputs) and rendered DOM.
JS_STATE = f"""path => {{
  {FIND_PANEL}
  const cells = panel.content.widgets.map(cell => {{
    const model = cell.model;
    const info = {{type: model.type, source: model.sharedModel.getSource(), prompt: '', count: null,
                  outputs: [], images: 0, brokenImages: 0, widgets: 0, progressBars: 0}};
    if (model.type !== 'code') return info;
    info.prompt = cell.node.querySelector('.jp-InputPrompt')?.textContent.trim() ?? '';
    info.count = model.executionCount;
    for (let i = 0; i < model.outputs.length; i++) {{
      const out = model.outputs.get(i).toJSON();
      const text = Array.isArray(out.text) ? out.text.join('') : (out.text ?? '');
      info.outputs.push({{type: out.output_type, name: out.name ?? '', text: text,
                         ename: out.ename ?? '', evalue: out.evalue ?? ''}});
    }}
    const images = [...cell.node.querySelectorAll('.jp-OutputArea img')];
    info.images = images.filter(img => img.complete && img.naturalWidth > 0).length;
    info.brokenImages = images.length - info.images;
    info.widgets = cell.node.querySelectorAll('.jp-OutputArea-output > .jupyter-widgets').length;
    info.progressBars = cell.node.querySelectorAll('.jp-OutputArea .widget-hprogress, .jp-OutputArea .widget-vprogress').length;
    return info;
  }});
  return {{status: panel.sessionContext.kernelDisplayStatus, cells: cells}};
}}"""

JS_STARTED = f"""path => {{
  {FIND_PANEL}
  return panel.content.widgets.some(cell => cell.model.type === 'code' && (cell.model.executionCount !== null
         || cell.node.querySelector('.jp-InputPrompt')?.textContent.includes('*')));
}}"""
JS_CLEAR_OUTPUTS = "() => window.jupyterapp.commands.execute('notebook:clear-all-cell-outputs')"
JS_SHUTDOWN_KERNEL = f"async path => {{ {FIND_PANEL} await panel.sessionContext.shutdown(); }}"
JS_NOTEBOOK_HEIGHT = f"""path => {{
  {FIND_PANEL}
  window.jupyterapp.shell.collapseLeft();
  return (panel.content.outerNode ?? panel.content.node).scrollHeight;
}}"""
JS_SCROLL_TO_TOP = f"path => {{ {FIND_PANEL} (panel.content.outerNode ?? panel.content.node).scrollTop = 0; }}"


@dataclass
class Reference:
    """What a headless nbclient run of the notebook shows: the cells (0-based) with a figure or a widget."""

    figure_cells: set[int]
    widget_cells: set[int]


@dataclass
class NotebookResult:
    """The outcome of one notebook in the browser."""

    path: str
    seconds: float = 0.0
    cells_run: int = 0
    figures: int = 0
    progress_bars: int = 0
    stderr: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    screenshot: Path | None = None
    slides: int = 0  # RISE checks: slides shown and typeset formulas
    formulas: int = 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--notebook", action="append", type=Path, metavar="PATH",
                        help="a notebook to check (repeatable; default: %s)" % ", ".join(DEFAULT_NOTEBOOKS))
    parser.add_argument("--timeout", type=float, default=300.0, metavar="SECONDS",
                        help="the longest a notebook may take to run in the browser (default: 300)")
    parser.add_argument("--screenshots", type=Path, metavar="DIR",
                        help="where to save the screenshots (default: a new temporary folder)")
    return parser.parse_args(argv)


def find_chromium() -> str:
    """The Chromium to drive: $CHROMIUM, else `chromium` on the PATH; exits with a hint when there is none."""
    candidate = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not (Path(candidate).is_file() and os.access(candidate, os.X_OK)):
        sys.exit(f"Chromium not found at {candidate}: install it (Debian/Ubuntu: `sudo apt-get install chromium`) "
                 "or point CHROMIUM=/path/to/chromium at one; this check never downloads a browser.")
    return candidate


def stage_notebooks(notebooks: list[Path], root: Path) -> list[str]:
    """Copy each notebook under `root` (a repository notebook keeps its relative path); their paths there."""
    staged = []
    for notebook in notebooks:
        source = notebook.resolve()
        if not source.is_file():
            sys.exit(f"No such notebook: {notebook}")
        relative = source.relative_to(REPO) if source.is_relative_to(REPO) else Path(source.name)
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, root / relative)
        staged.append(relative.as_posix())
    return staged


def reference_run(notebook: Path) -> Reference:
    """Execute the notebook with nbclient (errors allowed) and note which cells display a figure or a widget."""
    nb = nbformat.read(notebook, as_version=4)
    NotebookClient(nb, timeout=600, allow_errors=True,
                   resources={"metadata": {"path": str(notebook.parent)}}).execute(stderr=subprocess.DEVNULL)
    figures, widgets = set(), set()
    for index, cell in enumerate(nb.cells):
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if "image/png" in data or "image/svg+xml" in data:
                figures.add(index)
            if "application/vnd.jupyter.widget-view+json" in data:
                widgets.add(index)
    return Reference(figures, widgets)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_lab_settings(settings_dir: Path) -> None:
    for plugin, values in LAB_SETTINGS.items():
        path = settings_dir / f"{plugin}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))


@contextmanager
def jupyter_lab(root: Path, scratch: Path) -> Iterator[tuple[str, str]]:
    """A JupyterLab serving `root` on a free loopback port; yields its base URL and token. Always stopped."""
    if not JUPYTER.is_file():
        sys.exit(f"{JUPYTER} not found: run `make setup` first (this script must run with the course's .venv).")
    write_lab_settings(scratch / "user-settings")
    port, token = free_port(), secrets.token_hex(16)
    env = dict(os.environ, JUPYTER_TOKEN=token, JUPYTER_CONFIG_DIR=str(scratch / "config"),
               JUPYTER_RUNTIME_DIR=str(scratch / "runtime"))
    command = [str(JUPYTER), "lab", "--no-browser", "--ip=127.0.0.1", f"--port={port}", "--ServerApp.port_retries=0",
               f"--ServerApp.root_dir={root}", f"--LabApp.user_settings_dir={scratch / 'user-settings'}",
               f"--LabApp.workspaces_dir={scratch / 'workspaces'}", "--LabApp.expose_app_in_browser=True"]
    if os.geteuid() == 0:
        command.append("--allow-root")
    log_path = scratch / "jupyter.log"
    with open(log_path, "w") as log:
        # Own session: a Ctrl-C in the terminal reaches this script only, which then stops the server.
        server = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                  start_new_session=True)
    try:
        base_url = f"http://127.0.0.1:{port}"
        wait_for_server(server, base_url, token, log_path)
        yield base_url, token
    finally:
        stop(server)


def wait_for_server(server: subprocess.Popen, base_url: str, token: str, log_path: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            sys.exit(f"JupyterLab exited with status {server.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{base_url}/api/status?token={token}", timeout=2):
                return
        except OSError:
            time.sleep(0.3)
    sys.exit(f"JupyterLab did not answer within {timeout:.0f} s:\n{log_path.read_text()[-3000:]}")


def stop(server: subprocess.Popen) -> None:
    """SIGTERM (the server then shuts its kernels down), SIGKILL if it lingers."""
    if server.poll() is None:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def launch_chromium(playwright: Playwright, executable: str) -> Browser:
    try:
        return playwright.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
    except PlaywrightError as error:
        sys.exit(f"Chromium ({executable}) did not start: {error.message.splitlines()[0]}")


def wait_until_run(page: Page, path: str, timeout: float) -> dict:
    """Poll the page until the kernel is idle and no cell is queued or running (twice in a row); the last state."""
    deadline = time.monotonic() + timeout
    settled = 0
    while True:
        state = page.evaluate(JS_STATE, path)
        if state["status"] == "dead":
            raise RuntimeError("the kernel died")
        settled = settled + 1 if is_finished(state) else 0
        if settled == 2:
            return state
        if time.monotonic() > deadline:
            running = [f"cell {i}" for i, cell in enumerate(state["cells"], 1) if "*" in cell["prompt"]]
            raise TimeoutError(f"not finished after {timeout:.0f} s (kernel {state['status']}; "
                               f"still queued or running: {', '.join(running) or 'none'})")
        time.sleep(POLL_S)


def is_finished(state: dict) -> bool:
    """Kernel idle, no `[*]`, and every code cell run (or an error stopped Run All)."""
    code = [cell for cell in state["cells"] if cell["type"] == "code" and cell["source"].strip()]
    if state["status"] != "idle" or any("*" in cell["prompt"] for cell in code):
        return False
    errored = any(out["type"] == "error" for cell in code for out in cell["outputs"])
    return errored or all(cell["count"] is not None for cell in code)


def open_notebook(page: Page, base_url: str, token: str, path: str) -> None:
    """Open the notebook in a workspace of its own and wait until its kernel is idle."""
    workspace = "check-" + re.sub(r"\W", "-", path)
    page.goto(f"{base_url}/lab/workspaces/{workspace}/tree/{path}?token={token}")
    try:
        page.wait_for_function(JS_KERNEL_READY, arg=path, timeout=120_000)
    except PlaywrightTimeout:
        raise TimeoutError("the notebook did not open with an idle kernel within 120 s") from None


def run_all_cells(page: Page, path: str) -> None:
    """Run > Run All Cells, through the menu bar as a student would, and wait until the first cell starts."""
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
    try:
        page.wait_for_function(JS_STARTED, arg=path, timeout=30_000)
    except PlaywrightTimeout:
        raise TimeoutError("Run > Run All Cells started no cell within 30 s") from None


def judge(result: NotebookResult, state: dict, reference: Reference) -> None:
    """Fill in the counts and the problems of `result` from the final page state."""
    not_run = []
    for index, cell in enumerate(state["cells"]):
        if cell["type"] != "code" or not cell["source"].strip():
            continue
        if cell["count"] is None:
            not_run.append(str(index + 1))
            continue
        label = f"cell {index + 1} [{cell['count']}]"
        result.cells_run += 1
        result.figures += cell["images"]
        result.progress_bars += cell["progressBars"]
        for out in cell["outputs"]:
            if out["type"] == "error":
                result.problems.append(f"{label}: {out['ename']}: {out['evalue']}")
            elif out["type"] == "stream" and out["name"] == "stderr":
                result.stderr.append(f"{label}: {out['text'].rstrip()}")
                if WARNING.search(out["text"]):
                    result.problems.append(f"{label}: warning on stderr: {out['text'].strip()}")
        wants_figure = index in reference.figure_cells or SHOWS_FIGURE.search(cell["source"])
        if wants_figure and cell["images"] == 0:
            result.problems.append(f"{label}: no figure shown (the cell calls plt.show() or nbclient's run displays one)")
        if cell["brokenImages"]:
            result.problems.append(f"{label}: {cell['brokenImages']} image(s) failed to render")
        if index in reference.widget_cells and cell["widgets"] == 0:
            result.problems.append(f"{label}: a widget output (a progress bar?) is not rendered as a widget")
    if not_run:
        result.problems.append(f"cells not run: {', '.join(not_run)}")


def console_error_is_ignored(text: str, url: str, base_url: str) -> bool:
    """The only console errors that say nothing about the course, each with its reason."""
    # Resources from outside the local server (the Colab badges of the lectures' first cell) are
    # blocked on purpose: the check runs offline and tests the course, not the internet.
    if text.startswith("Failed to load resource") and not url.startswith(base_url):
        return True
    return False


def check_notebook(browser: Browser, base_url: str, token: str, path: str, reference: Reference, timeout: float,
                   screenshot: Path) -> NotebookResult:
    """Open one notebook in a fresh page and workspace, Run All, judge the result, take a screenshot."""
    result = NotebookResult(path)
    started = time.monotonic()
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    context.route(re.compile("^(?!" + re.escape(base_url) + ")"), lambda route: route.abort())  # offline
    console_errors: list[str] = []

    def on_console(message) -> None:
        if message.type == "error" and not console_error_is_ignored(message.text, message.location["url"], base_url):
            console_errors.append(f"{message.text} ({message.location['url']})")

    page.on("console", on_console)
    page.on("pageerror", lambda error: console_errors.append(f"uncaught exception: {error}"))
    try:
        open_notebook(page, base_url, token, path)
        page.evaluate(JS_CLEAR_OUTPUTS)
        run_all_cells(page, path)
        state = wait_until_run(page, path, timeout)
        judge(result, state, reference)
        take_screenshot(page, path, screenshot)
        result.screenshot = screenshot
        page.evaluate(JS_SHUTDOWN_KERNEL, path)
    except Exception as error:  # a timeout or a page that never became ready: reported like any problem
        result.problems.append(f"{type(error).__name__}: {error}")
        take_screenshot(page, path, screenshot)
        result.screenshot = screenshot
    finally:
        context.close()
    result.problems += [f"browser console error: {text}" for text in console_errors]
    result.seconds = time.monotonic() - started
    return result


# What RISE (jupyterlab-rise, "Render as slides") shows: its reveal.js slides and the typeset math in them.
JS_RISE_STATE = """() => {
  const slides = document.querySelectorAll('.reveal .slides > section');
  const text = [...document.querySelectorAll('.reveal .slides .jp-RenderedMarkdown')].map(n => n.innerText).join('\\n');
  return {slides: slides.length, math: document.querySelectorAll('.reveal mjx-container, .reveal .MathJax').length,
          rawMath: (text.match(/\\$|\\\\\\(|\\\\frac/g) || []).length};
}"""


def expected_slides(notebook: Path) -> int:
    """How many horizontal slides the notebook's metadata asks for (cells of slide type "slide")."""
    nb = nbformat.read(notebook, as_version=4)
    return sum(1 for cell in nb.cells if cell.metadata.get("slideshow", {}).get("slide_type") == "slide")


def rise_console_error_is_ignored(text: str, url: str, base_url: str) -> bool:
    """Console errors of the RISE page that come from jupyterlab-rise itself, each with its reason."""
    if console_error_is_ignored(text, url, base_url):
        return True
    # RISE looks for optional style sheets beside the notebook (rise.css, <notebook>.css); the course has none.
    if text.startswith("Refused to apply style from") and re.search(r"/files/.*\.css'", text):
        return True
    # jupyterlab-rise's page loads every lab extension, and the ipywidgets 8 manager asks for a module the
    # page does not share (jupyterlab-contrib/rise issue 119): widgets (progress bars) do not render
    # there; the slides do, which is what this check measures.
    if "Shared module @jupyterlab/console doesn't exist" in text:
        return True
    if "Maximum call stack size exceeded" in text and "/static/rise/" in url:
        return True
    return False


def check_rise(browser: Browser, base_url: str, token: str, path: str, wanted: int, screenshot: Path) -> NotebookResult:
    """Open the notebook as RISE slides (JupyterLab's "Render as slides", jupyterlab-rise) offline and
    fail unless every slide its metadata asks for is there, its math is typeset and the console is clean."""
    result = NotebookResult(f"{path} (RISE slides)")
    started = time.monotonic()
    context = browser.new_context(viewport={"width": 1280, "height": 720})
    page = context.new_page()
    context.route(re.compile("^(?!" + re.escape(base_url) + ")"), lambda route: route.abort())  # offline
    console_errors: list[str] = []
    page.on("console", lambda message: console_errors.append(f"{message.text} ({message.location['url']})")
            if message.type == "error" and not rise_console_error_is_ignored(message.text, message.location["url"], base_url)
            else None)
    page.on("pageerror", lambda error: console_errors.append(f"uncaught exception: {error}"))
    try:
        page.goto(f"{base_url}/rise/{path}?token={token}")
        page.wait_for_function(f"() => document.querySelectorAll('.reveal .slides > section').length >= {wanted}",
                               timeout=120_000)
        page.wait_for_timeout(2000)  # let MathJax typeset
        state = page.evaluate(JS_RISE_STATE)
        result.slides, result.formulas = state["slides"], state["math"]
        if state["slides"] != wanted:
            result.problems.append(f"{state['slides']} slides shown, the notebook's metadata asks for {wanted}")
        if state["rawMath"]:
            result.problems.append(f"{state['rawMath']} pieces of untypeset LaTeX on the slides")
        page.screenshot(path=str(screenshot))
        result.screenshot = screenshot
    except Exception as error:  # a timeout or a page that never became ready: reported like any problem
        result.problems.append(f"{type(error).__name__}: {error}")
        page.screenshot(path=str(screenshot))
        result.screenshot = screenshot
    finally:
        context.close()
    result.problems += [f"browser console error: {text}" for text in console_errors]
    result.seconds = time.monotonic() - started
    return result


def take_screenshot(page: Page, path: str, target: Path) -> None:
    """The whole notebook in one picture: the viewport is made as tall as the notebook (capped)."""
    try:
        height = page.evaluate(JS_NOTEBOOK_HEIGHT, path)
        page.set_viewport_size({"width": 1400, "height": min(int(height) + 200, 16000)})
        page.evaluate(JS_SCROLL_TO_TOP, path)
        page.wait_for_timeout(1000)
    except Exception:  # the page may be broken; a picture of it is still useful
        pass
    page.screenshot(path=str(target))


def indent(text: str, spaces: int = 7) -> str:
    return "\n".join(" " * spaces + line for line in text.splitlines())


def print_report(result: NotebookResult) -> None:
    verdict = "OK" if not result.problems else "FAIL"
    if result.slides or "(RISE" in result.path:
        print(f"{verdict:4s} {result.path}: {result.slides} slides, {result.formulas} typeset formulas, "
              f"{result.seconds:.1f} s")
        for problem in result.problems:
            print(indent(f"PROBLEM: {problem}"))
        return
    print(f"{verdict:4s} {result.path}: {result.cells_run} code cells run, {result.figures} figures, "
          f"{result.progress_bars} progress-bar widgets, {len(result.stderr)} stderr outputs, {result.seconds:.1f} s")
    for text in result.stderr:
        print(indent(f"stderr, {text}"))
    for problem in result.problems:
        print(indent(f"PROBLEM: {problem}"))
    if result.screenshot:
        print(f"       screenshot: {result.screenshot}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if sync_playwright is None:
        sys.exit("Playwright is not installed in this environment: run `make test-browser` "
                 "(or `.venv/bin/python -m pip install -c requirements-lock.txt playwright`).")
    chromium = find_chromium()
    notebooks = args.notebook or [REPO / path for path in DEFAULT_NOTEBOOKS]
    screenshots = args.screenshots or Path(tempfile.mkdtemp(prefix="nodecourse-browser-"))
    screenshots.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("NODECOURSE_FAST", "1")
    started = time.monotonic()
    results = []
    with tempfile.TemporaryDirectory(prefix="nodecourse-lab-") as scratch_name:
        scratch = Path(scratch_name)
        root = scratch / "root"
        paths = stage_notebooks(notebooks, root)
        references = {}
        for path in paths:
            print(f"reference run (nbclient): {path}", flush=True)
            references[path] = reference_run(root / path)
        with jupyter_lab(root, scratch) as (base_url, token), sync_playwright() as playwright:
            browser = launch_chromium(playwright, chromium)
            try:
                for path in paths:
                    print(f"JupyterLab in Chromium: {path}", flush=True)
                    shot = screenshots / (Path(path).stem + ".png")
                    results.append(check_notebook(browser, base_url, token, path, references[path], args.timeout, shot))
                for path in paths:
                    print(f"RISE slides in Chromium: {path}", flush=True)
                    shot = screenshots / (Path(path).stem + ".rise.png")
                    results.append(check_rise(browser, base_url, token, path, expected_slides(root / path), shot))
            finally:
                browser.close()
    print()
    for result in results:
        print_report(result)
    failed = [result.path for result in results if result.problems]
    print(f"\n{len(results) - len(failed)}/{len(results)} notebooks clean; total {time.monotonic() - started:.1f} s")
    print(f"browser check: {len(results) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # JupyterLab and the browser are already stopped by then
        sys.exit("interrupted")
