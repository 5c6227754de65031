#!/usr/bin/env bash
# Runs the health checks of a compose project's containers every 2 s while the process WATCHED_PID lives: the part
# of Docker's work that Podman hands to systemd timers. Where there is no systemd those timers are never made
# ("unable to get systemd connection to add healthchecks" in Podman's log), health stays `starting` for ever and
# `compose up --wait`, with every `depends_on: condition: service_healthy`, waits for ever with it.
# `make up` starts it when the engine is Podman and this machine has no systemd (mk/compose.mk); it ends by
# itself when WATCHED_PID (make up's shell) does, so neither Ctrl-C nor a failure leaves it running.
#
# Usage: podman-healthchecks.sh WATCHED_PID COMPOSE...   (COMPOSE: the command make up runs compose with)
set -uo pipefail

watched=${1:?usage: podman-healthchecks.sh WATCHED_PID COMPOSE...}
shift
[ $# -gt 0 ] || { echo "usage: podman-healthchecks.sh WATCHED_PID COMPOSE..." >&2; exit 2; }

# The engine compose talks to: DOCKER_HOST, else the docker CLI's current context (the same rule compose follows).
host=${DOCKER_HOST:-$(docker context inspect --format '{{.Endpoints.docker.Host}}' 2>/dev/null)}
podman=(podman)
[ -z "$host" ] || podman=(podman --remote --url "$host")
if ! command -v podman >/dev/null 2>&1; then
	echo "warning: the engine is Podman with no systemd to run health checks, and there is no podman CLI here to" \
		"run them (podman healthcheck run): install podman, or compose will wait for ever" >&2
	exit 1
fi

while kill -0 "$watched" 2>/dev/null; do
	# Every container of the project, as compose itself lists them; one without a health check (jaeger), or one
	# stopping just now, answers an error: nothing to do for it.
	for container in $("$@" ps --quiet 2>/dev/null); do
		"${podman[@]}" healthcheck run "$container" >/dev/null 2>&1
	done
	sleep 2
done
