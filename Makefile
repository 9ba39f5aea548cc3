# Thin, self-documenting targets. Every target installs what it needs into .venv first.
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin

.PHONY: help demo test unit check-mappings bench bench-live proof golden clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

demo: $(VENV)/.installed  ## the whole loop: local HAPI up, examples loaded, service started, reports written and summarized
	$(BIN)/labinterp demo $(DEMO_ARGS)

test: $(VENV)/.installed  ## everything CI runs: lint, format check, type check, all tests (installs chromium and postgresql if missing)
	bash scripts/ensure-chromium.sh
	bash scripts/ensure-postgres.sh
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(PY) -m pytest

unit: $(VENV)/.installed  ## the tests without the HAPI integration tier, quickly
	$(PY) -m pytest -q -m "not integration"

check-mappings: $(VENV)/.installed  ## validate mappings/ (and LABINTERP_MAPPINGS_DIR if set)
	$(BIN)/labinterp check-mappings

bench: $(VENV)/.installed  ## benchmark: patients per second and peak memory on synthetic patients
	$(PY) scripts/bench.py --patients 2000 $(BENCH_ARGS)

proof: $(VENV)/.installed  ## the figures of the last fault run (make test writes them), and the CDS Hooks latency
	$(PY) scripts/faultproxy.py --print build/proof/faults.json
	$(PY) scripts/bench_cds.py --out build/proof/cds.json

bench-live: $(VENV)/.installed  ## benchmark against a local HAPI: population vs per patient vs naive vs HAPI's ingest (200 patients; BENCH_LIVE_ARGS for more)
	$(PY) scripts/bench_live.py $(or $(BENCH_LIVE_ARGS),--patients 200)

golden: $(VENV)/.installed  ## regenerate example patients and golden outputs (review the diff!)
	$(PY) -m tests.data.make_examples
	$(PY) -m tests.golden_tool --update

clean:  ## remove the virtual environment and caches
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache labinterp-demo-output.json .labinterp docker/hapi/target
