"""docker-compose.yml: valid for Compose v2 and the Compose Specification, and in agreement with config/ and the
contract (names, ports, env, images). The schema is compose-spec/compose-spec@170098ba schema/compose-spec.json,
copied into tests/fixtures/compose/.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import pytest
import yaml

from broker.triggers import load_routing, parse_subscribers
from tests.containers import dockerfiles
from tests.containers.conftest import COMPOSE, compose_env, resolved_compose
from tools.stack import ROOT, Stack, free_port

SCHEMA = ROOT / "tests" / "fixtures" / "compose" / "compose-spec.json"
APP_PORT = 8080
"""Every service's PORT in its image (and Knative's): inside the compose network each listens there."""
OWN_SETTINGS = {"K_SINK", "BROKER_SUBSCRIBERS", "BROKER_CONFIG", "EVENT_MODE", "LOG_FORMAT", "LOG_LEVEL"}
OWN_SETTINGS |= {"SINK_TIMEOUT", "SINK_CONNECT_TIMEOUT", "MAX_EVENT_BYTES", "DELIVERY_TIMEOUT"}
OWN_SETTINGS |= {"HOST", "PORT", "DEAD_LETTER_FILE", "BROKER_STORE", "BROKER_STORE_MAX_BYTES"}


def _raw() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return document


def _makefile_default(name: str) -> str:
    match = re.search(rf"^{name}\s*\?=\s*(\S+)", (ROOT / "Makefile").read_text(), re.MULTILINE)
    assert match, f"Makefile has no `{name} ?=`"
    return match.group(1)


def test_compose_v2_accepts_the_file(compose_config: dict[str, Any]) -> None:
    assert set(compose_config["services"]) == {"first", "broker", "second", "jaeger"}


def test_compose_v2_rejects_a_broken_file(tmp_path: Path) -> None:
    """The check above can fail: Compose refuses a healthy-condition on a service that does not exist."""
    broken = _raw()
    broken["services"]["first"]["depends_on"]["nowhere"] = {"condition": "service_healthy"}
    (tmp_path / "docker-compose.yml").write_text(yaml.safe_dump(broken))
    done = subprocess.run(
        [str(COMPOSE), "config", "--quiet"],
        cwd=tmp_path,
        env=compose_env(),
        check=False,
        capture_output=True,
        text=True,
    )
    assert done.returncode != 0 and "nowhere" in done.stderr, done.stderr


@pytest.mark.parametrize("form", ["as written", "as compose resolves it"])
def test_file_validates_against_the_compose_specification(compose_config: dict[str, Any], form: str) -> None:
    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    document = _raw() if form == "as written" else compose_config
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(document), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors)


def test_schema_check_can_fail() -> None:
    broken = _raw()
    broken["services"]["first"]["healthcheck"] = {"test": ["CMD", "true"], "interval": 3}
    assert list(jsonschema.Draft7Validator(json.loads(SCHEMA.read_text())).iter_errors(broken))


@pytest.mark.parametrize("service", dockerfiles.SERVICES)
def test_service_builds_and_tags_the_image_make_images_builds(compose_config: dict[str, Any], service: str) -> None:
    spec = compose_config["services"][service]
    repo, tag = _makefile_default("IMAGE_REPO"), _makefile_default("IMAGE_TAG")
    assert spec["image"] == f"{repo}/{service}:{tag}"
    assert Path(spec["build"]["context"]) == ROOT
    assert spec["build"]["dockerfile"] == f"{service}/Dockerfile"


@pytest.mark.parametrize("service", dockerfiles.SERVICES)
def test_service_env_is_the_contract(compose_config: dict[str, Any], service: str) -> None:
    env = compose_config["services"][service]["environment"]
    assert env["OTEL_SERVICE_NAME"] == service
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://jaeger:4318"
    unknown = {name for name in env if not name.startswith(("OTEL_", "UVICORN_"))} - OWN_SETTINGS
    assert not unknown, f"{service}: {unknown} are neither OTEL_* nor settings the services read"
    assert "PORT" not in env, "each image's PORT (8080) is the one the healthcheck and the URLs below use"


@pytest.mark.parametrize("service", dockerfiles.SERVICES)
def test_service_is_locked_down_and_health_checked(compose_config: dict[str, Any], service: str) -> None:
    spec = compose_config["services"][service]
    assert spec["read_only"] is True
    assert spec["cap_drop"] == ["ALL"]
    assert "no-new-privileges:true" in spec["security_opt"]
    probe = spec["healthcheck"]["test"]
    assert probe[:2] == ["CMD", "python"], "slim images have no curl: the image's Python probes"
    assert f"http://127.0.0.1:{APP_PORT}/healthz" in probe[-1]
    # Podman's Docker API (<= 5.7, containers/podman#26519) splits CMD arguments on spaces.
    assert not [arg for arg in probe if re.search(r"\s", arg)], f"{service}: an argument with a space: {probe}"


@pytest.mark.parametrize("service", dockerfiles.SERVICES)
def test_python_image_reaches_the_build_only_when_set(service: str) -> None:
    """Unset (or empty, as make passes it), the Dockerfiles' pinned default stays; set, every build gets it."""
    assert "args" not in resolved_compose()["services"][service]["build"]
    built = resolved_compose(PYTHON_IMAGE="mirror.example.test/python:3.11-slim")["services"][service]["build"]
    assert built["args"] == {"PYTHON_IMAGE": "mirror.example.test/python:3.11-slim"}


