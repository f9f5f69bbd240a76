# The course's two commands:
#   make lab    set everything up (first time only) and open the course in JupyterLab
#   make test   set everything up (first time only) and run every test: unit tests, then the notebooks
# Both create a virtual environment in .venv with Python 3.10+ (override with PYTHON=python3.12) and
# install exactly the versions in requirements-lock.txt, the set CI tests.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
LOCK   := requirements-lock.txt
STAMP  := $(VENV)/.nodecourse-installed
BROWSER_STAMP := $(VENV)/.nodecourse-browser-installed
LOCK_HEADER := \# The exact versions `make` installs, for every Python from 3.10 on (pip constraints). Refresh: `make lock`.

.PHONY: setup lab test unit notebooks test-browser sync work home slides book bench lock clean

$(STAMP): pyproject.toml $(LOCK)
	$(PYTHON) -c 'import sys; sys.exit("Python 3.10 or newer is needed, found " + sys.version.split()[0]) if sys.version_info < (3, 10) else None'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -c $(LOCK) pip
	$(BIN)/python -m pip install -c $(LOCK) -e ".[course]"
	rm -f $(BROWSER_STAMP)
	touch $(STAMP)

setup: $(STAMP)

# (--allow-root only where it is needed: Jupyter refuses to run as root otherwise, e.g. in containers)
lab: setup
	$(BIN)/jupyter lab --ServerApp.root_dir="$(CURDIR)" $$( [ "$$(id -u)" = 0 ] && echo --allow-root ) notebooks/00_welcome.ipynb

# Unit tests, then every notebook executed in fast mode (nbval, outputs not compared, a warning on
# stderr fails the cell); two workers of one thread each use both cores without oversubscribing them.
test: unit notebooks

unit: setup
	NODECOURSE_FAST=1 OMP_NUM_THREADS=1 $(BIN)/python -m pytest -n 2 tests

notebooks: setup
	NODECOURSE_FAST=1 OMP_NUM_THREADS=1 $(BIN)/python -m pytest -n 2 --dist loadfile --nbval-lax notebooks exercises solutions

# JupyterLab in headless Chromium: open the welcome and a lecture, Run All, fail on any error,
# warning or missing figure; then open both as RISE slides ("Render as slides") and count the slides.
# Needs Debian's chromium (or CHROMIUM=/path/to/chromium).
$(BROWSER_STAMP): $(STAMP)
	$(BIN)/python -m pip install -c $(LOCK) -e ".[course,browser]"
	touch $(BROWSER_STAMP)

# Then the slide decks and the static site, built in fast mode and opened offline in the same Chromium
# (tests/test_slides.py and tests/test_book.py: lectures 00-05 executed, every deck slide walked).
test-browser: $(BROWSER_STAMP)
	NODECOURSE_FAST=1 OMP_NUM_THREADS=1 $(BIN)/python tools/browser_check.py
	NODECOURSE_FAST=1 NODECOURSE_DECK_TESTS=1 OMP_NUM_THREADS=1 $(BIN)/python -m pytest tests/test_slides.py tests/test_book.py

# After editing a lecture or a solution notebook (in JupyterLab or as its .py): strip outputs, re-pair,
# set slide metadata, regenerate exercises/ and the README's syllabus. See CONTRIBUTING.md.
# FROM=ipynb or FROM=py says which file of an edited pair wins when both were edited.
sync: setup
	$(BIN)/python tools/sync_notebooks.py $(if $(FROM),--from $(FROM))

# Your own copies of the exercise notebooks in work/ (git-ignored: course updates never touch them).
# Copies only the notebooks you do not have yet.
work: setup
	$(BIN)/python tools/make_work.py

# The course's home repository, written once into pyproject.toml and from there into every Colab
# badge and install line: make home URL=https://github.com/OWNER/REPO (without URL: the git remote).
home: setup
	$(BIN)/python tools/update_links.py --set $(if $(URL),"$(URL)",--from-git-remote)

# Every lecture executed (full mode; cached in build/, so a re-run with nothing changed is instant) and
# written as an offline reveal.js deck: slides/NN_topic.slides.html (assets in slides/assets/, no CDN).
# FAST=1 executes in fast mode (quick, the tests' numbers); `make slides ONLY="04 05"` builds some.
slides: setup
	$(BIN)/python tools/build_slides.py $(if $(FAST),--fast) $(ONLY)

# The course as a static HTML site in build/site/ (open build/site/index.html): the syllabus, every lecture
# executed with its figures, exercises without answers, solutions on their own pages, a search box.
book: setup
	$(BIN)/python tools/build_book.py $(if $(FAST),--fast)

# Solver benchmarks against torchdiffeq and torchode (prints a table, writes benchmarks/results/latest.json).
bench: setup
	$(BIN)/python benchmarks/run.py

# Refresh the lock: the newest releases that pyproject.toml allows, for every Python from 3.10 on,
# torch kept at its locked version unless TORCH=<version>; then rebuild .venv from it and run every test.
lock: setup
	$(BIN)/python -m pip install -c $(LOCK) uv
	echo "torch==$(if $(TORCH),$(TORCH),$$(sed -n 's/^torch==\([^ ;]*\).*/\1/p' $(LOCK) | head -n 1))" > $(VENV)/torch-pin.txt
	$(BIN)/uv pip compile pyproject.toml tools/lock-tools.in --extra course --extra browser --universal \
	    --python-version 3.10 --no-python-downloads --constraint $(VENV)/torch-pin.txt --no-header \
	    --output-file $(VENV)/lock.new
	{ echo '$(LOCK_HEADER)'; cat $(VENV)/lock.new; } > $(LOCK)
	rm -f $(STAMP)
	$(MAKE) test

clean:
	rm -rf $(VENV) slides build .pytest_cache

# Mark a class: SUBMISSIONS holds one folder per student with their exercise notebooks; one CSV row per
# student and exercise (see INSTRUCTORS.md, "Grading"): make grade SUBMISSIONS=submitted [OUT=marks.csv] [JOBS=2]
.PHONY: grade
grade: setup
	@test -n "$(SUBMISSIONS)" || { echo "usage: make grade SUBMISSIONS=folder [OUT=marks.csv] [JOBS=2]"; exit 2; }
	OMP_NUM_THREADS=1 $(BIN)/python -m nodecourse.grading "$(SUBMISSIONS)" --out "$(or $(OUT),marks.csv)" --jobs $(or $(JOBS),1)
