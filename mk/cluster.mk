# Knative on kind: `make cluster deploy demo traces` is the whole path; `make verify` checks the demo's trace.

# The pins: every version the Knative path installs, in one table (`make versions` prints it as resolved).
# Each is a release that exists: tests/fixtures/upstream/released-tags.json records the upstream tags, and
# tests/config/test_versions.py checks every pin, and every version the docs tell you to type, against it.
# Any one can be overridden on the command line (make cluster KNATIVE_EVENTING_VERSION=1.22.1).
#
# KNATIVE_VERSION picks a line, not a release: 1.22 (default; OpenTelemetry tracing) or 1.18 (the article's
# OpenCensus/Zipkin era). Serving, Eventing and net-kourier cut patch releases separately (net-kourier has no
# 1.18.1 or 1.18.2), so each line pins each repository's latest patch of that minor:
#                 serving  eventing  net-kourier
KNATIVE_1.22 := 1.22.1   1.22.2    1.22.1
KNATIVE_1.18 := 1.18.2   1.18.4    1.18.0
KNATIVE_LINES := 1.22 1.18
KNATIVE_VERSION ?= 1.22
KNATIVE_SERVING_VERSION ?= $(word 1,$(KNATIVE_$(KNATIVE_VERSION)))
KNATIVE_EVENTING_VERSION ?= $(word 2,$(KNATIVE_$(KNATIVE_VERSION)))
KOURIER_VERSION ?= $(word 3,$(KNATIVE_$(KNATIVE_VERSION)))
# kind and the node image its release notes name, by digest: v1.35, which Knative 1.22 requires (>= v1.34) and
# tests (kind-e2e on v1.34.x and v1.35.x), within one minor of the pinned kubectl (1.36, requirements/dev.in).
KIND_VERSION ?= 0.31.0
KIND_NODE_IMAGE ?= kindest/node:v1.35.0@sha256:452d707d4862f52530247495d180205e029056831160e22870e37e3f6c1ac31f
JAEGER_VERSION ?= 2.17.0
# The workshop's `make operator` (mk/workshop.mk): an operator release whose tested Kubernetes range (v1.25 to
# v1.36) holds the node's, and the cert-manager its webhook certificates come from.
OTEL_OPERATOR_VERSION ?= 0.158.0
CERT_MANAGER_VERSION ?= 1.21.1
PINS := KNATIVE_VERSION KNATIVE_SERVING_VERSION KNATIVE_EVENTING_VERSION KOURIER_VERSION KIND_VERSION \
	KIND_NODE_IMAGE JAEGER_VERSION OTEL_OPERATOR_VERSION CERT_MANAGER_VERSION

KIND_CLUSTER ?= knative-tracing
# The host port Kourier answers on (a NodePort mapped by kind), and the sslip.io domain of the Knative routes.
KIND_HTTP_PORT ?= 80
KOURIER_NODE_PORT := 31080
KNATIVE_DOMAIN ?= 127.0.0.1.sslip.io
JAEGER_UI_PORT ?= 16686

# The pinned kubectl from `make install`, always aimed at the demo's cluster, never at the current context.
KUBECTL_BIN ?= $(VENV)/bin/kubectl
KUBE_CONTEXT ?= kind-$(KIND_CLUSTER)
KUBECTL := $(KUBECTL_BIN) --context $(KUBE_CONTEXT)

SERVING_RELEASE := https://github.com/knative/serving/releases/download/knative-v$(KNATIVE_SERVING_VERSION)
EVENTING_RELEASE := https://github.com/knative/eventing/releases/download/knative-v$(KNATIVE_EVENTING_VERSION)
KOURIER_RELEASE := https://github.com/knative-extensions/net-kourier/releases/download/knative-v$(KOURIER_VERSION)

# Knative <= 1.18 traced through OpenCensus and `config-tracing`, its Serving with B3 as well as W3C: add the
# legacy component (config/overlays/knative-1.18: its config-tracing, and B3 switched on in the Services).
KNATIVE_MINOR := $(word 2,$(subst ., ,$(KNATIVE_VERSION)))
LEGACY_TRACING := $(shell [ "$(KNATIVE_MINOR)" -le 18 ] 2>/dev/null && echo yes)

CLUSTER_SCRIPTS := scripts/cluster
CLUSTER_DIR := .cluster
RETRY := $(CLUSTER_SCRIPTS)/retry.sh 5
WAIT := $(KUBECTL) wait --timeout=300s
# The workloads Knative runs; the broker is Knative's own on a cluster (our image serves `make up`).
KSVCS := first second
KSVC_IMAGES := $(foreach s,$(KSVCS),$(IMAGE_REPO)/$(s):$(IMAGE_TAG))
KUSTOMIZATION_ENV := IMAGE_REPO=$(IMAGE_REPO) IMAGE_TAG=$(IMAGE_TAG) JAEGER_VERSION=$(JAEGER_VERSION) \
	KSVCS="$(KSVCS)" LEGACY_TRACING=$(LEGACY_TRACING)

