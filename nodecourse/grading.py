"""Mark a class's exercise notebooks: ``nodecourse-grade SUBMISSIONS --out marks.csv``.

``SUBMISSIONS`` holds one folder per student, named after the student, with that student's exercise
notebooks anywhere inside it (``alice/01_dynamical_systems_exercises.ipynb``; nbgrader's
``submitted/<student>/<assignment>/`` layout works too). Each submitted notebook is matched to its
official exercise notebook in ``exercises/`` (by file name, else by the checker module it imports),
and graded in four steps:

1. **Only the answers are taken.** An answer cell is a cell that holds a solution region in
   ``solutions/`` (found in the submission by its cell id, else by its checker call or the function
   it defines). Of the learner's version, only the part before the checker call is kept. Every other
   cell, the checker call included, comes from the official notebook, so editing it changes nothing.
2. **A fresh kernel runs the rebuilt notebook** headlessly (nbclient, ``NODECOURSE_FAST=1``). Each
   answer and each check gets ``--cell-timeout`` seconds and the whole notebook ``--timeout``: a
   loop is interrupted, a crash is recorded, and either way the notebook goes on with the reference,
   so it costs the student that exercise only. A kernel that dies or ignores the interrupt is
   replaced and the notebook replayed without that answer.
3. **The grader runs each checker call itself.** Before any learner code runs, a first cell loads
   the checkers and records the state of ``nodecourse``, ``torch``, ``numpy``, ``math`` and the
   builtins. Each check then puts that state back for its duration (so a learner cell that rebinds
   ``ex03.check_mask_update``, swaps a function's code or patches ``torch.allclose`` checks nothing),
   calls the official checker and records the checker's own report objects.
4. **The marks travel outside the notebook.** The results go to files whose paths only the grader and
   that first cell know, read right after each check, never from printed text.

One CSV row per student, notebook and exercise: ``student, notebook, exercise, status, detail`` with
status ``passed``, ``failed``, ``not attempted``, ``error`` (the answer cell or the check raised, or
the kernel died) or ``timeout``. An answer cell left as handed out is ``not attempted``.

This is not a sandbox: submissions run with your permissions. Grade in a container or as a user
with no access to anything that matters. Code that digs into the grader's own objects (closures,
frames, background threads) can still interfere; the detail column says "review" for answers that
touch such machinery.

    nodecourse-grade submissions/ --out marks.csv [--timeout 300] [--cell-timeout 60] [--jobs 2]
"""
from __future__ import annotations

import argparse
import ast
import csv
import hashlib
import json
import logging
import math
import os
import re
import secrets
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

__all__ = ["COLUMNS", "STATUSES", "GradingError", "grade", "write_csv", "main"]

COLUMNS = ("student", "notebook", "exercise", "status", "detail")
STATUSES = ("passed", "failed", "not attempted", "error", "timeout")
BEGIN = "### BEGIN SOLUTION"
EXERCISE_HEADING = re.compile(r"^#+\s*Exercise\s+(\d+)", re.MULTILINE)
TIMEOUT_NAME = "NodecourseGradeTimeout"
PROBE_TIMEOUT = 3
# Answers that touch these get "review" in their detail: they are how code reaches into a grader.
SUSPICIOUS = re.compile(r"\b(nodecourse\.exercises|checking\.|__code__|__defaults__|__globals__|__closure__|sys\.modules|"
                        r"_getframe|builtins|setattr|gc\.|threading|ctypes|importlib|f_globals|f_locals|_ih)\b|"
                        r"\bglobals\s*\(|\bIn\s*\[|"
                        r"\bex\d\d\.\w+\s*=[^=]")


_QUIET = logging.getLogger("nodecourse.grading.kernel")   # nbclient's notes on timeouts: the marks say it
_QUIET.addHandler(logging.NullHandler())
_QUIET.propagate = False


class GradingError(RuntimeError):
    """Something is wrong with the grading itself (not with a submission): the run stops."""


# --------------------------------------------------------------------------------------------------
# the official exercise notebooks
# --------------------------------------------------------------------------------------------------


@dataclass
class Answer:
    """One answer cell of an official exercise notebook."""

    exercise: int
    cell_id: Optional[str]
    part_a: str        # the learner's part as handed out (before the first checker call)
    part_b: str        # the checker call and what follows it ("" when the cell has none)
    anchors: list      # regular expressions that find the cell in a submission without its id


@dataclass
class Official:
    """An official exercise notebook, read once: its cells, answer cells and checker modules."""

    name: str
    notebook: Any
    aliases: dict          # checker module alias in the notebook -> module name ("ex01" -> nodecourse.exercises.ex01)
    modules: list          # every nodecourse module the notebook imports
    answers: dict          # cell index -> Answer
    exercises: list        # exercise numbers in order


