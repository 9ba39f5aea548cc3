# Thin, self-documenting targets. Every target installs what it needs into .venv first.
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin

.PHONY: help demo test lint unit check-mappings bench golden clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

demo: $(VENV)/.installed  ## interpret the bundled example patients, print a summary each, write labinterp-demo-output.json
	$(BIN)/labinterp demo

test: $(VENV)/.installed  ## everything CI runs: lint, format check, type check, all tests
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(PY) -m pytest

unit: $(VENV)/.installed  ## only the tests, quickly
	$(PY) -m pytest -q

check-mappings: $(VENV)/.installed  ## validate mappings/ (and LABINTERP_MAPPINGS_DIR if set)
	$(BIN)/labinterp check-mappings

bench: $(VENV)/.installed  ## benchmark: patients per second and peak memory on synthetic patients
	$(PY) scripts/bench.py --patients 2000

golden: $(VENV)/.installed  ## regenerate example patients and golden outputs (review the diff!)
	$(PY) -m tests.data.make_examples
	$(PY) -m tests.golden_tool --update

clean:  ## remove the virtual environment and caches
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache labinterp-demo-output.json