@pytest.mark.parametrize("service", dockerfiles.SERVICES)
def test_stop_waits_for_the_services_graceful_shutdown(compose_config: dict[str, Any], service: str) -> None:
    spec = compose_config["services"][service]
    grace = spec["stop_grace_period"]
    assert grace.endswith("s") and grace[:-1].isdigit(), grace
    env = spec["environment"]
    shutdown = int(env["UVICORN_TIMEOUT_GRACEFUL_SHUTDOWN"]) + float(env["OTEL_EXPORTER_OTLP_TIMEOUT"])
    assert int(grace[:-1]) > shutdown, "SIGKILL would cut the drain and the span flush short"


def test_the_brokers_store_and_dead_letters_are_on_a_named_volume_bounded_in_size(
    compose_config: dict[str, Any],
) -> None:
    """What the broker accepted outlives its container (a SIGKILL, a restart), in a place of bounded size that
    holds the store's own bound (BROKER_STORE_MAX_BYTES) with room for dead letters."""
    broker = compose_config["services"]["broker"]
    (mount,) = broker["volumes"]
    assert mount["type"] == "volume" and mount["target"] == "/var/lib/broker", mount
    env = broker["environment"]
    for setting in ("DEAD_LETTER_FILE", "BROKER_STORE"):
        assert env[setting].startswith("/var/lib/broker/"), f"{setting}={env[setting]} is not on the volume"
    options = compose_config["volumes"][mount["source"]]["driver_opts"]
    assert options["type"] == "tmpfs", options
    pages = re.fullmatch(r"nr_blocks=(\d+)(,.*)?", options["o"])
    assert pages, f"no size bound on the volume: {options}"
    assert int(pages.group(1)) * 4096 > int(env["BROKER_STORE_MAX_BYTES"]), "the volume is smaller than the store"
    assert "tmpfs" not in broker, "the broker's data would die with its container"


def test_jaeger_is_locked_down_too(compose_config: dict[str, Any]) -> None:
    spec = compose_config["services"]["jaeger"]
    assert spec["read_only"] is True and spec["cap_drop"] == ["ALL"]
    assert "no-new-privileges:true" in spec["security_opt"]


def test_health_probe_passes_on_a_healthy_service_and_fails_on_none(stack: Stack, tmp_path: Path) -> None:
    """The probe is real Python: run against a live service's port it exits 0, against a closed one it fails."""
    (probe,) = {tuple(s["healthcheck"]["test"]) for name, s in _raw()["services"].items() if name != "jaeger"}
    code = probe[-1]
    assert f":{APP_PORT}/" in code
    for port, healthy in ((stack.ports["second"], True), (free_port(), False)):
        command = [sys.executable, *probe[2:-1], code.replace(f":{APP_PORT}/", f":{port}/")]
        done = subprocess.run(command, check=False, capture_output=True, timeout=10, cwd=tmp_path)
        assert (done.returncode == 0) is healthy, done.stderr


def test_only_first_and_the_jaeger_ui_are_published(compose_config: dict[str, Any]) -> None:
    published = {
        name: [(p["target"], p["published"], p.get("host_ip")) for p in spec.get("ports", [])]
        for name, spec in compose_config["services"].items()
    }
    assert published == {
        "first": [(APP_PORT, "8080", "127.0.0.1")],
        "broker": [],
        "second": [],
        "jaeger": [(16686, "16686", "127.0.0.1")],
    }


def test_start_order_waits_for_health(compose_config: dict[str, Any]) -> None:
    services = compose_config["services"]
    conditions = {
        name: {d: v["condition"] for d, v in spec.get("depends_on", {}).items()} for name, spec in services.items()
    }
    assert conditions["first"] == {"broker": "service_healthy", "jaeger": "service_started"}
    assert conditions["broker"] == {"second": "service_healthy", "jaeger": "service_started"}
    assert conditions["second"] == {"jaeger": "service_started"}