def _python(source: str) -> str:
    """A cell's source as plain Python (IPython's magics turned into calls)."""
    try:
        from IPython.core.inputtransformer2 import TransformerManager
        return TransformerManager().transform_cell(source)
    except Exception:  # noqa: BLE001 - no IPython, or a source it cannot read: execute as written
        return source


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return ""


def _is_checker_call(node: ast.AST, aliases: dict) -> bool:
    """``ex01.check_x(...)``, ``nodecourse.exercises.ex01.check_x(...)`` and the like."""
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr.startswith("check_")):
        return False
    owner = _dotted(node.func.value)
    return owner in aliases or bool(re.search(r"(^|\.)ex\d\d$", owner))


def _checker_calls(statement: ast.AST, aliases: dict) -> list:
    return [n for n in ast.walk(statement) if _is_checker_call(n, aliases)]


def _split(source: str, aliases: dict) -> tuple[str, str]:
    """(the part before the first top-level statement that calls a checker, the rest)."""
    code = _python(source)
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return code, ""
    for statement in tree.body:
        if _checker_calls(statement, aliases):
            lines = code.splitlines(keepends=True)
            line = lines[statement.lineno - 1]
            column = len(line.encode()[:statement.col_offset].decode(errors="ignore"))   # col_offset counts bytes
            at = sum(map(len, lines[:statement.lineno - 1])) + column
            return code[:at], code[at:]
    return code, ""


def _same_code(a: str, b: str) -> bool:
    """Whether two sources say the same (comments and layout aside)."""
    try:
        return ast.dump(ast.parse(a)) == ast.dump(ast.parse(b))
    except SyntaxError:
        return [ln.rstrip() for ln in a.strip().splitlines() if ln.strip()] == \
               [ln.rstrip() for ln in b.strip().splitlines() if ln.strip()]


def _imports(notebook) -> tuple[dict, list]:
    """(checker module aliases, every nodecourse module) imported by a notebook's code cells."""
    aliases, modules = {}, []
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        try:
            tree = ast.parse(_python(cell.source))
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "nodecourse":
                modules.append(node.module)
                for name in node.names:
                    modules.append(f"{node.module}.{name.name}")
                    if node.module == "nodecourse.exercises" and re.fullmatch(r"ex\d\d", name.name):
                        aliases[name.asname or name.name] = f"nodecourse.exercises.{name.name}"
            elif isinstance(node, ast.Import):
                for name in node.names:
                    if name.name.split(".")[0] == "nodecourse":
                        modules.append(name.name)
                        if name.asname and re.fullmatch(r"nodecourse\.exercises\.ex\d\d", name.name):
                            aliases[name.asname] = name.name
    return aliases, list(dict.fromkeys(modules))


def _defined_names(source: str) -> list:
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    names = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.append(rf"^\s*(async\s+)?(def|class)\s+{node.name}\b")
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names += [rf"^{t.id}\s*[:=]" for t in targets if isinstance(t, ast.Name)]
    return names


def read_official(path: Path, solutions: Optional[Path] = None) -> Official:
    """Read an official exercise notebook; its answer cells are the cells whose twin in ``solutions``
    (same cell id) holds a solution region, or, without that, the cells that call a checker."""
    import nbformat

    notebook = nbformat.read(str(path), as_version=4)
    aliases, modules = _imports(notebook)
    region_ids = set()
    if solutions is not None and solutions.exists():
        solved = nbformat.read(str(solutions), as_version=4)
        region_ids = {c.get("id") for c in solved.cells if c.cell_type == "code" and BEGIN in c.source} - {None}
    by_id = region_ids & {c.get("id") for c in notebook.cells}
    answers, exercises, current, count = {}, [], None, 0
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type == "markdown":
            headings = EXERCISE_HEADING.findall(cell.source)
            current = int(headings[-1]) if headings else current
            continue
        if cell.cell_type != "code":
            continue
        part_a, part_b = _split(cell.source, aliases)
        if not (cell.get("id") in by_id if by_id else part_b):
            continue
        count += 1
        number = current if current is not None and current not in exercises else count
        while number in exercises:
            number += 1
        exercises.append(number)
        anchors = [rf"\b{re.escape(c.func.attr)}\s*\(" for c in _checker_calls(ast.parse(part_b), aliases)] if part_b else []
        answers[index] = Answer(number, cell.get("id"), part_a, part_b, anchors + _defined_names(part_a))
    return Official(path.stem, notebook, aliases, modules, answers, exercises)


def read_course(course: Path) -> dict:
    """Every official exercise notebook of a course checkout, by name."""
    folder = course / "exercises"
    officials = {p.stem: read_official(p, course / "solutions" / p.name)
                 for p in sorted(folder.glob("*_exercises.ipynb"))}
    if not officials:
        raise GradingError(f"no exercise notebooks in {folder}: pass the course's folder with --course")
    return officials


