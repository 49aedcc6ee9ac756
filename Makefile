# imgcls: the two commands a newcomer needs are `make course` and `make test` (see README.md).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.imgcls-installed
NBDEV_TEST_WORKERS ?= 1

# The local data directory: ../shared/data when it exists (CI, the team's machines), unless IMGCLS_DATA is set.
ifneq ($(wildcard ../shared/data),)
export IMGCLS_DATA ?= $(abspath ../shared/data)
endif
export PYTHONWARNINGS := ignore::FutureWarning

.PHONY: course test venv data check export-check clean-check readme readme-check nbtest pytest docs slow bench course-time execute help

help:
	@echo "make course  - set everything up, run every chapter, build the docs site"
	@echo "make test    - the whole test suite (what CI runs)"
	@echo "make data | docs | slow | bench | course-time | readme | execute"

# --- set-up (idempotent: re-installs only when setup.py or settings.ini change) ---
$(STAMP): setup.py settings.ini
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -e ".[dev]"
	@touch $(STAMP)

venv: $(STAMP)

data: venv
	$(BIN)/imgcls data prepare all
	$(BIN)/imgcls data

# --- the main job ---
course: venv data nbtest docs
	@echo
	@echo "The course ran end to end. The docs site is at $(abspath _docs)/index.html"
	@echo "  (serve it with: $(BIN)/python -m http.server -d _docs 8000, then open http://127.0.0.1:8000)"
	@echo "Open the chapters in Jupyter with: $(BIN)/jupyter lab nbs/"

# --- the test suite (.ci/run calls this) ---
test: venv check nbtest docs pytest

check: export-check clean-check readme-check

export-check: venv
	@tmp=$$(mktemp -d) && cp -r imgcls $$tmp/ && $(BIN)/nbdev_export && \
	  if ! diff -r -x __pycache__ $$tmp/imgcls imgcls; then echo "FAIL: imgcls/ did not match the notebooks (nbdev_export changed it). Commit the exported files."; rm -rf $$tmp; exit 1; fi; \
	  rm -rf $$tmp; echo "ok: nbdev_export leaves no diff"

clean-check: venv
	@tmp=$$(mktemp -d) && cp -a nbs $$tmp/ && $(BIN)/nbdev_clean && \
	  if ! diff -rq --no-dereference $$tmp/nbs nbs; then echo "FAIL: notebooks were not clean (nbdev_clean changed them). Commit the cleaned notebooks."; rm -rf $$tmp; exit 1; fi; \
	  rm -rf $$tmp; echo "ok: nbdev_clean leaves no diff"

readme: venv
	$(BIN)/python tools/readme.py

readme-check: venv
	$(BIN)/python tools/readme.py --check

nbtest: venv
	$(BIN)/nbdev_test --timing --n_workers $(NBDEV_TEST_WORKERS)

pytest: venv
	$(BIN)/python -m pytest tests/ -ra

docs: venv
	@if [ -f docs/build.py ]; then $(BIN)/python docs/build.py; else echo "docs/build.py not present yet: no site to build"; fi

slow: venv
	@nbs=$$(grep -l '#| slow' nbs/*.ipynb || true); \
	  if [ -z "$$nbs" ]; then echo "no notebook has slow cells"; else for nb in $$nbs; do $(BIN)/nbdev_test --flags slow --timing --n_workers 1 --path $$nb || exit 1; done; fi

# The CPU benchmarks (about 20 minutes; `bench/run.py --help` for a shorter run) and the per-chapter timing (about 10 minutes).
bench: venv
	$(BIN)/python bench/run.py --full

course-time: venv
	$(BIN)/python bench/course_time.py

# Re-execute every notebook in place (developers: refresh the committed outputs), then clean them.
execute: venv
	$(BIN)/python tools/execute_nb.py nbs/[0-9i]*.ipynb
	$(BIN)/nbdev_clean
