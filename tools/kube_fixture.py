"""A fixture Kubernetes API: just enough list, watch, get, create, update and patch for Knative's broker ingress,
broker filter and IMC dispatcher to start and route one Broker's events (`make run KNATIVE=real`).

It is not a kube-apiserver (none can be installed here: docs/knative-real.md) and runs no controller. It serves
the objects Knative's controllers would have written, built by `cluster_objects` below from the project's own
config/broker.yaml, config/trigger.yaml and config/tracing, each status field cited to the controller source
(knative/eventing at the pinned tag) that writes it. What the binaries write back (Leases, Events, the IMC
dispatcher's subscriber status) is kept in memory and served again, so leader election and informers behave.
"""

from __future__ import annotations

import copy
import itertools
import json
import re
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml

SYSTEM_NAMESPACE = "knative-eventing"
# The resources the four binaries ask for (measured: KubeFixture.asked after a run; tests/knative_real checks
# that they ask for no other), with their kinds. A typed client refuses a list whose kind it does not know, so
# any other resource is answered 404 rather than with a made-up kind. Leases are here for leader election, which
# `--disable-ha` turns off in the dispatcher (tools/knative_real.py).
KINDS = {
    "configmaps": "ConfigMap",
    "secrets": "Secret",
    "leases": "Lease",
    "brokers": "Broker",
    "triggers": "Trigger",
    "eventtypes": "EventType",
    "eventpolicies": "EventPolicy",
    "subscriptions": "Subscription",
    "inmemorychannels": "InMemoryChannel",
}
# The Kubernetes version /version reports: the kind node image mk/cluster.mk pins (v1.35), which knative.dev/pkg's
# minimum-version check accepts.
KUBERNETES_VERSION = {"major": "1", "minor": "35", "gitVersion": "v1.35.0", "platform": "linux/amd64"}


@dataclass
class Store:
    """Objects by (api prefix, resource) and (namespace, name), with one resourceVersion counter for all."""

    objects: dict[tuple[str, str], dict[tuple[str, str], dict[str, Any]]] = field(default_factory=dict)
    events: list[tuple[int, str, str, str, dict[str, Any]]] = field(default_factory=list)
    changed: threading.Condition = field(default_factory=threading.Condition)
    versions: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    version: int = 0

    def put(self, api: str, resource: str, obj: dict[str, Any], event: str = "ADDED") -> dict[str, Any]:
        with self.changed:
            metadata = obj.setdefault("metadata", {})
            metadata.setdefault("uid", str(uuid.uuid4()))
            metadata.setdefault("generation", 1)
            metadata.setdefault("creationTimestamp", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
            self.version = next(self.versions)
            metadata["resourceVersion"] = str(self.version)
            key = (metadata.get("namespace", ""), metadata["name"])
            self.objects.setdefault((api, resource), {})[key] = obj
            self.events.append((self.version, api, resource, event, copy.deepcopy(obj)))
            self.changed.notify_all()
            return obj

    def get(self, api: str, resource: str, namespace: str, name: str) -> dict[str, Any] | None:
        with self.changed:
            return self.objects.get((api, resource), {}).get((namespace, name))

    def items(self, api: str, resource: str, namespace: str | None) -> list[dict[str, Any]]:
        with self.changed:
            found = self.objects.get((api, resource), {})
            return [copy.deepcopy(o) for (ns, _), o in sorted(found.items()) if namespace in (None, ns)]


def _label_matches(labels: dict[str, str], selector: str) -> bool:
    """Kubernetes label selector syntax: k=v, k==v, k!=v, k, !k, k in (a,b), k notin (a,b)."""
    for raw in re.split(r",(?![^(]*\))", selector):
        term = raw.strip()
        if not term:
            continue
        if match := re.fullmatch(r"(\S+)\s+(in|notin)\s+\((.*)\)", term):
            key, operator, values = match[1], match[2], {v.strip() for v in match[3].split(",")}
            if (labels.get(key) in values) != (operator == "in"):
                return False
        elif "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key) == value:
                return False
        elif "=" in term:
            key, value = term.replace("==", "=").split("=", 1)
            if labels.get(key) != value:
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


def _field_matches(obj: dict[str, Any], selector: str) -> bool:
    for term in filter(None, selector.split(",")):
        path, _, value = term.replace("==", "=").partition("=")
        actual: Any = obj
        for part in path.split("."):
            actual = actual.get(part, "") if isinstance(actual, dict) else ""
        if str(actual) != value:
            return False
    return True


def _json_patch(obj: dict[str, Any], operations: list[dict[str, Any]]) -> None:
    """RFC 6902 add, replace and remove: what knative.dev/pkg's duck.CreatePatch produces."""
    for operation in operations:
        parts = [p.replace("~1", "/").replace("~0", "~") for p in operation["path"].split("/")[1:]]
        parent: Any = obj
        for part in parts[:-1]:
            parent = parent[int(part)] if isinstance(parent, list) else parent.setdefault(part, {})
        last = parts[-1]
        if operation["op"] == "remove":
            del parent[int(last) if isinstance(parent, list) else last]
        elif isinstance(parent, list):
            index = len(parent) if last == "-" else int(last)
            if operation["op"] == "add":
                parent.insert(index, operation["value"])
            else:
                parent[index] = operation["value"]
        else:
            parent[last] = operation["value"]


def _merge_patch(target: dict[str, Any], patch: dict[str, Any]) -> None:
    """RFC 7386 merge patch (also what a strategic merge patch of plain fields amounts to)."""
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge_patch(target[key], value)
        else:
            target[key] = value


_PATH = re.compile(
    r"^/(?P<api>api/v1|apis/[^/]+/[^/]+)(?:/namespaces/(?P<namespace>[^/]+))?/(?P<resource>[^/]+)"
    r"(?:/(?P<name>[^/]+))?(?:/(?P<subresource>status))?$"
)


def _status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "reason": reason,
        "message": message,
        "code": code,
    }