def identify(path: Path, notebook, officials: dict) -> Optional[str]:
    """The official notebook a submitted one answers: by file name, else by the checker module it imports."""
    name = path.stem.lower()
    for stem in officials:
        if name == stem.lower() or stem.lower() in name:
            return stem
    for module in _imports(notebook)[0].values():
        number = module[-2:]
        matches = [s for s in officials if s.startswith(number + "_")]
        if len(matches) == 1:
            return matches[0]
    digits = re.match(r"(\d\d)_", path.name)
    matches = [s for s in officials if digits and s.startswith(digits.group(1) + "_")]
    return matches[0] if len(matches) == 1 else None


def learner_answers(notebook, official: Official) -> dict:
    """Official answer cell index -> the learner's part of the matching submitted cell (None: not found)."""
    code = [c for c in notebook.cells if c.cell_type == "code"]
    by_id = {}
    for c in code:
        by_id.setdefault(c.get("id"), c)
    used, found = set(), {}
    for index, answer in official.answers.items():
        cell = by_id.get(answer.cell_id) if answer.cell_id else None
        if cell is None or id(cell) in used:
            cell = next((c for pattern in answer.anchors for c in code
                         if id(c) not in used and re.search(pattern, c.source, re.MULTILINE)), None)
        if cell is not None:
            used.add(id(cell))
        found[index] = None if cell is None else _split(cell.source, official.aliases)[0]
    return found


# --------------------------------------------------------------------------------------------------
# the code the grader puts into the kernel
# --------------------------------------------------------------------------------------------------

# Installed by the first cell, before any learner code runs: it loads the checkers, records the state
# that checking depends on and defines the runner that each check cell calls with its index. The
# runner puts that state back while it runs the official checker call, records the checker's report
# objects and writes them to the check's result file. The table (checks and result paths) is read from
# a file that is deleted at once.
_KERNEL = r'''
def {install}(table_path, runner_name):
    import builtins, copy, importlib, json, math, os, sys, types
    import numpy, numpy.linalg, torch, torch.autograd, torch.linalg, torch.nn, torch.nn.functional
    with open(table_path, encoding="utf-8") as f:
        table = json.load(f)
    os.remove(table_path)
    for name in table["modules"]:
        try:
            importlib.import_module(name)
        except ImportError:
            pass
    checking = importlib.import_module("nodecourse.exercises.checking")
    reports, report_init = [], checking.Report.__init__

    def recording_init(self, *args, **kwargs):
        report_init(self, *args, **kwargs)
        reports.append(self)

    checking.Report.__init__ = recording_init
    MISSING = object()
    ours = {{n: m for n, m in list(sys.modules.items())
            if m is not None and (n == "nodecourse" or n.startswith("nodecourse."))}}
    owners = [builtins, math, numpy, numpy.linalg, torch, torch.autograd, torch.linalg, torch.nn,
              torch.nn.functional, torch.Tensor, torch.nn.Module, *ours.values()]
    owners += [c for m in ours.values() for c in list(vars(m).values())
               if isinstance(c, type) and c.__module__ == m.__name__]
    owners = list({{id(o): o for o in owners}}.values())
    attributes = [(o, dict(vars(o))) for o in owners]
    functions = {{}}
    for _, values in attributes:
        for v in values.values():
            v = v.__func__ if isinstance(v, (staticmethod, classmethod)) else v
            if isinstance(v, types.FunctionType):
                functions[id(v)] = (v, v.__code__, v.__defaults__, v.__kwdefaults__)
    containers = [(v, copy.copy(v)) for m in ours.values() for k, v in list(vars(m).items())
                  if not k.startswith("_") and type(v) in (dict, list, set)]
    dumps, write, getframe, compile_, exec_ = json.dumps, builtins.open, sys._getframe, builtins.compile, builtins.exec
    isinstance_, str_, type_, getattr_, setattr_, delattr_, vars_ = (builtins.isinstance, builtins.str, builtins.type,
                                                                   builtins.getattr, builtins.setattr, builtins.delattr,
                                                                   builtins.vars)

    def same(a, b):
        if type_(a) is not type_(b) or len(a) != len(b):
            return False
        if isinstance_(a, dict):
            return all(k in b and b[k] is v for k, v in a.items())
        return a == b if isinstance_(a, set) else all(x is y for x, y in zip(a, b))

    def refill(c, items):
        if isinstance_(c, list):
            c[:] = items
        else:
            c.clear()
            c.update(items)

    def protect():
        undo = []
        for n, m in ours.items():
            now = sys.modules.get(n, MISSING)
            if now is not m:
                sys.modules[n] = m
                undo.append(lambda n=n, now=now: sys.modules.pop(n, None) if now is MISSING
                            else sys.modules.__setitem__(n, now))
        for o, values in attributes:
            current = vars_(o)
            for k, v in values.items():
                now = current.get(k, MISSING)
                if now is not v:
                    try:
                        setattr_(o, k, v)
                    except (AttributeError, TypeError):
                        continue
                    undo.append(lambda o=o, k=k, now=now: delattr_(o, k) if now is MISSING else setattr_(o, k, now))
        for f, code, defaults, kwdefaults in functions.values():
            now = (f.__code__, f.__defaults__, f.__kwdefaults__)
            if now[0] is not code or now[1] is not defaults or now[2] is not kwdefaults:
                try:
                    f.__code__, f.__defaults__, f.__kwdefaults__ = code, defaults, kwdefaults
                except (ValueError, TypeError):
                    continue
                undo.append(lambda f=f, now=now: [setattr_(f, a, v) for a, v in
                                                  zip(("__code__", "__defaults__", "__kwdefaults__"), now)])
        for c, snapshot in containers:
            if not same(c, snapshot):
                now = copy.copy(c)
                refill(c, snapshot)
                undo.append(lambda c=c, now=now: refill(c, now))

        def restore():
            for u in reversed(undo):
                try:
                    u()
                except Exception:
                    pass
        return restore

    def is_reference(v):
        return (isinstance_(v, (types.FunctionType, types.MethodType, types.BuiltinFunctionType))
                and str_(getattr_(v, "__module__", "") or "").startswith("nodecourse"))

    def described(r):
        return {{"status": str_(getattr_(r, "status", "")), "exercise": str_(getattr_(r, "exercise", "")),
                "passed": [str_(x) for x in getattr_(r, "passed", [])],
                "failed": [str_(x) for x in getattr_(r, "failed", [])]}}

    def run(j, record=True):
        check = table["checks"][j]
        ns = getframe(1).f_globals
        restore = protect()
        saved = {{a: ns.get(a, MISSING) for a in check["aliases"]}}
        error, handed_in = None, []
        try:
            for a, name in check["aliases"].items():
                ns[a] = ours[name]
            handed_in = [n for n in check["args"] if is_reference(ns.get(n))]
            del reports[:]
            exec_(compile_(check["code"], "<checker call>", "exec"), ns)
        except BaseException as exc:
            error = exc
        try:
            for a, v in saved.items():
                if v is MISSING:
                    ns.pop(a, None)
                else:
                    ns[a] = v
            if record:
                result = {{"reports": [described(r) for r in reports], "reference": handed_in,
                          "error": None if error is None else f"{{type_(error).__name__}}: {{error}}"}}
                with write(check["path"], "w", encoding="utf-8") as f:
                    f.write(dumps(result))
        finally:
            restore()
        if error is not None and not isinstance_(error, Exception):
            raise error

    getframe(1).f_globals[runner_name] = run
'''