# Knative >= 1.19 builds each process's tracer provider once, at start (SetupObservabilityOrDie reads
# config-observability with a plain GET), and its ConfigMap watch updates only pprof and request logging: the
# components below, started by the release manifests with tracing off, keep tracing off until they restart.
# (knative/serving cmd/activator/main.go:137,281; knative/eventing cmd/broker/{ingress,filter}/main.go and
# cmd/in_memory/channel_dispatcher/main.go via knative/pkg injection/sharedmain, at the pinned tags.)
# The queue-proxies need nothing: each revision's gets the config in its env when `make deploy` creates it.
# Knative <= 1.18 re-read config-tracing when it changed (SetupPublishingWithDynamicConfig, the activator's
# config store), so the legacy line restarts nothing.
TRACING_RESTARTS := $(if $(LEGACY_TRACING),,knative-serving/activator knative-eventing/mt-broker-ingress \
	knative-eventing/mt-broker-filter knative-eventing/imc-dispatcher)
# `$(call rollout,restart|status --timeout=300s,namespace/deployment)`: one kubectl rollout command.
define rollout
	$(KUBECTL) rollout $(1) -n $(word 1,$(subst /, ,$(2))) deployment/$(word 2,$(subst /, ,$(2)))

endef
# Before any target that talks to the running demo: fail in seconds, naming the fix, when kubectl, the
# cluster or Knative is not there (rather than after the demo's cold-start wait).
CLUSTER_READY := $(CLUSTER_SCRIPTS)/cluster-ready.sh $(KUBECTL_BIN) $(KUBE_CONTEXT) $(KIND_CLUSTER)

.PHONY: versions cluster images deploy demo traces verify undeploy cluster-delete

versions: ## Print the pinned versions (one table: mk/cluster.mk); each is a released upstream tag
	@$(foreach v,$(PINS),printf '%-26s %s\n' '$(v)' '$($(v))';)

cluster: install ## Create the kind cluster; install pinned Knative (Kourier, Eventing, IMC, MT broker) and Jaeger
	@$(if $(and $(KNATIVE_SERVING_VERSION),$(KNATIVE_EVENTING_VERSION),$(KOURIER_VERSION)),:,\
		echo "error: KNATIVE_VERSION=$(KNATIVE_VERSION) is not one of the pinned lines ($(KNATIVE_LINES));" \
		"KNATIVE_VERSION names a minor line, not a release. For other releases set KNATIVE_SERVING_VERSION," \
		"KNATIVE_EVENTING_VERSION and KOURIER_VERSION (each repository's own patch numbers; make versions)" >&2; exit 2)
	@$(CLUSTER_SCRIPTS)/prereqs.sh docker kind $(KUBECTL_BIN)
	@$(CLUSTER_SCRIPTS)/kind-cluster.sh $(KIND_CLUSTER) $(KIND_NODE_IMAGE) $(KIND_HTTP_PORT) $(KOURIER_NODE_PORT) \
		$(KIND_VERSION)
	@echo "==> Knative Serving $(KNATIVE_SERVING_VERSION)"
	$(RETRY) $(KUBECTL) apply -f $(SERVING_RELEASE)/serving-crds.yaml
	$(WAIT) --for=condition=Established crd --all
	$(RETRY) $(KUBECTL) apply -f $(SERVING_RELEASE)/serving-core.yaml
	@echo "==> Kourier $(KOURIER_VERSION): routes at http://<service>.<namespace>.$(KNATIVE_DOMAIN):$(KIND_HTTP_PORT)"
	$(RETRY) $(KUBECTL) apply -f $(KOURIER_RELEASE)/kourier.yaml
	$(KUBECTL) patch configmap/config-network -n knative-serving --type merge \
		-p '{"data":{"ingress-class":"kourier.ingress.networking.knative.dev"}}'
	$(KUBECTL) patch configmap/config-domain -n knative-serving --type merge -p '{"data":{"$(KNATIVE_DOMAIN)":""}}'
	$(KUBECTL) patch service/kourier -n kourier-system -p '{"spec":{"type":"NodePort","ports":[{"port":80,"nodePort":$(KOURIER_NODE_PORT)}]}}'
	@echo "==> waiting for Knative Serving and Kourier to be available"
	$(WAIT) --for=condition=Available deployment --all -n knative-serving
	$(WAIT) --for=condition=Available deployment --all -n kourier-system
	@echo "==> Knative Eventing $(KNATIVE_EVENTING_VERSION): core, InMemoryChannel, MT channel-based broker"
	$(RETRY) $(KUBECTL) apply -f $(EVENTING_RELEASE)/eventing-crds.yaml
	$(WAIT) --for=condition=Established crd --all
	$(RETRY) $(KUBECTL) apply -f $(EVENTING_RELEASE)/eventing-core.yaml
	$(RETRY) $(KUBECTL) apply -f $(EVENTING_RELEASE)/in-memory-channel.yaml
	$(RETRY) $(KUBECTL) apply -f $(EVENTING_RELEASE)/mt-channel-broker.yaml
	@echo "==> waiting for Knative Eventing to be available"
	$(WAIT) --for=condition=Available deployment --all -n knative-eventing
	@echo "==> Jaeger $(JAEGER_VERSION) in namespace observability; Knative tracing on at 100%$(if $(LEGACY_TRACING), (legacy config-tracing))"
	@mkdir -p $(CLUSTER_DIR)/infra
	$(KUSTOMIZATION_ENV) $(CLUSTER_SCRIPTS)/kustomization.sh infra > $(CLUSTER_DIR)/infra/kustomization.yaml
	$(RETRY) $(KUBECTL) apply -k $(CLUSTER_DIR)/infra
	$(WAIT) --for=condition=Available deployment/jaeger -n observability
	@echo "==> restarting what reads the tracing config only at start:$(if $(TRACING_RESTARTS), $(TRACING_RESTARTS), nothing on <= 1.18)"
	$(foreach d,$(TRACING_RESTARTS),$(call rollout,restart,$(d)))
	$(foreach d,$(TRACING_RESTARTS),$(call rollout,status --timeout=300s,$(d)))
	@echo "==> cluster $(KIND_CLUSTER) is ready: next, make deploy"

