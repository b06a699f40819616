# vtx: the two commands are `make demo` (everything, end to end) and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help
# Debian's Python 3.11 (dev/install.sh apt installs it).
PYTHON ?= /usr/bin/python3.11
VENV := .venv
VENV_STAMP := $(VENV)/.stamp-$(shell cat requirements-dev.lock pyproject.toml | sha256sum | cut -c1-16)
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: help
help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(VENV_STAMP): requirements-dev.lock pyproject.toml
	dev/install.sh apt
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check uv==0.13.8
	$(VENV)/bin/uv pip sync -q --python $(PY) requirements-dev.lock
	$(VENV)/bin/uv pip install -q --python $(PY) --no-deps -e .
	touch $@

.PHONY: venv
venv: $(VENV_STAMP) ## the Python environment from the lock files

.PHONY: lock
lock: ## re-resolve the lock files from pyproject.toml
	$(VENV)/bin/uv pip compile pyproject.toml --python-version 3.11 --python-platform x86_64-manylinux_2_28 --no-header -q -o requirements.lock
	$(VENV)/bin/uv pip compile pyproject.toml --extra dev --python-version 3.11 --python-platform x86_64-manylinux_2_28 --no-header -q -o requirements-dev.lock
	$(VENV)/bin/uv pip compile pyproject.toml --extra bench -c requirements-dev.lock --python-version 3.11 --python-platform x86_64-manylinux_2_28 --no-header -q -o requirements-bench.lock

.PHONY: up down status logs env
up: venv ## bring the local stack up (builds what is missing; NODES=2: a second node)
	$(if $(NODES),VTX_NODES=$(NODES) )dev/up.sh
down: ## stop the local stack and clean its kernel state (data is kept)
	dev/down.sh
status: ## show every part of the local stack
	dev/status.sh
logs: ## tail every part's log (make logs PART=kubelet to follow one)
	dev/logs.sh $(PART) $(if $(PART),-f)
env: ## export lines for host-side tools: eval "$$(make -s env)"
	@cat .stack/env 2>/dev/null || { echo 'echo "the stack is not up: run make up" >&2; false'; }

.PHONY: images
images: venv ## build the job and operator images and import them into the cluster
	dev/images.sh

.PHONY: manifests
manifests: ## render the Helm chart into manifests/ for kubectl apply
	dev/render-manifests.sh

.PHONY: demo
demo: ## the main job, end to end, on the local stack; ends with where the time went
	@dev/timings.sh reset
	@$(MAKE) --no-print-directory up images
	dev/demo.sh
	@dev/timings.sh summary

.PHONY: lint
lint: venv ## ruff (lint and format) and mypy --strict
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

.PHONY: test-unit
test-unit: venv ## unit tests only (no stack)
	$(VENV)/bin/pytest tests/unit $(PYTEST_ARGS)

# The stack tests run on two nodes (a video's Jobs on both), the fault suite and the benchmarks
# on one (their faults and figures are of one node); NODES= on the command line chooses.
.PHONY: test
test: NODES ?= 2
test: lint up images ## everything but the fault suite: lint, types, unit and stack tests (two nodes)
	$(VENV)/bin/pytest tests --ignore=tests/faults $(PYTEST_ARGS)

FAULT_FIGURES ?= .stack/fault-figures.jsonl
.PHONY: test-faults
test-faults: NODES ?= 1
test-faults: venv up images ## the fault suite: servers and processes fail under real uploads
	rm -f $(FAULT_FIGURES)
	VTX_FAULT_FIGURES=$(abspath $(FAULT_FIGURES)) $(VENV)/bin/pytest tests/faults $(PYTEST_ARGS)
	$(PY) -m tests.faults.table $(FAULT_FIGURES)

BENCH_ARGS ?=
.PHONY: bench
bench: NODES ?= 1
bench: venv up images ## every benchmark; writes docs/benchmarks.md and its plots (BENCH_ARGS=--quick: a short run)
	$(VENV)/bin/uv pip install -q --python $(PY) -r requirements-bench.lock
	$(PY) -m bench.report $(BENCH_ARGS)
