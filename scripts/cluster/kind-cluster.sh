#!/usr/bin/env bash
# Creates the kind cluster unless it exists (so `make cluster` can run twice). Host port HTTP_PORT reaches
# Kourier's NodePort NODE_PORT, so http://<service>.default.127.0.0.1.sslip.io:HTTP_PORT/ opens a Knative Service.
# KIND_VERSION (optional): the kind release NODE_IMAGE was built for; a cluster is created only with that kind,
# since kind's release notes pair each release with its node images (an empty value skips the check).
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
	# `kind version` prints e.g. "kind v0.31.0 go1.25.5 linux/amd64".
	have=$(kind version 2>/dev/null | awk '{print $2}')
	if [ "$have" != "v$want" ]; then
		echo "error: kind ${have:-(version unknown)} found, the demo pins kind v$want for $image." >&2
		echo "Install it (https://kind.sigs.k8s.io/docs/user/quick-start/#installation, or" \
			"go install sigs.k8s.io/kind@v$want), or pass KIND_VERSION=${have#v} KIND_NODE_IMAGE=<an image" \
			"from that kind's release notes>." >&2
		exit 1
	fi
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
