"""Small assertions shared by the tests."""
from __future__ import annotations

import ast
import inspect
import re
import textwrap
from pathlib import Path

import pytest
import torch


def assert_directional_derivatives(module, loss_fn, n_directions=3, eps=1e-6, rtol=1e-6):
    """Autograd's gradient of loss_fn() w.r.t. the module's parameters against central differences."""
    params = [p for p in module.parameters() if p.requires_grad]
    grads = torch.autograd.grad(loss_fn(), params)
    g = torch.Generator().manual_seed(123)
    for _ in range(n_directions):
        direction = [torch.randn(p.shape, generator=g, dtype=p.dtype) for p in params]
        with torch.no_grad():
            for p, d in zip(params, direction):
                p.add_(eps * d)
            up = loss_fn().item()
            for p, d in zip(params, direction):
                p.sub_(2 * eps * d)
            down = loss_fn().item()
            for p, d in zip(params, direction):
                p.add_(eps * d)
        numeric = (up - down) / (2 * eps)
        analytic = sum((gr * d).sum() for gr, d in zip(grads, direction)).item()
        assert analytic == pytest.approx(numeric, rel=rtol, abs=1e-8)


def assert_entry_gradients(loss_fn, weight, entries, eps=1e-6, rel=1e-6, abs_tol=1e-8):
    """Autograd's gradient of loss_fn() w.r.t. chosen entries of ``weight`` against central differences."""
    (grad,) = torch.autograd.grad(loss_fn(), weight)
    for idx in entries:
        with torch.no_grad():
            weight[idx] += eps
            up = loss_fn().item()
            weight[idx] -= 2 * eps
            down = loss_fn().item()
            weight[idx] += eps
        assert grad[idx].item() == pytest.approx((up - down) / (2 * eps), rel=rel, abs=abs_tol)


def assert_checker_rejects(checker, wrong, capsys, *phrases: str) -> str:
    """The checker does not keep a wrong answer, reports FAILED with a hint, and says each phrase."""
    returned = checker(wrong)
    out = capsys.readouterr().out
    assert returned is not wrong, "a wrong answer must not be kept"
    assert "FAILED" in out and "hint:" in out
    for phrase in phrases:
        assert phrase in out, out
    return out


# --- staged hints: what a learner sees after failed attempts, and whether it gives the answer away ---------
HINT = re.compile(r"hint: \[stage (\d+) of (\d+)\] (.*)")


def failing_answer(*args, **kwargs):
    """A learner's answer that fails every case."""
    raise RuntimeError("a learner's slip")


def hint_stages(checker, capsys, attempts: int = 4) -> tuple[list[tuple[int, int, str]], list]:
    """``(stage, of, hint)`` after each of ``attempts`` failed attempts of ``checker`` (hint stages reset
    first), and what the checker returned each time."""
    from nodecourse.exercises import checking

    checking.reset_hints(already_failed=0)
    seen, returned = [], []
    for _ in range(attempts):
        returned.append(checker(failing_answer))
        match = HINT.search(capsys.readouterr().out)
        assert match, "a failure shows a hint"
        seen.append((int(match.group(1)), int(match.group(2)), match.group(3)))
    return seen, returned


def answer_calls(fn) -> set[str]:
    """Every call with arguments in the body of ``fn`` (docstring aside), as written: the answer's code."""
    body = ast.parse(textwrap.dedent(inspect.getsource(fn))).body[0].body
    calls = {ast.unparse(node) for stmt in body for node in ast.walk(stmt)
             if isinstance(node, ast.Call) and (node.args or node.keywords)}
    return {c for c in calls if len(c) > 12}


def answer_lines(solutions_notebook: str, references) -> set[str]:
    """Every line of the answers in ``solutions/<solutions_notebook>`` and of the references' bodies, long
    enough to be code rather than a lone ``return y``."""
    text = (Path(__file__).resolve().parents[1] / "solutions" / solutions_notebook).read_text()
    lines = [ln for region in re.findall(r"### BEGIN SOLUTION\n(.*?)### END SOLUTION", text, re.DOTALL)
             for ln in region.splitlines()]
    for reference in references:
        lines += inspect.getsource(reference).splitlines()[1:]
    return {ln.strip() for ln in lines if len(ln.strip()) > 12 and not ln.strip().startswith(("#", '"""'))}
