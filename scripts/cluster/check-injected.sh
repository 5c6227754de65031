#!/usr/bin/env bash
# After `make operator`: checks that the running pod of each Knative Service's latest revision carries the init
# container the OpenTelemetry Operator injects, and fails naming the Service when it does not. The operator's
# pod webhook has failurePolicy Ignore (operator config/webhook/manifests.yaml), so a pod admitted while the
# webhook or the Instrumentation was not there yet runs uninstrumented, and nothing else would say so.
# Usage: check-injected.sh KUBECTL CONTEXT SERVICE ...   (Knative Services in namespace default)
set -uo pipefail

kubectl=$1
context=$2
shift 2
# opentelemetry-operator internal/instrumentation/{sdk,python}.go: initContainerName + "-python".
init=opentelemetry-auto-instrumentation-python
k=("$kubectl" --context "$context" --request-timeout=10s -n default)

status=0
for service in "$@"; do
	revision=$("${k[@]}" get "ksvc/$service" -o 'jsonpath={.status.latestReadyRevisionName}' 2>&1) || {
		echo "error: cannot read ksvc/$service: ${revision%%$'\n'*}" >&2
		status=1
		continue
	}
	pods=$("${k[@]}" get pods -l "serving.knative.dev/revision=$revision" \
		-o 'jsonpath={range .items[*]}{.metadata.name} {.spec.initContainers[*].name}{"\n"}{end}' 2>&1) || {
		echo "error: cannot list the pods of revision $revision: ${pods%%$'\n'*}" >&2
		status=1
		continue
	}
	if [ -z "$pods" ]; then
		echo "warning: revision $revision of $service has no pod running (scaled to zero), so its instrumentation" \
			"cannot be checked now: after make demo, ${k[*]:0:3} get pods -l serving.knative.dev/revision=$revision" \
			"-o jsonpath='{.items[*].spec.initContainers[*].name}' must show $init" >&2
		continue
	fi
	while read -r pod containers; do
		case " $containers " in
		*" $init "*) echo "==> $service: pod $pod carries the injected $init" ;;
		*)
			echo "error: pod $pod of $service (revision $revision) has no $init init container: the" \
				"OpenTelemetry Operator did not instrument it (its pod webhook lets pods in uninstrumented when it" \
				"or the Instrumentation is not ready). Recreate the pod once the operator runs: ${k[*]:0:3} delete" \
				"pod -n default -l serving.knative.dev/service=$service; if it comes back without it, read the" \
				"operator's log: ${k[*]:0:3} logs -n opentelemetry-operator-system deployment/opentelemetry-operator-controller-manager" >&2
			status=1
			;;
		esac
	done <<<"$pods"
done
exit "$status"
