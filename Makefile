# Distributed tracing in Knative, the Python demo. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed-dev

# Images: one name everywhere (folder, module, image, compose service, Knative Service, service.name).
# dev.local is a registry Knative Serving never resolves tags for, so kind-loaded images run as they are.
IMAGE_REPO ?= dev.local/knative-tracing
IMAGE_TAG ?= 0.1.0
SERVICES := first second broker

.PHONY: help install run test lint format typecheck unit lock clean

help: ## List the targets, one line each
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | sort -u | \
		awk 'BEGIN {FS = ":.*?## "}; {printf "  make %-19s %s\n", $$1, $$2}'

install: $(INSTALLED) ## Create .venv with the locked, pinned dependencies (requirements/*.txt)

$(INSTALLED): requirements/dev.txt requirements/runtime.txt
	@echo "==> creating $(VENV) and installing locked dependencies"
	@$(PYTHON) -m venv $(VENV) 2>/dev/null || { \
		echo "==> python venv module missing: installing python3-venv with apt"; \
		rm -rf $(VENV); apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null && \
		$(PYTHON) -m venv $(VENV); }
	@$(VENV)/bin/pip install --quiet --require-hashes --no-deps -r requirements/dev.txt
	@touch $@

# `$(call switch,NAME,--flag)`: --flag when the workshop switch NAME=1 (or true, yes) is on the command line.
# RUN_FLAGS passes tools/run_demo.py's other options (--port, --otlp-port, --once); docs/workshop.md has the rest.
switch = $(if $(filter 1 true yes,$($(1))),$(2))

run: install ## The demo on loopback, no Docker (workshop switches: BROKEN=1 EXTENSION=1 UNTRACED_HOP=1 ZERO_CODE=1)
	@$(PY) -m tools.run_demo $(call switch,BROKEN,--broken) $(call switch,EXTENSION,--extension) \
		$(call switch,UNTRACED_HOP,--untraced-hop) $(call switch,ZERO_CODE,--zero-code) $(RUN_FLAGS)

test: install lint typecheck ## The whole suite: lint, types, unit, end-to-end, manifests, containers
	@echo "==> pytest"
	@$(PY) -m pytest

unit: install ## Only the fast tests (no processes started)
	@$(PY) -m pytest tests/unit

lint: install ## ruff check and ruff format --check
	@echo "==> ruff"
	@$(VENV)/bin/ruff check .
	@$(VENV)/bin/ruff format --check .

format: install ## Apply ruff's formatting and safe fixes
	@$(VENV)/bin/ruff check --fix .
	@$(VENV)/bin/ruff format .

typecheck: install ## mypy --strict over the code
	@echo "==> mypy"
	@$(VENV)/bin/mypy

lock: install ## Re-resolve requirements/*.in into the hashed locks
	@$(VENV)/bin/uv pip compile --quiet --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
		--generate-hashes requirements/runtime.in -o requirements/runtime.txt
	@$(VENV)/bin/uv pip compile --quiet --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
		--generate-hashes requirements/dev.in -o requirements/dev.txt

clean: ## Remove .venv and caches
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache

# Each path of the demo keeps its targets in a file of its own.
-include mk/*.mk
