# Two entry points that work on a fresh machine: `make demo` and `make test`.
# Each creates .venv from nothing (runtime deps for the demo, dev deps for the tests).
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin

.PHONY: demo test lint typecheck unit soak bench image clean

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

# The container image (deploy/Dockerfile), tagged with the chart's appVersion. Nothing
# publishes it: push it to your registry and set the chart's image.repository.
ENGINE ?= $(shell command -v docker 2>/dev/null || command -v podman 2>/dev/null)
IMAGE  ?= tfc-watchdog:$(shell sed -n 's/^appVersion: *"*\([^"]*\)"*/\1/p' helm/tfc-watchdog/Chart.yaml)

image:
	@test -n "$(ENGINE)" || { echo "make image: needs docker or podman on PATH (or ENGINE=...)" >&2; exit 2; }
	$(ENGINE) build -f deploy/Dockerfile -t $(IMAGE) .

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
