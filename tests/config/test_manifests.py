"""config/ renders, every core object passes the Kubernetes schema (strict), every Knative object passes its
CRD schema (made strict here) and the rules Knative's webhooks add on top of the schema."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import kubernetes_validate
import pytest

from tests.config.conftest import ROOT, Manifest, make_value

SCHEMAS = ROOT / "tests" / "fixtures" / "knative"
"""Knative's CRD openAPIV3Schemas as JSON Schema (serving.knative.dev/v1 Service, eventing.knative.dev/v1
Broker and Trigger), copied from the Knative release sources."""

KNATIVE_SCHEMAS = {
    ("serving.knative.dev/v1", "Service"): "service-serving-v1.json",
    ("eventing.knative.dev/v1", "Broker"): "broker-eventing-v1.json",
    ("eventing.knative.dev/v1", "Trigger"): "trigger-eventing-v1.json",
}
CORE_API_VERSIONS = ("v1", "apps/v1")

# What Knative's webhook accepts in a revision's container securityContext (without extra feature flags).
KNATIVE_CONTAINER_SECURITY_FIELDS = {
    "allowPrivilegeEscalation",
    "capabilities",
    "readOnlyRootFilesystem",
    "runAsGroup",
    "runAsNonRoot",
    "runAsUser",
    "seccompProfile",
}
KNATIVE_RESERVED_ENV = {"PORT", "K_SERVICE", "K_CONFIGURATION", "K_REVISION"}
APP_UID = 65532
"""The UID the Dockerfiles create and run as."""


def strict(schema: Any) -> Any:
    """The schema with unknown fields refused wherever the CRD lists the fields (as the API server prunes them,
    a typo would vanish silently on a real cluster; here it fails)."""
    if isinstance(schema, dict):
        out = {key: strict(value) for key, value in schema.items()}
        if (
            "properties" in out
            and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")
        ):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    return schema


def knative_validator(doc: Manifest) -> jsonschema.Draft7Validator:
    schema = json.loads((SCHEMAS / KNATIVE_SCHEMAS[(doc["apiVersion"], doc["kind"])]).read_text())
    schema = strict(schema)
    # metadata is `type: object` in the CRD; the API server checks it, so check what it must hold here.
    schema["properties"]["metadata"] = {
        "type": "object",
        "required": ["name", "namespace"],
        "properties": {
            "name": {"type": "string", "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"},
            "namespace": {"type": "string"},
            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
        },
        "additionalProperties": False,
    }
    schema["properties"]["apiVersion"] = {"const": doc["apiVersion"]}
    schema["properties"]["kind"] = {"const": doc["kind"]}
    # A Broker may leave spec out (the namespace's default class and config apply); the others need it.
    needed = {"apiVersion", "kind", "metadata"} | ({"spec"} if doc["kind"] != "Broker" else set())
    schema["required"] = sorted({*schema.get("required", []), *needed})
    return jsonschema.Draft7Validator(schema)


def kubernetes_version() -> str:
    """The Kubernetes version of the pinned kind node image (kindest/node:v1.34.0 -> 1.34.0)."""
    return make_value("KIND_NODE_IMAGE").rsplit(":v", 1)[1].split("@")[0]


def test_config_renders_the_whole_demo(rendered: list[Manifest]) -> None:
    kinds = sorted(f"{doc['apiVersion']}/{doc['kind']}/{doc['metadata']['name']}" for doc in rendered)
    assert kinds == sorted(
        [
            "apps/v1/Deployment/jaeger",
            "eventing.knative.dev/v1/Broker/default",
            "eventing.knative.dev/v1/Trigger/first-to-second",
            "serving.knative.dev/v1/Service/dead-letter",
            "serving.knative.dev/v1/Service/first",
            "serving.knative.dev/v1/Service/second",
            "v1/ConfigMap/config-observability",
            "v1/ConfigMap/config-observability",
            "v1/ConfigMap/jaeger-config",
            "v1/Namespace/observability",
            "v1/Service/jaeger-collector",
            "v1/Service/jaeger-query",
        ]
    )
    # Every namespaced object says where it goes: no object may land in whatever namespace kubectl points at.
    assert all(doc["metadata"].get("namespace") for doc in rendered if doc["kind"] != "Namespace")


def test_core_objects_pass_the_kubernetes_schema_strictly(
    rendered: list[Manifest], legacy_rendered: list[Manifest]
) -> None:
    version = kubernetes_version()
    core = [doc for doc in rendered + legacy_rendered if doc["apiVersion"] in CORE_API_VERSIONS]
    assert len(core) >= 9
    for doc in core:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{doc['kind']} {doc['metadata']['name']}: {exc.message} at {list(exc.path)}")
    assert {doc["apiVersion"] for doc in rendered} <= {*CORE_API_VERSIONS, *(k[0] for k in KNATIVE_SCHEMAS)}


def test_the_kubernetes_schema_check_rejects_a_typo(find: Callable[[str, str], Manifest]) -> None:
    deployment = copy.deepcopy(find("apps/Deployment", "jaeger"))
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {"httpGet": {"path": "/"}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, kubernetes_version(), strict=True)


def test_knative_objects_pass_their_crd_schema(rendered: list[Manifest]) -> None:
    knative = [doc for doc in rendered if (doc["apiVersion"], doc["kind"]) in KNATIVE_SCHEMAS]
    assert len(knative) == 5
    for doc in knative:
        errors = [f"{list(e.absolute_path)}: {e.message}" for e in knative_validator(doc).iter_errors(doc)]
        assert not errors, f"{doc['kind']} {doc['metadata']['name']}: {errors}"


@pytest.mark.parametrize(
    ("kind", "name", "path", "value"),
    [
        ("serving.knative.dev/Service", "first", ["spec", "template", "spec", "containers"], {"image": "x"}),
        ("serving.knative.dev/Service", "first", ["spec", "template", "spec", "containerConcurency"], 1),
        ("eventing.knative.dev/Trigger", "first-to-second", ["spec", "delivery", "retry"], "3"),
        ("eventing.knative.dev/Trigger", "first-to-second", ["spec", "filters"], {"type": "x"}),
    ],
)
def test_the_crd_schema_check_rejects_wrong_types_and_unknown_fields(
    find: Callable[[str, str], Manifest], kind: str, name: str, path: list[str], value: object
) -> None:
    doc = copy.deepcopy(find(kind, name))
    target = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    assert list(knative_validator(doc).iter_errors(doc)), f"a {path} of {value!r} should not validate"


@pytest.mark.parametrize("name", ["first", "second"])
def test_knative_services_follow_knative_rules_and_are_hardened(
    find: Callable[[str, str], Manifest], name: str
) -> None:
    template = find("serving.knative.dev/Service", name)["spec"]["template"]
    pod = template["spec"]
    # Knative's webhook: one container, one port named http1 or h2c, no reserved env, pod securityContext off.
    assert len(pod["containers"]) == 1
    assert "securityContext" not in pod
    (container,) = pod["containers"]
    (port,) = container["ports"]
    assert port["name"] in ("http1", "h2c")
    env = {item["name"]: item.get("value") for item in container["env"]}
    assert not KNATIVE_RESERVED_ENV & env.keys(), "Knative sets PORT and K_* itself and rejects them"
    assert container["imagePullPolicy"] == "IfNotPresent"
    probe = container["readinessProbe"]["httpGet"]
    assert probe["path"] == "/healthz"
    assert probe.get("port", port["containerPort"]) == port["containerPort"]
    resources = container["resources"]
    for section in ("requests", "limits"):
        assert {"cpu", "memory"} <= resources[section].keys(), f"{name}: {section} needs cpu and memory"
    security = container["securityContext"]
    assert set(security) <= KNATIVE_CONTAINER_SECURITY_FIELDS
    assert security["runAsNonRoot"] is True
    assert security["runAsUser"] == APP_UID
    assert security["allowPrivilegeEscalation"] is False
    assert security["readOnlyRootFilesystem"] is True
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    # Keeps the activator in the path, so every trace shows it (see README, "Knative on kind").
    assert template["metadata"]["annotations"]["autoscaling.knative.dev/target-burst-capacity"] == "-1"


@pytest.mark.parametrize("namespace", ["knative-serving", "knative-eventing"])
def test_knative_tracing_is_on_at_full_sampling(rendered: list[Manifest], namespace: str) -> None:
    (config,) = [
        doc
        for doc in rendered
        if doc["kind"] == "ConfigMap"
        and doc["metadata"]["name"] == "config-observability"
        and doc["metadata"]["namespace"] == namespace
    ]
    data = config["data"]
    assert data["tracing-protocol"] in ("http/protobuf", "grpc")
    assert float(data["tracing-sampling-rate"]) == 1.0
    endpoint = urlsplit(data["tracing-endpoint"])
    if data["tracing-protocol"] == "http/protobuf":
        assert endpoint.path == "/v1/traces", "OTLP/HTTP endpoints in Knative name the full path"
    assert endpoint.scheme == "http"


@pytest.mark.parametrize("namespace", ["knative-serving", "knative-eventing"])
def test_the_legacy_overlay_sets_zipkin_tracing_for_knative_1_18(
    legacy_rendered: list[Manifest], namespace: str
) -> None:
    (config,) = [
        doc
        for doc in legacy_rendered
        if doc["metadata"]["name"] == "config-tracing" and doc["metadata"]["namespace"] == namespace
    ]
    data = config["data"]
    assert data["backend"] == "zipkin"
    assert float(data["sample-rate"]) == 1.0
    assert urlsplit(data["zipkin-endpoint"]).path == "/api/v2/spans"


def _propagators(docs: list[Manifest]) -> dict[str, str | None]:
    """Each Knative Service's OTEL_PROPAGATORS (None: unset, OpenTelemetry's default tracecontext,baggage)."""
    found: dict[str, str | None] = {}
    for doc in docs:
        if doc["apiVersion"] == "serving.knative.dev/v1" and doc["kind"] == "Service":
            env = {e["name"]: e.get("value") for e in doc["spec"]["template"]["spec"]["containers"][0].get("env", [])}
            found[doc["metadata"]["name"]] = env.get("OTEL_PROPAGATORS")
    return found


def test_the_services_propagate_w3c_only_by_default(rendered: list[Manifest]) -> None:
    """Knative >= 1.19 reads and writes W3C only: the Services keep OpenTelemetry's default."""
    assert _propagators(rendered) == {"first": None, "second": None, "dead-letter": None}


