#!/usr/bin/env bash
# Checks the tools the cluster path needs and names every one that is missing, with where to get it.
# Usage: prereqs.sh docker kind /path/to/kubectl
set -uo pipefail

hint() {
	case "$(basename "$1")" in
	docker) echo "Docker Engine or Docker Desktop: https://docs.docker.com/get-docker/" ;;
	kind) echo "kind: https://kind.sigs.k8s.io/docs/user/quick-start/#installation" ;;
	kubectl) echo "kubectl: 'make install' puts a pinned one in .venv/bin, or https://kubernetes.io/docs/tasks/tools/" ;;
	*) echo "$1" ;;
	esac
}

missing=0
for tool in "$@"; do
	if ! command -v "$tool" >/dev/null 2>&1; then
		echo "error: '$tool' not found. Install $(hint "$tool")" >&2
		missing=1
	elif [ "$(basename "$tool")" = docker ] && ! docker info >/dev/null 2>&1; then
		# The CLI alone is not enough: kind and 'make images' talk to the daemon.
		echo "error: docker is installed but its daemon does not answer ('docker info' fails): start Docker" >&2
		missing=1
	fi
done
exit "$missing"
