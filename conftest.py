"""Notebook runs (nbval) fail on a warning: a cell that prints a warning to stderr fails like an error.

A learner sees such a warning as a red box in JupyterLab, so a clean run of the course shows none.
"""
from __future__ import annotations

import re

import pytest

WARNING = re.compile(r"\b\w*Warning\b")


def stderr_warnings(outputs) -> list[str]:
    """The stderr texts among a cell's outputs that are warnings."""
    return [out.get("text", "") for out in outputs or []
            if out.get("output_type") == "stream" and out.get("name") == "stderr" and WARNING.search(out.get("text", ""))]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    result = yield
    warnings = stderr_warnings(getattr(item, "test_outputs", None))
    if warnings:
        pytest.fail(f"{item.name} printed a warning on stderr (a learner sees it in red):\n" + "\n".join(warnings),
                    pytrace=False)
    return result