# --------------------------------------------------------------------------------------------------
# one submission
# --------------------------------------------------------------------------------------------------


@dataclass
class Step:
    """One cell of the rebuilt notebook."""

    kind: str                     # setup, official, answer, check; markdown and raw are not run
    source: str
    exercise: Optional[int] = None
    official: str = ""            # answer: the part as handed out; check: what restores the reference
    learner: bool = False         # answer: the source is the learner's (changed from the handed-out one)
    found: bool = True            # answer: the submission has this answer cell
    check: Optional[int] = None   # check: index into the table of checks


@dataclass
class Outcome:
    kind: str                     # ok, error, timeout, dead
    detail: str = ""


@dataclass
class Graded:
    """The marks of one submitted notebook and the notebook as executed."""

    rows: list
    executed: Any = None
    seconds: float = 0.0


def _runner_call(runner: str, j: int, record: bool = True) -> str:
    return f"{runner}({j})" if record else f"{runner}({j}, record=False)"


def _steps(official: Official, answers: dict, runner: str, install: str, table_path: str, results: Path):
    """The rebuilt notebook (steps) and the kernel's table of checks."""
    table = {"modules": sorted(set(official.modules) | set(official.aliases.values())), "checks": []}
    setup = _KERNEL.format(install=install) + f"\n{install}({table_path!r}, {runner!r})\ndel {install}\n"
    steps, current = [Step("setup", setup)], None

    def add_check(exercise: int, code: str, handed_out: str) -> None:
        tree = ast.parse(code)
        args = [a.id for call in _checker_calls(tree, official.aliases)
                for a in [*call.args, *[k.value for k in call.keywords]] if isinstance(a, ast.Name)]
        j = len(table["checks"])
        table["checks"].append({"code": code, "args": args, "path": str(results / f"{secrets.token_hex(8)}.json"),
                                "aliases": {a: m for a, m in official.aliases.items() if re.search(rf"\b{a}\b", code)}})
        fallback = f"{handed_out}\n{_runner_call(runner, j, record=False)}\n"
        shown = "".join(f"# {line}\n" for line in code.strip().splitlines())
        steps.append(Step("check", f"# the official checker call, which nodecourse-grade runs and records:\n{shown}"
                                   f"{_runner_call(runner, j)}\n", exercise, official=fallback, check=j))

    for index, cell in enumerate(official.notebook.cells):
        if cell.cell_type != "code":
            steps.append(Step("markdown" if cell.cell_type == "markdown" else "raw", cell.source))
            continue
        answer = official.answers.get(index)
        if answer is not None:
            current = answer
            mine = answers.get(index)
            changed = mine is not None and not _same_code(mine, answer.part_a)
            steps.append(Step("answer", mine if changed else answer.part_a, answer.exercise, official=answer.part_a,
                              learner=changed, found=mine is not None))
            if answer.part_b.strip():
                add_check(answer.exercise, answer.part_b, answer.part_a)
            continue
        before, after = _split(cell.source, official.aliases)
        if after.strip() and current is not None:   # a checker call in a cell of its own
            if before.strip():
                steps.append(Step("official", before))
            add_check(current.exercise, after, current.part_a)
        else:
            steps.append(Step("official", cell.source))
    return steps, table


