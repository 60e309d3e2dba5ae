# Two entry points that work on a fresh machine: `make demo` and `make test`.
# Each creates .venv from nothing (runtime deps for the demo, dev deps for the tests).
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin

.PHONY: demo test lint typecheck unit soak bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.runtime: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e .
	touch $@

$(VENV)/.dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@ $(VENV)/.runtime

demo: $(VENV)/.runtime
	$(BIN)/tfc-watchdog demo

lint: $(VENV)/.dev
	$(BIN)/ruff check watchdog tests benchmarks
	$(BIN)/ruff format --check watchdog tests benchmarks

typecheck: $(VENV)/.dev
	$(BIN)/mypy

test: lint typecheck
	$(BIN)/pytest $(PYTEST_ARGS)

unit: $(VENV)/.dev
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

soak: $(VENV)/.dev
	HYPOTHESIS_PROFILE=soak $(BIN)/pytest tests/properties $(PYTEST_ARGS)

bench: $(VENV)/.dev
	$(BIN)/python benchmarks/scale.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
