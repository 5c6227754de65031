#!/usr/bin/env bash
# Creates the kind cluster unless it exists (so `make cluster` can run twice). Host port HTTP_PORT reaches
# Kourier's NodePort NODE_PORT, so http://<service>.default.127.0.0.1.sslip.io:HTTP_PORT/ opens a Knative Service.
# KIND_VERSION (optional): the kind release NODE_IMAGE was built for; an older kind is refused, a newer one
# warned about, since kind's release notes pair each release with its node images (empty skips the check).
# Before creating, it checks the engine runs on cgroup v2 and, for a host port below 1024, is not rootless.
# Usage: kind-cluster.sh NAME NODE_IMAGE HTTP_PORT NODE_PORT [KIND_VERSION]
set -euo pipefail

name=$1
image=$2
http_port=$3
node_port=$4
want=${5:-}

if kind get clusters 2>/dev/null | grep -qx "$name"; then
	echo "==> kind cluster '$name' exists: using it (kubectl context kind-$name)"
	exit 0
fi

if [ -n "$want" ]; then
	# `kind version` prints e.g. "kind v0.31.0 go1.25.5 linux/amd64". An older kind may not run the node image
	# (kind's release notes pair each release with its images): refused. A newer one usually runs older images.
	have=$(kind version 2>/dev/null | awk '{print $2}')
	if [ "$have" != "v$want" ]; then
		oldest=$(printf '%s\n' "${have#v}" "$want" | sort -V | head -n1)
		if [ -n "$have" ] && [ "$oldest" = "$want" ]; then
			echo "warning: kind $have is newer than the pinned v$want, whose release notes name $image;" \
				"going on. If the node does not start, pass KIND_VERSION=${have#v} KIND_NODE_IMAGE=<an image" \
				"from kind $have's release notes>." >&2
		else
			echo "error: kind ${have:-(version unknown)} found, the demo pins kind v$want for $image." >&2
			echo "Install it (https://kind.sigs.k8s.io/docs/user/quick-start/#installation, or" \
				"go install sigs.k8s.io/kind@v$want), or pass KIND_VERSION=${have#v} KIND_NODE_IMAGE=<an image" \
				"from that kind's release notes>." >&2
			exit 1
		fi
	fi
fi

# What the engine must offer, checked before kind spends minutes on a node that cannot start.
# The pinned node's kubelet (Kubernetes 1.35) refuses cgroup v1 hosts by default (its failCgroupV1 setting).
cgroup=$(docker info --format '{{.CgroupVersion}}' 2>/dev/null || true)
if [ "$cgroup" = 1 ]; then
	echo "error: the container engine runs on cgroup v1; the pinned node image (Kubernetes 1.35) refuses cgroup" \
		"v1 hosts. Boot the host with cgroup v2 (systemd.unified_cgroup_hierarchy=1 on the kernel command line;" \
		"WSL2: kernelCommandLine = cgroup_no_v1=all under [wsl2] in .wslconfig, then wsl --shutdown)." >&2
	exit 1
fi
# A rootless engine cannot bind host ports below 1024 (net.ipv4.ip_unprivileged_port_start, 1024 by default).
if [ "$http_port" -lt 1024 ] && docker info --format '{{.SecurityOptions}}' 2>/dev/null | grep -q rootless; then
	echo "error: the container engine runs rootless and cannot bind host port $http_port for Kourier. Pick a" \
		"port >= 1024 and pass it to every target: make cluster demo KIND_HTTP_PORT=8880." >&2
	exit 1
fi

echo "==> creating kind cluster '$name' ($image), Kourier on host port $http_port"
kind create cluster --name "$name" --image "$image" --wait 120s --config - <<YAML
kind: Cluster
apiVersion: kind.x-k8s.io/v1alpha4
nodes:
  - role: control-plane
    extraPortMappings:
      - containerPort: $node_port
        hostPort: $http_port
        listenAddress: 127.0.0.1
YAML