# One build per service, context = the repo root (the images copy common/ too).
images: ## docker build every service image, tagged IMAGE_REPO/<service>:IMAGE_TAG (base: PYTHON_IMAGE=<image>)
	@$(call engine_ready,--engine-only)$(foreach s,$(SERVICES),; \
		echo "==> building $(IMAGE_REPO)/$(s):$(IMAGE_TAG)$(if $(PYTHON_IMAGE), on $(PYTHON_IMAGE))" && \
		$(DOCKER_BUILD)-f $(s)/Dockerfile -t $(IMAGE_REPO)/$(s):$(IMAGE_TAG) . || exit 1)

deploy: images ## Load the images into kind, kubectl apply -k config/, wait until the Services are Ready
	@$(CLUSTER_SCRIPTS)/prereqs.sh docker kind $(KUBECTL_BIN)
	@echo "==> loading $(KSVC_IMAGES) into kind cluster $(KIND_CLUSTER)"
	kind load docker-image $(KSVC_IMAGES) --name $(KIND_CLUSTER)
	@mkdir -p $(CLUSTER_DIR)/all
	$(KUSTOMIZATION_ENV) $(CLUSTER_SCRIPTS)/kustomization.sh all \
		$(foreach s,$(KSVCS),$(s)=$$(docker image inspect -f '{{.Id}}' $(IMAGE_REPO)/$(s):$(IMAGE_TAG))) \
		dead-letter=$$(docker image inspect -f '{{.Id}}' $(IMAGE_REPO)/second:$(IMAGE_TAG)) \
		> $(CLUSTER_DIR)/all/kustomization.yaml
	$(RETRY) $(KUBECTL) apply -k $(CLUSTER_DIR)/all
	@echo "==> waiting for the Broker, the Trigger and the Services to be Ready"
	$(WAIT) --for=condition=Ready -n default broker/default trigger/first-to-second $(foreach s,$(KSVCS),ksvc/$(s)) ksvc/dead-letter
	@$(KUBECTL) get ksvc -n default
	@echo "==> deployed: next, make demo"

demo: install ## Send one request to first as the article's browser did; print its trace id and where to see it
	@$(CLUSTER_READY) $(foreach s,$(KSVCS),ksvc/$(s))
	$(PY) -m tools.cluster_demo --ingress http://127.0.0.1:$(KIND_HTTP_PORT) --host first.default.$(KNATIVE_DOMAIN) \
		--trace-id-file $(CLUSTER_DIR)/last-trace-id --jaeger-ui http://127.0.0.1:$(JAEGER_UI_PORT)

traces: install ## Port-forward Jaeger's UI to 127.0.0.1 (JAEGER_UI_PORT, 16686) and print its URL; Ctrl-C stops
	@$(CLUSTER_READY)
	@echo "==> Jaeger UI: http://127.0.0.1:$(JAEGER_UI_PORT)/search?service=first$(if $(wildcard $(CLUSTER_DIR)/last-trace-id),  ·  last demo trace: http://127.0.0.1:$(JAEGER_UI_PORT)/trace/$(shell cat $(CLUSTER_DIR)/last-trace-id))"
	$(KUBECTL) port-forward -n observability service/jaeger-query $(JAEGER_UI_PORT):16686

verify: install ## Fetch the `make demo` trace from Jaeger and check every hop; print it as a tree
	@$(CLUSTER_READY)
	$(PY) -m tools.verify_trace --hops knative --trace-id-file $(CLUSTER_DIR)/last-trace-id \
		--port-forward "$(KUBECTL) port-forward -n observability service/jaeger-query {port}:16686"

undeploy: install ## Remove the Services (dead-letter too), Broker and Trigger (Knative, Jaeger and the cluster stay)
	$(KUBECTL) delete --ignore-not-found -f config/services.yaml -f config/dead-letter.yaml -f config/trigger.yaml \
		-f config/broker.yaml

cluster-delete: ## Delete the kind cluster and everything in it
	@$(CLUSTER_SCRIPTS)/prereqs.sh kind
	kind delete cluster --name $(KIND_CLUSTER)
	rm -rf $(CLUSTER_DIR)
