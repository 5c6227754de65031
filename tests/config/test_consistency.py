"""The manifests agree with each other and with the code: one event type, one Broker address, one trace
backend, one name per service, the images the Makefile builds."""

from __future__ import annotations

import re
from collections.abc import Callable
from urllib.parse import urlsplit

import pytest

from first.app import EVENT_TYPE
from tests.config.conftest import ROOT, Manifest, make_value
from tools import hops

SERVICES = ("first", "second")


def env_of(service: Manifest) -> dict[str, str]:
    (container,) = service["spec"]["template"]["spec"]["containers"]
    return {item["name"]: item["value"] for item in container.get("env", [])}


def cluster_service(rendered: list[Manifest], url: str) -> tuple[Manifest, int]:
    """The Service (defined in config/) and port a cluster-local URL points at."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    assert host.endswith(".svc.cluster.local"), f"{url} is not a cluster-local Service address"
    name, namespace = host.split(".")[:2]
    port = parts.port or (443 if parts.scheme == "https" else 80)
    matches = [
        doc
        for doc in rendered
        if doc["apiVersion"] == "v1"
        and doc["kind"] == "Service"
        and doc["metadata"]["name"] == name
        and doc["metadata"]["namespace"] == namespace
    ]
    assert matches, f"{url} names Service {namespace}/{name}, which config/ does not define"
    return matches[0], port


def test_the_trigger_filters_the_type_first_sends(find: Callable[[str, str], Manifest]) -> None:
    trigger = find("eventing.knative.dev/Trigger", "first-to-second")
    assert trigger["spec"]["filter"]["attributes"]["type"] == EVENT_TYPE
    assert hops.EVENT_TYPE == EVENT_TYPE, "tools/ reads the type from the Trigger, never from first"


def test_make_verify_expects_the_span_names_of_the_broker_and_trigger_defined_here(
    find: Callable[[str, str], Manifest],
) -> None:
    trigger = find("eventing.knative.dev/Trigger", "first-to-second")
    namespace = trigger["metadata"]["namespace"]
    assert re.fullmatch(hops.BROKER_SPAN, f"broker:{trigger['spec']['broker']}.{namespace}")
    assert re.fullmatch(hops.TRIGGER_SPAN, f"trigger:{trigger['metadata']['name']}.{namespace}")


def test_the_trigger_routes_to_services_defined_here(
    find: Callable[[str, str], Manifest], rendered: list[Manifest]
) -> None:
    trigger = find("eventing.knative.dev/Trigger", "first-to-second")
    broker = find("eventing.knative.dev/Broker", trigger["spec"]["broker"])
    assert broker["metadata"]["namespace"] == trigger["metadata"]["namespace"]
    for destination in (trigger["spec"]["subscriber"], trigger["spec"]["delivery"]["deadLetterSink"]):
        ref = destination["ref"]
        assert (ref["apiVersion"], ref["kind"]) == ("serving.knative.dev/v1", "Service")
        target = find("serving.knative.dev/Service", ref["name"])
        assert target["metadata"]["namespace"] == ref.get("namespace", trigger["metadata"]["namespace"])
    # The dead-letter sink is not the subscriber (it must survive second's failure); it runs second's image,
    # whose /dead-letter route logs what arrives there (second/app.py).
    sink = trigger["spec"]["delivery"]["deadLetterSink"]
    assert sink["ref"]["name"] != trigger["spec"]["subscriber"]["ref"]["name"]
    assert sink["uri"] == "/dead-letter"
    image = find("serving.knative.dev/Service", sink["ref"]["name"])["spec"]["template"]["spec"]["containers"][0]
    assert image["image"].rsplit("/", 1)[1].split(":")[0] == "second"
    assert trigger["spec"]["delivery"]["retry"] >= 1


def test_k_sink_is_the_ingress_of_the_broker_defined_here(find: Callable[[str, str], Manifest]) -> None:
    sink = urlsplit(env_of(find("serving.knative.dev/Service", "first"))["K_SINK"])
    assert sink.hostname == "broker-ingress.knative-eventing.svc.cluster.local"
    namespace, name = sink.path.strip("/").split("/")
    broker = find("eventing.knative.dev/Broker", name)
    assert broker["metadata"]["namespace"] == namespace
    # The MT channel-based broker on the InMemoryChannel is the one whose ingress answers at that address.
    assert broker["metadata"]["annotations"]["eventing.knative.dev/broker.class"] == "MTChannelBasedBroker"


@pytest.mark.parametrize("name", SERVICES)
def test_otlp_endpoints_name_the_trace_backend_defined_here(
    find: Callable[[str, str], Manifest], rendered: list[Manifest], name: str
) -> None:
    env = env_of(find("serving.knative.dev/Service", name))
    assert env["OTEL_EXPORTER_OTLP_PROTOCOL"] == "http/protobuf"
    service, port = cluster_service(rendered, env["OTEL_EXPORTER_OTLP_ENDPOINT"])
    ports = {p["port"]: p for p in service["spec"]["ports"]}
    assert port == 4318 and port in ports, "OTLP/HTTP goes to 4318"
    # The Service selects the Jaeger pods, whose container listens on the target port.
    jaeger = find("apps/Deployment", "jaeger")
    assert service["spec"]["selector"].items() <= jaeger["spec"]["template"]["metadata"]["labels"].items()
    named = {p["name"] for p in jaeger["spec"]["template"]["spec"]["containers"][0]["ports"]}
    assert ports[port]["targetPort"] in named


def test_knative_exports_to_the_trace_backend_defined_here(
    rendered: list[Manifest], legacy_rendered: list[Manifest]
) -> None:
    endpoints = [
        doc["data"]["tracing-endpoint"] for doc in rendered if doc["metadata"]["name"] == "config-observability"
    ]
    endpoints += [
        doc["data"]["zipkin-endpoint"] for doc in legacy_rendered if doc["metadata"]["name"] == "config-tracing"
    ]
    assert len(endpoints) == 4
    for endpoint in endpoints:
        service, port = cluster_service(rendered, endpoint)
        assert port in {p["port"] for p in service["spec"]["ports"]}, f"{endpoint}: no such port on the Service"


@pytest.mark.parametrize("name", SERVICES)
def test_one_name_per_service_and_the_images_make_builds(find: Callable[[str, str], Manifest], name: str) -> None:
    service = find("serving.knative.dev/Service", name)
    (container,) = service["spec"]["template"]["spec"]["containers"]
    assert env_of(service)["OTEL_SERVICE_NAME"] == name == container["name"]
    assert service["metadata"]["labels"]["app.kubernetes.io/name"] == name
    assert container["image"] == f"{make_value('IMAGE_REPO')}/{name}:{make_value('IMAGE_TAG')}"
    assert name in make_value("SERVICES").split()
    # Knative resolves tags to digests except for these registries; a kind-loaded image is in no registry.
    assert container["image"].split("/")[0] in ("dev.local", "ko.local", "kind.local")


def test_knative_objects_have_what_knative_requires(rendered: list[Manifest]) -> None:
    """The CRD schemas are loose where Knative's webhooks are not: check those fields here."""
    for doc in rendered:
        kind = (doc["apiVersion"].split("/")[0], doc["kind"])
        if kind == ("eventing.knative.dev", "Trigger"):
            spec = doc["spec"]
            assert isinstance(spec["broker"], str) and spec["broker"]
            assert spec["subscriber"].get("ref") or spec["subscriber"].get("uri")
        elif kind == ("serving.knative.dev", "Service"):
            containers = doc["spec"]["template"]["spec"]["containers"]
            assert containers and all(isinstance(c["image"], str) and c["image"] for c in containers)


@pytest.mark.parametrize("name", SERVICES)
def test_the_image_runs_as_the_manifest_says(find: Callable[[str, str], Manifest], name: str) -> None:
    """The Dockerfile's user is the manifest's runAsUser, and it listens where Knative sends requests."""
    dockerfile = (ROOT / name / "Dockerfile").read_text()
    (container,) = find("serving.knative.dev/Service", name)["spec"]["template"]["spec"]["containers"]
    security = container["securityContext"]
    assert re.search(rf"^USER {security['runAsUser']}:{security['runAsGroup']}\s*$", dockerfile, re.MULTILINE)
    # HOST comes from the image (the manifest does not repeat it); PORT from Knative (containerPort).
    assert re.search(r"\bHOST=0\.0\.0\.0\b", dockerfile)
    assert "HOST" not in env_of(find("serving.knative.dev/Service", name))
    assert f'CMD ["python", "-m", "{name}"]' in dockerfile
