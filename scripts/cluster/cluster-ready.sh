#!/usr/bin/env bash
# Checks, in seconds, what `make demo`, `make traces` and `make verify` need before they talk to the cluster,
# and names the fix for the first thing missing: kubectl, the context, an answering API server, Knative
# Serving and Eventing, Jaeger, Knative's tracing switched on with a sampling rate above 0, and any RESOURCE
# given (e.g. ksvc/first, which `make deploy` creates).
# Usage: cluster-ready.sh KUBECTL CONTEXT KIND_CLUSTER [RESOURCE ...]   (resources in namespace default)
set -uo pipefail

kubectl=$1
context=$2
cluster=$3
shift 3

fail() {
	echo "error: $*" >&2
	exit 1
}

command -v "$kubectl" >/dev/null 2>&1 ||
	fail "kubectl '$kubectl' not found: 'make install' puts the pinned one in .venv/bin (or set KUBECTL_BIN)"

if ! "$kubectl" config get-contexts -o name 2>/dev/null | grep -qxF "$context"; then
	hint="create the cluster with 'make cluster'"
	if ! command -v kind >/dev/null 2>&1; then
		hint="$hint (it needs kind: https://kind.sigs.k8s.io/docs/user/quick-start/#installation)"
	elif kind get clusters 2>/dev/null | grep -qxF "$cluster"; then
		hint="kind has the cluster but this kubeconfig lacks it: kind export kubeconfig --name $cluster"
	fi
	fail "no kubectl context '$context' in ${KUBECONFIG:-~/.kube/config}: $hint"
fi

# One short request: an API server that is down refuses or times out here, not after minutes of retries.
k=("$kubectl" --context "$context" --request-timeout=5s)
if ! answer=$("${k[@]}" get --raw=/readyz 2>&1); then
	fail "the cluster behind context '$context' does not answer (${answer%%$'\n'*}). Is Docker running and" \
		"the kind node up ('kind get clusters', 'docker ps')? 'make cluster' creates or reuses it."
fi

need() { # namespace resource what-it-is fix
	local found
	found=$("${k[@]}" get -n "$1" "$2" --ignore-not-found -o name 2>&1) ||
		fail "cannot read $2 in namespace $1 of '$context': ${found%%$'\n'*}"
	[ -n "$found" ] || fail "$3 is not installed in '$context' (no $2 in namespace $1): run $4"
}
need knative-serving deployment/activator "Knative Serving" "make cluster"
need knative-eventing deployment/mt-broker-ingress "Knative Eventing's MT broker" "make cluster"
need observability deployment/jaeger "Jaeger" "make cluster"

value() { # namespace configmap key: the key's value, empty when the key or the ConfigMap is missing
	local found
	found=$("${k[@]}" get -n "$1" "configmap/$2" --ignore-not-found -o "go-template={{index .data \"$3\"}}" 2>&1) ||
		fail "cannot read configmap/$2 in namespace $1 of '$context': ${found%%$'\n'*}"
	[ "$found" = "<no value>" ] || echo "$found"
}
positive() { awk -v rate="$1" 'BEGIN { exit !(rate + 0 > 0) }'; }
restart="make cluster (it applies config/tracing and restarts the components that read it only at start)"
# Knative >= 1.19 reads config-observability; a missing or 0 tracing-sampling-rate is NeverSample, not
# parent-based (knative/pkg observability/tracing/provider.go, sampleFor): its components record nothing and
# pass the context on marked not sampled, so the parent-based workloads after them drop theirs too. Knative
# <= 1.18 read config-tracing (backend zipkin, sample-rate) instead.
for namespace in knative-serving knative-eventing; do
	protocol=$(value "$namespace" config-observability tracing-protocol)
	case "$protocol" in
	grpc | http/protobuf)
		rate=$(value "$namespace" config-observability tracing-sampling-rate)
		positive "$rate" || fail "tracing-sampling-rate in config-observability of $namespace is" \
			"${rate:-missing} (Knative >= 1.19 then samples nothing: NeverSample, not parent-based), so every" \
			"trace loses Knative's spans there and the workloads after it drop theirs: the trace ends at" \
			"$namespace's first hop. Fix: $restart, or set it by hand: ${k[*]:0:3} patch" \
			"configmap/config-observability -n $namespace --type merge -p '{\"data\":{\"tracing-sampling-rate\":\"1\"}}'" \
			"and restart its components (docs/knative.md, Known risks)."
		positive "$(awk -v rate="$rate" 'BEGIN { print 1 - rate }')" &&
			echo "warning: tracing-sampling-rate in config-observability of $namespace is $rate: only that" \
				"share of new traces is recorded, so the demo's trace may be missing (the demo wants \"1\")" >&2
		;;
	*)
		if [ "$(value "$namespace" config-tracing backend)" = zipkin ]; then
			rate=$(value "$namespace" config-tracing sample-rate)
			[ -z "$rate" ] || positive "$rate" || fail "sample-rate in config-tracing of $namespace is 0:" \
				"Knative <= 1.18 then records none of its spans. Fix: $restart KNATIVE_VERSION=1.18."
		else
			# none (the default) exports nothing, stdout writes spans to the components' logs.
			fail "Knative's spans from $namespace do not reach Jaeger (config-observability tracing-protocol is" \
				"${protocol:-missing}): the trace would hold none of them. Fix: $restart."
		fi
		;;
	esac
done

for resource in "$@"; do
	need default "$resource" "$resource" "make deploy"
done