def test_the_legacy_component_switches_b3_on_before_w3c(legacy_rendered: list[Manifest]) -> None:
    """Knative Serving <= 1.18 wrote B3 as well as W3C. b3multi comes first: the last propagator that finds a
    context wins, so W3C wins when both arrive and disagree."""
    both = "b3multi_strict,tracecontext_strict,baggage"
    assert _propagators(legacy_rendered) == {"first": both, "second": both, "dead-letter": both}


def test_jaeger_is_v2_pinned_and_listens_on_every_protocol(find: Callable[[str, str], Manifest]) -> None:
    import yaml

    container = find("apps/Deployment", "jaeger")["spec"]["template"]["spec"]["containers"][0]
    repository, tag = container["image"].rsplit(":", 1)
    assert repository == "jaegertracing/jaeger"
    assert tag == make_value("JAEGER_VERSION")
    assert tag.split(".")[0] == "2"
    assert {p["containerPort"] for p in container["ports"]} == {4317, 4318, 9411, 16686}
    config = yaml.safe_load(find("ConfigMap", "jaeger-config")["data"]["config.yaml"])
    receivers = config["receivers"]
    assert receivers["otlp"]["protocols"]["grpc"]["endpoint"] == "0.0.0.0:4317"
    assert receivers["otlp"]["protocols"]["http"]["endpoint"] == "0.0.0.0:4318"
    assert receivers["zipkin"]["endpoint"] == "0.0.0.0:9411"
    assert config["extensions"]["jaeger_query"]["http"]["endpoint"] == "0.0.0.0:16686"
    assert set(config["service"]["pipelines"]["traces"]["receivers"]) == {"otlp", "zipkin"}
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True and security["allowPrivilegeEscalation"] is False


def test_the_local_broker_still_reads_config(tmp_path: Path) -> None:
    """config/ now holds more than Brokers and Triggers at its top level; the local broker must still load it."""
    from broker.triggers import load_routing

    routing = load_routing(ROOT / "config", {"second": "http://127.0.0.1:8081"})
    assert routing.brokers == frozenset({("default", "default")})
    (trigger,) = routing.triggers
    assert trigger.name == "first-to-second"
    assert trigger.subscriber == "http://127.0.0.1:8081"
    assert trigger.delivery.dead_letter_sink is None  # the `dead-letter` component: locally, the dead-letter file
