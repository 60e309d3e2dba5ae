# Two entry points that work on a fresh machine: `make demo` and `make test`.
# Each creates .venv from nothing (runtime deps for the demo, dev deps for the tests).
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin

.PHONY: demo test lint typecheck unit soak bench image base-image-digest lock chart-docs clean

# uv installs the dependencies: ~15 s from nothing where pip takes over a minute, which is a
# fifth of `make test` on a fresh clone. It comes from PyPI into the venv itself, so a fresh
# machine needs only python3. --compile-bytecode because uv does not compile by default, and
# every end-to-end test starts the daemon afresh: without .pyc files each start compiles its
# imports again (twice the CPU of a start).
UV      = $(BIN)/uv
INSTALL = $(UV) pip install -q --compile-bytecode --python $(BIN)/python

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(UV): | $(BIN)/python
	$(BIN)/python -m pip install -q 'uv>=0.5'

$(VENV)/.runtime: pyproject.toml | $(UV)
	$(INSTALL) -e .
	touch $@

$(VENV)/.dev: pyproject.toml | $(UV)
	$(INSTALL) -e '.[dev]'
	touch $@ $(VENV)/.runtime

demo: $(VENV)/.runtime
	$(BIN)/tfc-watchdog demo

lint: $(VENV)/.dev
	$(BIN)/ruff check watchdog tests benchmarks
	$(BIN)/ruff format --check watchdog tests benchmarks
	$(BIN)/lint-imports

typecheck: $(VENV)/.dev
	$(BIN)/mypy

# Six workers on two cores: the end-to-end tests mostly wait (on daemons' cycles, on
# Terraform), so more workers than cores pays (measured on 2 cores: 4 workers 192 s, 6 workers
# 155 s, the same CPU). `loadgroup` keeps each `xdist_group` (tests sharing one expensive
# fixture in order, e.g. tests/e2e/test_terraform_cloud.py) on one worker. TEST_WORKERS=0
# runs everything in one process.
TEST_WORKERS ?= 6

# Bytecode is written even where PYTHONDONTWRITEBYTECODE is set: the tests start the daemon a
# few hundred times, and each start would compile the package again (~15% of its CPU), as each
# worker would pytest's rewritten test modules.
test: lint typecheck
	env -u PYTHONDONTWRITEBYTECODE $(BIN)/pytest -n $(TEST_WORKERS) --dist loadgroup $(PYTEST_ARGS)

unit: $(VENV)/.dev
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

# The long runs: 10,000 examples per property, 3,000 per payload fuzz test (100 in `test`)
# and 200 cycles of API faults (50 in `test`).
soak: $(VENV)/.dev
	HYPOTHESIS_PROFILE=soak FAULT_SOAK_CYCLES=200 $(BIN)/pytest tests/properties tests/e2e/test_faults.py tests/unit/test_parse_fuzz.py tests/unit/test_typed_page.py $(PYTEST_ARGS)

bench: $(VENV)/.dev
	$(BIN)/python benchmarks/scale.py

# The container image (deploy/Dockerfile), tagged and labelled with the package's version
# (pyproject.toml's, the one place it is written; the chart's appVersion is checked against
# it). Nothing publishes it: push it to your registry and set the chart's image.repository.
ENGINE  ?= $(shell command -v docker 2>/dev/null || command -v podman 2>/dev/null)
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
IMAGE   ?= tfc-watchdog:$(VERSION)

REVISION ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)

image:
	@test -n "$(ENGINE)" || { echo "make image: needs docker or podman on PATH (or ENGINE=...)" >&2; exit 2; }
	$(ENGINE) build -f deploy/Dockerfile --build-arg VERSION=$(VERSION) --build-arg REVISION=$(REVISION) -t $(IMAGE) .

# The digest of the Dockerfile's base image tag, to pin it (deploy/Dockerfile says where).
# Needs docker with buildx and access to the registry; prints the ARG line to paste.
BASE_IMAGE = $(shell sed -n 's/^ARG PYTHON_IMAGE=\([^@]*\).*/\1/p' deploy/Dockerfile)

base-image-digest:
	@docker buildx version >/dev/null 2>&1 || { echo "make base-image-digest: needs docker with the buildx plugin" >&2; exit 2; }
	@manifest=$$(docker buildx imagetools inspect --format '{{json .Manifest}}' $(BASE_IMAGE)) || exit 2; \
	 digest=$$(printf '%s' "$$manifest" | $(PYTHON) -c "$$DIGEST_OF_MANIFEST") || exit 2; \
	 echo "ARG PYTHON_IMAGE=$(BASE_IMAGE)@$$digest"

# Reads the manifest (index) JSON on stdin; prints its digest, or one line and exit 2.
define DIGEST_OF_MANIFEST
import json, re, sys
digest = json.load(sys.stdin).get("digest", "")
if not re.fullmatch(r"sha256:[0-9a-f]{64}", digest):
    print("make base-image-digest: no sha256 digest in the registry's answer", file=sys.stderr)
    sys.exit(2)
print(digest)
endef
export DIGEST_OF_MANIFEST

# The image's hash-locked requirements, resolved from pyproject.toml (runtime, s3 and gcs extras)
# and the build backend, for the image's Python. tests/chart/test_chart_image.py checks them
# against pyproject.toml; rerun this after changing its dependencies.
LOCK_PYTHON = 3.11
UV_COMPILE  = $(UV) pip compile -q --generate-hashes --universal --python-version $(LOCK_PYTHON) --custom-compile-command 'make lock'

lock: $(UV)
	$(UV_COMPILE) pyproject.toml --extra s3 --extra gcs -o requirements/image.txt
	$(UV_COMPILE) requirements/build.in -o requirements/build.txt

# The values table of helm/tfc-watchdog/README.md, from the `# --` comments of values.yaml
# (helm-docs' format; tests/chart/helm_docs.py says why it is not helm-docs itself).
chart-docs: $(VENV)/.dev
	$(BIN)/python -m tests.chart.helm_docs

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