class KubeFixture:
    """The fixture API on `host`:`port` (0: any free port); `kubeconfig` writes a kubeconfig pointing at it."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.store = Store()
        self.closing = threading.Event()
        self.asked: set[str] = set()
        """Each resource a client asked for ("<api>/<resource>"), served or not: what the binaries need."""
        self._server = ThreadingHTTPServer((host, port), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> KubeFixture:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.closing.set()
        with self.store.changed:
            self.store.changed.notify_all()
        self._server.shutdown()
        self._server.server_close()

    def kubeconfig(self, path: Path) -> Path:
        # JSON is YAML: client-go's clientcmd reads it as a kubeconfig. No credentials: the fixture asks for none.
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "kube-fixture", "cluster": {"server": self.url}}],
            "users": [{"name": "kube-fixture", "user": {}}],
            "contexts": [{"name": "kube-fixture", "context": {"cluster": "kube-fixture", "user": "kube-fixture"}}],
            "current-context": "kube-fixture",
        }
        path.write_text(json.dumps(config, indent=2))
        return path

    def add(self, api: str, resource: str, obj: dict[str, Any]) -> dict[str, Any]:
        return self.store.put(api, resource, obj)


def _handler(fixture: KubeFixture) -> type[BaseHTTPRequestHandler]:
    store = fixture.store

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _reply(self, code: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _body(self) -> Any:
            """The JSON body; None (after answering 415) for client-go's protobuf, which built-in types (Leases,
            Events) are written in and which this fixture does not decode."""
            length = int(self.headers.get("Content-Length") or 0)
            data = self.rfile.read(length)
            if "json" not in self.headers.get("Content-Type", "application/json"):
                message = f"the fixture API reads JSON only, not {self.headers.get('Content-Type')}"
                self._reply(415, _status(415, "UnsupportedMediaType", message))
                return None
            return json.loads(data or b"{}")

        def _route(self) -> tuple[re.Match[str] | None, dict[str, list[str]]]:
            parts = urlsplit(self.path)
            return _PATH.match(parts.path), parse_qs(parts.query)

        def do_GET(self) -> None:
            path = urlsplit(self.path).path
            if path == "/version":
                self._reply(200, KUBERNETES_VERSION)
                return
            match, query = self._route()
            if match is not None:
                fixture.asked.add(f"{match['api']}/{match['resource']}")
            if match is None or match["resource"] not in KINDS:
                self._reply(404, _status(404, "NotFound", f"the fixture API does not serve {path}"))
                return
            api, resource, namespace, name = match["api"], match["resource"], match["namespace"], match["name"]
            if name:
                obj = store.get(api, resource, namespace or "", name)
                if obj is None:
                    self._reply(404, _status(404, "NotFound", f'{resource} "{name}" not found'))
                else:
                    self._reply(200, obj)
                return
            labels = query.get("labelSelector", [""])[0]
            fields = query.get("fieldSelector", [""])[0]

            def selected(obj: dict[str, Any]) -> bool:
                return _label_matches(obj["metadata"].get("labels") or {}, labels) and _field_matches(obj, fields)

            if query.get("watch", [""])[0] in ("true", "1"):
                self._watch(api, resource, namespace, query, selected)
                return
            with store.changed:
                items = [o for o in store.items(api, resource, namespace) if selected(o)]
                version = store.version
            api_version = api.removeprefix("apis/").removeprefix("api/")
            self._reply(
                200,
                {
                    "apiVersion": api_version,
                    "kind": f"{KINDS[resource]}List",
                    "metadata": {"resourceVersion": str(version)},
                    "items": items,
                },
            )

        def _watch(
            self, api: str, resource: str, namespace: str | None, query: dict[str, list[str]], selected: Any
        ) -> None:
            """Chunked watch events from the requested resourceVersion on; with sendInitialEvents (client-go's
            WatchList, on by default since 1.35) first each object as ADDED, then the bookmark that ends them."""
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            timeout = float(query.get("timeoutSeconds", ["600"])[0])
            deadline = time.monotonic() + timeout

            def send(event: dict[str, Any]) -> None:
                data = json.dumps(event).encode() + b"\n"
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.flush()

            try:
                with store.changed:
                    since = int(query.get("resourceVersion", ["0"])[0] or 0)
                    if query.get("sendInitialEvents", [""])[0] == "true":
                        for obj in store.items(api, resource, namespace):
                            if selected(obj):
                                send({"type": "ADDED", "object": obj})
                        since = store.version
                        bookmark_metadata = {
                            "resourceVersion": str(since),
                            "annotations": {"k8s.io/initial-events-end": "true"},
                        }
                        send({"type": "BOOKMARK", "object": {"kind": KINDS[resource], "metadata": bookmark_metadata}})
                    while not fixture.closing.is_set() and time.monotonic() < deadline:
                        for version, e_api, e_resource, kind, obj in store.events:
                            namespace_ok = namespace in (None, obj["metadata"].get("namespace", ""))
                            wanted = version > since and (e_api, e_resource) == (api, resource) and namespace_ok
                            if wanted and selected(obj):
                                send({"type": kind, "object": obj})
                        since = store.version
                        store.changed.wait(min(5.0, max(0.0, deadline - time.monotonic())))
                self.wfile.write(b"0\r\n\r\n")
            except OSError:  # the binary closed the watch (it restarts watches itself)
                pass
            self.close_connection = True

        def do_POST(self) -> None:
            match, _ = self._route()
            if match is None or match["resource"] not in KINDS or match["name"]:
                self._reply(404, _status(404, "NotFound", f"the fixture API does not serve POST {self.path}"))
                return
            obj = self._body()
            if obj is None:
                return
            obj.setdefault("metadata", {})
            if match["namespace"]:
                obj["metadata"]["namespace"] = match["namespace"]
            if "name" not in obj["metadata"]:
                obj["metadata"]["name"] = obj["metadata"].get("generateName", "object-") + uuid.uuid4().hex[:5]
            key = (match["namespace"] or "", obj["metadata"]["name"])
            if store.get(match["api"], match["resource"], *key) is not None:
                self._reply(409, _status(409, "AlreadyExists", f"{match['resource']} {key[1]!r} already exists"))
                return
            self._reply(201, store.put(match["api"], match["resource"], obj))

        def do_PUT(self) -> None:
            match, _ = self._route()
            if match is None or match["resource"] not in KINDS or not match["name"]:
                self._reply(404, _status(404, "NotFound", f"the fixture API does not serve PUT {self.path}"))
                return
            current = store.get(match["api"], match["resource"], match["namespace"] or "", match["name"])
            obj = self._body()
            if obj is None:
                return
            if current is None:
                self._reply(404, _status(404, "NotFound", f"{match['resource']} {match['name']!r} not found"))
                return
            if obj.get("metadata", {}).get("resourceVersion") not in (None, "", current["metadata"]["resourceVersion"]):
                self._reply(409, _status(409, "Conflict", "the object has been modified; apply your changes again"))
                return
            obj["metadata"]["uid"] = current["metadata"]["uid"]
            self._reply(200, store.put(match["api"], match["resource"], obj, "MODIFIED"))

        def do_PATCH(self) -> None:
            match, _ = self._route()
            if match is None or match["resource"] not in KINDS or not match["name"]:
                self._reply(404, _status(404, "NotFound", f"the fixture API does not serve PATCH {self.path}"))
                return
            current = store.get(match["api"], match["resource"], match["namespace"] or "", match["name"])
            if current is None:
                self._reply(404, _status(404, "NotFound", f"{match['resource']} {match['name']!r} not found"))
                return
            patched = copy.deepcopy(current)
            patch = self._body()
            if patch is None:
                return
            if self.headers.get("Content-Type", "").startswith("application/json-patch+json"):
                _json_patch(patched, patch)
            else:
                _merge_patch(patched, patch)
            self._reply(200, store.put(match["api"], match["resource"], patched, "MODIFIED"))

        def log_message(self, format: str, *args: Any) -> None:
            pass  # every informer's request would flood the demo's output

    return Handler


@dataclass(frozen=True)
class Addresses:
    """Where each part listens, as the Services and Routes of a cluster would resolve them."""

    broker_ingress: str
    """The broker ingress's base URL (in a cluster: http://broker-ingress.knative-eventing.svc.cluster.local)."""
    broker_filter: str
    """The broker filter's base URL (in a cluster: http://broker-filter.knative-eventing.svc.cluster.local)."""
    channel: str
    """The InMemoryChannel's URL, which the IMC dispatcher serves by its host."""
    subscriber: str
    """second's queue-proxy (in a cluster: second's Route, http://second.default.svc.cluster.local)."""
    otlp_endpoint: str
    """Where the components export spans (config/tracing's tracing-endpoint, rewritten to the demo's receiver)."""


