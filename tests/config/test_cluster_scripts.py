"""The checks the cluster targets run against a live cluster, run here with the pinned kubectl against a stand-in
API server (tests/config/kube_api.py) holding the objects a real cluster would: `make demo`/`verify`'s
prerequisite check on Knative's tracing config, and `make operator`'s check of the injected init container."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.config.conftest import KUBECTL, ROOT, kustomize, make_output, make_value, with_component
from tests.config.kube_api import Manifest, serve

CLUSTER_READY = ROOT / "scripts" / "cluster" / "cluster-ready.sh"
CHECK_INJECTED = ROOT / "scripts" / "cluster" / "check-injected.sh"
INIT_CONTAINER = "opentelemetry-auto-instrumentation-python"


def _deployment(namespace: str, name: str) -> Manifest:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": namespace}}


KNATIVE_AND_JAEGER = [
    _deployment("knative-serving", "activator"),
    _deployment("knative-eventing", "mt-broker-ingress"),
    _deployment("observability", "jaeger"),
]


def _tracing_config() -> list[Manifest]:
    """config/tracing as `make cluster` applies it."""
    return kustomize(ROOT / "config" / "tracing")


def _run(tmp_path: Path, objects: list[Manifest], script: Path, *args: str) -> subprocess.CompletedProcess[str]:
    with serve(objects, tmp_path / "kubeconfig") as kubeconfig:
        env = {**os.environ, "KUBECONFIG": str(kubeconfig), "KUBECACHEDIR": str(tmp_path / "cache")}
        return subprocess.run(
            [str(script), str(KUBECTL), "kind-knative-tracing", *args],
            env=env,
            check=False,
            capture_output=True,
            text=True,
            timeout=60,
        )


def _ready(tmp_path: Path, objects: list[Manifest]) -> subprocess.CompletedProcess[str]:
    return _run(tmp_path, [*KNATIVE_AND_JAEGER, *objects], CLUSTER_READY, "knative-tracing")


def _with_rate(config: list[Manifest], namespace: str, rate: str | None) -> list[Manifest]:
    changed: list[Manifest] = []
    for doc in config:
        data: dict[str, Any] = dict(doc["data"])
        if doc["metadata"]["namespace"] == namespace:
            data.pop("tracing-sampling-rate")
            if rate is not None:
                data["tracing-sampling-rate"] = rate
        changed.append({**doc, "data": data})
    return changed


def test_the_tracing_config_of_config_tracing_passes(tmp_path: Path) -> None:
    result = _ready(tmp_path, _tracing_config())
    assert result.returncode == 0, result.stderr
    assert not result.stderr


@pytest.mark.parametrize(("rate", "shown"), [("0", "is 0"), (None, "is missing")])
def test_a_zero_or_missing_sampling_rate_is_named_with_its_fix(tmp_path: Path, rate: str | None, shown: str) -> None:
    result = _ready(tmp_path, _with_rate(_tracing_config(), "knative-eventing", rate))
    assert result.returncode == 1
    assert f"error: tracing-sampling-rate in config-observability of knative-eventing {shown}" in result.stderr
    assert "NeverSample, not parent-based" in result.stderr
    assert "Fix: make cluster" in result.stderr
    assert "patch configmap/config-observability -n knative-eventing" in result.stderr
    assert '"tracing-sampling-rate":"1"' in result.stderr


def test_a_rate_below_one_is_a_warning(tmp_path: Path) -> None:
    result = _ready(tmp_path, _with_rate(_tracing_config(), "knative-serving", "0.1"))
    assert result.returncode == 0, result.stderr
    assert "warning: tracing-sampling-rate in config-observability of knative-serving is 0.1" in result.stderr


@pytest.mark.parametrize("protocol", [None, "none", "stdout"])
def test_tracing_that_does_not_reach_jaeger_is_named(tmp_path: Path, protocol: str | None) -> None:
    """None: what Knative installs, config-observability with only its _example block; stdout: spans in logs."""
    data = {"_example": "..."} if protocol is None else {"tracing-protocol": protocol}
    result = _ready(tmp_path, [{**doc, "data": data} for doc in _tracing_config()])
    assert result.returncode == 1
    assert (
        "Knative's spans from knative-serving do not reach Jaeger (config-observability tracing-protocol is "
        f"{protocol or 'missing'})"
    ) in result.stderr
    assert "Fix: make cluster" in result.stderr


def test_the_legacy_config_tracing_passes(tmp_path: Path) -> None:
    """Knative <= 1.18: config-tracing from the legacy component, no tracing keys in config-observability."""
    legacy = [doc for doc in with_component(tmp_path, "knative-1.18") if doc["metadata"]["name"] == "config-tracing"]
    assert len(legacy) == 2
    result = _ready(tmp_path, legacy)
    assert result.returncode == 0, result.stderr


def _ksvc(name: str, revision: str) -> Manifest:
    return {
        "apiVersion": "serving.knative.dev/v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": "default"},
        "status": {"latestReadyRevisionName": revision},
    }


def _pod(name: str, revision: str, init_containers: list[str]) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "labels": {"serving.knative.dev/revision": revision}},
        "spec": {"initContainers": [{"name": c} for c in init_containers], "containers": [{"name": "user"}]},
    }


def test_injected_pods_pass_the_operator_check(tmp_path: Path) -> None:
    objects = [
        _ksvc("first", "first-00002"),
        _pod("first-00002-deployment-a", "first-00002", [INIT_CONTAINER]),
        # The previous revision's pod, not instrumented, still terminating: not the one checked.
        _pod("first-00001-deployment-b", "first-00001", []),
    ]
    result = _run(tmp_path, objects, CHECK_INJECTED, "first")
    assert result.returncode == 0, result.stderr
    assert f"first: pod first-00002-deployment-a carries the injected {INIT_CONTAINER}" in result.stdout


def test_a_pod_the_webhook_let_in_uninstrumented_fails_naming_the_fix(tmp_path: Path) -> None:
    objects = [
        _ksvc("first", "first-00002"),
        _pod("first-00002-deployment-a", "first-00002", [INIT_CONTAINER]),
        _ksvc("second", "second-00002"),
        _pod("second-00002-deployment-c", "second-00002", []),
    ]
    result = _run(tmp_path, objects, CHECK_INJECTED, "first", "second")
    assert result.returncode == 1
    assert f"error: pod second-00002-deployment-c of second (revision second-00002) has no {INIT_CONTAINER}" in (
        result.stderr
    )
    assert "delete pod -n default -l serving.knative.dev/service=second" in result.stderr


def test_a_revision_scaled_to_zero_is_a_warning_with_the_command_to_check_later(tmp_path: Path) -> None:
    result = _run(tmp_path, [_ksvc("first", "first-00002")], CHECK_INJECTED, "first")
    assert result.returncode == 0, result.stderr
    assert "warning: revision first-00002 of first has no pod running" in result.stderr


def test_the_operator_label_selects_only_the_instrumentation_in_a_real_apply(tmp_path: Path) -> None:
    """`make operator`'s first apply, as kubectl runs it (client-side dry run against the stand-in API): of all
    that config/ with the operator component holds, only the Instrumentation is sent."""
    manifests = tmp_path / "operator.yaml"
    manifests.write_text(make_output("operator-manifests"))
    label = make_value("INSTRUMENTATION_LABEL")
    apply = ["apply", "-f", str(manifests), "--selector", label, "--dry-run=client", "--validate=false", "-o", "name"]
    with serve([], tmp_path / "kubeconfig") as kubeconfig:
        result = subprocess.run(
            [str(KUBECTL), "--context", "kind-knative-tracing", *apply],
            env={**os.environ, "KUBECONFIG": str(kubeconfig), "KUBECACHEDIR": str(tmp_path / "cache")},
            check=False,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["instrumentation.opentelemetry.io/knative-tracing"]
