#!/usr/bin/env bash
# Creates the kind cluster unless it exists (so `make cluster` can run twice). Host port HTTP_PORT reaches
# Kourier's NodePort NODE_PORT, so http://<service>.default.127.0.0.1.sslip.io:HTTP_PORT/ opens a Knative Service.
# Usage: kind-cluster.sh NAME NODE_IMAGE HTTP_PORT NODE_PORT
set -euo pipefail

name=$1
image=$2
http_port=$3
node_port=$4

if kind get clusters 2>/dev/null | grep -qx "$name"; then
	echo "==> kind cluster '$name' exists: using it (kubectl context kind-$name)"
	exit 0
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