def _eventing_configmap(name: str, data: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": SYSTEM_NAMESPACE},
        "data": data,
    }


def _ready(*types: str) -> list[dict[str, str]]:
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return [{"type": t, "status": "True", "lastTransitionTime": now} for t in types]


def observability_config(config_dir: Path, namespace: str) -> dict[str, Any]:
    """config/tracing's config-observability for `namespace` (knative-serving or knative-eventing)."""
    for document in yaml.safe_load_all((config_dir / "tracing" / "config-observability.yaml").read_text()):
        if document and document["metadata"]["namespace"] == namespace:
            return dict(document)
    raise LookupError(f"config/tracing/config-observability.yaml has no ConfigMap in {namespace}")


def cluster_objects(fixture: KubeFixture, config_dir: Path, addresses: Addresses) -> None:
    """The objects Knative's installation and controllers would have put in the API for config/'s Broker and
    Trigger, with each controller-written field cited to the eventing source (knative-v1.22.2) that writes it."""
    broker = yaml.safe_load((config_dir / "broker.yaml").read_text())
    trigger = yaml.safe_load((config_dir / "trigger.yaml").read_text())
    namespace, broker_name = broker["metadata"]["namespace"], broker["metadata"]["name"]
    trigger_name = trigger["metadata"]["name"]

    # The ConfigMaps eventing-core.yaml installs. config-observability is config/tracing's (as `make cluster`
    # applies it) with its endpoint rewritten to the demo's receiver; the others hold the installed defaults
    # (an empty data falls back to the compiled-in defaults; config-logging's zap config is the installed one).
    observability = observability_config(config_dir, SYSTEM_NAMESPACE)
    observability["data"] = {**observability["data"], "tracing-endpoint": addresses.otlp_endpoint}
    fixture.add("api/v1", "configmaps", observability)
    zap_config = {
        "level": "info",
        "development": False,
        "outputPaths": ["stdout"],
        "errorOutputPaths": ["stderr"],
        "encoding": "json",
        "encoderConfig": {
            "timeKey": "ts",
            "levelKey": "level",
            "nameKey": "logger",
            "callerKey": "caller",
            "messageKey": "msg",
            "stacktraceKey": "stacktrace",
            "lineEnding": "",
            "levelEncoder": "",
            "timeEncoder": "iso8601",
            "durationEncoder": "",
            "callerEncoder": "",
        },
    }
    fixture.add(
        "api/v1", "configmaps", _eventing_configmap("config-logging", {"zap-logger-config": json.dumps(zap_config)})
    )
    fixture.add("api/v1", "configmaps", _eventing_configmap("config-features", {}))
    fixture.add("api/v1", "configmaps", _eventing_configmap("config-leader-election", {}))

    # The Trigger as config/trigger.yaml declares it. Its UID is part of the filter's path, so it is fixed first.
    trigger["metadata"]["uid"] = str(uuid.uuid4())
    trigger_uid = trigger["metadata"]["uid"]
    trigger["status"] = {
        "observedGeneration": 1,
        # pkg/reconciler/broker/trigger/trigger.go ReconcileKind (:89): every condition of triggerCondSet
        # (pkg/apis/eventing/v1/trigger_lifecycle.go:29) True once the Broker, Subscription and subscriber are.
        "conditions": _ready(
            "Ready",
            "BrokerReady",
            "DependencyReady",
            "SubscriberResolved",
            "SubscriptionReady",
            "DeadLetterSinkResolved",
            "OIDCIdentityCreated",
        ),
        # pkg/reconciler/broker/trigger/trigger.go:148 (ReconcileKind): the subscriber ref (Service second)
        # resolved to its address, http://second.default.svc.cluster.local.
        "subscriberUri": addresses.subscriber,
        # The dead-letter sink (config/dead-letter.yaml's Service) is not started on this path, so no
        # deadLetterSinkUri: the filter then retries and gives up, as it would with the sink unresolved.
    }
    fixture.add("apis/eventing.knative.dev/v1", "triggers", trigger)

    # The InMemoryChannel the MT channel-based broker creates for the Broker: pkg/reconciler/broker/broker.go:130
    # (named by pkg/reconciler/broker/resources/channel.go:25, <broker>-kne-trigger, owned by the Broker). Its
    # one subscriber is the Trigger's Subscription (pkg/reconciler/subscription/subscription.go:527
    # updateChannelAddSubscriptionSpec), whose subscriber is the filter's /triggers/<ns>/<trigger>/<uid>
    # (pkg/reconciler/broker/trigger/trigger.go:224, path.Generate).
    channel_name = f"{broker_name}-kne-trigger"
    filter_uri = f"{addresses.broker_filter}/triggers/{namespace}/{trigger_name}/{trigger_uid}"
    subscriber_uid = str(uuid.uuid4())
    channel: dict[str, Any] = {
        "apiVersion": "messaging.knative.dev/v1",
        "kind": "InMemoryChannel",
        "metadata": {
            "name": channel_name,
            "namespace": namespace,
            "ownerReferences": [
                {
                    "apiVersion": "eventing.knative.dev/v1",
                    "kind": "Broker",
                    "name": broker_name,
                    "uid": "",
                    "controller": True,
                }
            ],
            # pkg/reconciler/broker/broker.go:519 TriggerChannelLabels.
            "labels": {"eventing.knative.dev/broker": broker_name, "eventing.knative.dev/brokerEverything": "true"},
            # pkg/reconciler/broker/broker.go:117 (channelAnnotations): the IMC dispatcher serves only
            # cluster-scoped channels unless it runs namespaced.
            "annotations": {"eventing.knative.dev/scope": "cluster"},
        },
        "spec": {"subscribers": [{"uid": subscriber_uid, "generation": 1, "subscriberUri": filter_uri}]},
        "status": {
            # pkg/reconciler/inmemorychannel/controller/inmemorychannel.go ReconcileKind: ObservedGeneration
            # (IsReady, in_memory_channel_lifecycle.go:96, compares it) and, :262 httpAddress, the address of
            # the channel's Service, http://<name>-kn-channel.<ns>.svc.cluster.local (pkg/channel/references.go:26),
            # by whose host the dispatcher's multichannelfanout handler picks the channel.
            "observedGeneration": 1,
            # Every condition of imcCondSet (pkg/apis/messaging/v1/in_memory_channel_lifecycle.go:30) True.
            "conditions": _ready(
                "Ready",
                "Addressable",
                "ChannelServiceReady",
                "DispatcherReady",
                "EndpointsReady",
                "ServiceReady",
                "DeadLetterSinkResolved",
                "EventPoliciesReady",
            ),
            "address": {"url": addresses.channel},
            "addresses": [{"url": addresses.channel}],
        },
    }
    fixture.add("apis/messaging.knative.dev/v1", "inmemorychannels", channel)

    # The Broker as config/broker.yaml declares it.
    broker["status"] = {
        "observedGeneration": 1,
        # pkg/reconciler/broker/broker.go ReconcileKind (:101): every condition of brokerCondSet
        # (pkg/apis/eventing/v1/broker_lifecycle.go:38) True once its channel, ingress and filter are.
        "conditions": _ready(
            "Ready",
            "Addressable",
            "FilterReady",
            "IngressReady",
            "TriggerChannelReady",
            "EventPoliciesReady",
            "DeadLetterSinkResolved",
        ),
        # pkg/reconciler/broker/broker.go:542 (httpAddress): the ingress Service's URL, /<namespace>/<broker>.
        "address": {"url": f"{addresses.broker_ingress}/{namespace}/{broker_name}"},
        "annotations": {
            # pkg/reconciler/broker/broker.go:171 (ReconcileKind): the trigger channel's address, under
            # eventing.BrokerChannelAddressStatusAnnotationKey, where the ingress sends every event.
            "knative.dev/channelAddress": addresses.channel,
        },
    }
    channel["metadata"]["ownerReferences"][0]["uid"] = broker["metadata"].setdefault("uid", str(uuid.uuid4()))
    fixture.add("apis/eventing.knative.dev/v1", "brokers", broker)
