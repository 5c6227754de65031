#!/usr/bin/env bash
# Runs a command until it succeeds, up to N times, RETRY_DELAY (default 5) seconds apart. Knative's webhooks take a moment to serve after
# their Deployments exist, so the first `kubectl apply` of a release can be refused; the second one is not.
# Usage: retry.sh N command [args...]
set -uo pipefail

attempts=$1
delay=${RETRY_DELAY:-5}
shift
for ((i = 1; i <= attempts; i++)); do
	"$@" && exit 0
	if ((i < attempts)); then
		echo "    (attempt $i/$attempts failed: retrying in ${delay}s)" >&2
		sleep "$delay"
	fi
done
echo "error: gave up after $attempts attempts: $*" >&2
exit 1
