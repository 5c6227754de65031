"""The pins in mk/cluster.mk are releases that exist, current, and compatible; so is every version the docs,
Makefile and tests tell a user to type. Checked against the upstream tags and source facts recorded in
tests/fixtures/upstream/ (where they came from is written in each file)."""

from __future__ import annotations

import json
import re
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from tests.config.conftest import KUBECTL, ROOT, make_output, make_value

UPSTREAM = ROOT / "tests" / "fixtures" / "upstream"
KNATIVE_REPOS = {
    "KNATIVE_SERVING_VERSION": "knative/serving",
    "KNATIVE_EVENTING_VERSION": "knative/eventing",
    "KOURIER_VERSION": "knative-extensions/net-kourier",
}
PLAIN_REPOS = {
    "KIND_VERSION": "kubernetes-sigs/kind",
    "JAEGER_VERSION": "jaegertracing/jaeger",
    "OTEL_OPERATOR_VERSION": "open-telemetry/opentelemetry-operator",
    "CERT_MANAGER_VERSION": "cert-manager/cert-manager",
}


@cache
def upstream(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((UPSTREAM / name).read_text())
    return data


def tags(repo: str) -> list[str]:
    listed: list[str] = upstream("released-tags.json")["repositories"][repo]["tags"]
    return listed


def pins(*overrides: str) -> dict[str, str]:
    """`make versions`: the pin table as make resolves it."""
    return dict(line.split(None, 1) for line in make_output("versions", *overrides).splitlines())


def minor(version: str) -> tuple[int, int]:
    major, minor_, *_ = re.findall(r"\d+", version)
    return int(major), int(minor_)


def node_kubernetes(image: str) -> str:
    """kindest/node:v1.35.0@sha256:... -> 1.35.0"""
    match = re.fullmatch(r"kindest/node:v(\d+\.\d+\.\d+)(@sha256:[0-9a-f]{64})?", image)
    assert match, f"{image!r} is not a kindest/node image"
    return match.group(1)


def check_pin(variable: str, value: str) -> str | None:
    """Why `variable=value` is not a release that exists, or None when it is."""
    if variable in KNATIVE_REPOS:
        repo = KNATIVE_REPOS[variable]
        return None if f"knative-v{value}" in tags(repo) else f"{repo} has no tag knative-v{value}"
    if variable in PLAIN_REPOS:
        repo = PLAIN_REPOS[variable]
        return None if f"v{value}" in tags(repo) else f"{repo} has no tag v{value}"
    if variable == "KIND_NODE_IMAGE":
        images = upstream("released-tags.json")["kind_default_node_images"].values()
        if "@" in value:
            return None if value in images else f"{value} is no kind release's node image (tag and digest)"
        known = {node_kubernetes(image) for image in images}
        return None if node_kubernetes(value) in known else f"{value}: no kind release names this node version"
    if variable == "KNATIVE_VERSION":
        lines = make_value("KNATIVE_LINES").split()
        return None if value in lines else f"KNATIVE_VERSION={value} is not a pinned line ({' '.join(lines)})"
    raise AssertionError(f"no rule for {variable}")


def test_every_pin_is_a_released_tag() -> None:
    table = pins()
    assert set(table) == {"KNATIVE_VERSION", *KNATIVE_REPOS, *PLAIN_REPOS, "KIND_NODE_IMAGE"}
    problems = [problem for variable, value in table.items() if (problem := check_pin(variable, value))]
    assert not problems, problems


def test_the_node_image_is_the_one_the_pinned_kind_release_names() -> None:
    table = pins()
    images = upstream("released-tags.json")["kind_default_node_images"]
    assert table["KIND_NODE_IMAGE"] == images[f"v{table['KIND_VERSION']}"], "node image and kind release disagree"
    assert "@sha256:" in table["KIND_NODE_IMAGE"], "the node image is pinned by digest, not by tag alone"


@pytest.mark.parametrize("line", make_value("KNATIVE_LINES").split())
def test_each_knative_line_pins_each_repositorys_latest_patch(line: str) -> None:
    table = pins(f"KNATIVE_VERSION={line}")
    for variable, repo in KNATIVE_REPOS.items():
        patches = [t.removeprefix("knative-v") for t in tags(repo) if t.startswith(f"knative-v{line}.")]
        assert patches, f"{repo} released nothing in the {line} line"
        latest = max(patches, key=lambda v: [int(x) for x in v.split(".")])
        assert table[variable] == latest, f"{variable} for {line}: {table[variable]}, latest {repo} patch is {latest}"


def test_a_knative_release_number_is_refused_naming_the_lines() -> None:
    """KNATIVE_VERSION names a line; a release number (here serving's real one) stops `make cluster` at once."""
    release = pins()["KNATIVE_SERVING_VERSION"]
    result = subprocess.run(
        ["make", "-s", "--no-print-directory", "cluster", f"KNATIVE_VERSION={release}"],
        cwd=ROOT,
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert f"KNATIVE_VERSION={release} is not one of the pinned lines (1.22 1.18)" in result.stderr
    assert "KNATIVE_SERVING_VERSION" in result.stderr


def test_the_default_node_runs_a_kubernetes_knative_requires_and_tests() -> None:
    table = pins()
    facts = upstream("compatibility.json")
    node = node_kubernetes(table["KIND_NODE_IMAGE"])
    line = table["KNATIVE_VERSION"]
    required = facts["knative_minimum_kubernetes"][line]["version"]
    assert [int(x) for x in node.split(".")] >= [int(x) for x in required.split(".")]
    tested = facts["knative_tested_kubernetes"][line]["minors"]
    assert ".".join(map(str, minor(node))) in tested, f"Knative {line} is tested on {tested}, the node runs {node}"
    # The legacy line only needs its minimum; that 1.18 was tested on older minors is a documented risk.
    legacy = facts["knative_minimum_kubernetes"]["1.18"]["version"]
    assert minor(node) >= minor(legacy)


def test_the_operators_stock_python_image_is_stated_as_its_release_names_it() -> None:
    """The version of the auto-instrumentation the pinned operator injects by default, wherever the repo says it:
    the image tag its versions.txt names (its requirements.txt at the same tag is already the next one's)."""
    operator = pins()["OTEL_OPERATOR_VERSION"]
    stock = upstream("compatibility.json")["otel_operator_python_autoinstrumentation"][operator]["default_image"]
    stated = f"{stock} with operator {operator}"
    for path in (
        ROOT / "docs" / "workshop.md",
        ROOT / "config/overlays/operator/autoinstrumentation-python/Dockerfile",
    ):
        text = " ".join(path.read_text().replace("#", " ").split())
        assert stated in text, f"{path.relative_to(ROOT)} does not say {stated!r}"
        others = set(re.findall(rf"(\d+\.\d+b\d+) with operator {re.escape(operator)}", text)) - {stock}
        assert not others, f"{path.relative_to(ROOT)} states {others} for operator {operator}"


def test_the_pinned_kubectl_is_within_one_minor_of_the_node() -> None:
    client = subprocess.run(
        [str(KUBECTL), "version", "--client", "-o", "json"], check=True, capture_output=True, text=True, timeout=30
    )
    kubectl = json.loads(client.stdout)["clientVersion"]["gitVersion"]
    node = node_kubernetes(pins()["KIND_NODE_IMAGE"])
    skew = upstream("compatibility.json")["kubectl_skew"]["minors"]
    assert minor(kubectl)[0] == minor(node)[0] and abs(minor(kubectl)[1] - minor(node)[1]) <= skew, (kubectl, node)


def test_the_operator_is_tested_on_the_nodes_kubernetes() -> None:
    table = pins()
    tested = upstream("compatibility.json")["otel_operator_tested_kubernetes"][table["OTEL_OPERATOR_VERSION"]]
    node = minor(node_kubernetes(table["KIND_NODE_IMAGE"]))
    assert minor(tested["from"]) <= node <= minor(tested["to"])


# What a reader is told to type: `VARIABLE=value` for a pin, a node image, a Jaeger image, a Knative release tag.
# Only version-shaped values (a digit first, or v and a digit): the container test's `JAEGER_VERSION=test-standin`
# names its local stand-in on purpose (tests/containers/engine.py), and is no release.
PINNED = "|".join([*KNATIVE_REPOS, *PLAIN_REPOS, "KNATIVE_VERSION", "KIND_NODE_IMAGE"])
ASSIGNMENT = re.compile(rf"\b({PINNED})=((?:v?\d|kindest/)[\w.:@/-]*)")
NODE_IMAGE = re.compile(r"kindest/node:v[\d.]+(?:@sha256:[0-9a-f]{64})?")
JAEGER_IMAGE = re.compile(r"jaegertracing/jaeger:(\d+\.\d+\.\d+)")
RELEASE_URL = re.compile(r"github\.com/(knative(?:-extensions)?/[\w-]+)/releases/download/knative-v(\d+\.\d+\.\d+)")


def told_to_type() -> list[tuple[Path, str, str]]:
    """(file, variable, value) for every version the README, docs, Makefile, mk/, config/ and tests mention."""
    files = [
        ROOT / "README.md",
        ROOT / "Makefile",
        *sorted((ROOT / "docs").glob("*.md")),
        *sorted((ROOT / "mk").glob("*.mk")),
        *sorted((ROOT / "config").rglob("*.yaml")),
        *sorted((ROOT / "tests").rglob("*.py")),
    ]
    found: list[tuple[Path, str, str]] = []
    for path in files:
        text = path.read_text()
        found += [(path, name, value.rstrip(".")) for name, value in ASSIGNMENT.findall(text) if "$" not in value]
        found += [(path, "KIND_NODE_IMAGE", image) for image in NODE_IMAGE.findall(text)]
        found += [(path, "JAEGER_VERSION", version) for version in JAEGER_IMAGE.findall(text)]
        for repo, version in RELEASE_URL.findall(text):
            variable = {v: k for k, v in KNATIVE_REPOS.items()}[repo]
            found.append((path, variable, version))
    return found


def test_every_version_the_repo_tells_a_user_to_type_exists() -> None:
    mentions = told_to_type()
    assert any(name == "KNATIVE_VERSION" for _, name, _ in mentions), "the scan found no KNATIVE_VERSION example"
    problems = [
        f"{path.relative_to(ROOT)}: {problem}" for path, name, value in mentions if (problem := check_pin(name, value))
    ]
    assert not problems, "\n".join(problems)


def test_the_recorded_tags_say_where_they_came_from() -> None:
    recorded = upstream("released-tags.json")
    assert "git tag -l" in recorded["how"]
    for repo, entry in recorded["repositories"].items():
        assert re.fullmatch(r"[0-9a-f]{40}", entry["snapshot"]["commit"]), repo
        assert entry["tags"], repo
