"""The repository keeps its promises: fast-mode test runs, paired and clean notebooks, one dependency list."""
from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import pytest

import nodecourse
from nodecourse.config import FAST

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import notebook_io  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIRS = ("notebooks", "exercises", "solutions")
NOTEBOOKS = sorted(p for d in NOTEBOOK_DIRS for p in (ROOT / d).glob("*.ipynb"))

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    tomllib = pytest.importorskip("tomli")


def test_the_test_run_is_in_fast_mode():
    assert os.environ.get("NODECOURSE_FAST") == "1" and FAST, (
        "Run the tests with NODECOURSE_FAST=1 (as `make test` does), or the notebooks train for minutes."
    )


def _requirement_names(requirements):
    return {re.split(r"[<>=!~ \[;]", r, maxsplit=1)[0].strip().lower() for r in requirements}


def test_environment_yml_lists_the_same_packages_as_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pip_names = _requirement_names(project["dependencies"] + project["optional-dependencies"]["course"])
    conda_names = set()
    section = None
    for line in (ROOT / "environment.yml").read_text().splitlines():
        key = re.match(r"^(\w+):", line)
        if key:
            section = key.group(1)
            continue
        item = re.match(r"^\s*- (.+?)\s*$", line)
        if section != "dependencies" or not item or item.group(1) in ("pip", "pip:"):
            continue
        name = item.group(1)
        if not (name.startswith("-e") or name.startswith("python")):
            conda_names |= _requirement_names([name])
    conda_to_pip = {"pytorch": "torch"}
    assert {conda_to_pip.get(n, n) for n in conda_names} == pip_names


def test_package_ships_the_mnist_subset():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["nodecourse"]
    shipped = [p for pattern in patterns for p in (ROOT / "nodecourse").glob(pattern)]
    assert ROOT / "nodecourse" / "data_files" / "mnist_5k.npz" in shipped


def test_public_api():
    from nodecourse import odeint, odeint_adjoint, solve  # noqa: F401
    from nodecourse.config import FAST, device, seed_everything  # noqa: F401
    from nodecourse.data import load_mnist  # noqa: F401
    from nodecourse.models import MLP, NeuralODE, ODEBlock, ODEFunc, ResNet  # noqa: F401
    from nodecourse.models import (CNF, AdaptiveDepthODE, AugmentedNODE, DataControlledODE,  # noqa: F401
                                   GalerkinMLP, LatentODE, RegularisedODEFunc, SecondOrderNODE, StackedODE)

    assert {"odeint", "odeint_adjoint", "solve"} <= set(nodecourse.__all__)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_notebook_is_stored_without_outputs(path):
    notebook = json.loads(path.read_text())
    for cell in notebook["cells"]:
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None, (
                f"{path.name} is stored with outputs; run `make sync` to strip them."
            )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_notebook_and_its_py_percent_pair_are_in_sync(path):
    pair = path.with_suffix(".py")
    assert pair.exists(), f"{path.name} has no paired {pair.name}; run `make sync`."
    assert notebook_io.content(notebook_io.read(path)) == notebook_io.content(notebook_io.read(pair)), (
        f"{path.name} and {pair.name} differ; run `make sync`.")


def test_there_are_notebooks_to_run():
    assert (ROOT / "notebooks" / "00_welcome.ipynb") in NOTEBOOKS