def test_routing_agrees_with_config(compose_config: dict[str, Any]) -> None:
    """first's K_SINK is a Broker of config/, and every Trigger's subscriber resolves to a compose service."""
    services = compose_config["services"]
    subscribers = parse_subscribers(services["broker"]["environment"]["BROKER_SUBSCRIBERS"])
    # The broker's own loader: it fails, naming the ref, if a Trigger refers to a service the map lacks.
    routing = load_routing(ROOT / "config", subscribers)
    sink = urlsplit(services["first"]["environment"]["K_SINK"])
    assert (sink.hostname, sink.port) == ("broker", APP_PORT)
    namespace, name = sink.path.strip("/").split("/")
    assert (namespace, name) in routing.brokers
    routed = routing.for_broker(namespace, name)
    assert routed, f"no Trigger of config/ routes broker {namespace}/{name}"
    for trigger in routed:
        for url in filter(None, (trigger.subscriber, trigger.delivery.dead_letter_sink)):
            target = urlsplit(url)
            assert target.hostname in services and target.port == APP_PORT, f"{trigger.name}: {url}"


def test_compose_runs_the_knative_services_images_and_jaeger(compose_config: dict[str, Any]) -> None:
    """Where config/ deploys a Knative Service or Jaeger, compose runs the same image."""
    images: dict[str, str] = {}
    for path in sorted((ROOT / "config").rglob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if isinstance(doc, dict) and doc.get("kind") in ("Service", "Deployment"):
                for container in doc.get("spec", {}).get("template", {}).get("spec", {}).get("containers", []):
                    images[str(doc["metadata"]["name"])] = container["image"]
    services = compose_config["services"]
    shared = {name for name in images if name in services}
    assert {"first", "second"} <= shared, f"config/ deploys {sorted(images)}"
    for name in shared:
        assert services[name]["image"] == images[name], name
    jaeger = [image for image in images.values() if image.startswith("jaegertracing/")]
    assert jaeger in ([], [services["jaeger"]["image"]]), "compose and the cluster should run one Jaeger version"


def test_make_up_down_logs_drive_compose_with_the_image_variables(compose_config: dict[str, Any]) -> None:
    listed = subprocess.run(
        ["make", "--no-print-directory", "help"], cwd=ROOT, check=False, capture_output=True, text=True
    )
    for target in ("up", "down", "logs"):
        assert re.search(rf"make {target}\s+\S", listed.stdout), f"`make help` does not list {target}"
    dry = subprocess.run(
        [
            "make",
            "--no-print-directory",
            "-n",
            "up",
            "IMAGE_REPO=example.test/demo",
            "IMAGE_TAG=9.9.9",
            "FIRST_PORT=9080",
        ],
        cwd=ROOT,
        check=False,
        capture_output=True,
        text=True,
    )
    assert dry.returncode == 0, dry.stderr
    for setting in ("IMAGE_REPO=example.test/demo", "IMAGE_TAG=9.9.9", "FIRST_PORT=9080"):
        assert re.search(rf"{setting} .*docker compose up --build --detach --wait", dry.stdout), setting
    assert "-m tools.compose_up --first http://127.0.0.1:9080" in dry.stdout
    assert "env -u PYTHON_IMAGE " in dry.stdout, "unset, the Dockerfiles' pinned base must stay"
    # The Jaeger version make hands compose (mk/cluster.mk's, the cluster's) is the file's own default.
    version = re.search(r"JAEGER_VERSION=(\S+)", dry.stdout)
    assert version and compose_config["services"]["jaeger"]["image"] == f"jaegertracing/jaeger:{version.group(1)}"


def test_compose_honours_the_image_variables_make_passes() -> None:
    env = {**compose_env(), "IMAGE_REPO": "example.test/demo", "IMAGE_TAG": "9.9.9", "FIRST_PORT": "9080"}
    done = subprocess.run(
        [str(COMPOSE), "config", "--format", "json"], cwd=ROOT, env=env, check=False, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    services = json.loads(done.stdout)["services"]
    assert services["second"]["image"] == "example.test/demo/second:9.9.9"
    assert services["first"]["ports"][0]["published"] == "9080"


@pytest.mark.parametrize("target", ["up", "images"])
def test_make_passes_python_image_to_every_build(target: str) -> None:
    base = "mirror.example.test/python:3.11-slim"
    dry = subprocess.run(
        ["make", "--no-print-directory", "-n", target, f"PYTHON_IMAGE={base}"],
        cwd=ROOT,
        env=compose_env(),
        check=False,
        capture_output=True,
        text=True,
    )
    assert dry.returncode == 0, dry.stderr
    if target == "up":
        assert re.search(rf"PYTHON_IMAGE={re.escape(base)} .*docker compose up --build", dry.stdout), dry.stdout
    else:
        for service in dockerfiles.SERVICES:
            assert f"docker build --build-arg PYTHON_IMAGE={base} -f {service}/Dockerfile" in dry.stdout, dry.stdout
