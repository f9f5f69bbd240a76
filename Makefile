# The course's two commands:
#   make lab    set everything up (first time only) and open the course in JupyterLab
#   make test   set everything up (first time only) and run every test: unit tests, then the notebooks
# Both create a virtual environment in .venv with Python 3.10+ (override with PYTHON=python3.12).

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.nodecourse-installed

.PHONY: setup lab test unit notebooks sync slides bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -c 'import sys; sys.exit("Python 3.10 or newer is needed, found " + sys.version.split()[0]) if sys.version_info < (3, 10) else None'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -e ".[course]"
	touch $(STAMP)

setup: $(STAMP)

# (--allow-root only where it is needed: Jupyter refuses to run as root otherwise, e.g. in containers)
lab: setup
	$(BIN)/jupyter lab --ServerApp.root_dir="$(CURDIR)" $$( [ "$$(id -u)" = 0 ] && echo --allow-root ) notebooks/00_welcome.ipynb

# Unit tests, then every notebook executed in fast mode (nbval, outputs not compared); two workers
# of one thread each use both cores without oversubscribing them.
test: unit notebooks

unit: setup
	NODECOURSE_FAST=1 OMP_NUM_THREADS=1 $(BIN)/python -m pytest -n 2 tests

notebooks: setup
	NODECOURSE_FAST=1 OMP_NUM_THREADS=1 $(BIN)/python -m pytest -n 2 --dist loadfile --nbval-lax notebooks exercises solutions

# After editing a notebook (either file of a pair): re-pair, strip outputs, set slide metadata,
# regenerate exercises/ from solutions/.
sync: setup
	$(BIN)/python tools/sync_notebooks.py

# Every lecture as a reveal.js slide deck in slides/.
slides: setup
	$(BIN)/jupyter nbconvert --to slides --output-dir slides notebooks/*.ipynb

clean:
	rm -rf $(VENV) slides .pytest_cache

# Solver benchmarks against torchdiffeq and torchode (prints a table, writes benchmarks/results/latest.json).
bench: setup
	$(BIN)/python benchmarks/run.py
