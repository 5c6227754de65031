"""The container engine for the tests that really build and run the images: Podman behind its Docker API.

scripts/containers/podman-setup.sh installs and starts it (the project's own file, so a fresh CI machine gets the
same, and a person runs it the same way); this module adds what only a test harness needs: `podman` calls for
inspecting what runs, and the Jaeger stand-in image. The health checks Podman cannot run without systemd are
`make up`'s own business (scripts/containers/podman-healthchecks.sh), as on a user's machine.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.containers.conftest import COMPOSE
from tools.stack import ROOT

SETUP = ROOT / "scripts" / "containers" / "podman-setup.sh"
CANNOT_RUN = 3
"""podman-setup.sh's exit status when this machine cannot run the engine (not root, no apt-get)."""
STANDIN_TAG = "test-standin"
"""JAEGER_VERSION for the stack under test: compose then asks for `jaegertracing/jaeger:test-standin`, the stand-in
image, so the real Jaeger's tag is never shadowed by it in the engine's store."""
STANDIN_PACKAGES = ("opentelemetry-proto", "protobuf")
"""What tests/containers/jaeger_standin.py imports, installed from the runtime lock with its hashes."""


@dataclass(frozen=True)
class Engine:
    env: dict[str, str]
    """The environment that reaches the engine: DOCKER_HOST, DOCKER_CONFIG, CONTAINERS_CONF, PATH, ..."""
    python_image: str
    """The local base image the setup made (PYTHON_IMAGE)."""
    state: Path

    def podman(self, *args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            ["podman", *args], env=self.env, check=False, capture_output=True, text=True, timeout=timeout
        )
        if check and done.returncode != 0:
            raise AssertionError(f"podman {' '.join(args)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
        return done

    def inspect(self, container: str) -> dict[str, Any]:
        document: list[dict[str, Any]] = json.loads(self.podman("inspect", container).stdout)
        return document[0]

    def containers(self, project: str) -> dict[str, str]:
        """Compose service name -> container id, for every container of the compose project, running or not."""
        listed = self.podman(
            "ps", "--all", "--filter", f"label=com.docker.compose.project={project}", "--format", "json"
        )
        return {c["Labels"]["com.docker.compose.service"]: c["Id"] for c in json.loads(listed.stdout or "[]")}


@contextmanager
def podman_engine(state: Path) -> Iterator[Engine]:
    """Podman's Docker API up for the duration, or a skip saying why it cannot run here (a failure under CI)."""
    done = subprocess.run(
        ["bash", str(SETUP), str(state), str(COMPOSE)],
        check=False,
        capture_output=True,
        text=True,
        timeout=900,
    )
    if done.returncode == CANNOT_RUN:
        reason = f"no container engine can run here: {done.stderr.strip()}"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason} (CI=true: the container test must run)")
        pytest.skip(reason)
    assert done.returncode == 0, f"{SETUP.name} failed ({done.returncode}):\n{done.stderr}"
    # `export KEY=VALUE` lines, for a person's `eval`; these values (paths, an image name) need no unquoting.
    exports = [line.removeprefix("export ") for line in done.stdout.splitlines() if line.startswith("export ")]
    settings = dict(line.split("=", 1) for line in exports)
    env = {**os.environ, **settings}
    python_image = env.pop("PYTHON_IMAGE")
    try:
        yield Engine(env, python_image, state)
    finally:
        subprocess.run(["bash", str(SETUP), "--stop", str(state)], check=False, timeout=60)


def lock_entries(lock: Path, names: tuple[str, ...]) -> str:
    """The entries (name==version and their --hash lines) of `names` in a hashed pip lock, for --require-hashes."""
    entries: dict[str, str] = {}
    for block in re.split(r"\n(?=\S)", lock.read_text()):
        match = re.match(r"([\w.-]+)==", block)
        if match and match.group(1) in names:
            entries[match.group(1)] = "\n".join(x for x in block.splitlines() if not x.lstrip().startswith("#"))
    assert set(entries) == set(names), f"{lock} lacks {set(names) - set(entries)}"
    return "\n".join(entries.values()) + "\n"


def build_jaeger_standin(engine: Engine, context: Path) -> str:
    """The Jaeger stand-in image, under the name compose asks for with JAEGER_VERSION=STANDIN_TAG."""
    context.mkdir(parents=True, exist_ok=True)
    shutil.copy2(Path(__file__).with_name("jaeger_standin.py"), context / "jaeger_standin.py")
    (context / "requirements.txt").write_text(lock_entries(ROOT / "requirements" / "runtime.txt", STANDIN_PACKAGES))
    (context / "Dockerfile").write_text(
        "# The STAND-IN for Jaeger of tests/containers (not Jaeger): OTLP/HTTP in, Jaeger's two query calls out.\n"
        "ARG PYTHON_IMAGE\n"
        "FROM ${PYTHON_IMAGE}\n"
        "COPY requirements.txt jaeger_standin.py /standin/\n"
        "RUN python -m venv --without-pip /venv && python -m pip --python /venv/bin/python install --quiet "
        "--require-hashes --no-deps --only-binary=:all: -r /standin/requirements.txt\n"
        "USER 65532:65532\n"
        'CMD ["/venv/bin/python", "/standin/jaeger_standin.py"]\n'
    )
    # docker.io/ spelled out: compose names the image as Docker does, Podman would otherwise file it under localhost/.
    image = f"docker.io/jaegertracing/jaeger:{STANDIN_TAG}"
    engine.podman(
        "build", "--quiet", "--build-arg", f"PYTHON_IMAGE={engine.python_image}", "-t", image, str(context), timeout=600
    )
    return image
