#!/usr/bin/env bash
# Checks, in seconds, what `make demo`, `make traces` and `make verify` need before they talk to the cluster,
# and names the fix for the first thing missing: kubectl, the context, an answering API server, Knative
# Serving and Eventing, Jaeger, and any RESOURCE given (e.g. ksvc/first, which `make deploy` creates).
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
for resource in "$@"; do
	need default "$resource" "$resource" "make deploy"
done
