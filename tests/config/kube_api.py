"""A stand-in Kubernetes API server for the cluster scripts' tests: no cluster runs here, so the pinned kubectl
talks over real HTTP on loopback to this, which answers discovery and serves the objects a test gives it.

Only what kubectl's `get` needs: `/readyz`, the discovery documents of the groups below, GET of one object and
list with a `labelSelector` of `key=value` terms. Anything else is a 404 Status, as a real API server answers.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml

Manifest = dict[str, Any]

# group/version -> (resource, kind, short names): every kind config/ and the operator component hold.
_RESOURCES: dict[str, list[tuple[str, str, list[str]]]] = {
    "v1": [
        ("configmaps", "ConfigMap", ["cm"]),
        ("pods", "Pod", ["po"]),
        ("services", "Service", ["svc"]),
        ("namespaces", "Namespace", ["ns"]),
    ],
    "apps/v1": [("deployments", "Deployment", ["deploy"])],
    "serving.knative.dev/v1": [("services", "Service", ["ksvc"])],
    "eventing.knative.dev/v1": [("brokers", "Broker", []), ("triggers", "Trigger", [])],
    "opentelemetry.io/v1alpha1": [("instrumentations", "Instrumentation", ["otelinst"])],
}
_CLUSTER_SCOPED = {"namespaces"}


def _plural(kind: str, api_version: str) -> str:
    return next(resource for resource, k, _ in _RESOURCES[api_version] if k == kind)


def _prefix(api_version: str) -> str:
    return "/api/v1" if api_version == "v1" else f"/apis/{api_version}"


def _discovery(path: str) -> Manifest | None:
    if path == "/api":
        return {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}
    if path == "/apis":
        groups = [gv for gv in _RESOURCES if "/" in gv]
        return {
            "kind": "APIGroupList",
            "apiVersion": "v1",
            "groups": [
                {
                    "name": gv.split("/")[0],
                    "versions": [{"groupVersion": gv, "version": gv.split("/")[1]}],
                    "preferredVersion": {"groupVersion": gv, "version": gv.split("/")[1]},
                }
                for gv in groups
            ],
        }
    for gv, resources in _RESOURCES.items():
        if path == _prefix(gv):
            return {
                "kind": "APIResourceList",
                "apiVersion": "v1",
                "groupVersion": gv,
                "resources": [
                    {
                        "name": name,
                        "singularName": kind.lower(),
                        "namespaced": name not in _CLUSTER_SCOPED,
                        "kind": kind,
                        "verbs": ["get", "list"],
                        "shortNames": short,
                    }
                    for name, kind, short in resources
                ],
            }
    return None


class KubeApi:
    """The objects served, by API path (`/api/v1/namespaces/default/configmaps/x`)."""

    def __init__(self, objects: list[Manifest]) -> None:
        self.objects: dict[str, Manifest] = {}
        for obj in objects:
            meta = obj["metadata"]
            plural = _plural(obj["kind"], obj["apiVersion"])
            self.objects[f"{_prefix(obj['apiVersion'])}/namespaces/{meta['namespace']}/{plural}/{meta['name']}"] = obj

    def answer(self, path: str, query: dict[str, list[str]]) -> tuple[int, Manifest | str]:
        if path in ("/readyz", "/livez", "/healthz"):
            return 200, "ok"
        found = _discovery(path)
        if found is not None:
            return 200, found
        if path in self.objects:
            return 200, self.objects[path]
        selector = dict(term.split("=", 1) for term in query.get("labelSelector", [""])[0].split(",") if term)
        items = [
            obj
            for key, obj in self.objects.items()
            if key.rsplit("/", 1)[0] == path
            and all(obj["metadata"].get("labels", {}).get(k) == v for k, v in selector.items())
        ]
        if items or any(key.rsplit("/", 1)[0] == path for key in self.objects) or path.endswith("/pods"):
            kind = items[0]["kind"] if items else "Pod"
            return 200, {"kind": f"{kind}List", "apiVersion": "v1", "metadata": {}, "items": items}
        name = path.rsplit("/", 1)[-1]
        return 404, {
            "kind": "Status",
            "apiVersion": "v1",
            "status": "Failure",
            "message": f'"{name}" not found',
            "reason": "NotFound",
            "code": 404,
        }


def _handler(api: KubeApi) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urlsplit(self.path)
            status, body = api.answer(url.path, parse_qs(url.query))
            data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("content-type", "text/plain" if isinstance(body, str) else "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: the tests read kubectl's output, not the server's."""

    return Handler


@contextmanager
def serve(objects: list[Manifest], kubeconfig: Path) -> Iterator[Path]:
    """Serve `objects` on a free loopback port and write `kubeconfig`, whose context kind-knative-tracing points
    at it; yields the kubeconfig's path."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(KubeApi(objects)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": f"http://127.0.0.1:{server.server_port}"}}],
                "contexts": [{"name": "kind-knative-tracing", "context": {"cluster": "c", "user": "u"}}],
                "users": [{"name": "u", "user": {}}],
                "current-context": "kind-knative-tracing",
            }
        )
    )
    try:
        yield kubeconfig
    finally:
        server.shutdown()
        server.server_close()
