"""The Dockerfiles: hadolint-clean, alike but for the service, non-root, started the way the contract says."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.containers import dockerfiles
from tests.containers.conftest import deps_stage
from tools.stack import ROOT, SERVICE_OWN_ENV, service_environment

HADOLINT = Path(sys.executable).parent / "hadolint"
DOCKERFILES = [ROOT / name / "Dockerfile" for name in dockerfiles.SERVICES]
# A slim CPython 3.11 at an exact patch version, with a digest.
PINNED_BASE = re.compile(r"^python:3\.11\.\d+-slim(-\w+)?@sha256:[0-9a-f]{64}$")
INSTALL = "--require-hashes --no-deps --only-binary=:all:"
BUILD_TOOLS = ("gcc", "build-essential", "apt-get", "apk ", "make ")


def test_hadolint_reports_nothing() -> None:
    done = subprocess.run(
        [str(HADOLINT), "--format", "json", *map(str, DOCKERFILES)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    findings = json.loads(done.stdout or "[]")
    assert findings == [], "\n".join(
        f"{f['file']}:{f['line']} {f['level']} {f['code']} {f['message']}" for f in findings
    )
    assert done.returncode == 0, done.stderr


def test_hadolint_does_flag_a_bad_dockerfile(tmp_path: Path) -> None:
    """The check above can fail: a root, unpinned, shell-form image gets warnings."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install fastapi\nCMD python -m first\n")
    done = subprocess.run(
        [str(HADOLINT), "--format", "json", str(bad)], check=False, capture_output=True, text=True, timeout=60
    )
    levels = {finding["level"] for finding in json.loads(done.stdout)}
    assert levels & {"error", "warning"}, done.stdout


@pytest.mark.parametrize("service", dockerfiles.SERVICES)
def test_image_is_multi_stage_from_a_pinned_slim_python(service: str) -> None:
    stages = dockerfiles.stages(ROOT / service / "Dockerfile")
    assert len(stages) == 2, "a deps stage that builds the venv, then the image"
    for stage in stages:
        assert PINNED_BASE.match(stage.base), f"{service}: base {stage.base!r} is not python:3.11.<n>-slim@sha256"
    deps, final = stages
    assert deps.name and [c.from_stage for c in dockerfiles.copies(final) if c.from_stage] == [deps.name]


@pytest.mark.parametrize("service", dockerfiles.SERVICES)
def test_deps_come_from_the_runtime_lock_with_hashes(service: str) -> None:
    deps = deps_stage(service)
    lock, project = deps.all("RUN")
    assert INSTALL in lock.args and "-r " in lock.args, lock.args
    # Then the project itself, for its plug-ins' entry points: nothing from an index, nothing but plugins/.
    assert "--no-deps" in project.args and "--no-index" in project.args, project.args
    sources = {source for copy in dockerfiles.copies(deps) for source in copy.sources}
    assert sources == {"requirements/runtime.txt", "pyproject.toml", "plugins/"}


@pytest.mark.parametrize("service", dockerfiles.SERVICES)
def test_final_stage_has_no_build_tools_and_runs_as_non_root(service: str) -> None:
    final = dockerfiles.stages(ROOT / service / "Dockerfile")[-1]
    assert not final.all("RUN"), f"{service}: the final stage runs nothing at build time (no tools, no root work)"
    text = " ".join(i.args for i in final.instructions)
    assert not any(tool in text for tool in BUILD_TOOLS)
    user = final.user()
    assert user is not None, f"{service}: the final stage sets no USER, so the image runs as root"
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) != 0, f"{service}: USER {user!r} must be a numeric non-root UID"
    # Knative's manifests (runAsUser) and Kubernetes' runAsNonRoot check need a numeric UID: 65532 is the one.
    assert uid == "65532"


@pytest.mark.parametrize("service", dockerfiles.SERVICES)
def test_cmd_starts_the_service_as_the_contract_does(service: str) -> None:
    final = dockerfiles.stages(ROOT / service / "Dockerfile")[-1]
    assert final.cmd() == ["python", "-m", service]
    assert not final.all("ENTRYPOINT"), "an ENTRYPOINT would stand between PID 1 and the service"
    env = final.env({"PATH": "/usr/local/bin:/usr/bin:/bin"})
    venv = next(c.destination for c in dockerfiles.copies(final) if c.from_stage)
    assert env["PATH"].split(":")[0] == f"{venv}/bin", "python must be the venv's, which has the dependencies"
    assert {k: env.get(k) for k in ("PYTHONUNBUFFERED", "HOST", "PORT")} == {
        "PYTHONUNBUFFERED": "1",
        "HOST": "0.0.0.0",
        "PORT": "8080",
    }
    # The contract: `python -m <service>` from the repo root, which holds plugins/, the lesson and <service>/.
    copied = {copy.destination.rstrip("/") for copy in dockerfiles.copies(final) if not copy.from_stage}
    assert {"plugins", "event_tracing", service} <= copied
    assert final.workdir().startswith("/")


def test_the_three_dockerfiles_differ_only_in_the_service() -> None:
    """One Dockerfile in three copies: each with its name swapped for <svc> reads the same, but for broker's
    config/ (the Trigger manifests it routes by)."""
    texts = {}
    for service in dockerfiles.SERVICES:
        instructions = dockerfiles.instructions(ROOT / service / "Dockerfile")
        own = [f"{name}={value}" for name, value in SERVICE_OWN_ENV.get(service, {}).items()]
        texts[service] = [
            re.sub(r"\s+".join(map(re.escape, ["", *own])) + "$", "", f"{i.keyword} {i.args}")
            if own
            else f"{i.keyword} {i.args}"
            for i in instructions
        ]
        texts[service] = [line.replace(service, "<svc>") for line in texts[service]]
    broker_only = ["COPY config/ config/"]
    assert texts["first"] == texts["second"]
    assert [line for line in texts["broker"] if line not in broker_only] == texts["first"]
    assert all(line in texts["broker"] for line in broker_only)


@pytest.mark.parametrize("service", dockerfiles.SERVICES)
def test_images_run_the_services_as_make_run_does(service: str) -> None:
    """The plug-ins are chosen by the same settings in the images as in `make run` (tools/stack.py)."""
    final = dockerfiles.stages(ROOT / service / "Dockerfile")[-1]
    env = final.env({})
    expected = service_environment(service)
    assert {name: env.get(name) for name in expected} == expected


def test_dockerignore_lets_in_what_the_images_copy_and_keeps_the_rest_out() -> None:
    for service in dockerfiles.SERVICES:
        for stage in dockerfiles.stages(ROOT / service / "Dockerfile"):
            for copy in dockerfiles.copies(stage):
                for source in [] if copy.from_stage else copy.sources:
                    assert dockerfiles.context_files(source), f"{service}: COPY {source} finds nothing in the context"
    assert dockerfiles.in_context("first/app.py")
    assert dockerfiles.in_context("config/trigger.yaml")
    for outside in (".venv/bin/python", "tests/conftest.py", ".git/HEAD", "common/__pycache__/x.pyc", "README.md"):
        assert not dockerfiles.in_context(outside), f"{outside} would be sent to the build"
