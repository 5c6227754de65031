"""config/overlays/operator, rendered with the pinned kubectl the way `make operator` uses it: config/ plus the
component. The annotation must land on both Services and agree with the base it is added to."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.config.conftest import Manifest, kustomize, make_value
from tests.config.test_make_targets import dry_run, in_order
from tests.containers import dockerfiles
from tools.stack import ROOT

COMPONENT = ROOT / "config" / "overlays" / "operator"
INJECT = "instrumentation.opentelemetry.io/inject-python"
CONTAINERS = "instrumentation.opentelemetry.io/container-names"
ADDED = (INJECT, CONTAINERS)


@pytest.fixture(scope="module")
def with_operator(tmp_path_factory: pytest.TempPathFactory) -> list[Manifest]:
    """What `kubectl kustomize` makes of config/ with the component, from a kustomization outside config/ (as
    .cluster/operator is): kustomize refuses absolute paths and a base that contains its overlay."""
    here = tmp_path_factory.mktemp("operator")
    config = os.path.relpath(ROOT / "config", here)
    component = os.path.relpath(COMPONENT, here)
    (here / "kustomization.yaml").write_text(
        f"apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
        f"resources:\n  - {config}\ncomponents:\n  - {component}\n"
    )
    return kustomize(here)


def _services(manifests: list[Manifest]) -> dict[str, Manifest]:
    return {m["metadata"]["name"]: m for m in manifests if m["kind"] == "Service" and "serving" in m["apiVersion"]}


def _env(service: Manifest) -> dict[str, str]:
    container = service["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value", "") for e in container.get("env", [])}


def _without_additions(manifest: Manifest) -> Manifest:
    """`manifest` without the component's annotations (a Knative Service's template is the only place)."""
    template: dict[str, Any] = manifest.get("spec", {}).get("template", {})
    annotations: dict[str, Any] = template.get("metadata", {}).get("annotations", {})
    for name in ADDED:
        annotations.pop(name, None)
    return manifest


def test_both_services_are_injected_by_the_instrumentation(with_operator: list[Manifest]) -> None:
    instrumentations = [m for m in with_operator if m["kind"] == "Instrumentation"]
    assert len(instrumentations) == 1, instrumentations
    instrumentation = instrumentations[0]
    assert instrumentation["apiVersion"] == "opentelemetry.io/v1alpha1"
    services = _services(with_operator)
    # The dead-letter sink (config/dead-letter.yaml) only logs what the broker gives up on: not instrumented.
    assert set(services) == {"first", "second", "dead-letter"}
    for name, service in services.items():
        if name == "dead-letter":
            continue
        annotations = service["spec"]["template"]["metadata"]["annotations"]
        assert annotations[INJECT] == instrumentation["metadata"]["name"], f"{name} must name the Instrumentation"
        assert service["metadata"]["namespace"] == instrumentation["metadata"]["namespace"]
        containers = [c["name"] for c in service["spec"]["template"]["spec"]["containers"]]
        assert annotations[CONTAINERS] == containers[0], f"{name}: inject the workload, not queue-proxy"


def test_instrumentation_agrees_with_the_services(with_operator: list[Manifest]) -> None:
    instrumentation = next(m for m in with_operator if m["kind"] == "Instrumentation")["spec"]
    for name, service in _services(with_operator).items():
        env = _env(service)
        assert instrumentation["exporter"]["endpoint"] == env["OTEL_EXPORTER_OTLP_ENDPOINT"], name
        assert env.get("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf") == "http/protobuf", name
        # The Services keep OpenTelemetry's default propagators, W3C only, as Knative >= 1.19: so does the operator.
        assert "OTEL_PROPAGATORS" not in env, name
    assert instrumentation["propagators"] == ["tracecontext", "baggage"]
    python_env = {e["name"]: e["value"] for e in instrumentation["python"]["env"]}
    assert python_env["OTEL_PYTHON_FASTAPI_EXCLUDED_URLS"] == "healthz"
    assert python_env["OTEL_METRICS_EXPORTER"] == python_env["OTEL_LOGS_EXPORTER"] == "none"


def test_the_component_changes_nothing_else(with_operator: list[Manifest]) -> None:
    base = kustomize(ROOT / "config")
    assert not [m for m in base if m["kind"] == "Instrumentation"], "config/ alone must stay operator-free"
    added = [_without_additions(m) for m in with_operator if m["kind"] != "Instrumentation"]
    key = lambda m: (m["kind"], m["metadata"].get("namespace", ""), m["metadata"]["name"])  # noqa: E731
    assert sorted(added, key=key) == sorted(base, key=key)


def test_make_operator_installs_then_applies_the_component(tmp_path: Path) -> None:
    out = dry_run("operator")
    in_order(
        out,
        "cert-manager/releases/download/v",
        "--for=condition=Available deployment --all -n cert-manager",
        "opentelemetry-operator/releases/download/v",
        "--for=condition=Available deployment --all -n opentelemetry-operator-system",
        "../../config/overlays/operator",
        "apply -k .cluster/operator",
        "--for=condition=Ready -n default ksvc/first ksvc/second",
    )


AUTOINSTRUMENTATION = COMPONENT / "autoinstrumentation-python" / "Dockerfile"


def _locked(package: str) -> str:
    """The version requirements/runtime.txt pins for `package`."""
    match = re.search(rf"^{re.escape(package)}==(\S+)", (ROOT / "requirements" / "runtime.txt").read_text(), re.M)
    assert match, f"{package} is not in requirements/runtime.txt"
    return match.group(1)


def test_the_injected_instrumentation_is_the_apps_own_version(with_operator: list[Manifest]) -> None:
    """The operator puts the injected packages ahead of the image's on PYTHONPATH: they must be the app's."""
    image = next(m for m in with_operator if m["kind"] == "Instrumentation")["spec"]["python"]["image"]
    assert image == f"dev.local/knative-tracing/autoinstrumentation-python:{_locked('opentelemetry-instrumentation')}"
    assert make_value("AUTOINSTRUMENTATION_IMAGE") == image, "make operator builds and loads this very image"


def test_the_autoinstrumentation_image_is_built_from_the_apps_lock() -> None:
    final, *_ = reversed(dockerfiles.stages(AUTOINSTRUMENTATION))
    deps = dockerfiles.stages(AUTOINSTRUMENTATION)[0]
    (run,) = deps.all("RUN")
    assert "--require-hashes --no-deps --only-binary=:all: --target /autoinstrumentation" in run.args
    assert "-r /tmp/runtime.txt" in run.args
    assert [c.args for c in deps.all("COPY")] == ["requirements/runtime.txt /tmp/runtime.txt"]
    # The same Python as the services' images, so the wheels fit the interpreter that imports them.
    assert deps.base == final.base == dockerfiles.stages(ROOT / "first" / "Dockerfile")[-1].base
    assert final.user() == "65532:65532"
    assert [c.args for c in final.all("COPY")] == ["--from=deps /autoinstrumentation /autoinstrumentation"]
    findings = subprocess.run(
        [str(Path(sys.executable).parent / "hadolint"), "--format", "json", str(AUTOINSTRUMENTATION)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert json.loads(findings.stdout or "[]") == [], findings.stdout


def test_make_operator_builds_loads_and_names_the_autoinstrumentation_image() -> None:
    out = dry_run("operator")
    image = make_value("AUTOINSTRUMENTATION_IMAGE")
    in_order(
        out,
        "scripts/cluster/cluster-ready.sh",
        f"docker build -f config/overlays/operator/autoinstrumentation-python/Dockerfile -t {image} .",
        f"kind load docker-image {image} --name knative-tracing",
        "opentelemetry-operator/releases/download/v",
        '"        path: /spec/python/image"',
        f'"        value: {image}"',
        "apply -k .cluster/operator",
    )
