# The demo with Docker Compose: first, broker, second and Jaeger from docker-compose.yml.
# The images carry the tags `make images` builds, so compose and the cluster run the same images.

COMPOSE ?= docker compose
FIRST_PORT ?= 8080
# docker-compose.yml reads these from the environment, with the same defaults; JAEGER_VERSION and JAEGER_UI_PORT
# are mk/cluster.mk's, so both paths run one Jaeger and show it on one port.
COMPOSE_RUN = IMAGE_REPO=$(IMAGE_REPO) IMAGE_TAG=$(IMAGE_TAG) JAEGER_VERSION=$(JAEGER_VERSION) \
	FIRST_PORT=$(FIRST_PORT) JAEGER_UI_PORT=$(JAEGER_UI_PORT) $(COMPOSE)

.PHONY: up down logs

up: install ## Docker: build, start first, broker, second + Jaeger, send one request, print its trace from Jaeger
	@command -v $(firstword $(COMPOSE)) >/dev/null || { \
		echo "error: '$(firstword $(COMPOSE))' not found: make up needs Docker with Compose v2 (make run needs neither)" >&2; \
		exit 1; }
	@echo "==> building the images and starting first, broker, second and jaeger (docker compose up --wait)"
	@$(COMPOSE_RUN) up --build --detach --wait || { \
		echo "error: the stack did not come up healthy; its state and last log lines:" >&2; \
		$(COMPOSE_RUN) ps --all; $(COMPOSE_RUN) logs --tail 30; exit 1; }
	@$(PY) -m tools.compose_up --first http://127.0.0.1:$(FIRST_PORT) --jaeger http://127.0.0.1:$(JAEGER_UI_PORT)

down: ## Docker: stop the compose stack and remove its containers and network
	@$(COMPOSE_RUN) down --remove-orphans

logs: ## Docker: follow the logs of first, broker, second and Jaeger (Ctrl-C stops following)
	@$(COMPOSE_RUN) logs --follow --tail 100