def _first_line(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _verdict(result: dict) -> tuple[str, str]:
    """(status, detail) from what the runner recorded for one check."""
    reports = result.get("reports") or []
    if result.get("reference"):
        names = ", ".join(result["reference"])
        return "failed", f"{names}: the function checked is the course's reference, not one defined in the answer cell"
    if not reports:
        if result.get("error"):
            return "error", _first_line(f"the check raised {result['error']}")
        return "error", "the checker made no report"
    if any(r["status"] == "not attempted" for r in reports):
        return "not attempted", ""
    passed = sum(len(r["passed"]) for r in reports)
    total = passed + sum(len(r["failed"]) for r in reports)
    if all(r["status"] == "passed" for r in reports):
        return "passed", f"{passed}/{total} checks"
    wrong = "; ".join(label for r in reports for label in r["failed"]) or "the checker reported a failure"
    return "failed", _first_line(f"{passed}/{total} checks passed; wrong: {wrong}")


class _Restart(Exception):
    """The kernel died or ignored an interrupt: start a fresh one and replay."""


class _OutOfTime(Exception):
    """The notebook's time is up."""


def grade_notebook(path: Path, official: Official, *, timeout: float = 300, cell_timeout: float = 60,
                   env: Optional[dict] = None, workdir: Optional[Path] = None, student: str = "") -> Graded:
    """Grade one submitted notebook against its official exercise notebook; one row per exercise."""
    import nbformat

    started = time.monotonic()
    try:
        submitted = nbformat.read(str(path), as_version=4)
    except Exception as exc:  # noqa: BLE001 - whatever the file holds, it is this student's problem only
        return Graded([_row(student, official.name, k, "error", _first_line(f"the notebook cannot be read: {exc}"))
                       for k in official.exercises])
    own = Path(tempfile.mkdtemp(prefix="nodecourse-grade-", dir=workdir))
    try:
        grading = _Grading(official, learner_answers(submitted, official), own, timeout, cell_timeout,
                           dict(os.environ if env is None else env), str(path))
        grading.run()
        return Graded(grading.rows(student), grading.executed(), time.monotonic() - started)
    finally:
        import shutil
        shutil.rmtree(own, ignore_errors=True)


class _Grading:
    """One submission: the rebuilt notebook, its kernel(s), and what each answer and check did."""

    RANK = {"error": 0, "timeout": 0, "failed": 1, "not attempted": 2, "passed": 3}

    def __init__(self, official: Official, answers: dict, own: Path, timeout: float, cell_timeout: float,
                 env: dict, where: str):
        import nbformat

        self.official, self.answers, self.where = official, answers, where
        self.timeout, self.cell_timeout, self.env = timeout, cell_timeout, env
        self.deadline = time.monotonic() + timeout
        results, self.cwd, kernels = own / secrets.token_hex(8), own / "work", own / "kernels" / "nodecourse-grade"
        results.mkdir(mode=0o700)
        self.cwd.mkdir()
        kernels.mkdir(parents=True)
        # the kernel runs this very Python, whatever kernels Jupyter knows elsewhere
        (kernels / "kernel.json").write_text(json.dumps({
            "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "nodecourse-grade", "language": "python"}), encoding="utf-8")
        self.kernels = kernels.parent
        self.runner, install = f"_{secrets.token_hex(6)}", f"_{secrets.token_hex(6)}"
        self.table_path = results / f"{secrets.token_hex(8)}.json"
        self.steps, self.table = _steps(official, answers, self.runner, install, str(self.table_path), results)
        self.notes = {a.exercise: "review: the answer cell reaches into the checkers or the interpreter"
                      for i, a in official.answers.items() if answers.get(i) is not None
                      and SUSPICIOUS.search(answers[i]) and not _same_code(answers[i], a.part_a)}
        self.nb = nbformat.v4.new_notebook(metadata=official.notebook.metadata)
        for step in self.steps:
            make = {"markdown": nbformat.v4.new_markdown_cell, "raw": nbformat.v4.new_raw_cell}.get(
                step.kind, nbformat.v4.new_code_cell)
            self.nb.cells.append(make(step.source))
        self.nb.cells.append(nbformat.v4.new_code_cell("pass"))   # the probe: does the kernel answer again?
        self.probe = len(self.nb.cells) - 1
        self.records: dict = {}     # step index -> (status, detail): the first attempt to reach a step decides
        self.replaced: set = set()  # exercises whose answer a replay does not run again (it crashed, hung or killed)
        self.skipped: set = set()   # official steps not run again (they hung or killed the kernel)
        self.broken: set = set()    # exercises whose answer failed in this attempt: the reference stands in
        self.completed = False

    # ---- running ---------------------------------------------------------------------------------

    def run(self) -> None:
        """Attempts until the notebook ran to its end or its time is up; each attempt is a fresh kernel."""
        from nbclient.exceptions import DeadKernelError

        while time.monotonic() < self.deadline and not self.completed:
            self.table_path.write_text(json.dumps(self.table), encoding="utf-8")   # read, then deleted, by the first cell
            try:
                self.attempt()
            except _Restart:
                continue
            except _OutOfTime:
                return
            except DeadKernelError:
                continue
            except GradingError:
                raise
            except (RuntimeError, TimeoutError) as exc:   # no kernel started
                raise GradingError(f"no kernel for {self.where}: {exc}") from exc

    def attempt(self) -> None:
        from jupyter_client.kernelspec import KernelSpecManager
        from jupyter_client.manager import AsyncKernelManager
        from nbclient import NotebookClient

        specs = KernelSpecManager(kernel_dirs=[str(self.kernels)], ensure_native_kernel=False)
        self.client = NotebookClient(
            self.nb, km=AsyncKernelManager(kernel_name="nodecourse-grade", kernel_spec_manager=specs),
            timeout=int(self.timeout), allow_errors=True, interrupt_on_timeout=True,
            error_on_timeout={"ename": TIMEOUT_NAME, "evalue": "", "traceback": []}, shutdown_kernel="immediate",
            record_timing=False, resources={"metadata": {"path": str(self.cwd)}}, log=_QUIET)
        self.replies: dict = {}
        self.client.on_cell_executed = (
            lambda cell, cell_index, execute_reply: self.replies.__setitem__(cell_index, execute_reply))
        self.broken = set()
        with self.client.setup_kernel(cleanup_kc=True, env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL):
            for i, step in enumerate(self.steps):
                if step.kind in ("setup", "official"):
                    self.official_step(i, step)
                elif step.kind == "answer":
                    self.answer_step(i, step)
                elif step.kind == "check":
                    self.check_step(i, step)
        self.completed = True

    def cell(self, i: int, source: str, limit: float) -> Outcome:
        """Run ``source`` as cell ``i`` for at most ``limit`` seconds (and never past the deadline)."""
        from nbclient.exceptions import DeadKernelError

        left = self.deadline - time.monotonic()
        if left < 1:
            raise _OutOfTime
        self.client.timeout = max(1, math.ceil(min(limit, left)))
        cell = self.nb.cells[i]
        cell.source, cell.outputs = source, []
        self.replies.pop(i, None)
        try:
            self.client.execute_cell(cell, i)
        except DeadKernelError:
            return Outcome("dead")
        content = (self.replies.get(i) or {}).get("content", {})
        if content.get("status") != "error":
            return Outcome("ok")
        if content.get("ename") == TIMEOUT_NAME:
            return Outcome("timeout", f"{self.client.timeout} s")
        return Outcome("error", _first_line(f"{content.get('ename')}: {content.get('evalue')}"))

    def answers_again(self) -> bool:
        """After an interrupt: whether the kernel answers (else the attempt ends and a fresh kernel replays)."""
        wait, self.client.iopub_timeout = self.client.iopub_timeout, 1
        try:
            return self.cell(self.probe, "pass", PROBE_TIMEOUT).kind == "ok"
        finally:
            self.client.iopub_timeout = wait

    def record(self, i: int, status: str, detail: str = "") -> None:
        self.records.setdefault(i, (status, detail))

    def lost(self, i: int, k: int, out: Outcome, what: str) -> None:
        """An answer or a check failed: record it; restart without this answer if the kernel is gone."""
        self.broken.add(k)
        self.replaced.add(k)   # a replay runs the handed-out answer instead
        if out.kind == "dead":
            self.record(i, "error", f"{what} stopped the kernel")
        elif out.kind == "timeout":
            self.record(i, "timeout", f"{what} ran past {out.detail}")
        else:
            self.record(i, "error", f"{what} raised {out.detail}")
        if out.kind == "dead" or (out.kind == "timeout" and not self.answers_again()):
            raise _Restart

    def official_step(self, i: int, step: Step) -> None:
        if i in self.skipped:
            return
        out = self.cell(i, step.source, self.timeout)   # errors in official cells cost nothing: marks come from checks
        if step.kind == "setup" and out.kind != "ok":
            raise GradingError(f"the grader's first cell did not run in {self.where}: {out.kind} {out.detail}")
        if out.kind == "dead" or (out.kind == "timeout" and not self.answers_again()):
            self.skipped.add(i)
            raise _Restart

    def answer_step(self, i: int, step: Step) -> None:
        k = step.exercise
        if not step.learner or k in self.replaced:
            self.cell(i, step.official, self.timeout)
            if not step.learner:
                self.record(i, "not attempted", "" if step.found else "no answer cell found in the submission")
            return
        out = self.cell(i, step.source, self.cell_timeout)
        if out.kind != "ok":
            self.lost(i, k, out, "the answer cell")
            self.cell(i, step.official, self.timeout)   # the notebook goes on with the reference

    def check_step(self, i: int, step: Step) -> None:
        k = step.exercise
        attempted = any(s.learner for s in self.steps if s.kind == "answer" and s.exercise == k)
        if not attempted or k in self.replaced or k in self.broken:
            self.cell(i, _runner_call(self.runner, step.check, record=False), self.timeout)
            return
        result = Path(self.table["checks"][step.check]["path"])
        result.unlink(missing_ok=True)
        out = self.cell(i, step.source, self.cell_timeout)
        if out.kind == "ok":
            try:
                status, detail = _verdict(json.loads(result.read_text(encoding="utf-8")))
            except (OSError, ValueError, KeyError, TypeError):
                status, detail = "error", "the check left no result"
            self.record(i, status, detail)
            if status not in ("error", "timeout"):
                return
            self.broken.add(k)
            self.replaced.add(k)
        else:
            self.lost(i, k, out, "checking the answer")
        self.cell(i, step.official, self.timeout)   # the handed-out answer and the reference after it

    # ---- results ---------------------------------------------------------------------------------

    def rows(self, student: str) -> list:
        marks: dict = {k: None for k in self.official.exercises}
        for i, (status, detail) in sorted(self.records.items()):
            k = self.steps[i].exercise
            if marks[k] is None or self.RANK[status] < self.RANK[marks[k][0]]:
                marks[k] = (status, detail)
        missing = ("error", "no check ran for this exercise") if self.completed else (
            "timeout", f"not reached: the notebook ran past its {self.timeout:g} s")
        rows = []
        for k in self.official.exercises:
            status, detail = marks[k] or missing
            if k in self.notes:
                detail = f"{detail}; {self.notes[k]}" if detail else self.notes[k]
            rows.append(_row(student, self.official.name, k, status, detail))
        return rows

    def executed(self):
        """The rebuilt notebook as it ran, each cell tagged with its kind and exercise."""
        import nbformat

        nb = nbformat.from_dict(self.nb)
        nb.cells.pop()   # the probe
        for step, cell in zip(self.steps, nb.cells):
            cell.metadata["tags"] = [f"grade-{step.kind}"] + ([f"exercise-{step.exercise}"] if step.exercise else [])
        return nb


def _row(student: str, notebook: str, exercise: int, status: str, detail: str) -> dict:
    return {"student": student, "notebook": notebook, "exercise": exercise, "status": status, "detail": detail}


# --------------------------------------------------------------------------------------------------
# a class
# --------------------------------------------------------------------------------------------------


def _default_course() -> Path:
    here = Path(__file__).resolve().parents[1]
    return here if (here / "exercises").is_dir() else Path.cwd()


def _checker_files() -> dict:
    """The checkers' files and their digests: a submission that rewrites them would mark everyone after it."""
    folder = Path(__file__).resolve().parent / "exercises"
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob("*.py"))}


def submissions(root: Path, officials: dict, log: Callable[[str], None] = print) -> list:
    """[(student, path, official name or None)]: one folder per student, notebooks anywhere inside it."""
    import nbformat

    if not root.is_dir():
        raise GradingError(f"{root} is not a folder (one folder per student, their notebooks inside)")
    loose = sorted(p.name for p in root.glob("*.ipynb"))
    if loose:
        log(f"ignored (not in a student's folder): {', '.join(loose)}")
    jobs = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        found: dict = {}
        files = sorted(p for p in folder.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
        for p in files:
            try:
                stem = identify(p, nbformat.read(str(p), as_version=4), officials)
            except Exception:  # noqa: BLE001 - not a notebook: reported as such
                stem = identify(p, nbformat.v4.new_notebook(), officials)
            if stem is None:
                jobs.append((folder.name, p, None))
            elif stem in found:
                keep = p if p.stem == stem and found[stem].stem != stem else found[stem]
                other = found[stem] if keep is p else p
                log(f"{folder.name}: two notebooks answer {stem}; graded {keep.relative_to(folder)}, "
                    f"not {other.relative_to(folder)}")
                found[stem] = keep
            else:
                found[stem] = p
        jobs += [(folder.name, p, stem) for stem, p in found.items()]
        if not files:
            jobs.append((folder.name, None, None))
    return jobs


def grade(root, out=None, *, course=None, timeout: float = 300, cell_timeout: float = 60, jobs: int = 1,
          executed=None, fast: bool = True, log: Callable[[str], None] = print) -> list:
    """Grade every submission under ``root`` (one folder per student); returns the rows, and writes
    them to ``out`` (CSV) when given. ``executed``: a folder for the rebuilt notebooks as they ran."""
    import nbformat

    root, course = Path(root), Path(course) if course else _default_course()
    officials = read_course(course)
    todo = submissions(root, officials, log)
    if not todo:
        raise GradingError(f"no student folders in {root}")
    env = dict(os.environ)
    env["NODECOURSE_FAST"] = "1" if fast else "0"
    env.setdefault("OMP_NUM_THREADS", "1")
    env.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    before = _checker_files()
    rows: list = []

    def one(student: str, path: Optional[Path], stem: Optional[str]) -> Graded:
        if path is None:
            return Graded([_row(student, "", "", "not attempted", "no exercise notebook in the folder")])
        if stem is None:
            return Graded([_row(student, path.name, "", "error", "not one of the course's exercise notebooks")])
        graded = grade_notebook(path, officials[stem], timeout=timeout, cell_timeout=cell_timeout, env=env,
                                student=student)
        if executed is not None:
            target = Path(executed) / student / f"{stem}.ipynb"
            target.parent.mkdir(parents=True, exist_ok=True)
            nbformat.write(graded.executed, str(target))
        return graded

    with ThreadPoolExecutor(max_workers=max(1, int(jobs))) as pool:
        futures = {pool.submit(one, *job): job for job in todo}
        for future in as_completed(futures):
            student, path, stem = futures[future]
            graded = future.result()
            rows += graded.rows
            now = _checker_files()
            if now != before:
                for f in futures:
                    f.cancel()
                changed = ", ".join(sorted({n for n, _ in set(now.items()) ^ set(before.items())}))
                raise GradingError(f"the checkers changed on disk while grading ({changed}; last finished: {student}, "
                                   f"{path}): restore them and grade again")
            counts = {s: sum(r["status"] == s for r in graded.rows) for s in STATUSES}
            summary = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
            log(f"{student:20s} {stem or (path.name if path else '-'):40s} {summary} ({graded.seconds:.0f} s)")
    rows.sort(key=lambda r: (r["student"], r["notebook"], r["exercise"] if isinstance(r["exercise"], int) else -1))
    if out is not None:
        write_csv(rows, out)
    return rows


def write_csv(rows: list, out) -> None:
    with open(out, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


def main(argv: Optional[list] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="nodecourse-grade", description="Mark a class's exercise notebooks with the course's checkers.",
        epilog="SUBMISSIONS holds one folder per student (the folder's name is the student's), with that student's "
               "exercise notebooks anywhere inside it. Writes one CSV row per student, notebook and exercise.")
    parser.add_argument("submissions", help="the folder of student folders")
    parser.add_argument("--out", default="marks.csv", help="the CSV to write (default: marks.csv)")
    parser.add_argument("--timeout", type=float, default=300, help="seconds for one notebook, all cells (default: 300)")
    parser.add_argument("--cell-timeout", type=float, default=60,
                        help="seconds for one answer cell and for one check (default: 60)")
    parser.add_argument("--jobs", type=int, default=1, help="notebooks graded at once (default: 1)")
    parser.add_argument("--course", help="the course's folder, with exercises/ and solutions/ (default: this checkout)")
    parser.add_argument("--executed", help="a folder to keep each rebuilt notebook as it ran, for review")
    parser.add_argument("--full", action="store_true", help="run in full mode, not NODECOURSE_FAST=1")
    args = parser.parse_args(argv)
    try:
        import nbclient  # noqa: F401
        import ipykernel  # noqa: F401
    except ImportError:
        print("nodecourse-grade needs nbclient and ipykernel: pip install 'nodecourse[course]'", file=sys.stderr)
        return 1
    try:
        rows = grade(args.submissions, args.out, course=args.course, timeout=args.timeout,
                     cell_timeout=args.cell_timeout, jobs=args.jobs, executed=args.executed, fast=not args.full,
                     log=lambda line: print(line, flush=True))
    except GradingError as exc:
        print(f"nodecourse-grade: {exc}", file=sys.stderr)
        return 2
    counts = ", ".join(f"{sum(r['status'] == s for r in rows)} {s}" for s in STATUSES)
    print(f"wrote {args.out}: {len(rows)} rows ({counts})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
