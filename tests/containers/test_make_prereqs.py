"""`make up`, `make down`, `make logs` and `make images` say at once what is missing, naming the fix: no docker
CLI, no Compose v2 (or only v1), no engine answering. Real make, real docker CLI and Compose v2 binary, on a PATH
and DOCKER_CONFIG built for each case, and a DOCKER_HOST where nothing listens."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.containers.conftest import COMPOSE, compose_env
from tools.stack import ROOT

TOOLS = ("bash", "env", "timeout", "head")
"""What the check script itself needs on PATH (make is called by its full path, and runs /bin/bash)."""
DOCKER = shutil.which("docker")
MAKE = shutil.which("make")
COMPOSE_V1_VERSION = "1.29.2"
ENGINE_FIX = "podman system service --time=0 unix:///run/podman/podman.sock"


def _path(bin_dir: Path, *extra: tuple[str, Path]) -> str:
    bin_dir.mkdir(parents=True, exist_ok=True)
    for tool in TOOLS:
        found = shutil.which(tool)
        assert found, tool
        (bin_dir / tool).symlink_to(found)
    for name, target in extra:
        (bin_dir / name).symlink_to(target)
    return str(bin_dir)


def _make(target: str, path: str, tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    assert MAKE
    base = {k: v for k, v in compose_env().items() if not k.startswith("DOCKER_")}
    done = subprocess.run(
        [MAKE, "--no-print-directory", target],
        cwd=ROOT,
        env={**base, "PATH": path, "DOCKER_CONFIG": str(tmp_path / "docker-config"), **env},
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0, f"make {target} passed with no engine:\n{done.stdout}"
    # It stopped at the check: neither compose nor the build was reached.
    assert "unknown flag" not in done.stderr and "building" not in done.stdout, done.stdout + done.stderr
    return done


def _with_compose_plugin(tmp_path: Path) -> None:
    plugins = tmp_path / "docker-config" / "cli-plugins"
    plugins.mkdir(parents=True)
    (plugins / "docker-compose").symlink_to(COMPOSE)


def _compose_plugin_is_builtin(tmp_path: Path) -> bool:
    """Whether this machine's docker CLI finds a Compose plugin outside DOCKER_CONFIG (system plugin folders)."""
    assert DOCKER
    done = subprocess.run(
        [DOCKER, "compose", "version"],
        env={**os.environ, "DOCKER_CONFIG": str(tmp_path / "empty-config")},
        check=False,
        capture_output=True,
    )
    return done.returncode == 0


needs_docker_cli = pytest.mark.skipif(DOCKER is None, reason="no docker CLI on this machine to test with")


@pytest.mark.parametrize("target", ["up", "down", "logs", "images"])
def test_no_docker_cli_names_docker_or_podman(target: str, tmp_path: Path) -> None:
    done = _make(target, _path(tmp_path / "bin"), tmp_path)
    assert "error: 'docker' not found" in done.stderr, done.stderr
    assert "https://docs.docker.com/get-docker/" in done.stderr and ENGINE_FIX in done.stderr
    assert "export DOCKER_HOST=unix:///run/podman/podman.sock" in done.stderr


@needs_docker_cli
@pytest.mark.parametrize("target", ["up", "down", "logs"])
def test_no_compose_v2_names_the_plugin(target: str, tmp_path: Path) -> None:
    assert DOCKER
    if _compose_plugin_is_builtin(tmp_path):
        pytest.skip("this machine's docker CLI has a Compose plugin installed system-wide")
    done = _make(target, _path(tmp_path / "bin", ("docker", Path(DOCKER))), tmp_path)
    assert "'docker compose' does not work (Compose v2 missing)" in done.stderr, done.stderr
    assert "https://docs.docker.com/compose/install/linux/" in done.stderr
    # Where make install put Compose v2 (this .venv has it), and the two ways to use it, each a line to paste.
    shown = COMPOSE.relative_to(ROOT)
    assert f"the Compose v2 binary make install put at {shown}" in done.stderr, done.stderr
    assert f"make up COMPOSE={shown}" in done.stderr
    plugins = tmp_path / "docker-config" / "cli-plugins"
    link = f"mkdir -p {plugins} && ln -s {COMPOSE} {plugins}/docker-compose"
    assert link in done.stderr, done.stderr
    subprocess.run(["bash", "-c", link], check=True)
    fixed = subprocess.run(
        [DOCKER, "compose", "version"],
        env={**os.environ, "DOCKER_CONFIG": str(tmp_path / "docker-config")},
        check=False,
        capture_output=True,
        text=True,
    )
    assert fixed.returncode == 0 and "Docker Compose version v2" in fixed.stdout, fixed


@needs_docker_cli
def test_only_compose_v1_says_v2_is_needed(tmp_path: Path) -> None:
    """A `docker-compose` that answers as Compose v1 does (`version --short` -> 1.29.2): v1 itself is a Python 2-era
    package that no longer installs, so this small script stands in for its version answer, which is all the check
    reads."""
    assert DOCKER
    if _compose_plugin_is_builtin(tmp_path):
        pytest.skip("this machine's docker CLI has a Compose plugin installed system-wide")
    v1 = tmp_path / "v1" / "docker-compose"
    v1.parent.mkdir()
    v1.write_text(f'#!/bin/sh\n[ "$1 $2" = "version --short" ] && echo {COMPOSE_V1_VERSION} && exit 0\nexit 1\n')
    v1.chmod(0o755)
    done = _make("up", _path(tmp_path / "bin", ("docker", Path(DOCKER)), ("docker-compose", v1)), tmp_path)
    assert f"only Compose v1 (docker-compose {COMPOSE_V1_VERSION}) is installed" in done.stderr, done.stderr


@needs_docker_cli
def test_standalone_compose_v2_is_offered(tmp_path: Path) -> None:
    assert DOCKER
    if _compose_plugin_is_builtin(tmp_path):
        pytest.skip("this machine's docker CLI has a Compose plugin installed system-wide")
    path = _path(tmp_path / "bin", ("docker", Path(DOCKER)), ("docker-compose", COMPOSE))
    done = _make("up", path, tmp_path)
    assert "make up COMPOSE=docker-compose" in done.stderr, done.stderr


@needs_docker_cli
@pytest.mark.parametrize("target", ["up", "down", "logs", "images"])
def test_no_engine_answering_names_docker_host_and_podman(target: str, tmp_path: Path) -> None:
    assert DOCKER
    _with_compose_plugin(tmp_path)
    dead = f"unix://{tmp_path}/nobody-listens.sock"
    done = _make(target, _path(tmp_path / "bin", ("docker", Path(DOCKER))), tmp_path, DOCKER_HOST=dead)
    assert f"error: no container engine answers at {dead}" in done.stderr, done.stderr
    assert ENGINE_FIX in done.stderr


def test_standalone_compose_with_no_engine_says_so(tmp_path: Path) -> None:
    """COMPOSE=<a standalone Compose v2> and no docker CLI at all: compose's own request finds no engine."""
    dead = f"unix://{tmp_path}/nobody-listens.sock"
    done = subprocess.run(
        [str(MAKE), "--no-print-directory", "up", f"COMPOSE={COMPOSE}"],
        cwd=ROOT,
        env={**compose_env(), "PATH": _path(tmp_path / "bin"), "DOCKER_HOST": dead},
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert f"error: no container engine answers at {dead}" in done.stderr, done.stderr
