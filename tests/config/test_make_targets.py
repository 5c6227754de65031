"""The cluster targets exist, `make -n` shows the commands they promise, and their helper scripts behave."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.config.conftest import KUBECTL, ROOT, kustomize, make_value
from tools.stack import free_port

TARGETS = ("cluster", "images", "deploy", "demo", "traces", "verify", "undeploy", "cluster-delete")
CONTEXT = "--context kind-knative-tracing"


def dry_run(*args: str) -> str:
    """`make -n <args>`: the commands make would run, none of them run."""
    result = subprocess.run(
        ["make", "-n", "--no-print-directory", *args], cwd=ROOT, check=False, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, f"make -n {' '.join(args)} failed:\n{result.stderr}"
    # One line per command: join the recipes' backslash continuations as the shell would.
    return re.sub(r"\\\n\s*", "", result.stdout)


def in_order(text: str, *parts: str) -> None:
    """Each part appears in `text`, after the one before."""
    position = 0
    for part in parts:
        found = text.find(part, position)
        assert found >= 0, f"{part!r} missing (after position {position}) in:\n{text}"
        position = found + len(part)


def test_help_lists_every_cluster_target() -> None:
    listed = subprocess.run(
        ["make", "-s", "help"], cwd=ROOT, check=False, capture_output=True, text=True, timeout=30
    ).stdout
    for target in TARGETS:
        assert f"make {target} " in listed, f"make help does not list {target}"


def test_cluster_installs_pinned_knative_then_jaeger_and_tracing() -> None:
    out = dry_run("cluster")
    serving = f"https://github.com/knative/serving/releases/download/knative-v{make_value('KNATIVE_SERVING_VERSION')}/"
    eventing = (
        f"https://github.com/knative/eventing/releases/download/knative-v{make_value('KNATIVE_EVENTING_VERSION')}/"
    )
    kourier = (
        f"https://github.com/knative-extensions/net-kourier/releases/download/knative-v{make_value('KOURIER_VERSION')}/"
    )
    node = make_value("KIND_NODE_IMAGE")
    in_order(
        out,
        "scripts/cluster/prereqs.sh docker kind .venv/bin/kubectl",
        f"scripts/cluster/kind-cluster.sh knative-tracing {node} 80 31080 {make_value('KIND_VERSION')}",
        f"{CONTEXT} apply -f {serving}serving-crds.yaml",
        "--for=condition=Established crd --all",
        f"apply -f {serving}serving-core.yaml",
        f"{kourier}kourier.yaml",
        '"ingress-class":"kourier.ingress.networking.knative.dev"',
        '"127.0.0.1.sslip.io":""',
        '"nodePort":31080',
        "--for=condition=Available deployment --all -n knative-serving",
        "--for=condition=Available deployment --all -n kourier-system",
        f"apply -f {eventing}eventing-crds.yaml",
        "eventing-core.yaml",
        "in-memory-channel.yaml",
        "mt-channel-broker.yaml",
        "--for=condition=Available deployment --all -n knative-eventing",
        "scripts/cluster/kustomization.sh infra > .cluster/infra/kustomization.yaml",
        f"{CONTEXT} apply -k .cluster/infra",
        "deployment/jaeger -n observability",
    )
    # Every kubectl call is aimed at the demo's cluster, never at whatever context is current.
    kubectl_lines = [line for line in out.splitlines() if ".venv/bin/kubectl " in line and "prereqs" not in line]
    assert kubectl_lines and all(CONTEXT in line for line in kubectl_lines)
    assert "LEGACY_TRACING= " in out


# Knative >= 1.19 builds its tracer providers at start only: these read config-observability once, so
# `make cluster` restarts them after applying it (the audit's finding 1; sources in mk/cluster.mk).
STARTUP_READERS = (
    "-n knative-serving deployment/activator",
    "-n knative-eventing deployment/mt-broker-ingress",
    "-n knative-eventing deployment/mt-broker-filter",
    "-n knative-eventing deployment/imc-dispatcher",
)


def test_cluster_restarts_the_startup_readers_after_the_tracing_config_and_waits() -> None:
    out = dry_run("cluster")
    applied = out.index(f"{CONTEXT} apply -k .cluster/infra")
    restarts = [line for line in out.splitlines() if " rollout restart " in line]
    assert sorted(line.split(" rollout restart ")[1] for line in restarts) == sorted(STARTUP_READERS)
    for component in STARTUP_READERS:
        restart = out.index(f"{CONTEXT} rollout restart {component}")
        status = out.index(f"{CONTEXT} rollout status --timeout=300s {component}")
        assert applied < restart < status, f"{component}: restart after the tracing config, then wait"


def test_cluster_on_knative_1_18_adds_the_legacy_tracing_overlay_and_restarts_nothing() -> None:
    out = dry_run("cluster", "KNATIVE_VERSION=1.18")
    assert "knative/serving/releases/download/knative-v1.18.2/serving-core.yaml" in out
    assert "knative/eventing/releases/download/knative-v1.18.4/eventing-core.yaml" in out
    assert "net-kourier/releases/download/knative-v1.18.0/kourier.yaml" in out
    assert "LEGACY_TRACING=yes " in out
    # <= 1.18 re-read config-tracing when it changed (SetupPublishingWithDynamicConfig).
    assert " rollout " not in out


def test_images_builds_every_service_from_the_repo_root() -> None:
    out = dry_run("images", "IMAGE_REPO=registry.example.com/demo", "IMAGE_TAG=1.2.3")
    for service in ("first", "second", "broker"):
        assert f"docker build -f {service}/Dockerfile -t registry.example.com/demo/{service}:1.2.3 ." in out


def test_deploy_loads_images_applies_config_and_waits() -> None:
    out = dry_run("deploy")
    in_order(
        out,
        "docker build -f first/Dockerfile",
        "kind load docker-image dev.local/knative-tracing/first:0.1.0 dev.local/knative-tracing/second:0.1.0 "
        "--name knative-tracing",
        "scripts/cluster/kustomization.sh all",
        "first=$(docker image inspect -f '{{.Id}}' dev.local/knative-tracing/first:0.1.0)",
        "dead-letter=$(docker image inspect -f '{{.Id}}' dev.local/knative-tracing/second:0.1.0)",
        "> .cluster/all/kustomization.yaml",
        f"{CONTEXT} apply -k .cluster/all",
        "--for=condition=Ready -n default broker/default trigger/first-to-second "
        "ksvc/first ksvc/second ksvc/dead-letter",
    )


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        (
            "demo",
            "-m tools.cluster_demo --ingress http://127.0.0.1:80 --host first.default.127.0.0.1.sslip.io "
            "--trace-id-file .cluster/last-trace-id",
        ),
        ("traces", f"{CONTEXT} port-forward -n observability service/jaeger-query 16686:16686"),
        (
            "verify",
            "-m tools.verify_trace --hops knative --trace-id-file .cluster/last-trace-id "
            f'--port-forward ".venv/bin/kubectl {CONTEXT} port-forward -n observability service/jaeger-query '
            '{port}:16686"',
        ),
        ("cluster-delete", "kind delete cluster --name knative-tracing"),
    ],
)
def test_target_runs_the_intended_command(target: str, expected: str) -> None:
    assert expected in dry_run(target)


def test_undeploy_deletes_every_workload_file_of_config() -> None:
    """Every top-level file config/kustomization.yaml applies, the dead-letter Service's too (it runs at
    min-scale 1: left behind, it would keep a pod up)."""
    out = dry_run("undeploy")
    (line,) = [line for line in out.splitlines() if " delete " in line]
    assert f"{CONTEXT} delete --ignore-not-found " in line
    deleted = set(re.findall(r"-f (\S+)", line))
    resources = yaml.safe_load((ROOT / "config" / "kustomization.yaml").read_text())["resources"]
    assert deleted == {f"config/{name}" for name in resources if name.endswith(".yaml")}
    assert "config/dead-letter.yaml" in deleted


def test_operator_applies_the_instrumentation_before_the_services_and_checks_the_injection() -> None:
    """kustomize orders by kind, Services before the Instrumentation: applied in one go, the new revisions' pods
    could be admitted before it exists and run uninstrumented (the operator's pod webhook ignores failures)."""
    out = dry_run("operator")
    label = make_value("INSTRUMENTATION_LABEL")
    in_order(
        out,
        "-n opentelemetry-operator-system",
        f"{CONTEXT} apply -k .cluster/operator --selector {label}",
        f"{CONTEXT} wait --timeout=300s --for=create -n default instrumentation/knative-tracing",
        f"{CONTEXT} apply -k .cluster/operator\n",
        "--for=condition=Ready -n default ksvc/first ksvc/second",
        "scripts/cluster/check-injected.sh .venv/bin/kubectl kind-knative-tracing first second",
    )
    # That the label selects the Instrumentation alone: tests/config/test_cluster_scripts.py, through kubectl apply.


def test_prereqs_names_each_missing_tool(tmp_path: Path) -> None:
    # A PATH holding bash and nothing the cluster path needs.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "basename", "env"):
        found = shutil.which(tool)
        assert found
        (bin_dir / tool).symlink_to(found)
    result = subprocess.run(
        ["bash", str(ROOT / "scripts/cluster/prereqs.sh"), "docker", "kind", str(KUBECTL)],
        env={"PATH": str(bin_dir)},
        check=False,
        capture_output=True,
        text=True,
        timeout=10,
    )
    assert result.returncode == 1
    assert "error: 'docker' not found. Install Docker Engine" in result.stderr
    assert "error: 'kind' not found. Install kind: https://kind.sigs.k8s.io" in result.stderr
    assert "kubectl" not in result.stderr, "the pinned kubectl exists and must not be reported"


def test_retry_retries_then_gives_up_naming_the_command() -> None:
    script = str(ROOT / "scripts/cluster/retry.sh")
    env = {**os.environ, "RETRY_DELAY": "0"}
    ok = subprocess.run([script, "3", "true"], env=env, check=False, capture_output=True, text=True, timeout=10)
    assert ok.returncode == 0 and not ok.stderr
    failed = subprocess.run([script, "3", "false"], env=env, check=False, capture_output=True, text=True, timeout=10)
    assert failed.returncode == 1
    assert failed.stderr.count("retrying") == 2
    assert "gave up after 3 attempts: false" in failed.stderr


KUSTOMIZATION_SCRIPT = str(ROOT / "scripts/cluster/kustomization.sh")


def _generate(tmp_path: Path, part: str, *args: str, **env: str) -> tuple[str, list[dict[str, Any]]]:
    """Run kustomization.sh as `make deploy` does, beside a copy of config/; its output and that output rendered
    for real with kubectl kustomize."""
    shutil.copytree(ROOT / "config", tmp_path / "config")
    target = tmp_path / ".cluster" / part
    target.mkdir(parents=True)
    generated = subprocess.run(
        [KUSTOMIZATION_SCRIPT, part, *args],
        env={**os.environ, "KSVCS": "first second", **env},
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    ).stdout
    (target / "kustomization.yaml").write_text(generated)
    return generated, kustomize(target)


def test_generated_kustomization_sets_images_stamps_revisions_and_adds_legacy_tracing(tmp_path: Path) -> None:
    """What `make deploy` applies: config/ with the built images."""
    _, docs = _generate(
        tmp_path,
        "all",
        "first=sha256:aaa",
        "second=sha256:bbb",
        "dead-letter=sha256:bbb",
        IMAGE_REPO="registry.example.com/demo",
        IMAGE_TAG="1.2.3",
        JAEGER_VERSION="2.16.0",
        LEGACY_TRACING="yes",
    )
    images = {
        doc["metadata"]["name"]: doc["spec"]["template"]["spec"]["containers"][0]["image"]
        for doc in docs
        if doc["kind"] in ("Service", "Deployment") and "template" in doc.get("spec", {})
    }
    assert images == {
        "first": "registry.example.com/demo/first:1.2.3",
        "second": "registry.example.com/demo/second:1.2.3",
        # The Trigger's dead-letter sink runs second's image (config/dead-letter.yaml).
        "dead-letter": "registry.example.com/demo/second:1.2.3",
        "jaeger": "jaegertracing/jaeger:2.16.0",
    }
    stamps = {
        doc["metadata"]["name"]: doc["spec"]["template"]["metadata"]["annotations"]["knative-tracing/image-id"]
        for doc in docs
        if doc["apiVersion"] == "serving.knative.dev/v1" and doc["kind"] == "Service"
    }
    # dead-letter runs second's image, so a rebuilt second rolls out a new dead-letter revision too.
    assert stamps == {"first": "sha256:aaa", "second": "sha256:bbb", "dead-letter": "sha256:bbb"}
    assert {doc["metadata"]["name"] for doc in docs if doc["kind"] == "ConfigMap"} >= {"config-tracing"}


def test_generated_infra_kustomization_holds_no_workloads(tmp_path: Path) -> None:
    env = {"IMAGE_REPO": "r", "IMAGE_TAG": "t", "JAEGER_VERSION": "2.17.0", "LEGACY_TRACING": ""}
    generated, docs = _generate(tmp_path, "infra", **env)
    assert {doc["kind"] for doc in docs} == {"Namespace", "ConfigMap", "Deployment", "Service"}
    assert "Broker" not in yaml.safe_load(generated)["resources"]
    wrong = subprocess.run(
        [KUSTOMIZATION_SCRIPT, "everything"],
        env={**os.environ, "KSVCS": "first second", **env},
        check=False,
        capture_output=True,
        text=True,
        timeout=10,
    )
    assert wrong.returncode == 2 and "part must be all or infra" in wrong.stderr


def test_scripts_are_valid_bash() -> None:
    for script in sorted((ROOT / "scripts/cluster").glob("*.sh")):
        result = subprocess.run(["bash", "-n", str(script)], check=False, capture_output=True, text=True, timeout=10)
        assert result.returncode == 0, f"{script.name}: {result.stderr}"
        assert os.access(script, os.X_OK), f"{script.name} is not executable"


def _stand_in_kind(
    tmp_path: Path, version: str, cgroup: str = "2", security: str = "[name=seccomp,profile=builtin]"
) -> tuple[dict[str, str], Path, Path]:
    """A stand-in `kind` (no kind or Docker here) of `version` that records what it is asked: env, calls, clusters;
    and a stand-in `docker` whose `docker info` reports `cgroup` and `security` options."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "docker").write_text(
        "#!/usr/bin/env bash\n"
        f'case "$*" in *CgroupVersion*) echo "{cgroup}" ;; *SecurityOptions*) echo "{security}" ;; esac\n'
    )
    (bin_dir / "docker").chmod(0o755)
    clusters = tmp_path / "clusters"
    clusters.write_text("")
    calls = tmp_path / "calls"
    (bin_dir / "kind").write_text(
        "#!/usr/bin/env bash\n"
        f'if [ "$1" = version ]; then echo "kind v{version} go1.25.5 linux/amd64"; exit 0; fi\n'
        f'if [ "$1 $2" = "get clusters" ]; then cat {clusters}; exit 0; fi\n'
        f'echo "$*" >> {calls}; cat > {tmp_path}/config.yaml; echo knative-tracing >> {clusters}\n'
    )
    (bin_dir / "kind").chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}, calls, clusters


def test_kind_cluster_is_created_once_with_kouriers_port_mapped(tmp_path: Path) -> None:
    node, kind = make_value("KIND_NODE_IMAGE"), make_value("KIND_VERSION")
    env, calls, _ = _stand_in_kind(tmp_path, kind)
    script = str(ROOT / "scripts/cluster/kind-cluster.sh")
    args = [script, "knative-tracing", node, "8880", "31080", kind]
    first = subprocess.run(args, env=env, capture_output=True, text=True, timeout=10, check=True)
    assert "creating kind cluster 'knative-tracing'" in first.stdout
    assert calls.read_text().split() == [
        "create", "cluster", "--name", "knative-tracing", "--image", node, "--wait", "120s", "--config", "-",
    ]  # fmt: skip
    config = yaml.safe_load((tmp_path / "config.yaml").read_text())
    (mapping,) = config["nodes"][0]["extraPortMappings"]
    assert mapping == {"containerPort": 31080, "hostPort": 8880, "listenAddress": "127.0.0.1"}
    second = subprocess.run(args, env=env, capture_output=True, text=True, timeout=10, check=True)
    assert "exists: using it" in second.stdout
    assert len(calls.read_text().splitlines()) == 1, "a second run must not create the cluster again"


def test_kind_cluster_refuses_another_kind_release_naming_the_pin(tmp_path: Path) -> None:
    node, kind = make_value("KIND_NODE_IMAGE"), make_value("KIND_VERSION")
    env, calls, _ = _stand_in_kind(tmp_path, "0.30.0")
    script = str(ROOT / "scripts/cluster/kind-cluster.sh")
    result = subprocess.run(
        [script, "knative-tracing", node, "8880", "31080", kind],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=10,
    )
    assert result.returncode == 1
    assert f"kind v0.30.0 found, the demo pins kind v{kind} for {node}" in result.stderr
    assert "KIND_VERSION=0.30.0 KIND_NODE_IMAGE=" in result.stderr
    assert not calls.exists(), "no cluster is created with the wrong kind"


def _create(tmp_path: Path, kind: str, port: str = "8880", **engine: str) -> subprocess.CompletedProcess[str]:
    """kind-cluster.sh as `make cluster` runs it, with a stand-in kind of version `kind` and docker."""
    tmp_path.mkdir(exist_ok=True)
    env, _, _ = _stand_in_kind(tmp_path, kind, **engine)
    node = make_value("KIND_NODE_IMAGE")
    script = str(ROOT / "scripts/cluster/kind-cluster.sh")
    args = [script, "knative-tracing", node, port, "31080", make_value("KIND_VERSION")]
    return subprocess.run(args, check=False, env=env, capture_output=True, text=True, timeout=10)


def test_kind_cluster_warns_about_a_newer_kind_and_goes_on(tmp_path: Path) -> None:
    newer = "0.99.0"  # not a kind release: a variable, so the pin scan (test_versions.py) does not read it as one
    result = _create(tmp_path, newer)
    assert result.returncode == 0, result.stderr
    assert f"warning: kind v{newer} is newer than the pinned v{make_value('KIND_VERSION')}" in result.stderr
    assert f"KIND_VERSION={newer} KIND_NODE_IMAGE=" in result.stderr
    assert "creating kind cluster 'knative-tracing'" in result.stdout


def test_kind_cluster_refuses_a_cgroup_v1_engine_naming_the_fix(tmp_path: Path) -> None:
    result = _create(tmp_path, make_value("KIND_VERSION"), cgroup="1")
    assert result.returncode == 1
    assert "runs on cgroup v1" in result.stderr and "systemd.unified_cgroup_hierarchy=1" in result.stderr
    assert "creating" not in result.stdout


def test_kind_cluster_under_a_rootless_engine_suggests_a_high_port(tmp_path: Path) -> None:
    rootless = "[name=seccomp,profile=builtin name=rootless name=cgroupns]"
    refused = _create(tmp_path / "80", make_value("KIND_VERSION"), port="80", security=rootless)
    assert refused.returncode == 1
    assert "rootless and cannot bind host port 80" in refused.stderr
    assert "make cluster demo KIND_HTTP_PORT=8880" in refused.stderr
    high = _create(tmp_path / "8880", make_value("KIND_VERSION"), port="8880", security=rootless)
    assert high.returncode == 0, high.stderr


def _kubeconfig(tmp_path: Path, server: str) -> Path:
    """A kubeconfig whose context kind-knative-tracing points at `server`."""
    path = tmp_path / "kubeconfig"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": server}}],
                "contexts": [{"name": "kind-knative-tracing", "context": {"cluster": "c", "user": "u"}}],
                "users": [{"name": "u", "user": {"token": "not-a-credential"}}],
                "current-context": "kind-knative-tracing",
            }
        )
    )
    return path


def _make(target: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Real make, as a user runs it. The timeout only keeps a hang from stalling the suite: before the
    prerequisite check, `make demo` waited 90 s for a cluster that was not there."""
    return subprocess.run(
        ["make", "--no-print-directory", target, *args],
        cwd=ROOT,
        env={**os.environ, **env},
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("target", ["demo", "traces", "verify"])
def test_cluster_targets_name_a_missing_context_without_waiting(tmp_path: Path, target: str) -> None:
    result = _make(target, KUBECONFIG=str(tmp_path / "no-such-kubeconfig"))
    assert result.returncode != 0
    assert "error: no kubectl context 'kind-knative-tracing'" in result.stderr
    assert "make cluster" in result.stderr
    assert "tools.cluster_demo" not in result.stdout and "port-forward" not in result.stdout, "checked before"


@pytest.mark.parametrize("target", ["demo", "traces", "verify"])
def test_cluster_targets_name_a_cluster_that_does_not_answer(tmp_path: Path, target: str) -> None:
    # A loopback port nothing listens on: the connection is refused at once.
    kubeconfig = _kubeconfig(tmp_path, f"https://127.0.0.1:{free_port()}")
    result = _make(target, KUBECONFIG=str(kubeconfig))
    assert result.returncode != 0
    assert "error: the cluster behind context 'kind-knative-tracing' does not answer" in result.stderr
    assert "connection" in result.stderr.lower() and "Docker" in result.stderr


def test_cluster_targets_name_a_missing_kubectl(tmp_path: Path) -> None:
    result = _make("demo", f"KUBECTL_BIN={tmp_path / 'kubectl'}")
    assert result.returncode != 0
    assert f"error: kubectl '{tmp_path / 'kubectl'}' not found" in result.stderr
