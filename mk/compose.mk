# The demo with Docker Compose: first, broker, second and Jaeger from docker-compose.yml, on Docker or on Podman's
# Docker API (DOCKER_HOST). The images carry the tags `make images` builds, so compose and the cluster run the same
# images. PYTHON_IMAGE=<image> builds them on another base (a mirror, a local one); unset, the pinned digest.

COMPOSE ?= docker compose
FIRST_PORT ?= 8080
COMPOSE_CHECK := scripts/containers/compose-check.sh
# docker-compose.yml reads these from the environment, with the same defaults; JAEGER_VERSION and JAEGER_UI_PORT
# are mk/cluster.mk's, so both paths run one Jaeger and show it on one port. An empty PYTHON_IMAGE is unset, so
# the build keeps the Dockerfiles' default rather than a `FROM` of nothing.
COMPOSE_RUN = env $(if $(PYTHON_IMAGE),PYTHON_IMAGE=$(PYTHON_IMAGE),-u PYTHON_IMAGE) IMAGE_REPO=$(IMAGE_REPO) \
	IMAGE_TAG=$(IMAGE_TAG) JAEGER_VERSION=$(JAEGER_VERSION) FIRST_PORT=$(FIRST_PORT) JAEGER_UI_PORT=$(JAEGER_UI_PORT) \
	$(COMPOSE)

.PHONY: up down logs

# `$(call engine_ready,$(COMPOSE))` (or `--engine-only` for docker build alone) opens a recipe line: it fails in
# seconds naming the fix when the engine or Compose is missing. Podman's Docker API has no BuildKit, so there the
# builds use the classic builder (DOCKER_BUILDKIT=0), unless the caller chose otherwise.
engine_ready = engine=$$($(COMPOSE_CHECK) $(1)) || exit 1; \
	if [ "$$engine" = podman ] && [ -z "$${DOCKER_BUILDKIT:-}" ]; then \
		echo "==> the engine is Podman: building with the classic builder (DOCKER_BUILDKIT=0)"; \
		export DOCKER_BUILDKIT=0; fi

# `docker build` on PYTHON_IMAGE when it is set (a mirror, a local base); unset, the Dockerfiles' pinned digest.
DOCKER_BUILD = docker build $(if $(PYTHON_IMAGE),--build-arg PYTHON_IMAGE=$(PYTHON_IMAGE) )

# Podman schedules health checks with systemd timers: with no systemd (/run/systemd/system is how systemd says it
# runs) nothing runs them and `up --wait` waits for ever, so make up runs them itself while compose waits.
HEALTHCHECKS := scripts/containers/podman-healthchecks.sh
drive_healthchecks = if [ "$$engine" = podman ] && [ ! -d /run/systemd/system ]; then \
		echo "==> Podman with no systemd runs no health checks by itself: make up runs them every 2 s until the stack is up ($(HEALTHCHECKS))"; \
		$(HEALTHCHECKS) $$$$ $(1) & healthchecks=$$!; trap 'kill $$healthchecks 2>/dev/null' EXIT; fi

up: ## Docker or Podman: build, start first, broker, second + Jaeger, send one request, print its trace
	@$(call engine_ready,$(COMPOSE)); \
	$(call drive_healthchecks,$(COMPOSE_RUN)); \
	echo "==> building the images$(if $(PYTHON_IMAGE), on $(PYTHON_IMAGE),) and starting first, broker, second and jaeger (docker compose up --wait)"; \
	$(COMPOSE_RUN) up --build --detach --wait || { \
		echo "error: the stack did not come up healthy; its state and last log lines:" >&2; \
		$(COMPOSE_RUN) ps --all; $(COMPOSE_RUN) logs --tail 30; exit 1; }
	@$(MAKE) --no-print-directory install
	@$(PY) -m tools.compose_up --first http://127.0.0.1:$(FIRST_PORT) --jaeger http://127.0.0.1:$(JAEGER_UI_PORT)

down: ## Docker or Podman: stop the compose stack and remove its containers, network and the broker-data volume
	@$(COMPOSE_CHECK) $(COMPOSE) >/dev/null
	@$(COMPOSE_RUN) down --remove-orphans --volumes

logs: ## Docker or Podman: follow the logs of first, broker, second and Jaeger (Ctrl-C stops following)
	@$(COMPOSE_CHECK) $(COMPOSE) >/dev/null
	@$(COMPOSE_RUN) logs --follow --tail 100
